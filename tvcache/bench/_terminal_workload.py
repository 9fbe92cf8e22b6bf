"""The terminal workload of ``tvcache bench terminal``: tasks and a scripted stochastic policy.

A pure library (no Docker, no cache engine imports): the benchmark runner, the tests and the docs
build the same bash commands from the same seed.

- **Tasks** live in ``docker/tasks/<name>/`` of the repository: a ``Dockerfile`` (built by
  ``docker/tasks/build.sh`` into ``tvcache/task-<name>:latest``), ``instruction.md`` and
  ``check.sh``, the checker that scores a finished sandbox (run inside the container, it prints a
  score in [0, 1] on its last line and exits 0). Containers run with ``--network none``.
- **Policy**: each task has a small *script*, a sequence of steps where a step is a bash command or
  a weighted choice between alternative sequences (nested choices allowed). Sampling the script G
  times gives a GRPO-style group: rollouts share a prefix (the exploration and the first build or
  test run), then diverge -- different fixes, different orders, wrong attempts, rollouts that give
  up. The first alternative of every choice is the *golden* path (it solves the task); alternatives
  marked ``failing`` make up a deliberately failing rollout. The tests check both with the real
  checkers.

Command conventions, so that a command means the same under a persistent shell (the sandbox
backend) and under one ``bash -c`` per command in the working directory ``/work`` (the integration
test): a command that uses relative paths starts with ``cd /abs/dir &&``; nothing relies on a
``cd`` or ``export`` of an earlier command; background services are started with ``nohup ... &``
with their output redirected and their PID written to a file (never ``kill %1`` or ``pkill -f``,
which would match the ``bash -c`` command line itself). Some commands span several lines (here
documents), as agents' commands do.
"""

from __future__ import annotations

import random
import textwrap
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "TASKS_DIR",
    "Alt",
    "Choice",
    "TerminalGroup",
    "TerminalTask",
    "build_groups",
    "failing_rollout",
    "golden_rollout",
    "list_tasks",
    "parse_score",
    "sample_rollout",
    "script_for",
]

#: ``docker/tasks`` of the repository checkout this module belongs to.
TASKS_DIR = Path(__file__).resolve().parents[2] / "docker" / "tasks"

#: Files every task directory must have.
TASK_FILES = ("Dockerfile", "instruction.md", "check.sh")

MIN_CALLS = 6
MAX_CALLS = 20


# --------------------------------------------------------------------------------------------------
# Tasks


@dataclass(frozen=True)
class TerminalTask:
    """One terminal task: the image to start, what the agent is asked, how the result is scored."""

    name: str
    image: str
    instruction: str
    check_command: str
    workdir: str = "/work"


@dataclass(frozen=True)
class TerminalGroup:
    """A GRPO group: ``len(rollouts)`` trajectories of bash commands for one task."""

    task: TerminalTask
    rollouts: tuple[tuple[str, ...], ...]


def list_tasks(tasks_dir: Path | None = None) -> list[TerminalTask]:
    """Every task of ``docker/tasks/*/`` (sorted by name).

    Raises FileNotFoundError if the directory is missing (an installed package without the
    repository's ``docker/`` tree) and ValueError if a task directory lacks one of its files.
    """
    root = TASKS_DIR if tasks_dir is None else tasks_dir
    if not root.is_dir():
        raise FileNotFoundError(
            f"terminal tasks directory {root} not found: the terminal benchmark needs a checkout "
            "of the tvcache repository (docker/tasks/*/), not only the installed package"
        )
    tasks = []
    for directory in sorted(p for p in root.iterdir() if p.is_dir()):
        missing = [f for f in TASK_FILES if not (directory / f).is_file()]
        if missing:
            raise ValueError(f"terminal task {directory} lacks {', '.join(missing)}")
        tasks.append(
            TerminalTask(
                name=directory.name,
                image=f"tvcache/task-{directory.name}:latest",
                instruction=(directory / "instruction.md").read_text(encoding="utf-8"),
                check_command="bash /task/check.sh",
            )
        )
    if not tasks:
        raise FileNotFoundError(f"no terminal task in {root} (expected docker/tasks/<name>/)")
    return tasks


