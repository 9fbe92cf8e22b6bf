"""A small client of the OCI Distribution API: snapshots move between hosts through any registry.

Docker's own registry (Debian's ``docker-registry``, ``scripts/install-registry.sh``) or any
other by URL: ``http://host:5000``, with ``user:password@`` for basic auth (a registry that
answers 401 with a ``Bearer`` challenge gets a token from its realm with those credentials).

Blobs are content-addressed (``sha256:<hex>``): :meth:`Registry.has_blob` asks first, so a
blob many snapshots share is uploaded once. Uploads stream in chunks (``PATCH``) and close
with the digest (``PUT``); downloads are hashed as they arrive and refused on a mismatch,
before anything reads them.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, unquote, urljoin, urlsplit, urlunsplit

import httpx

from snapshots._errors import SnapshotError

REGISTRY_ENV = "TVCACHE_REGISTRY"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
"""What ``docker push`` stores (snapshot images of the Docker path)."""
CHUNK_BYTES = 16 * 1024 * 1024
_BEARER = re.compile(r'(\w+)="([^"]*)"')


class RegistryError(SnapshotError):
    """The registry refused or lost something, or cannot be reached."""


class BlobMissingError(RegistryError):
    """The registry has no such manifest or blob (never pushed, or evicted)."""


class DigestMismatchError(RegistryError):
    """What the registry sent is not what its digest names: corrupt, refused."""


@dataclass(frozen=True, slots=True)
class Descriptor:
    """An OCI content descriptor: what a manifest says of one blob."""

    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            found["annotations"] = dict(self.annotations)
        return found

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Descriptor:
        return cls(
            str(data["mediaType"]),
            str(data["digest"]),
            int(data["size"]),
            {str(k): str(v) for k, v in (data.get("annotations") or {}).items()},
        )


def check_digest(digest: str) -> str:
    """``digest`` if it is a sha256 digest; a clear error otherwise (it goes into URLs)."""
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise RegistryError(f"{digest!r} is not a sha256 digest", "use sha256:<64 hex digits>")
    return digest


class Registry:
    """One registry, one repository: blobs and manifests over HTTP. Thread-safe (httpx is)."""

    def __init__(
        self,
        url: str,
        repository: str = "tvcache/snapshots",
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RegistryError(
                f"registry URL {url!r} is not http(s)://host[:port]",
                f"set {REGISTRY_ENV} (or registry=) to e.g. http://127.0.0.1:5000",
            )
        if not re.fullmatch(
            r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*", repository
        ):
            raise RegistryError(
                f"repository {repository!r} is not a valid OCI name",
                "use lowercase letters, digits, '.', '_', '-' and '/'",
            )
        host = parts.hostname + (f":{parts.port}" if parts.port else "")
        self.url = urlunsplit((parts.scheme, host, "", "", ""))
        self.repository = repository
        self._auth = (
            (unquote(parts.username), unquote(parts.password or "")) if parts.username else None
        )
        self._timeout = timeout
        self._token: str | None = None
        self._client = httpx.Client(
            base_url=self.url, timeout=timeout, follow_redirects=True, transport=transport
        )

    @property
    def credentials(self) -> tuple[str, str] | None:
        """User and password from the URL, if any (the Docker daemon needs them too)."""
        return self._auth

    def at(self, repository: str) -> Registry:
        """The same registry (URL, credentials), another repository."""
        user = ""
        if self._auth is not None:
            user = f"{quote(self._auth[0], safe='')}:{quote(self._auth[1], safe='')}@"
        scheme, host = self.url.split("://", 1)
        return Registry(f"{scheme}://{user}{host}", repository, self._timeout)

    def __repr__(self) -> str:
        return f"Registry({self.url!r}, {self.repository!r})"

    def close(self) -> None:
        self._client.close()

    # ------------------------------------------------------------------ http
    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request with auth: basic from the URL, or a bearer token on a 401 challenge."""
        extra = kwargs.pop("headers", None)
        try:
            response = self._client.request(method, path, headers=self._headers(extra), **kwargs)
            if response.status_code == 401 and self._challenge(response):
                response = self._client.request(
                    method, path, headers=self._headers(extra), **kwargs
                )
        except httpx.HTTPError as error:
            raise RegistryError(
                f"registry {self.url} did not answer {method} {path}: {error}",
                f"check that it runs and that {REGISTRY_ENV} names it",
            ) from error
        if response.status_code == 401:
            raise RegistryError(
                f"registry {self.url} refused {method} {path}: unauthorized",
                "put user:password@ in the registry URL",
            )
        return response

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        elif self._auth is not None:
            user, password = self._auth
            basic = base64.b64encode(f"{user}:{password}".encode()).decode()
            headers["Authorization"] = f"Basic {basic}"
        return headers

    def _challenge(self, response: httpx.Response) -> bool:
        """Fetch a bearer token for the challenge in ``response``; whether one came."""
        header = response.headers.get("www-authenticate", "")
        if not header.lower().startswith("bearer "):
            return False
        params = dict(_BEARER.findall(header))
        realm = params.pop("realm", "")
        if not realm:
            return False
        auth = httpx.BasicAuth(*self._auth) if self._auth is not None else None
        try:
            answer = self._client.get(realm, params=params, auth=auth)
        except httpx.HTTPError as error:
            raise RegistryError(f"token realm {realm} did not answer: {error}") from error
        if answer.status_code != 200:
            return False
        body = answer.json()
        token = body.get("token") or body.get("access_token")
        self._token = str(token) if token else None
        return self._token is not None

    def _fail(self, response: httpx.Response, what: str) -> RegistryError:
        detail = response.text[:300].strip()
        cls = BlobMissingError if response.status_code == 404 else RegistryError
        return cls(
            f"registry {self.url} refused {what}: HTTP {response.status_code} {detail}",
            "see the registry's log; for a full disk lower its budget or run its garbage-collect",
        )

    def ping(self) -> None:
        """Raise unless the registry speaks the Distribution API here."""
        response = self._request("GET", "/v2/")
        if response.status_code != 200:
            raise self._fail(response, "GET /v2/")

    # ----------------------------------------------------------------- blobs
    def _blob_path(self, digest: str) -> str:
        return f"/v2/{self.repository}/blobs/{check_digest(digest)}"

    def has_blob(self, digest: str) -> bool:
        response = self._request("HEAD", self._blob_path(digest))
        if response.status_code in (200, 307):
            return True
        if response.status_code == 404:
            return False
        raise self._fail(response, f"HEAD blob {digest}")

    def upload(self, chunks: Iterator[bytes]) -> tuple[str, int]:
        """Upload the bytes ``chunks`` yields as one blob; its digest and size.

        Chunked (``PATCH`` each chunk, ``PUT`` with the digest), so a blob never has to be
        in memory or on disk whole, and its digest need not be known before it is made.
        """
        started = self._request("POST", f"/v2/{self.repository}/blobs/uploads/")
        if started.status_code != 202:
            raise self._fail(started, "starting a blob upload")
        location = self._location(started)
        digest, size = hashlib.sha256(), 0
        for chunk in chunks:
            if not chunk:
                continue
            end = size + len(chunk) - 1
            headers = {
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{size}-{end}",
            }
            answer = self._request("PATCH", location, content=chunk, headers=headers)
            if answer.status_code != 202:
                raise self._fail(answer, "a blob chunk")
            location = self._location(answer)
            digest.update(chunk)
            size += len(chunk)
        name = f"sha256:{digest.hexdigest()}"
        closing = str(httpx.URL(location).copy_merge_params({"digest": name}))
        done = self._request("PUT", closing)  # keeps the location's own query (its state)
        if done.status_code != 201:
            raise self._fail(done, f"closing blob {name}")
        return name, size

    def push_blob(self, data: bytes) -> tuple[str, int]:
        """Upload ``data`` unless the registry has it already; its digest and size."""
        name = f"sha256:{hashlib.sha256(data).hexdigest()}"
        if self.has_blob(name):
            return name, len(data)
        return self.upload(iter([data]))

    def _location(self, response: httpx.Response) -> str:
        location: str = response.headers.get("location") or ""
        if not location:
            raise RegistryError(f"registry {self.url} sent no upload location")
        return urljoin(self.url + "/", location)

    def fetch_blob(self, digest: str, target: IO[bytes]) -> int:
        """Write blob ``digest`` to ``target``, hashing it as it comes; its size. Raises
        :class:`DigestMismatchError` when the bytes are not what ``digest`` names (the
        caller then discards ``target``: nothing must read it)."""
        hasher, size = hashlib.sha256(), 0
        try:
            with self._client.stream(
                "GET", self._blob_path(digest), headers=self._headers()
            ) as response:
                if response.status_code != 200:
                    response.read()
                    raise self._fail(response, f"GET blob {digest}")
                for chunk in response.iter_bytes(1024 * 1024):
                    hasher.update(chunk)
                    target.write(chunk)
                    size += len(chunk)
        except httpx.HTTPError as error:
            raise RegistryError(f"registry {self.url} broke off blob {digest}: {error}") from error
        found = f"sha256:{hasher.hexdigest()}"
        if found != digest:
            raise DigestMismatchError(
                f"blob {digest} from {self.url} hashes to {found}: corrupt, refused",
                "delete it from the registry (its snapshot is then forked from an ancestor)",
            )
        return size

    def blob_bytes(self, digest: str) -> bytes:
        """A small blob (a config), verified."""
        buffer = io.BytesIO()
        self.fetch_blob(digest, buffer)
        return buffer.getvalue()

    def delete_blob(self, digest: str) -> bool:
        """Unlink ``digest`` from the repository (garbage collection frees its bytes)."""
        response = self._request("DELETE", self._blob_path(digest))
        if response.status_code in (202, 404):
            return response.status_code == 202
        raise self._fail(response, f"DELETE blob {digest} (is deletion enabled?)")

    # ------------------------------------------------------------- manifests
    def put_manifest(self, tag: str, manifest: dict[str, Any]) -> str:
        """Store ``manifest`` under ``tag``; its digest."""
        body = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
        response = self._request(
            "PUT",
            f"/v2/{self.repository}/manifests/{_tag(tag)}",
            content=body,
            headers={"Content-Type": MANIFEST_TYPE},
        )
        if response.status_code != 201:
            raise self._fail(response, f"PUT manifest {tag}")
        return f"sha256:{hashlib.sha256(body).hexdigest()}"

    def get_manifest(self, reference: str) -> tuple[dict[str, Any], str]:
        """The manifest under a tag or digest, and its digest (verified for a digest)."""
        response = self._request(
            "GET",
            f"/v2/{self.repository}/manifests/{_tag(reference)}",
            headers={"Accept": f"{MANIFEST_TYPE}, {DOCKER_MANIFEST_TYPE}"},
        )
        if response.status_code != 200:
            raise self._fail(response, f"GET manifest {reference}")
        digest = f"sha256:{hashlib.sha256(response.content).hexdigest()}"
        if reference.startswith("sha256:") and digest != reference:
            raise DigestMismatchError(f"manifest {reference} hashes to {digest}: refused")
        try:
            found = json.loads(response.content)
        except ValueError as error:
            raise RegistryError(f"manifest {reference} is not JSON: {error}") from error
        if not isinstance(found, dict):
            raise RegistryError(f"manifest {reference} is not a JSON object")
        return found, digest

    def delete_manifest(self, reference: str) -> bool:
        """Delete a manifest (by tag: its digest is looked up first); whether it existed."""
        digest = reference
        if not reference.startswith("sha256:"):
            try:
                digest = self.get_manifest(reference)[1]
            except BlobMissingError:
                return False
        response = self._request("DELETE", f"/v2/{self.repository}/manifests/{digest}")
        if response.status_code in (202, 404):
            return response.status_code == 202
        raise self._fail(response, f"DELETE manifest {reference} (is deletion enabled?)")

    def tags(self) -> list[str]:
        """Every tag of the repository (none when it was never pushed to)."""
        found: list[str] = []
        path: str | None = f"/v2/{self.repository}/tags/list"
        params: dict[str, str] | None = {"n": "1000"}
        while path is not None:
            response = self._request("GET", path, params=params)
            if response.status_code == 404:
                return found
            if response.status_code != 200:
                raise self._fail(response, "listing tags")
            found.extend(str(t) for t in (response.json().get("tags") or []))
            following = response.links.get("next", {}).get("url")
            path, params = (following, None) if following else (None, None)
        return found


def _tag(reference: str) -> str:
    if reference.startswith("sha256:"):
        return check_digest(reference)
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}", reference):
        raise RegistryError(
            f"{reference!r} is not a valid tag", "use letters, digits, '_', '.', '-' (≤128)"
        )
    return reference


def from_env(url: str | None = None) -> Registry | None:
    """The registry ``url`` names, else ``$TVCACHE_REGISTRY``'s; None when neither is set."""
    chosen = url if url is not None else os.environ.get(REGISTRY_ENV)
    return Registry(chosen) if chosen else None


def file_chunks(path: Path, size: int = CHUNK_BYTES) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(size):
            yield chunk
