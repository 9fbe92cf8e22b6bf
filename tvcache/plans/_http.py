"""An LM behind any OpenAI-compatible ``/v1/chat/completions`` endpoint (vLLM, SGLang,
llama.cpp's server, hosted APIs), named by URL and model."""

from __future__ import annotations

import os
from typing import Any

import httpx

from tvcache.plans._lm import Completion, LMError


class OpenAICompatibleLM:
    """Chat completions over HTTP; token counts come from the server's ``usage``.

    ``url`` is the API base (``http://host:8000/v1``); the key, if any, comes from ``api_key``
    or ``$OPENAI_API_KEY``.
    """

    def __init__(
        self,
        url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 120.0,
        temperature: float = 0.0,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise LMError(
                f"LM URL {url!r} is not an http(s) URL",
                "give the API base of an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1",
            )
        self.url = url.rstrip("/")
        self.model = model
        self.temperature = temperature
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(timeout=timeout, headers=headers)

    def complete(self, system: str, user: str, *, max_tokens: int) -> Completion:
        body = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": user},
            ],
            "max_tokens": max_tokens,
            "temperature": self.temperature,
        }
        endpoint = f"{self.url}/chat/completions"
        try:
            response = self._client.post(endpoint, json=body)
        except httpx.HTTPError as error:
            raise LMError(
                f"cannot reach the LM at {endpoint}: {error}",
                "check that the server runs and the URL is its API base (ending in /v1)",
            ) from error
        if response.status_code != 200:
            raise LMError(
                f"the LM at {endpoint} answered {response.status_code}: {response.text[:300]}",
                f"check the model name {self.model!r} and the API key",
            )
        return _parse(response.json(), endpoint)

    def close(self) -> None:
        self._client.close()


def _parse(data: Any, endpoint: str) -> Completion:
    try:
        text = data["choices"][0]["message"]["content"] or ""
        usage = data.get("usage") or {}
        return Completion(
            str(text), int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
        )
    except (KeyError, IndexError, TypeError, ValueError) as error:
        raise LMError(
            f"the LM at {endpoint} sent no chat completion ({error!r})",
            "point --*-url at an OpenAI-compatible /v1 API",
        ) from error