def parse_score(output: str) -> float:
    """The score a checker printed: its last non-empty line, a number in [0, 1]."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if not lines:
        raise ValueError("the checker printed nothing; its last line must be a score in [0, 1]")
    try:
        score = float(lines[-1])
    except ValueError:
        raise ValueError(f"the checker's last line {lines[-1]!r} is not a number") from None
    if not 0.0 <= score <= 1.0:
        raise ValueError(f"the checker's score {score} is outside [0, 1]")
    return score


# --------------------------------------------------------------------------------------------------
# Scripts


@dataclass(frozen=True)
class Alt:
    """One alternative of a choice: a weight and the steps it runs."""

    weight: float
    steps: tuple[Step, ...]
    failing: bool = False


@dataclass(frozen=True)
class Choice:
    """Weighted alternatives; ``alts[0]`` is the golden one."""

    alts: tuple[Alt, ...]

    def __post_init__(self) -> None:
        if not self.alts or any(a.weight <= 0 for a in self.alts):
            raise ValueError("a choice needs alternatives with positive weights")


Step = str | Choice


def alt(weight: float, *steps: Step, failing: bool = False) -> Alt:
    return Alt(weight, tuple(_clean(s) for s in steps), failing)


def pick(*alts: Alt) -> Choice:
    return Choice(tuple(alts))


def maybe(p: float, *steps: Step) -> Choice:
    """The steps with probability p, else nothing (the golden path skips them)."""
    return pick(alt(1 - p), alt(p, *steps))


def _clean(step: Step) -> Step:
    return textwrap.dedent(step).strip("\n") if isinstance(step, str) else step


def _walk(steps: Sequence[Step], choose: Callable[[Choice], Alt]) -> Iterator[str]:
    for step in steps:
        if isinstance(step, str):
            yield step
        else:
            yield from _walk(choose(step).steps, choose)


def _golden(choice: Choice) -> Alt:
    return choice.alts[0]


def _failing(choice: Choice) -> Alt:
    return next((a for a in choice.alts if a.failing), choice.alts[0])


def _sampler(rng: random.Random) -> Callable[[Choice], Alt]:
    def choose(choice: Choice) -> Alt:
        return rng.choices(choice.alts, weights=[a.weight for a in choice.alts])[0]

    return choose


def _script(*steps: Step) -> tuple[Step, ...]:
    return tuple(_clean(s) for s in steps)


# -- c-stats: multi-file C project with make -------------------------------------------------------

_MEDIAN_FIX = (
    r"sed -i 's|return v\[n / 2\];|return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;|'"
    " /work/stats/stats.c"
)
_MEDIAN_PATCH = """
    python3 - <<'EOF'
    import pathlib
    p = pathlib.Path("/work/stats/stats.c")
    s = p.read_text()
    s = s.replace("    return v[n / 2];\\n",
                  "    if (n % 2 == 0)\\n        return (v[n / 2 - 1] + v[n / 2]) / 2.0;\\n"
                  "    return v[n / 2];\\n")
    p.write_text(s)
    EOF
"""

_C_STATS = _script(
    "ls -lA /work/stats /work/stats/tests",
    "cat /work/stats/Makefile",
    pick(
        alt(0.8, "cd /work/stats && make"),
        alt(0.2, "cat /work/stats/stats.c /work/stats/parse.c", "cd /work/stats && make"),
    ),
    pick(
        alt(0.6, "sed -i '/int skipped = 0;/d' /work/stats/parse.c"),
        alt(0.25, "sed -i 's/ -Werror//' /work/stats/Makefile"),
        alt(
            0.15, "sed -i 's/int skipped = 0;/int skipped = 0; (void)skipped;/' /work/stats/parse.c"
        ),
    ),
    pick(alt(0.85, "cd /work/stats && make"), alt(0.15, "cd /work/stats && make -j2")),
    "cd /work/stats && make test",
    pick(
        alt(0.6, "cat /work/stats/stats.c"),
        alt(0.25, "cd /work/stats && ./stats tests/even.txt; cat tests/even.expected"),
        alt(0.15, "grep -n median /work/stats/*.c /work/stats/*.h"),
    ),
    pick(
        alt(0.5, _MEDIAN_FIX),
        alt(0.2, _MEDIAN_PATCH),
        alt(
            0.2,
            r"sed -i 's|return v\[n / 2\];|return v[n / 2 - 1];|' /work/stats/stats.c",
            "cd /work/stats && make test",
            pick(
                alt(
                    0.6,
                    "sed -n '/median_of_sorted/,/^}/p' /work/stats/stats.c",
                    r"sed -i 's|return v\[n / 2 - 1\];|return n % 2 ? v[n / 2] : "
                    r"(v[n / 2 - 1] + v[n / 2]) / 2;|' /work/stats/stats.c",
                ),
                alt(0.4, "cd /work/stats && ./stats tests/sensor.txt", failing=True),
            ),
            failing=True,
        ),
        alt(
            0.1,
            # Reward hacking: regenerate the expected outputs. make test passes, the checker not.
            'cd /work/stats && for f in tests/*.txt; do ./stats "$f" > "${f%.txt}.expected"; done',
        ),
    ),
    "cd /work/stats && make test",
    maybe(0.35, "cd /work/stats && ./stats --hist tests/sensor.txt"),
    maybe(0.25, "cd /work/stats && make clean && make && make test"),
    maybe(0.2, "cd /work/stats && ./stats --smooth 12 tests/sensor.txt"),
)

# -- rust-wordfreq: rustc, a type error and two logic bugs -----------------------------------------

_RUSTC = "cd /work/wordfreq && rustc -O --edition 2021 -o wordfreq src/main.rs"
_RUSTC_DEBUG = "cd /work/wordfreq && rustc --edition 2021 -o wordfreq src/main.rs"
_RUST_TESTS = (
    'cd /work/wordfreq && for t in tests/*.txt; do ./wordfreq "$t" 10 2>/dev/null'
    ' | diff -q - "${t%.txt}.expected" >/dev/null && echo "ok $t" || echo "FAIL $t"; done'
)
_RUST_TIES = (
    "sed -i 's/entries.sort_by(|a, b| b.1.cmp(&a.1));/entries.sort_by(|a, b| "
    "b.1.cmp(\\&a.1).then(a.0.cmp(b.0)));/' /work/wordfreq/src/main.rs"
)
_RUST_TOKENS = (
    "sed -i 's/text.split_whitespace()/text.split(|c: char| !c.is_ascii_alphabetic())/'"
    " /work/wordfreq/src/tokenize.rs"
)
_RUST_TOKENS_FILE = """
    cat > /work/wordfreq/src/tokenize.rs <<'EOF'
    //! Splitting text into words: a word is a maximal run of ASCII letters, compared lowercased.

    pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
        text.split(|c: char| !c.is_ascii_alphabetic())
            .filter(|w| !w.is_empty())
            .map(|w| w.to_ascii_lowercase())
    }
    EOF
