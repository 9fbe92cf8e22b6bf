"""The keyword extractor: a cheap LM names the task's high-level intent in a few words.

The keyword, not the query text and not an embedding, is what the plan cache matches exactly:
two tasks that differ only in their entities and numbers get the same keyword.
"""

from __future__ import annotations

from tvcache.plans._cache import normalize_keyword
from tvcache.plans._lm import LM, Ledger
from tvcache.plans._prompts import prompt

MAX_WORDS = 6


def clean_keyword(answer: str) -> str:
    """The keyword in an LM's answer: its first non-empty line, without a label, quotes or
    trailing punctuation, normalised and cut to :data:`MAX_WORDS` words."""
    for line in answer.splitlines():
        line = line.strip().strip("\"'`*").strip()
        for label in ("intent:", "keyword:", "keywords:"):
            if line.lower().startswith(label):
                line = line[len(label) :]
        words = normalize_keyword(line).split()
        if words:
            return " ".join(words[:MAX_WORDS])
    return ""


def extract_keyword(lm: LM, ledger: Ledger, question: str) -> str:
    """The intent keyword of ``question`` ('' when the LM gave none: then nothing is cached)."""
    system, user = prompt("keyword").render(question=question)
    return clean_keyword(ledger.call(lm, "keyword", system, user, max_tokens=16))
