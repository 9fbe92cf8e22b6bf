"""``tvcache bench plans`` against OpenAI-compatible endpoints served over real HTTP on
127.0.0.1 by a scripted model: the report's hit rates and the priced cost of every model."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tvcache.cli import main
from tvcache.plans import LMError, OpenAICompatibleLM

PROMPT_TOKENS, COMPLETION_TOKENS = 10, 2


def answer(user: str) -> str:
    if user.endswith("Intent:"):
        return "Count rows"
    if user.endswith("Template:"):
        return "1. Count the rows of <entity>"
    if user.endswith("Plan:"):
        return "1. Count the rows"
    if user.endswith("(or DONE):"):
        return "DONE" if "Result 1:" in user else "Count the rows of the main table"
    return "```sql\nSELECT 1\n```"  # the actor


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/v1/chat/completions" or body["model"] == "missing":
            self.send_response(404)
            self.end_headers()
            self.wfile.write(b'{"error": "no such model"}')
            return
        text = answer(body["messages"][1]["content"])
        data = {
            "choices": [{"message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS},
        }
        raw = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_bench_reports_hits_and_prices_every_model(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(
        json.dumps({"big": {"input": 5, "output": 20}, "tiny": {"input": 1, "output": 2}})
    )
    args = ["bench", "plans", "--json", "--warmup", "2", "--eval", "3", "--max-rounds", "2"]
    args += ["--methods", "accuracy-optimal,plan-cache", "--store-on", "finished"]
    args += ["--planner-url", url, "--planner-model", "big", "--small-url", url]
    args += ["--small-model", "tiny", "--actor-url", url, "--actor-model", "tiny"]
    assert main([*args, "--prices", str(prices)]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = {r["method"]: r for r in report["methods"]}
    assert (report["warmup"], report["eval"]) == (2, 3)
    assert rows["accuracy-optimal"]["plan_hit_rate"] == 0.0
    assert rows["plan-cache"]["plan_hit_rate"] == 1.0  # every evaluation request hits
    assert rows["plan-cache"]["templates_stored"] == 1  # once, from the warm-up
    assert "big" not in rows["plan-cache"]["by_model"]  # hits never ask the large planner
    per_call = {"big": (5 * 10 + 20 * 2) / 1e6, "tiny": (1 * 10 + 2 * 2) / 1e6}
    for row in rows.values():
        for model, totals in row["by_model"].items():
            assert totals["prompt_tokens"] == PROMPT_TOKENS * totals["calls"]
            assert totals["dollars"] == pytest.approx(per_call[model] * totals["calls"], abs=1e-6)
        assert 0.0 <= row["accuracy"] <= 1.0
        assert row["tool_hit_rate"] > 0  # the schema query repeats within a database
    assert rows["plan-cache"]["dollars"] < rows["accuracy-optimal"]["dollars"]


def test_http_lm_errors_say_what_to_fix(url: str) -> None:
    with pytest.raises(LMError, match="answered 404") as info:
        OpenAICompatibleLM(url, "missing").complete("s", "u", max_tokens=1)
    assert "model name" in str(info.value.hint)
    with pytest.raises(LMError, match="not an http"):
        OpenAICompatibleLM("localhost:1", "m")


def test_jsonl_workload_splits_and_refuses_bad_lines(tmp_path: Path) -> None:
    from tvcache.bench._plans_workload import WorkloadError, execution_match, load_jsonl

    good = tmp_path / "w.jsonl"
    lines = [
        {
            "id": "a",
            "question": "How many?",
            "gold": "SELECT count(*) FROM singer",
            "db": "concert_singer",
            "split": "eval",
        },
        {
            "id": "b",
            "question": "Names?",
            "gold": "SELECT name FROM singer ORDER BY age",
            "db": "concert_singer",
            "split": "warmup",
        },
    ]
    good.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    warm, evals = load_jsonl(good, warmup=5)
    assert [r.request_id for r in warm] == ["b"] and [r.request_id for r in evals] == ["a"]
    assert execution_match(evals[0], "SELECT count(singer_id) FROM singer")
    assert not execution_match(evals[0], "SELECT count(*) FROM stadium")
    assert not execution_match(evals[0], "SELECT nonsense")
    assert not execution_match(warm[0], "SELECT name FROM singer ORDER BY age DESC")  # order
    for bad, message in [
        ('{"question": "q"}', "is not a workload line"),
        ('{"question": "q", "gold": "g"}', "exactly one of db and db_path"),
        ('{"question": "q", "gold": "g", "db": "x", "split": "test"}', "split is 'test'"),
    ]:
        path = tmp_path / "bad.jsonl"
        path.write_text(bad)
        with pytest.raises(WorkloadError, match=message):
            load_jsonl(path, warmup=1)