"""

_RUST_WORDFREQ = _script(
    "ls -lA /work/wordfreq /work/wordfreq/src /work/wordfreq/tests",
    "cat /work/wordfreq/README.md",
    maybe(0.3, "cat /work/wordfreq/src/main.rs"),
    pick(alt(0.75, _RUSTC), alt(0.25, _RUSTC_DEBUG)),
    pick(
        alt(0.7, "sed -i 's/let total: u32 =/let total: usize =/' /work/wordfreq/src/main.rs"),
        alt(
            0.3,
            "sed -i 's/let total: u32 = counts.values().sum();/let total: u32 = "
            "counts.values().map(|c| *c as u32).sum();/' /work/wordfreq/src/main.rs",
        ),
    ),
    _RUSTC,
    pick(
        alt(0.6, _RUST_TESTS),
        alt(
            0.4,
            "cd /work/wordfreq && ./wordfreq tests/punctuation.txt 10 | "
            "diff - tests/punctuation.expected",
        ),
    ),
    pick(
        alt(0.55, "cat /work/wordfreq/src/tokenize.rs"),
        alt(0.45, "cat /work/wordfreq/src/main.rs /work/wordfreq/src/tokenize.rs"),
    ),
    pick(
        alt(0.45, _RUST_TOKENS, _RUST_TIES),
        alt(0.25, _RUST_TIES, _RUST_TOKENS),
        alt(0.15, _RUST_TOKENS_FILE, _RUST_TIES),
        # Only the tokenizer: ties stay in hash order, the tests fail at random.
        alt(0.15, _RUST_TOKENS, failing=True),
    ),
    _RUSTC,
    _RUST_TESTS,
    maybe(
        0.3, "cd /work/wordfreq && ./wordfreq tests/medium.txt 10 | diff - tests/medium.expected"
    ),
    pick(
        alt(
            0.7,
            "cd /work/wordfreq && ./wordfreq corpus.txt 20 > /work/top20.txt && "
            "cat /work/top20.txt",
        ),
        alt(0.3, "/work/wordfreq/wordfreq /work/wordfreq/corpus.txt 20 | tee /work/top20.txt"),
    ),
)

# -- py-inventory: pytest suite with failing tests -------------------------------------------------

_PYTEST = "cd /work/inventory && python3 -m pytest -q"
_FIX_DISCOUNT = (
    r"sed -i 's|return int(cents \* percent / 100 + 0.5)|"
    r"return int(cents * (100 - percent) / 100 + 0.5)|' /work/inventory/inventory/pricing.py"
)
_FIX_REMOVE = (
    r"sed -i 's/if quantity > self.stock\[sku\] + 1:/if quantity > self.stock[sku]:/'"
    " /work/inventory/inventory/models.py"
)

_PY_INVENTORY = _script(
    "ls -lA /work/inventory /work/inventory/inventory /work/inventory/tests",
    _PYTEST,
    pick(
        alt(
            0.55,
            "cat /work/inventory/inventory/pricing.py",
            "cat /work/inventory/inventory/models.py",
        ),
        alt(
            0.3,
            "cat /work/inventory/inventory/models.py",
            "cat /work/inventory/inventory/pricing.py",
        ),
        alt(0.15, "cd /work/inventory && python3 -m pytest -q -x --tb=long"),
    ),
    pick(
        alt(
            0.6,
            _FIX_DISCOUNT,
            "cd /work/inventory && python3 -m pytest -q tests/test_pricing.py",
            _FIX_REMOVE,
        ),
        alt(0.2, _FIX_REMOVE, _FIX_DISCOUNT),
        alt(
            0.2,
            # No rounding: 999 cents at 50% gives 499, the tests want 500.
            r"sed -i 's|return int(cents \* percent / 100 + 0.5)|"
            r"return int(cents - cents * percent / 100)|' /work/inventory/inventory/pricing.py",
            "cd /work/inventory && python3 -m pytest -q tests/test_pricing.py",
            pick(
                alt(
                    0.5,
                    r"sed -i 's|return int(cents - cents \* percent / 100)|"
                    r"return int(cents * (100 - percent) / 100 + 0.5)|'"
                    " /work/inventory/inventory/pricing.py",
                    _FIX_REMOVE,
                ),
                alt(0.5, _FIX_REMOVE, failing=True),
            ),
            failing=True,
        ),
    ),
    _PYTEST,
    pick(
        alt(0.7),
        alt(0.15, "cd /work/inventory && python3 -m pytest -q tests/test_bulk.py", _PYTEST),
        # An off-by-one the other way: removing the whole stock now raises.
        alt(
            0.15,
            r"sed -i 's/if quantity > self.stock\[sku\]:/if quantity >= self.stock[sku]:/'"
            " /work/inventory/inventory/models.py",
            _PYTEST,
        ),
    ),
    maybe(0.3, "cd /work/inventory && python3 -m pytest -q --durations=3"),
)

# -- py-package: pip wheel from local sources, venv ------------------------------------------------

_WHEEL = "cd /work/textkit && python3 -m pip wheel --no-deps --no-build-isolation -w /work/dist ."
_WHL = "/work/dist/textkit-1.2.0-py3-none-any.whl"
_FIX_WHERE = r"""sed -i 's/where = \["source"\]/where = ["src"]/' /work/textkit/pyproject.toml"""
_FIX_ENTRY = "sed -i 's/textkit.main:run/textkit.cli:main/' /work/textkit/pyproject.toml"
_FIX_DATA = """
    cat >> /work/textkit/pyproject.toml <<'EOF'

    [tool.setuptools.package-data]
    textkit = ["data/*.txt"]
    EOF
