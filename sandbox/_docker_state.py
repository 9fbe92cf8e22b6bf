"""What a Docker sandbox's state is made of, beyond its processes: the digest of its files.

The container's overlay layers above the root image (:mod:`snapshots.overlay`), plus what
lives outside them: ``/dev/shm`` (a tmpfs), the ``/etc/hosts``, ``/etc/hostname`` and
``/etc/resolv.conf`` that Docker bind-mounts, and any volume. The protocol directory is left
out: it is tvcache's, not the task's. Read from the host, as root, with the container idle.
"""

from __future__ import annotations

import datetime
import hashlib
from pathlib import Path
from typing import Any

import psutil

from sandbox._docker_shell import MOUNT
from snapshots import overlay
from snapshots.directory import tree_digest
from snapshots.docker_fs import DockerAPI

_SKIP = frozenset({MOUNT.lstrip("/")})


class ContainerFiles:
    """The file digest of one container; inspects it once, re-reads only what changed."""

    def __init__(
        self, api: DockerAPI, digests: overlay.OverlayDigests, container: str, root_image: str
    ) -> None:
        self._api = api
        self._digests = digests
        self._container = container
        self._root_image = root_image
        self._upper_files = overlay.FileDigests()
        self._info: dict[str, Any] | None = None
        self._layers: tuple[list[str], list[str], str] | None = None
        self._since = 0

    @property
    def info(self) -> dict[str, Any]:
        """The container's inspection: layers, bind mounts and init pid never change."""
        if self._info is None:
            self._info = self._api.inspect_container(self._container)
            driver = self._info.get("GraphDriver") or {}
            if driver.get("Name") == "overlay2" and self._root_image:
                root = self._api.inspect_image(self._root_image)
                self._layers = overlay.split_layers(driver["Data"], root["GraphDriver"]["Data"])
                self._since = _epoch_seconds(str(root.get("Created", "")))
        return self._info

    @property
    def init_pid(self) -> int:
        return int(self.info["State"]["Pid"])

    def processes(self) -> int:
        """Processes in the container besides PID 1 (the supervisor) and the session shell."""
        try:
            return max(0, len(psutil.Process(self.init_pid).children(recursive=True)) - 1)
        except psutil.NoSuchProcess:
            return 0

    def digest(self) -> str | None:
        """None where the layers cannot be read (another storage driver, a flattened image)."""
        info = self.info
        if self._layers is None:
            return None
        root_layers, snapshot_layers, upper = self._layers
        digest = hashlib.sha256(b"tvcache-container-files-v1\0")
        digest.update(
            self._digests.digest(
                root_layers, snapshot_layers, upper, self._upper_files, _SKIP, self._since
            ).encode()
        )
        digest.update(tree_digest(Path(f"/proc/{self.init_pid}/root/dev/shm")).encode())
        for key in ("HostsPath", "HostnamePath", "ResolvConfPath"):
            path = info.get(key) or ""
            digest.update(f"{key}\0{_read(path)}\0".encode())
        for mount in sorted(info.get("Mounts") or [], key=lambda m: str(m.get("Destination"))):
            if mount.get("Destination") != MOUNT:
                source = Path(str(mount.get("Source")))
                digest.update(f"{mount.get('Destination')}\0{tree_digest(source)}\0".encode())
        return digest.hexdigest()


def _epoch_seconds(created: str) -> int:
    """Docker's ``2026-11-26T06:10:00.123456789Z`` in whole seconds; 0 if unreadable."""
    try:
        moment = datetime.datetime.fromisoformat(created[:19]).replace(tzinfo=datetime.UTC)
    except ValueError:
        return 0
    return int(moment.timestamp())


def _read(path: str) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else ""
    except OSError:
        return "missing"
