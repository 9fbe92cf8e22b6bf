#!/usr/bin/env python3
"""Builds the task's git repository with a deterministic history: make_repo.py DIR

44 commits on `main`, tag v1.0 on the 8th. Commit 27 ("percentile: simplify index computation")
breaks percentile(); no later commit touches those lines, so `git revert` of it applies cleanly.
Author and committer dates are fixed, so the commit hashes are the same on every build.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

REPO = sys.argv[1]
STEP = [0]


def git(*args: str) -> str:
    STEP[0] += 1
    stamp = f"2024-03-01T10:{STEP[0] // 60:02d}:{STEP[0] % 60:02d}+00:00"
    env = dict(os.environ, GIT_AUTHOR_DATE=stamp, GIT_COMMITTER_DATE=stamp,
               GIT_AUTHOR_NAME="Dev Eloper", GIT_AUTHOR_EMAIL="dev@calc.invalid",
               GIT_COMMITTER_NAME="Dev Eloper", GIT_COMMITTER_EMAIL="dev@calc.invalid")
    out = subprocess.run(["git", "-C", REPO, *args], env=env, check=True, capture_output=True,
                         text=True)
    return out.stdout


def write(path: str, text: str) -> None:
    full = os.path.join(REPO, path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w") as fh:
        fh.write(textwrap.dedent(text).lstrip("\n"))
    if path.endswith(".sh"):
        os.chmod(full, 0o755)


def commit(message: str) -> None:
    git("add", "-A")
    git("commit", "-q", "-m", message)


FUNCS: dict[str, str] = {}
TESTS: dict[str, str] = {}


def module() -> str:
    return '"""mathx: small statistics helpers."""\n\nimport math\n\n' + "\n\n".join(
        FUNCS[k] for k in FUNCS) + "\n"


def tests() -> str:
    head = textwrap.dedent('''
        import random
        import unittest

        import mathx


        def brute_percentile(values, p):
            s = sorted(values)
            k = (len(s) - 1) * p / 100
            lo = int(k)
            hi = min(lo + 1, len(s) - 1)
            return s[lo] + (s[hi] - s[lo]) * (k - lo)


        class MathxTest(unittest.TestCase):
    ''').lstrip("\n")
    return head + "\n".join(TESTS[k] for k in TESTS) + "\n\nif __name__ == '__main__':\n    unittest.main()\n"


def save(message: str) -> None:
    write("mathx.py", module())
    write("test_mathx.py", tests())
    commit(message)


os.makedirs(REPO, exist_ok=True)
git("init", "-q", "-b", "main")
write("README.md", """
    # calc

    Small statistics helpers (`mathx.py`). Run the tests with `./test.sh`.
    """)
write("test.sh", """
    #!/bin/sh
    # Runs the unit tests; exit status 0 when they all pass. The run time is left out of the
    # output, so that the same code always prints the same thing.
    cd "$(dirname "$0")" || exit 2
    out=$(python3 -m unittest -q test_mathx 2>&1); status=$?
    printf '%s\n' "$out" | sed 's/^\(Ran [0-9]* tests*\) in [0-9.]*s$/\1/'
    exit $status
    """)
FUNCS["mean"] = '''def mean(values):
    """Arithmetic mean of a non-empty sequence."""
    values = list(values)
    if not values:
        raise ValueError("mean of empty data")
    return sum(values) / len(values)'''
TESTS["mean"] = '''    def test_mean(self):
        self.assertEqual(mathx.mean([1, 2, 3, 4]), 2.5)
        with self.assertRaises(ValueError):
            mathx.mean([])
'''
save("Initial commit: mean")

FUNCS["median"] = '''def median(values):
    """Middle value; the mean of the two middle values for an even count."""
    s = sorted(values)
    if not s:
        raise ValueError("median of empty data")
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2'''
TESTS["median"] = '''    def test_median(self):
        self.assertEqual(mathx.median([3, 1, 2]), 2)
        self.assertEqual(mathx.median([4, 1, 2, 3]), 2.5)
'''
save("Add median")

FUNCS["clamp"] = '''def clamp(x, lo, hi):
    """x limited to [lo, hi]."""
    return max(lo, min(hi, x))'''
TESTS["clamp"] = '''    def test_clamp(self):
        self.assertEqual(mathx.clamp(5, 0, 3), 3)
        self.assertEqual(mathx.clamp(-1, 0, 3), 0)
'''
save("Add clamp")

FUNCS["variance"] = '''def variance(values):
    """Sample variance (n - 1 in the denominator)."""
    values = list(values)
    if len(values) < 2:
        raise ValueError("variance needs at least two values")
    m = mean(values)
    return sum((v - m) ** 2 for v in values) / (len(values) - 1)'''
TESTS["variance"] = '''    def test_variance(self):
        self.assertAlmostEqual(mathx.variance([2, 4, 4, 4, 5, 5, 7, 9]), 4.571428571428571)
'''
save("Add sample variance")

FUNCS["percentile"] = '''def percentile(values, p):
    """The p-th percentile (0 <= p <= 100), linear interpolation between closest ranks."""
    s = sorted(values)
    if not s:
        raise ValueError("percentile of empty data")
    if not 0 <= p <= 100:
        raise ValueError("p must be within 0..100")
    k = (len(s) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)'''
TESTS["percentile"] = '''    def test_percentile(self):
        self.assertEqual(mathx.percentile([1, 2, 3, 4, 5], 50), 3)
        self.assertEqual(mathx.percentile([1, 2, 3, 4], 25), 1.75)
        self.assertEqual(mathx.percentile([10], 90), 10)

    def test_percentile_random(self):
        rng = random.Random(3)
        for _ in range(25000):
            values = [rng.uniform(-100, 100) for _ in range(rng.randint(1, 120))]
            p = rng.choice([0, 5, 25, 50, 75, 90, 99, 100])
            self.assertAlmostEqual(mathx.percentile(values, p), brute_percentile(values, p))
'''
save("Add percentile with linear interpolation")

write("README.md", """
    # calc

    Small statistics helpers (`mathx.py`): mean, median, clamp, variance, percentile.
    Run the tests with `./test.sh`.
    """)
commit("README: list the functions")

FUNCS["stdev"] = '''def stdev(values):
    """Sample standard deviation."""
    return math.sqrt(variance(values))'''
TESTS["stdev"] = '''    def test_stdev(self):
        self.assertAlmostEqual(mathx.stdev([2, 4, 4, 4, 5, 5, 7, 9]), 2.138089935299395)
'''
save("Add stdev")

write("CHANGELOG.md", """
    # Changelog

    ## 1.0
    - mean, median, clamp, variance, stdev, percentile
    """)
commit("Release 1.0")
git("tag", "-a", "v1.0", "-m", "calc 1.0")

# 1.1 development: features, docs and refactors that do not touch percentile().
FUNCS["zscore"] = '''def zscore(x, values):
    """How many standard deviations x lies from the mean of values."""
    return (x - mean(values)) / stdev(values)'''
TESTS["zscore"] = '''    def test_zscore(self):
        self.assertAlmostEqual(mathx.zscore(9, [2, 4, 4, 4, 5, 5, 7, 9]), 1.8708286933869707)
'''
save("Add zscore")

FUNCS["moving_average"] = '''def moving_average(values, window):
    """Means of each run of `window` consecutive values."""
    values = list(values)
    if window < 1:
        raise ValueError("window must be positive")
    return [mean(values[i:i + window]) for i in range(len(values) - window + 1)]'''
TESTS["moving_average"] = '''    def test_moving_average(self):
        self.assertEqual(mathx.moving_average([1, 2, 3, 4, 5], 2), [1.5, 2.5, 3.5, 4.5])
'''
save("Add moving_average")

for i, topic in enumerate(["installation", "usage examples", "error handling", "contributing"]):
    with open(os.path.join(REPO, "README.md"), "a") as fh:
        fh.write(f"\n## {topic.capitalize()}\n\nSee the docstrings in `mathx.py` ({i + 1}).\n")
    commit(f"README: document {topic}")

FUNCS["mode"] = '''def mode(values):
    """Most common value; the smallest one on a tie."""
    counts = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    if not counts:
        raise ValueError("mode of empty data")
    best = max(counts.values())
    return min(v for v, c in counts.items() if c == best)'''
TESTS["mode"] = '''    def test_mode(self):
        self.assertEqual(mathx.mode([1, 2, 2, 3, 3]), 2)
'''
save("Add mode")

FUNCS["mean"] = FUNCS["mean"].replace('"""Arithmetic mean of a non-empty sequence."""',
                                      '"""Arithmetic mean of a non-empty iterable."""')
save("mean: docstring wording")

FUNCS["iqr"] = '''def iqr(values):
    """Interquartile range."""
    return percentile(values, 75) - percentile(values, 25)'''
TESTS["iqr"] = '''    def test_iqr(self):
        self.assertEqual(mathx.iqr([1, 2, 3, 4, 5, 6, 7, 8, 9]), 4)
'''
save("Add iqr")

write(".gitignore", "__pycache__/\n*.pyc\n")
commit("Ignore bytecode")

FUNCS["geometric_mean"] = '''def geometric_mean(values):
    """n-th root of the product of n positive values."""
    values = list(values)
    if not values or min(values) <= 0:
        raise ValueError("geometric mean needs positive values")
    return math.exp(sum(math.log(v) for v in values) / len(values))'''
TESTS["geometric_mean"] = '''    def test_geometric_mean(self):
        self.assertAlmostEqual(mathx.geometric_mean([1, 4, 16]), 4)
'''
save("Add geometric_mean")

TESTS["clamp"] = TESTS["clamp"].replace("0)\n", "0)\n        self.assertEqual(mathx.clamp(2, 0, 3), 2)\n")
save("Test clamp inside the range")

FUNCS["harmonic_mean"] = '''def harmonic_mean(values):
    """n divided by the sum of reciprocals of n positive values."""
    values = list(values)
    if not values or min(values) <= 0:
        raise ValueError("harmonic mean needs positive values")
    return len(values) / sum(1 / v for v in values)'''
TESTS["harmonic_mean"] = '''    def test_harmonic_mean(self):
        self.assertAlmostEqual(mathx.harmonic_mean([1, 4, 4]), 2)
'''
save("Add harmonic_mean")

with open(os.path.join(REPO, "CHANGELOG.md"), "a") as fh:
    fh.write("\n## 1.1 (unreleased)\n- zscore, moving_average, mode, iqr, geometric and harmonic means\n")
commit("CHANGELOG: 1.1 so far")

FUNCS["median"] = FUNCS["median"].replace("    mid = len(s) // 2\n", "    mid = len(s) // 2  # upper middle\n")
save("median: comment the middle index")

FUNCS["weighted_mean"] = '''def weighted_mean(values, weights):
    """Sum of value * weight over the sum of weights."""
    values, weights = list(values), list(weights)
    if len(values) != len(weights) or not values:
        raise ValueError("values and weights must be non-empty and of equal length")
    total = sum(weights)
    if total == 0:
        raise ValueError("weights sum to zero")
    return sum(v * w for v, w in zip(values, weights)) / total'''
TESTS["weighted_mean"] = '''    def test_weighted_mean(self):
        self.assertEqual(mathx.weighted_mean([1, 3], [3, 1]), 1.5)
'''
save("Add weighted_mean")

write("Makefile", "test:\n\t./test.sh\n\n.PHONY: test\n")
commit("Add a Makefile with a test target")

TESTS["variance"] = TESTS["variance"].replace(
    "4.571428571428571)\n",
    "4.571428571428571)\n        with self.assertRaises(ValueError):\n            mathx.variance([1])\n")
save("Test variance of a single value")

# 27th commit: the regression.
FUNCS["percentile"] = FUNCS["percentile"].replace(
    "    k = (len(s) - 1) * p / 100\n    lo = int(k)\n",
    "    k = min(len(s) * p / 100, len(s) - 1)\n    lo = int(k)\n")
save("percentile: simplify index computation")

# After the regression: more work elsewhere, nothing touches percentile's body.
FUNCS["normalize"] = '''def normalize(values):
    """Values scaled linearly to [0, 1]."""
    values = list(values)
    lo, hi = min(values), max(values)
    if lo == hi:
        return [0.0 for _ in values]
    return [(v - lo) / (hi - lo) for v in values]'''
TESTS["normalize"] = '''    def test_normalize(self):
        self.assertEqual(mathx.normalize([2, 4, 6]), [0.0, 0.5, 1.0])
'''
save("Add normalize")

for topic in ["normalize", "weighted_mean", "the Makefile"]:
    with open(os.path.join(REPO, "README.md"), "a") as fh:
        fh.write(f"\nNew: {topic}.\n")
    commit(f"README: mention {topic}")

FUNCS["covariance"] = '''def covariance(xs, ys):
    """Sample covariance of two equally long sequences."""
    xs, ys = list(xs), list(ys)
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError("need two sequences of equal length >= 2")
    mx, my = mean(xs), mean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / (len(xs) - 1)'''
TESTS["covariance"] = '''    def test_covariance(self):
        self.assertAlmostEqual(mathx.covariance([1, 2, 3], [2, 4, 6]), 2)
'''
save("Add covariance")

FUNCS["correlation"] = '''def correlation(xs, ys):
    """Pearson correlation coefficient."""
    return covariance(xs, ys) / (stdev(xs) * stdev(ys))'''
TESTS["correlation"] = '''    def test_correlation(self):
        self.assertAlmostEqual(mathx.correlation([1, 2, 3], [3, 2, 1]), -1)
'''
save("Add correlation")

FUNCS["clamp"] = FUNCS["clamp"].replace('"""x limited to [lo, hi]."""',
                                        '"""x limited to [lo, hi] (lo <= hi)."""')
save("clamp: document the precondition")

FUNCS["rescale"] = '''def rescale(values, lo, hi):
    """Values scaled linearly to [lo, hi]."""
    return [lo + (hi - lo) * v for v in normalize(values)]'''
TESTS["rescale"] = '''    def test_rescale(self):
        self.assertEqual(mathx.rescale([0, 5, 10], 10, 20), [10.0, 15.0, 20.0])
'''
save("Add rescale")

with open(os.path.join(REPO, "CHANGELOG.md"), "a") as fh:
    fh.write("- normalize, rescale, covariance, correlation\n")
commit("CHANGELOG: more 1.1 entries")

TESTS["mode"] = TESTS["mode"].replace("), 2)\n", "), 2)\n        self.assertEqual(mathx.mode(['b', 'a', 'b', 'a']), 'a')\n")
save("Test mode on strings")

FUNCS["cumulative_sum"] = '''def cumulative_sum(values):
    """Running totals."""
    out, total = [], 0
    for v in values:
        total += v
        out.append(total)
    return out'''
TESTS["cumulative_sum"] = '''    def test_cumulative_sum(self):
        self.assertEqual(mathx.cumulative_sum([1, 2, 3]), [1, 3, 6])
'''
save("Add cumulative_sum")

for topic in ["cumulative_sum", "a note on floating point", "the changelog"]:
    with open(os.path.join(REPO, "README.md"), "a") as fh:
        fh.write(f"\nSee also: {topic}.\n")
    commit(f"README: {topic}")

FUNCS["span"] = '''def span(values):
    """max - min."""
    values = list(values)
    return max(values) - min(values)'''
TESTS["span"] = '''    def test_span(self):
        self.assertEqual(mathx.span([3, 9, 4]), 6)
'''
save("Add span")

FUNCS["moving_average"] = FUNCS["moving_average"].replace(
    '"""Means of each run of `window` consecutive values."""',
    '"""Means of each run of `window` consecutive values (len - window + 1 of them)."""')
save("moving_average: document the output length")

write("CONTRIBUTING.md", "Run `./test.sh` before you push. One function per commit.\n")
commit("Add CONTRIBUTING.md")

print(git("rev-list", "--count", "HEAD").strip(), "commits")