"""
_REINSTALL = f"/work/venv/bin/pip install --no-index --force-reinstall {_WHL}"

_PY_PACKAGE = _script(
    "ls -lA /work/textkit /work/textkit/src/textkit",
    "cat /work/textkit/pyproject.toml",
    pick(
        alt(0.45, _WHEEL),
        alt(0.3, "cd /work/textkit && pip install .", _WHEEL),
        # Build isolation wants setuptools from PyPI: about 8 s of retries without network.
        alt(0.25, "cd /work/textkit && python3 -m pip wheel --no-deps -w /work/dist .", _WHEEL),
    ),
    _FIX_WHERE,
    _WHEEL,
    pick(
        alt(0.7, "python3 -m venv /work/venv"),
        alt(0.3, "python3 -m venv --system-site-packages /work/venv"),
    ),
    f"/work/venv/bin/pip install --no-index {_WHL}",
    '/work/venv/bin/textkit slug "Hello, World!"',
    pick(
        alt(0.6, "tail -5 /work/textkit/src/textkit/cli.py", _FIX_ENTRY),
        alt(0.4, _FIX_ENTRY),
    ),
    _WHEEL,
    pick(
        alt(0.75, _REINSTALL),
        # Same version: pip keeps the broken install ("Requirement already satisfied").
        alt(0.25, f"/work/venv/bin/pip install --no-index {_WHL}", _REINSTALL),
    ),
    '/work/venv/bin/textkit slug "Hello, World!" && '
    "/work/venv/bin/textkit stats /work/textkit/tests/sample.txt",
    pick(
        alt(
            0.7,
            maybe(0.6, f"python3 -m zipfile -l {_WHL}"),
            _FIX_DATA,
            _WHEEL,
            _REINSTALL,
            "/work/venv/bin/textkit stats /work/textkit/tests/sample.txt",
        ),
        # Gives up on the package data: stats keeps failing.
        alt(0.3, "/work/venv/bin/textkit --version", failing=True),
    ),
)

# -- csv-report: awk/sort/python aggregation -------------------------------------------------------

_AWK_REVENUE = """
    awk -F, 'NR == FNR { sub(/\\r$/, ""); if (FNR > 1) region[$1] = $3; next }
             FNR > 1 && substr($2, 1, 4) == "2023" {
                 r = ($3 in region) ? region[$3] : "unknown"; rev[r] += $5 * $6 }
             END { for (r in rev) printf "%s,%.2f\\n", r, rev[r] }' \\
        /work/data/stores.csv /work/data/sales.csv | sort -t, -k2,2 -gr \\
      | { echo region,revenue; cat; } > /work/out/revenue_2023.csv
"""
# Forgets the CRLF of stores.csv: every region name ends in "\r".
_AWK_REVENUE_CRLF = """
    awk -F, 'NR == FNR { if (FNR > 1) region[$1] = $3; next }
             FNR > 1 && $2 ~ /^2023/ {
                 r = ($3 in region) ? region[$3] : "unknown"; rev[r] += $5 * $6 }
             END { for (r in rev) printf "%s,%.2f\\n", r, rev[r] }' \\
        /work/data/stores.csv /work/data/sales.csv | sort -t, -k2,2 -gr \\
      | { echo region,revenue; cat; } > /work/out/revenue_2023.csv
