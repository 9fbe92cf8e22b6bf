"""What a Docker sandbox's state is made of, beyond its processes: the digest of its files,
and what its background processes do on their own.

The digest: the container's overlay layers above the root image (:mod:`snapshots.overlay`),
plus what lives outside them: ``/dev/shm`` (a tmpfs), the ``/etc/hosts``, ``/etc/hostname`` and
``/etc/resolv.conf`` that Docker bind-mounts, and any volume. The protocol directory is left
out: it is tvcache's, not the task's. Read from the host, as root, with the container idle.

The background (:func:`background`): processes besides PID 1 and the session shell act on
their own clock. A call's observation is a function of its history only if none of them could
have changed what it saw at a moment no history fixes; :class:`Activity` holds the evidence.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from sandbox._docker_shell import MOUNT, ns_pid
from snapshots import overlay
from snapshots.directory import tree_digest
from snapshots.docker_fs import DockerAPI

_SKIP = frozenset({MOUNT.lstrip("/")})


def processes_besides_shell(init_pid: int) -> int:
    """Processes under a sandbox's PID 1 (its supervisor) besides the session shell."""
    try:
        return max(0, len(psutil.Process(init_pid).children(recursive=True)) - 1)
    except psutil.NoSuchProcess:
        return 0


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
        return processes_besides_shell(self.init_pid)

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


@dataclass(frozen=True, slots=True)
class Activity:
    """The background processes of a container at one instant (host pids).

    ``writes``: bytes each has written so far (``wchar``, reaped children included); ``busy``:
    some thread of one of them is running or in disk sleep; ``holders``: how many hold the
    call output file open (they can write into any later call's output).
    """

    writes: dict[int, int]
    busy: bool
    holders: int

    def unstable(self, since: Activity | None) -> bool:
        """Whether a call that ends (or starts) now may see what a fresh run would not: a
        background process runs, holds the output, or wrote or came or went since ``since``
        (the end of the previous call: between calls no command of the agent runs)."""
        moved = since is not None and since.writes != self.writes
        return self.busy or self.holders > 0 or moved


def _children(pid: int, *, threaded: bool = True) -> list[int]:
    """Host pids of the children of ``pid`` (of every thread unless not ``threaded``)."""
    found: list[int] = []
    tasks = [str(pid)]
    if threaded:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            return found
    for task in tasks:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as f:
            found.extend(int(child) for child in f.read().split())
    return found


def _states(pid: int) -> list[str]:
    """The scheduler state of every thread of ``pid`` (R, S, D, Z, ...)."""
    states: list[str] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/stat") as f:
                states.append(f.read().rsplit(")", 1)[-1].split()[0])
    return states


def _wchar(pid: int) -> int:
    with contextlib.suppress(OSError, ValueError), open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    return -1


def _holds(pid: int, wanted: tuple[int, int]) -> bool:
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.stat(f"/proc/{pid}/fd/{fd}")
                if (target.st_dev, target.st_ino) == wanted:
                    return True
    return False


class Background:
    """Samples what a container's processes besides PID 1 and the session shell do.

    ``init_pid`` is PID 1 on the host; ``shell_pid()`` the session shell's pid in the
    container (it changes when the shell restarts); ``output`` the call output file. With no
    background process a sample is two small reads: PID 1's children (the shell, known by its
    host pid) and the shell's.
    """

    def __init__(self, init_pid: int, shell_pid: Callable[[], int | None], output: Path) -> None:
        self._init_pid = init_pid
        self._shell_pid = shell_pid
        self._output = output
        self._shell_host_pid = -1

    def _is_shell(self, pid: int) -> bool:
        if pid == self._shell_host_pid:
            return True
        ns = self._shell_pid()
        if ns is not None and ns_pid(pid) == ns:
            self._shell_host_pid = pid
            return True
        return False

    def sample(self) -> Activity:
        writes: dict[int, int] = {}
        busy, holders, wanted = False, 0, None
        stack = [(pid, True) for pid in _children(self._init_pid, threaded=False)]
        while stack:
            pid, top = stack.pop()
            if top and self._is_shell(pid):  # bash: one thread
                stack.extend((child, False) for child in _children(pid, threaded=False))
                continue
            states = _states(pid)
            if not states or states[0] in ("Z", "X"):
                continue
            stack.extend((child, False) for child in _children(pid))
            if wanted is None:
                st = os.stat(self._output, follow_symlinks=False)
                wanted = (st.st_dev, st.st_ino)
            writes[pid] = _wchar(pid)
            busy = busy or any(state in ("R", "D") for state in states)
            holders += _holds(pid, wanted)
        return Activity(writes, busy, holders)
