import collections
import re
from importlib import resources


def stop_words() -> frozenset[str]:
    data = resources.files("textkit").joinpath("data/stopwords.txt").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in data.splitlines() if line.strip())


def word_stats(text: str, top: int = 3) -> dict[str, object]:
    words = [w.lower() for w in re.findall(r"[A-Za-z']+", text)]
    stops = stop_words()
    content = [w for w in words if w not in stops]
    counts = collections.Counter(content)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return {"words": len(words), "distinct": len(counts), "top": ranked}