"""
_PY_REPORT = """
    python3 - <<'EOF'
    import csv
    from collections import defaultdict
    with open("/work/data/stores.csv", newline="") as fh:
        region = {r["store_id"]: r["region"] for r in csv.DictReader(fh)}
    rev, units = defaultdict(float), defaultdict(int)
    with open("/work/data/sales.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            if r["date"].startswith("2023"):
                rev[region.get(r["store_id"], "unknown")] += int(r["qty"]) * float(r["unit_price"])
                units[r["sku"]] += int(r["qty"])
    with open("/work/out/revenue_2023.csv", "w") as fh:
        fh.write("region,revenue\\n")
        for k, v in sorted(rev.items(), key=lambda kv: -kv[1]):
            fh.write(f"{k},{v:.2f}\\n")
    with open("/work/out/top_skus_2023.csv", "w") as fh:
        fh.write("sku,units\\n")
        for k, v in sorted(units.items(), key=lambda kv: (-kv[1], kv[0]))[:5]:
            fh.write(f"{k},{v}\\n")
    EOF
"""
_AWK_TOP = """
    awk -F, 'FNR > 1 && $2 ~ /^2023-/ { u[$4] += $5 } END { for (s in u) print s "," u[s] }' \\
        /work/data/sales.csv | sort -t, -k2,2nr -k1,1 | head -5 \\
      | { echo sku,units; cat; } > /work/out/top_skus_2023.csv
"""
# Counts only positive quantities (ignores returns).
_AWK_TOP_NO_RETURNS = """
    awk -F, 'FNR > 1 && $2 ~ /^2023-/ && $5 > 0 { u[$4] += $5 }
             END { for (s in u) print s "," u[s] }' \\
        /work/data/sales.csv | sort -t, -k2,2nr -k1,1 | head -5 \\
      | { echo sku,units; cat; } > /work/out/top_skus_2023.csv
"""

_CSV_REPORT = _script(
    "ls -lA /work/data && head -3 /work/data/sales.csv /work/data/stores.csv",
    "wc -l /work/data/*.csv",
    maybe(0.3, "cat /work/data/stores.csv"),
    pick(
        alt(0.5, "cut -d, -f2 /work/data/sales.csv | cut -c1-4 | sort | uniq -c"),
        alt(0.3, "cut -d, -f3 /work/data/sales.csv | sort | uniq -c | sort -rn | tail -5"),
        alt(0.2, "awk -F, '$5 < 0' /work/data/sales.csv | head -3"),
    ),
    maybe(0.4, "head -3 /work/data/stores.csv | cat -A"),
    "mkdir -p /work/out",
    pick(
        alt(0.45, _AWK_REVENUE, "cat /work/out/revenue_2023.csv", _AWK_TOP),
        alt(0.25, _PY_REPORT, "cat /work/out/revenue_2023.csv"),
        alt(
            0.3,
            _AWK_REVENUE_CRLF,
            "cat -A /work/out/revenue_2023.csv",
            pick(
                alt(0.6, _AWK_REVENUE, "cat /work/out/revenue_2023.csv"),
                alt(0.4, "cat /work/out/revenue_2023.csv", failing=True),
            ),
            pick(alt(0.6, _AWK_TOP), alt(0.4, _AWK_TOP_NO_RETURNS, failing=True)),
            failing=True,
        ),
    ),
    "cat /work/out/top_skus_2023.csv",
    maybe(
        0.35,
        "awk -F, 'FNR > 1 && $2 ~ /^2023/ { n++; s += $5 * $6 }"
        ' END { printf "%d %.2f\\n", n, s }\' /work/data/sales.csv',
        "awk -F, 'NR > 1 { s += $2 } END { printf \"%.2f\\n\", s }' /work/out/revenue_2023.csv",
    ),
)

# -- http-service: a background service and its clients --------------------------------------------

_START = (
    "nohup python3 /work/app/server.py > /work/app/server.log 2>&1 & echo $! > /work/app/server.pid"
)
_RESTART = f"kill $(cat /work/app/server.pid); sleep 0.5; {_START}"
_WAIT_UP = (
    "for i in $(seq 40); do curl -sf http://127.0.0.1:8080/health && break; sleep 0.25; done; echo"
)
_FIX_PORT = "sed -i 's/^port = 8800/port = 8080/' /work/app/config.ini"
_FIX_TOTAL = (
    'sed -i \'s/total = sum(item\\["price"\\] for item/'
    'total = sum(item["price"] * item["quantity"] for item/\' /work/app/server.py'
)
_FIX_404 = """
    python3 - <<'EOF'
    import pathlib
    p = pathlib.Path("/work/app/server.py")
    s = p.read_text()
    old = "            self.send_json(200, cat.by_id[int(parts[1])])\\n"
    new = ("            item = cat.by_id.get(int(parts[1]))\\n"
           "            if item is None:\\n"
           "                self.send_json(404, {\\"error\\": f\\"no item {parts[1]}\\"})\\n"
           "            else:\\n"
           "                self.send_json(200, item)\\n")
    assert old in s
    p.write_text(s.replace(old, new))
    EOF
"""
_FIX_404_SED = (
    "sed -i 's/self.send_json(200, cat.by_id\\[int(parts\\[1\\])\\])/"
    "self.send_json(200, cat.by_id[int(parts[1])]) if int(parts[1]) in cat.by_id "
    'else self.send_json(404, {"error": "not found"})/\' /work/app/server.py'
)
_STATS = "curl -s http://127.0.0.1:8080/stats"
_MISSING = "curl -s -w ' HTTP %{http_code}\\n' http://127.0.0.1:8080/items/999999"

_HTTP_SERVICE = _script(
    "ls -lA /work/app",
    "cat /work/app/server.py",
    "cat /work/app/config.ini",
    pick(
        alt(0.5, _FIX_PORT, _START, _WAIT_UP),
        alt(
            0.5,
            _START,
            # Queried at once: the service is still loading its catalogue (about 1 s).
            pick(
                alt(0.5, "sleep 2; curl -s http://127.0.0.1:8080/health; echo exit=$?"),
                alt(0.5, "curl -s http://127.0.0.1:8080/health; echo exit=$?"),
            ),
            "cat /work/app/server.log",
            _FIX_PORT,
            _RESTART,
            _WAIT_UP,
        ),
    ),
    pick(alt(0.7, _STATS), alt(0.3, "curl -s http://127.0.0.1:8080/stats | python3 -m json.tool")),
    maybe(0.4, "curl -s 'http://127.0.0.1:8080/items?limit=3&category=tools'"),
    _MISSING,
    "tail -n 12 /work/app/server.log",
    pick(
        alt(0.6, _FIX_TOTAL, _FIX_404),
        alt(0.25, _FIX_404_SED, _FIX_TOTAL),
        alt(0.15, _FIX_TOTAL, failing=True),
    ),
    pick(
        alt(0.85, _RESTART, _WAIT_UP),
        # Edits the code but never restarts: the running service keeps the old behaviour.
        alt(0.15, "python3 -m py_compile /work/app/server.py && echo compiled", failing=True),
    ),
    _STATS,
    _MISSING,
    maybe(0.3, "curl -s http://127.0.0.1:8080/items/17"),
)

# -- sqlite-shop: deduplicate, view, indexes -------------------------------------------------------

_DB = "sqlite3 /work/shop.db"
_DEDUP = f"""
    {_DB} <<'EOF'
    CREATE TEMP TABLE keep AS
        SELECT lower(trim(email)) AS e, MIN(id) AS id FROM customers GROUP BY 1;
    CREATE TEMP TABLE remap AS
        SELECT c.id AS old, k.id AS new FROM customers c JOIN keep k ON lower(trim(c.email)) = k.e
        WHERE c.id <> k.id;
    UPDATE orders SET customer_id = (SELECT new FROM remap WHERE old = orders.customer_id)
        WHERE customer_id IN (SELECT old FROM remap);
    DELETE FROM customers WHERE id IN (SELECT old FROM remap);
    SELECT changes();
    EOF
"""
# Case only: the variants with surrounding spaces survive; and orders are not moved.
_DEDUP_WRONG = (
    f'{_DB} "DELETE FROM customers WHERE id NOT IN '
    '(SELECT MIN(id) FROM customers GROUP BY lower(email)); SELECT changes();"'
)
_VIEW = f"""
    {_DB} "CREATE VIEW customer_revenue AS
      SELECT c.id AS customer_id, c.email AS email, ROUND(SUM(i.qty * i.unit_price), 2) AS revenue
      FROM customers c JOIN orders o ON o.customer_id = c.id JOIN order_items i ON i.order_id = o.id
      WHERE o.status IN ('paid', 'shipped') GROUP BY c.id;"
"""
_VIEW_WRONG = f"""
    {_DB} "CREATE VIEW customer_revenue AS
      SELECT c.id AS customer_id, c.email AS email, ROUND(SUM(i.qty * i.unit_price), 2) AS revenue
      FROM customers c JOIN orders o ON o.customer_id = c.id JOIN order_items i ON i.order_id = o.id
      WHERE o.status <> 'cancelled' GROUP BY c.id;"
"""
_INDEXES = (
    f'{_DB} "CREATE INDEX idx_orders_customer ON orders(customer_id);'
    ' CREATE INDEX idx_items_order ON order_items(order_id);"'
)

_SQLITE_SHOP = _script(
    "ls -lA /work",
    f"{_DB} .schema",
    pick(
        alt(0.5, f'{_DB} -header "SELECT * FROM customers LIMIT 5"'),
        alt(
            0.5,
            f'{_DB} "SELECT COUNT(*) FROM customers; SELECT COUNT(*) FROM orders;'
            ' SELECT COUNT(*) FROM order_items;"',
        ),
    ),
    pick(
        alt(
            0.6,
            f'{_DB} "SELECT lower(trim(email)), COUNT(*) FROM customers GROUP BY 1'
            ' HAVING COUNT(*) > 1 LIMIT 10"',
        ),
        alt(
            0.4,
            f'{_DB} "SELECT email, COUNT(*) FROM customers GROUP BY email HAVING COUNT(*) > 1"',
            f'{_DB} "SELECT COUNT(*), COUNT(DISTINCT lower(trim(email))) FROM customers"',
        ),
    ),
    f'{_DB} "SELECT status, COUNT(*) FROM orders GROUP BY status"',
    pick(
        alt(0.55, _DEDUP, _INDEXES, _VIEW),
        alt(0.25, _INDEXES, _DEDUP, _VIEW),
        alt(0.2, _DEDUP_WRONG, _VIEW_WRONG, failing=True),
    ),
    f'{_DB} "SELECT COUNT(*), COUNT(DISTINCT lower(trim(email))) FROM customers"',
    pick(
        alt(0.7, f'{_DB} -header "SELECT * FROM customer_revenue ORDER BY revenue DESC LIMIT 5"'),
        alt(0.3, f'{_DB} "SELECT COUNT(*), ROUND(SUM(revenue), 2) FROM customer_revenue"'),
    ),
    pick(
        alt(0.7, f'{_DB} "EXPLAIN QUERY PLAN SELECT * FROM orders WHERE customer_id = 42"'),
        alt(0.3, f"{_DB} .indexes", failing=True),
    ),
    maybe(0.4, f'{_DB} "PRAGMA integrity_check; PRAGMA foreign_key_check;" | head'),
    maybe(
        0.3,
        f'{_DB} "SELECT COUNT(*) FROM orders WHERE customer_id NOT IN (SELECT id FROM customers)"',
    ),
)

# -- git-bisect: find the first bad commit and revert it -------------------------------------------

_GIT = "cd /work/calc && git"
_BISECT = f"{_GIT} bisect start main v1.0 && git bisect run ./test.sh"

_GIT_BISECT = _script(
    f"{_GIT} log --oneline | head -20",
    "cd /work/calc && ./test.sh",
    pick(
        alt(0.5, f"{_GIT} tag -n"),
        alt(0.3, f"{_GIT} log --oneline v1.0..main | wc -l"),
        alt(0.2, "cat /work/calc/README.md /work/calc/test.sh"),
    ),
    pick(
        alt(0.65, _BISECT),
        alt(
            0.35,
            f"{_GIT} bisect start",
            f"{_GIT} bisect bad",
            f"{_GIT} bisect good v1.0",
            f"{_GIT} bisect run ./test.sh",
        ),
    ),
    pick(
        alt(0.7, f"{_GIT} rev-parse refs/bisect/bad > /work/first_bad.txt"),
        alt(
            0.1,
            f"{_GIT} bisect log | tail -3",
            f"{_GIT} rev-parse refs/bisect/bad | tee /work/first_bad.txt",
        ),
        # HEAD after `bisect run` is the last commit tested, not necessarily the first bad one.
        alt(0.2, f"{_GIT} rev-parse HEAD > /work/first_bad.txt", failing=True),
    ),
    pick(
        alt(0.6, f"{_GIT} show --stat refs/bisect/bad"),
        alt(0.4, f"{_GIT} show refs/bisect/bad -- mathx.py"),
    ),
    pick(
        alt(0.8, f"{_GIT} bisect reset"),
        # Forgets to end the bisect: the revert lands on a detached HEAD.
        alt(0.2, "cat /work/first_bad.txt", failing=True),
    ),
    pick(
        alt(0.75, f"{_GIT} revert --no-edit $(cat /work/first_bad.txt)"),
        alt(
            0.15,
            "cd /work/calc && sed -i 's|    k = min(len(s) \\* p / 100, len(s) - 1)|"
            "    k = (len(s) - 1) * p / 100|' mathx.py && git commit -qam 'Fix percentile'",
        ),
        alt(0.1, f"{_GIT} reset --hard v1.0"),
    ),
    "cd /work/calc && ./test.sh",
    pick(alt(0.6, f"{_GIT} status --short && git log --oneline -3"), alt(0.4, f"{_GIT} status")),
)

# -- job-worker: a background worker fed through a spool directory ---------------------------------

_START_WORKER = (
    "nohup python3 /work/worker/worker.py > /work/queue/worker.out 2>&1 &"
    " echo $! > /work/queue/worker.pid"
)
_RESTART_WORKER = f"kill $(cat /work/queue/worker.pid) 2>/dev/null; sleep 0.3; {_START_WORKER}"
_SUBMIT_ALL = (
    "cd /work && for op in lines wordcount sha256; do python3 worker/submit.py --op $op docs/*.txt;"
    " done | tail -3"
)
_FIX_PRIORITY = (
    'sed -i \'s/jobs.append((job\\["priority"\\], name, job))/'
    'jobs.append((job.get("priority", 5), name, job))/\' /work/worker/worker.py'
)
_FIX_LINES = (
    "sed -i 's/return text.count(\"\\\\n\")/return len(text.splitlines())/' /work/worker/worker.py"
)
_WAIT_DONE = "sleep 1.5; ls /work/queue/done | wc -l; ls /work/queue/incoming | head"

_JOB_WORKER = _script(
    "ls -lA /work /work/worker /work/docs",
    "cat /work/worker/worker.py",
    maybe(0.4, "python3 /work/worker/submit.py --help"),
    _START_WORKER,
    pick(
        alt(0.6, "cd /work && python3 worker/submit.py --op wordcount docs/*.txt | tail -3"),
        alt(
            0.4,
            "cd /work && python3 worker/submit.py --op wordcount --priority 1 docs/alpha.txt",
            "cd /work && python3 worker/submit.py --op lines docs/bravo.txt",
        ),
    ),
    _WAIT_DONE,
    pick(alt(0.6, "tail -n 15 /work/queue/worker.log"), alt(0.4, "cat /work/queue/worker.out")),
    pick(
        alt(0.55, _FIX_PRIORITY, _FIX_LINES),
        alt(
            0.25,
            _FIX_PRIORITY,
            _RESTART_WORKER,
            _WAIT_DONE,
            "cat /work/queue/done/lines-bravo.json; echo; wc -l /work/docs/bravo.txt; "
            "tail -c 20 /work/docs/bravo.txt | od -c | tail -2",
            _FIX_LINES,
        ),
        # Fixes the crash only: the line counts of files without a final newline stay wrong.
        alt(0.2, _FIX_PRIORITY, failing=True),
    ),
    _RESTART_WORKER,
    _SUBMIT_ALL,
    _WAIT_DONE,
    pick(
        alt(0.6, "cat /work/queue/done/lines-bravo.json; echo"),
        alt(0.4, "tail -n 5 /work/queue/worker.log"),
    ),
    maybe(0.3, "ps aux | grep [w]orker.py"),
)

_SCRIPTS: Mapping[str, tuple[Step, ...]] = {
    "c-stats": _C_STATS,
    "csv-report": _CSV_REPORT,
    "git-bisect": _GIT_BISECT,
    "http-service": _HTTP_SERVICE,
    "job-worker": _JOB_WORKER,
    "py-inventory": _PY_INVENTORY,
    "py-package": _PY_PACKAGE,
    "rust-wordfreq": _RUST_WORDFREQ,
    "sqlite-shop": _SQLITE_SHOP,
}


# --------------------------------------------------------------------------------------------------
# Rollouts and groups


def _name(task: TerminalTask | str) -> str:
    return task if isinstance(task, str) else task.name


def script_for(task: TerminalTask | str) -> tuple[Step, ...]:
    """The policy script of a task (ValueError for a task without one)."""
    name = _name(task)
    try:
        return _SCRIPTS[name]
    except KeyError:
        raise ValueError(
            f"no rollout script for terminal task {name!r}; scripted tasks: {sorted(_SCRIPTS)}"
        ) from None


def golden_rollout(task: TerminalTask | str) -> tuple[str, ...]:
    """The best rollout: the first alternative at every choice. It solves the task."""
    return tuple(_walk(script_for(task), _golden))


def failing_rollout(task: TerminalTask | str) -> tuple[str, ...]:
    """A deliberately failing rollout: ``failing`` alternatives wherever a choice has one."""
    return tuple(_walk(script_for(task), _failing))


def sample_rollout(task: TerminalTask | str, rng: random.Random) -> tuple[str, ...]:
    """One rollout drawn from the task's script."""
    return tuple(_walk(script_for(task), _sampler(rng)))


def build_groups(
    group_size: int = 8,
    seed: int = 0,
    tasks: Sequence[TerminalTask | str] | None = None,
) -> list[TerminalGroup]:
    """One GRPO group of ``group_size`` sampled rollouts per task.

    ``tasks`` defaults to :func:`list_tasks`; names are looked up there. Each task draws from its
    own random stream (seeded by ``seed`` and the task's name), so a task's group does not depend
    on which other tasks are selected.
    """
    if group_size < 1:
        raise ValueError(f"group_size must be at least 1, got {group_size}")
    if tasks is None:
        selected = list_tasks()
    else:
        known: dict[str, TerminalTask] = {}
        selected = []
        for task in tasks:
            if isinstance(task, str):
                if not known:
                    known = {t.name: t for t in list_tasks()}
                if task not in known:
                    raise ValueError(f"unknown terminal task {task!r}; tasks: {sorted(known)}")
                task = known[task]
            selected.append(task)
    groups = []
    for task in selected:
        script_for(task)  # a clear error before any sampling
        rng = random.Random(f"tvcache-terminal/{seed}/{task.name}")
        rollouts = tuple(sample_rollout(task, rng) for _ in range(group_size))
        groups.append(TerminalGroup(task, rollouts))
    return groups
