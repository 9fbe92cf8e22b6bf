"""The plan cache with a scripted LM: exact keyword hits and misses, templates without entities
or numbers, stored only after successful runs, and what every call cost."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from plans_fake import ScriptedLM, SpiderDatabase, words

from tvcache._store import Store
from tvcache.plans import (
    CostOptimal,
    FullHistory,
    Ledger,
    Method,
    Models,
    PlanCache,
    PlanCacheError,
    PlanCaching,
    Price,
    Prices,
    PromptError,
    RunLog,
    SemanticCache,
    Step,
    Task,
    extract_sql,
    generate_template,
    prompt,
    scrub,
    task_entities,
)

Q1 = Task("1", "How many singers are from France?")
Q2 = Task("2", "How many singers are from Japan?")
Q3 = Task("3", "List the names of all stadiums.")
KEYWORDS = {
    f"Task: {Q1.question}\nIntent:": "Count rows matching condition",
    f"Task: {Q2.question}\nIntent:": "count rows matching condition.",
    f"Task: {Q3.question}\nIntent:": "list names",
}
GOOD_SQL = {
    "France": "SELECT count(*) FROM singer WHERE country = 'France'",
    "Japan": "SELECT count(*) FROM singer WHERE country = 'Japan'",
    "stadiums": "SELECT name FROM stadium",
}
TEMPLATE_PROMPT = (
    "Task intent: count rows matching condition\nPlan that succeeded:\n"
    "1. Count the singers whose country is France\nTemplate:"
)
TEMPLATE = "1. Count the rows of <entity> whose <column> is <entity>"
ADAPT_PROMPT = f"Template:\n{TEMPLATE}\nTask: {Q2.question}\nPlan:"


@pytest.fixture
def store() -> Iterator[Store]:
    with Store("sqlite://") as store:
        yield store


def planner(first: str) -> ScriptedLM:
    """A planner that gives ``first`` as its instruction, then says DONE."""
    return ScriptedLM(
        "planner", lambda user: "DONE" if "Result 1:" in user else f"Instruction: {first}"
    )


def actor() -> ScriptedLM:
    def act(user: str) -> str:
        for word, sql in GOOD_SQL.items():
            if f"Instruction: Count the singers whose country is {word}" in user or (
                word == "stadiums" and "stadium" in user.split("Instruction:")[1]
            ):
                return f"```sql\n{sql};\n```"
        return "SELECT nonsense FROM nowhere"

    return ScriptedLM("actor", act)


def models(large: ScriptedLM, small: ScriptedLM) -> Models:
    return Models(large=large, small=small, actor=actor())


def small_lm(extra: dict[str, str] | None = None) -> ScriptedLM:
    script = {**KEYWORDS, TEMPLATE_PROMPT: TEMPLATE, **(extra or {})}

    def answer(user: str) -> str | None:
        if user in script:
            return script[user]
        if user.startswith("Task: ") and "Conversation so far:" in user:  # as the planner
            return (
                "DONE"
                if "Result 1:" in user
                else "Instruction: Count the singers whose country is Japan"
            )
        return None

    return ScriptedLM("small", answer)


# --- the cache itself --------------------------------------------------------------------------


def test_exact_keyword_match_hits_and_near_misses_miss(store: Store) -> None:
    cache = PlanCache(store, "spider")
    stored = cache.put("Count rows matching condition", TEMPLATE, source="1")
    assert cache.lookup("count rows matching condition") == stored
    assert cache.lookup("  COUNT rows, matching condition! ") == stored  # normalised, still exact
    assert cache.lookup("count rows matching") is None  # a prefix is not a match
    assert cache.lookup("count row matching condition") is None  # no stemming, no similarity
    assert PlanCache(store, "other").lookup("count rows matching condition") is None


def test_lookup_prefers_the_template_that_succeeds(store: Store) -> None:
    cache = PlanCache(store)
    bad = cache.put("mean calculation", "1. Guess the mean")
    good = cache.put("mean calculation", "1. Sum <column>\n2. Divide by the count")
    for _ in range(3):
        cache.record(bad.template_id, success=False)
    cache.record(good.template_id, success=True)
    found = cache.lookup("mean calculation")
    assert found is not None and found.template_id == good.template_id
    assert (found.uses, found.successes, found.failures) == (1, 1, 0)


def test_bad_input_is_refused_with_what_to_do(store: Store) -> None:
    cache = PlanCache(store)
    with pytest.raises(PlanCacheError, match="no letters or digits"):
        cache.put("?!", TEMPLATE)
    with pytest.raises(PlanCacheError, match="empty"):
        cache.put("mean", "   ")
    with pytest.raises(PlanCacheError, match="no plan template"):
        cache.record("missing", success=True)
    assert cache.templates() == []


# --- the method ---------------------------------------------------------------------------------


def test_miss_plans_large_then_stores_and_a_same_keyword_task_hits_with_the_small_planner() -> None:
    with Store("sqlite://") as store:
        large = planner("Count the singers whose country is France")
        small = small_lm({ADAPT_PROMPT: "1. Count the singers whose country is Japan"})
        method = PlanCaching(models(large, small), Ledger(), PlanCache(store))

        first = method.solve(Q1, SpiderDatabase("concert_singer"))
        assert (first.hit, first.stored, first.success) == (False, True, True)
        assert first.keyword == "count rows matching condition"
        assert first.log.answer_sql == GOOD_SQL["France"]
        (template,) = PlanCache(store).templates()
        assert template.template == TEMPLATE and template.prompt_version == "template.v1"
        large_calls = large.stages()

        second = method.solve(Q2, SpiderDatabase("concert_singer"))
        assert second.hit and second.template_id == template.template_id
        assert large.stages() == large_calls  # the large planner was not asked
        assert second.log.plan == "1. Count the singers whose country is Japan"
        assert second.log.answer_sql == GOOD_SQL["Japan"]
        (used,) = PlanCache(store).templates()
        assert (used.uses, used.successes) == (1, 1)


def test_a_failed_run_stores_nothing() -> None:
    with Store("sqlite://") as store:
        small = small_lm()
        method = PlanCaching(
            models(planner("Count the singers whose country is France"), small),
            Ledger(),
            PlanCache(store),
        )
        outcome = method.solve(Q1, SpiderDatabase("concert_singer"), judge=lambda log: False)
        assert not outcome.success and not outcome.stored
        assert PlanCache(store).templates() == []
        assert all("Plan that succeeded" not in user for _, user in small.prompts)


def test_a_run_that_never_finishes_stores_nothing_by_default() -> None:
    with Store("sqlite://") as store:
        never_done = ScriptedLM(
            "large", lambda user: "Instruction: Count the singers whose country is France"
        )
        method = PlanCaching(
            models(never_done, small_lm()), Ledger(), PlanCache(store), max_rounds=2
        )
        outcome = method.solve(Q1, SpiderDatabase("concert_singer"))
        assert not outcome.log.finished and len(outcome.log.steps) == 2
        assert not outcome.stored and PlanCache(store).templates() == []


def test_full_history_stores_the_whole_log_and_hands_it_to_the_small_planner() -> None:
    with Store("sqlite://") as store:
        small = small_lm()
        method = FullHistory(
            models(planner("Count the singers whose country is France"), small),
            Ledger(),
            PlanCache(store, "full"),
        )
        method.solve(Q1, SpiderDatabase("concert_singer"))
        (stored,) = PlanCache(store, "full").templates()
        assert "France" in stored.template and "Result 1: " in stored.template
        second = method.solve(Q2, SpiderDatabase("concert_singer"))
        assert second.hit and stored.template in second.log.plan


class WordEmbedder:
    """Bag of words, normalised: similar questions share most words."""

    def embed(self, texts: list[str]) -> list[list[float]]:
        vocab = ["how", "many", "singers", "are", "from", "france", "japan", "list", "stadiums"]
        out = []
        for text in texts:
            tokens = text.lower().replace("?", "").replace(".", "").split()
            vector = [float(tokens.count(w)) for w in vocab]
            norm = sum(v * v for v in vector) ** 0.5 or 1.0
            out.append([v / norm for v in vector])
        return out


def test_semantic_cache_hits_on_similar_queries_only() -> None:
    large = planner("Count the singers whose country is France")
    method = SemanticCache(models(large, small_lm()), Ledger(), WordEmbedder(), threshold=0.8)
    assert not method.solve(Q1, SpiderDatabase("concert_singer")).hit
    hit = method.solve(Q2, SpiderDatabase("concert_singer"))
    assert hit.hit and hit.log.plan == "1. Count the singers whose country is France"
    assert not method.solve(Q3, SpiderDatabase("concert_singer")).hit


def test_baselines_use_one_planner_each() -> None:
    large, small = planner("Count the singers whose country is France"), small_lm()
    Method(models(large, small), Ledger()).solve(Q1, SpiderDatabase("concert_singer"))
    assert large.stages() == 2 and small.stages() == 0
    CostOptimal(models(large, small), Ledger()).solve(Q2, SpiderDatabase("concert_singer"))
    assert large.stages() == 2 and small.stages() == 2


# --- templates ----------------------------------------------------------------------------------


def run_log(question: str, instruction: str, sql: str) -> RunLog:
    log = RunLog(question)
    log.steps.append(Step("Look at the tables", "SELECT bad", "no such column", False, False))
    log.steps.append(Step(instruction, sql, "42", True, False))
    return log


def test_template_generation_strips_entities_and_numbers_the_lm_left() -> None:
    question = "What is the average age of singers from 'New Zealand' older than 30?"
    sql = "SELECT avg(age) FROM singer WHERE country = 'New Zealand' AND age > 30"
    log = run_log(question, "Average the age of singers from New Zealand above 30", sql)
    expected_prompt = (
        "Task intent: mean calculation\nPlan that succeeded:\n"
        "1. Average the age of singers from New Zealand above 30\nTemplate:"
    )
    lazy = ScriptedLM(
        "small",
        {
            expected_prompt: "Here it is:\n1. Filter rows where country is new zealand\n"
            "2) Keep ages above 30.5 and average them"
        },
    )
    template = generate_template(lazy, Ledger(), "mean calculation", log)
    assert template == (
        "1. Filter rows where country is <entity>\n2. Keep ages above <number> and average them"
    )


def test_template_of_a_log_without_a_successful_step_is_empty() -> None:
    log = RunLog("q", steps=[Step("x", "SELECT bad", "error", False, False)])
    assert generate_template(ScriptedLM("small"), Ledger(), "k", log) == ""


@settings(max_examples=200, deadline=None)
@given(
    entity=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=2, max_size=8).map(str.title),
    number=st.integers(min_value=0, max_value=10**9),
    filler=st.sampled_from(["count", "sum of", "rows where", "names of"]),
)
def test_scrubbed_templates_never_carry_the_task_details(
    entity: str, number: int, filler: str
) -> None:
    question = f"How many people live in {entity} with more than {number} pets?"
    sql = f"SELECT count(*) FROM people WHERE city = '{entity}' AND pets > {number}"
    text = f"1. {filler} {entity.lower()} and {number} or {entity.upper()}, '{entity}'"
    out = scrub(text, task_entities(question, [sql]))
    assert entity.lower() not in re.findall(r"[a-z]+", out.lower().replace("<entity>", ""))
    assert not re.search(r"\d", out)


# --- LM calls and their cost --------------------------------------------------------------------


def test_every_call_is_priced_by_model_and_overhead_is_the_cache_calls_share() -> None:
    prices = Prices({"large": Price(10.0, 30.0), "small": Price(1.0, 2.0)})
    ledger = Ledger(prices)
    with Store("sqlite://") as store:
        large = ScriptedLM(
            "large",
            lambda u: "DONE" if "Result 1:" in u else "Count the singers whose country is France",
        )
        method = PlanCaching(models(large, small_lm()), ledger, PlanCache(store))
        method.solve(Q1, SpiderDatabase("concert_singer"))
    expected = {"large": 0.0, "small": 0.0, "actor": 0.0}
    tokens = {"large": [0, 0], "small": [0, 0], "actor": [0, 0]}
    for lm in (large, method.models.small, method.models.actor):
        assert isinstance(lm, ScriptedLM)
        for system, user in list(lm.prompts):
            answer = lm.complete(system, user, max_tokens=1).text
            tokens[lm.model][0] += words(system) + words(user)
            tokens[lm.model][1] += words(answer)
    for model, (inp, out) in tokens.items():
        price = prices[model]
        expected[model] = (inp * price.input + out * price.output) / 1e6
    by_model = ledger.by_model()
    for model in expected:
        assert by_model[model].prompt_tokens == tokens[model][0]
        assert by_model[model].completion_tokens == tokens[model][1]
        assert by_model[model].dollars == pytest.approx(expected[model])
    assert prices["actor"] == Price(0.0, 0.0)  # unknown models cost the default
    overhead = ledger.totals(stages=["keyword", "template"]).dollars
    assert overhead > 0
    assert ledger.overhead_share() == pytest.approx(overhead / ledger.totals().dollars)
    stages = [u.stage for u in ledger.usages]
    assert stages[0] == "keyword" and stages[-1] == "template" and "plan" in stages


def test_price_table_from_a_file_and_a_clear_error_for_a_bad_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    good = tmp_path / "prices.json"
    good.write_text('{"gpt-4o": {"input": 2.5, "output": 10}}')
    assert Prices.from_json(good)["gpt-4o"] == Price(2.5, 10.0)
    bad = tmp_path / "bad.json"
    bad.write_text('{"gpt-4o": 2.5}')
    with pytest.raises(Exception, match="cannot read the price table") as info:
        Prices.from_json(bad)
    assert "input" in str(getattr(info.value, "hint", ""))


# --- prompts and parsing ------------------------------------------------------------------------


def test_prompts_are_versioned_files_filled_with_exactly_their_fields() -> None:
    keyword = prompt("keyword")
    assert keyword.label == "keyword.v1"
    assert keyword.render(question="Q?")[1] == "Task: Q?\nIntent:"
    with pytest.raises(PromptError, match="takes the fields"):
        keyword.render(question="Q?", extra="x")
    with pytest.raises(PromptError, match="no prompt file"):
        prompt("keyword", 99)


@pytest.mark.parametrize(
    ("answer", "sql"),
    [
        ("```sql\nSELECT a\nFROM t;\n```", "SELECT a FROM t"),
        ("Sure! SELECT count(*) FROM singer; -- done", "SELECT count(*) FROM singer"),
        ("WITH x AS (SELECT 1) SELECT * FROM x", "WITH x AS (SELECT 1) SELECT * FROM x"),
        ("I do not know", "I do not know"),
    ],
)
def test_extract_sql(answer: str, sql: str) -> None:
    assert extract_sql(answer) == sql
