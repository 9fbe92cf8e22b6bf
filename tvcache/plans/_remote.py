"""The plan cache of a tvcache server (``/v1/plans``), with :class:`PlanCache`'s methods, so
agents on many hosts share one set of templates."""

from __future__ import annotations

from typing import Any, Protocol

import httpx

from tvcache.plans._cache import PlanCacheError, PlanTemplate


class TemplateStore(Protocol):
    """What plan caching needs of a template store: PlanCache or RemotePlanCache."""

    def lookup(self, keyword: str) -> PlanTemplate | None: ...

    def put(
        self, keyword: str, template: str, *, source: str | None = None, prompt_version: str = ""
    ) -> PlanTemplate: ...

    def record(self, template_id: str, *, success: bool) -> None: ...


class RemotePlanCache:
    """``/v1/plans`` of the server at ``url`` (``http://host:8470``)."""

    def __init__(
        self,
        url: str,
        namespace: str = "default",
        *,
        token: str | None = None,
        timeout: float = 30.0,
        client: httpx.Client | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.namespace = namespace
        self._client = client or httpx.Client(
            base_url=url.rstrip("/"), headers=headers, timeout=timeout
        )

    def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise PlanCacheError(
                f"cannot reach the plan cache at {self._client.base_url}: {error}",
                "check that `tvcache serve` runs there",
            ) from error
        try:
            data = response.json()
        except ValueError as error:
            raise PlanCacheError(
                f"{self._client.base_url} answered {response.status_code} without JSON",
                "point the URL at a tvcache server (`tvcache serve`)",
            ) from error
        if response.status_code >= 400:
            problem = data.get("error", {}) if isinstance(data, dict) else {}
            raise PlanCacheError(
                problem.get("message") or f"HTTP {response.status_code}", problem.get("hint")
            )
        return data

    def lookup(self, keyword: str) -> PlanTemplate | None:
        body = {"keyword": keyword, "namespace": self.namespace}
        found = self._send("POST", "/v1/plans/lookup", json=body)["template"]
        return None if found is None else PlanTemplate(**found)

    def put(
        self, keyword: str, template: str, *, source: str | None = None, prompt_version: str = ""
    ) -> PlanTemplate:
        body = {
            "keyword": keyword,
            "template": template,
            "namespace": self.namespace,
            "source": source,
            "prompt_version": prompt_version,
        }
        return PlanTemplate(**self._send("POST", "/v1/plans", json=body))

    def record(self, template_id: str, *, success: bool) -> None:
        body = {"success": success, "namespace": self.namespace}
        self._send("POST", f"/v1/plans/{template_id}/outcome", json=body)

    def templates(self, keyword: str | None = None) -> list[PlanTemplate]:
        params = {"namespace": self.namespace, **({"keyword": keyword} if keyword else {})}
        return [
            PlanTemplate(**t) for t in self._send("GET", "/v1/plans", params=params)["templates"]
        ]

    def close(self) -> None:
        self._client.close()
