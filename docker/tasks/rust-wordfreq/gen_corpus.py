#!/usr/bin/env python3
"""Writes a deterministic pseudo-English corpus: gen_corpus.py SEED WORDS > FILE."""
import random
import sys

STEMS = ("time year people way day man thing woman life child world school state family "
         "student group country problem hand part place case week company system program "
         "question work government number night point home water room mother area money story "
         "fact month lot right study book eye job word business issue side kind head house "
         "service friend father power hour game line end member law car city community name "
         "president team minute idea kid body information back parent face others level office "
         "door health person art war history party result change morning reason research girl "
         "guy moment air teacher force education").split()
PUNCT = [",", ".", ";", ":", "!", "?", "", "", "", "", "", ""]


def corpus(seed, n):
    rng = random.Random(seed)
    weights = [1.0 / (i + 1) ** 1.05 for i in range(len(STEMS))]
    out, line = [], []
    for i in range(n):
        w = rng.choices(STEMS, weights)[0]
        r = rng.random()
        if r < 0.08:
            w = w.capitalize()
        elif r < 0.10:
            w = w.upper()
        elif r < 0.13:
            w = w + "-" + rng.choice(STEMS)
        elif r < 0.15:
            w = w + "'s"
        elif r < 0.16:
            w = f"{w}{rng.randint(1, 99)}"
        elif r < 0.17:
            w = f'"{w}"'
        line.append(w + rng.choice(PUNCT))
        if len(line) >= rng.randint(6, 14):
            out.append(" ".join(line))
            line = []
    out.append(" ".join(line))
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(corpus(int(sys.argv[1]), int(sys.argv[2])))
