"""Docker-path ``fs`` snapshots (committed images) to and from a registry, by the daemon itself.

``docker push`` sends only the layers the registry lacks (the task image's layers once, then
each snapshot's own), and ``docker pull`` verifies every layer's digest. The image keeps its
id (its config's digest), so a handle's ``meta["image"]`` names it on every host; after a pull
it is tagged with the handle's local reference, and the registry reference is dropped again.

Docker treats registries on 127.0.0.0/8 as insecure (plain HTTP) by default; others need TLS
or the daemon's ``insecure-registries``. Credentials in the registry URL are passed on.
"""

from __future__ import annotations

from typing import Any

from snapshots._errors import SnapshotError
from snapshots.docker_fs import DockerAPI, api_error, is_not_found
from snapshots.registry import BlobMissingError, Registry

IMAGES = "tvcache/images"
"""The repository snapshot images are pushed to (layer stacks go to ``tvcache/snapshots``)."""


def remote_ref(registry: Registry, tag: str) -> tuple[str, str]:
    """The daemon's name of ``tag`` in ``registry``: repository and tag."""
    host = registry.url.split("://", 1)[1]
    return f"{host}/{registry.repository}", tag


def _auth(registry: Registry) -> dict[str, str] | None:
    if registry.credentials is None:
        return None
    user, password = registry.credentials
    return {"username": user, "password": password}


def _stream(lines: Any, what: str) -> None:
    for line in lines:
        if isinstance(line, dict) and line.get("error"):
            message = str(line.get("error"))
            cls = BlobMissingError if "not found" in message or "unknown" in message else None
            raise (cls or SnapshotError)(f"{what} failed: {message}")


def push(api: DockerAPI, registry: Registry, local: str, tag: str) -> None:
    """Push image ``local`` as ``tag``; the temporary registry reference is removed again."""
    repository, tag = remote_ref(registry, tag)
    api.tag(local, repository, tag)
    try:
        lines = api.push(repository, tag=tag, stream=True, decode=True, auth_config=_auth(registry))
        _stream(lines, f"docker push {repository}:{tag}")
    finally:
        _untag(api, f"{repository}:{tag}")


def pull(api: DockerAPI, registry: Registry, tag: str, local: str) -> None:
    """Pull ``tag`` and name it ``local`` (``repository:tag``). Raises BlobMissingError (a
    SnapshotError) when the registry lacks it."""
    repository, tag = remote_ref(registry, tag)
    try:
        lines = api.pull(repository, tag=tag, stream=True, decode=True, auth_config=_auth(registry))
        _stream(lines, f"docker pull {repository}:{tag}")
    except SnapshotError:
        raise
    except Exception as error:
        cls = BlobMissingError if is_not_found(error) else SnapshotError
        raise cls(f"docker pull {repository}:{tag} failed: {api_error(error)}") from error
    name, _, local_tag = local.rpartition(":")
    try:
        api.tag(f"{repository}:{tag}", name, local_tag)
    finally:
        _untag(api, f"{repository}:{tag}")


def _untag(api: DockerAPI, ref: str) -> None:
    """Drop one reference; the image stays under its other names."""
    try:
        api.remove_image(ref, force=False, noprune=True)
    except Exception as error:
        if not is_not_found(error):
            raise SnapshotError(f"untagging {ref} failed: {api_error(error)}") from error
