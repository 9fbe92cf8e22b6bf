"""Sandboxes of the Docker backend started by runc directly (see :mod:`sandbox._runc`).

A sandbox is: a protocol directory (``work_dir/<name>``, the same shell harness as the Docker
path), a box directory ``snapshot_dir/runc/<name>`` (upper and work directories, the bundle
and ``stack.json``, the layers it reads, which garbage collection keeps) and a runc container
``<name>``. An ``fs`` snapshot freezes the upper directory as a layer (:mod:`snapshots.layers`)
and moves the source onto a new upper directory over it, as a fork of its own snapshot: at
level ``fs`` the shell is its only process, and its whole state comes back as in a fork.

Containers can be started ahead of time (:meth:`RuncRuntime.prepare`: created, started, the
session shell handshaken and idle, nothing of the sandbox run): a fork of that snapshot then
only takes one over, a hand-out of a handle.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from sandbox import _docker_shell as shell
from sandbox import _runc, _runc_full_mounts
from sandbox._docker_state import _SKIP, _epoch_seconds, processes_besides_shell
from sandbox._runc_exec import alive as _running
from snapshots import docker_fs, overlay
from snapshots._background import Background
from snapshots.directory import delete_tree, tree_digest
from snapshots.layers import LayerStore

log = logging.getLogger(__name__)

PREFIX = "tvcache-"
HOSTS = (
    "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
)
"""Docker's /etc/hosts of a container with network ``none``."""
SKELETONS = 2
"""Sandbox directories laid out ahead of time (:meth:`RuncRuntime._take_skeleton`)."""
ETC_FILES = ("hostname", "hosts", "resolv.conf")
"""Files Docker bind-mounts into /etc of every container (fresh in every fork, never in
a snapshot); each sandbox gets its own copies."""


def _etc_files(box: Path) -> None:
    """Write the box's /etc files (:func:`_etc_binds` mounts them)."""
    etc = box / "etc"
    etc.mkdir()
    try:
        resolv = Path("/etc/resolv.conf").read_text()
    except OSError:
        resolv = ""
    texts = {"hostname": "sandbox\n", "hosts": HOSTS, "resolv.conf": resolv}
    for name, text in texts.items():
        (etc / name).write_text(text)


def _etc_binds(box: Path) -> dict[str, str]:
    """The bind mounts of the box's /etc files, source to destination."""
    return {str(box / "etc" / name): f"/etc/{name}" for name in ETC_FILES}


class RuncFiles:
    """The file digest and processes of a runc sandbox (what ``ContainerFiles`` is for Docker)."""

    def __init__(
        self,
        digests: overlay.OverlayDigests,
        root_layers: list[str],
        stack: list[str],
        upper: Path,
        since: int,
        pid: int,
    ) -> None:
        self._digests = digests
        self._root_layers = root_layers
        self._stack = stack  # bottom first
        self._upper = upper
        self._since = since
        self._upper_files = overlay.FileDigests()
        self.init_pid = pid

    def processes(self) -> int:
        """Processes besides PID 1 (the supervisor) and the session shell."""
        return processes_besides_shell(self.init_pid)

    def digest(self) -> str | None:
        digest = hashlib.sha256(b"tvcache-container-files-v1\0")
        digest.update(
            self._digests.digest(
                self._root_layers,
                self._stack,
                str(self._upper),
                self._upper_files,
                _SKIP,
                self._since,
            ).encode()
        )
        digest.update(tree_digest(Path(f"/proc/{self.init_pid}/root/dev/shm")).encode())
        for name in ETC_FILES:
            digest.update(f"{name}\0{_file_digest(self._upper.parent / 'etc' / name)}\0".encode())
        return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Image:
    """What a sandbox takes from a Docker image: its layers and process defaults."""

    image_id: str
    lowers: list[str]  # top first
    env: list[str]
    cwd: str
    user: str
    created: int


@dataclass(slots=True)
class Box:
    """A runc container and its directories."""

    name: str
    directory: Path  # the protocol directory
    box: Path
    stack: list[str]  # tvcache layers, top first
    image: Image
    pid: int = 0
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def upper(self) -> Path:
        return self.box / "upper"


@dataclass(slots=True)
class Started:
    """A container started ahead of time: its shell answers and waits for the first call."""

    box: Box
    channel: shell.ShellChannel
    boot: str
    files: RuncFiles
    pinned: int | None = None
    """The pid counter was set to this ahead of time (the snapshot's last pid)."""
    since: float = field(default_factory=time.monotonic)


class RuncRuntime:
    """Starts, snapshots, forks and removes runc sandboxes of one backend instance."""

    def __init__(
        self,
        api: Any,
        snapshot_dir: Path,
        work_dir: Path,
        files: Mapping[str, bytes],
        digests: overlay.OverlayDigests,
        ready_timeout: float,
        flatten_depth: int,
        owner: Mapping[str, str],
        count: Callable[[str], None] = lambda name: None,
        oci: str | None = None,
        full: bool = False,
    ) -> None:
        self.full = full  # level full: :func:`sandbox._runc_full_mounts.prepare` every box
        self._count = count
        self._flatten_lock = threading.Lock()
        self.api = api
        self._owner = dict(owner)
        self.boxes = snapshot_dir / "runc"
        self.boxes.mkdir(parents=True, exist_ok=True)
        self.work_dir = work_dir
        self.layers = LayerStore(snapshot_dir / "layers")
        self._files = files
        self.digests = digests
        self.ready_timeout = ready_timeout
        self.flatten_depth = flatten_depth
        self._images: dict[str, Image] = {}
        self._lock = threading.Lock()
        self._prepared: dict[str, list[Started]] = {}
        self._skeletons: list[str] = []
        self._closing = False
        self._reserved: Counter[str] = Counter()
        self._background = Background(2, "tvcache-runc")
        self._launcher = ThreadPoolExecutor(4, thread_name_prefix="tvcache-runc-launch")
        self.oci, self.oci_reason = _runc.choose_oci(oci)
        _runc.STATE_ROOTS[self.oci].mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ images
    def image(self, image_id: str) -> Image:
        """The image's layers and config (inspected once: an image id never changes)."""
        with self._lock:
            known = self._images.get(image_id)
        if known is not None:
            return known
        info = self.api.inspect_image(image_id)
        conf = info.get("Config") or {}
        found = Image(
            str(info["Id"]),
            _runc.image_lowers(info.get("GraphDriver") or {}),
            list(conf.get("Env") or []),
            str(conf.get("WorkingDir") or "/"),
            str(conf.get("User") or ""),
            _epoch_seconds(str(info.get("Created", ""))),
        )
        with self._lock:
            self._images[image_id] = found
        return found

    # -------------------------------------------------------------- lifecycle
    def create(
        self,
        image: Image,
        options: Mapping[str, Any],
        state: shell.SessionState | None,
        env: Sequence[str],
        stack: list[str],
        restore: Callable[[Box], None] | None = None,
    ) -> Box:
        """A created (not started) container: directories, overlay mount, ``runc create``;
        with ``restore``, that instead of ``runc create`` (a ``full`` fork's ``runc restore``)."""
        started = time.perf_counter()
        name = self._take_skeleton()
        box = Box(name, self.work_dir / name, self.boxes / name, stack, image)
        try:
            shell.write_state(box.directory, state)
            (box.box / "stack.json").write_text(json.dumps(stack))
            lowers = [str(self.layers.diff(layer)) for layer in stack] + image.lowers
            rootfs = _runc.mount_overlay(box.box, lowers, box.upper, box.box / "work")
            box.phases["dirs+mount"] = time.perf_counter() - started
            config = _runc.config(
                rootfs=rootfs,
                args=["bash"],  # the supervisor at once: no ``bash -c`` to exec it
                env=[*_environment(image, env), f"BASH_ENV={shell.MOUNT}/init"],
                cwd=image.cwd,
                user=image.user,
                hostname="sandbox",
                binds={str(box.directory): shell.MOUNT, **_etc_binds(box.box)},
                memory=_runc.memory_bytes(options.get("memory")),
                pids=_int(options.get("pids")),
                cpus=_float(options.get("cpus")),
                file_bytes=_mb(options.get("file_mb")),
                cgroup=f"/{_runc.CGROUP_PARENT}/{name}",
            )
            if self.full:  # CRIU: no network lock, nothing but processes to copy
                config["annotations"] = _runc_full_mounts.criu_annotations()
                _runc_full_mounts.prepare(box.box, config)
            (box.box / "config.json").write_text(json.dumps(config))
            created = time.perf_counter()
            box.phases["config"] = created - started - box.phases["dirs+mount"]
            if restore is not None:
                restore(box)  # sets box.pid
                box.phases["runc_restore"] = time.perf_counter() - created
            else:
                _runc.runc(
                    "create",
                    "--bundle",
                    str(box.box),
                    "--pid-file",
                    str(box.box / "pid"),
                    name,
                    log=box.box / "runc.log",
                    runtime=self.oci,
                    fast=True,
                )
                box.pid = int((box.box / "pid").read_text())  # no ``runc state`` process needed
                box.phases["runc_create"] = time.perf_counter() - created
        except BaseException:
            self.discard(box)
            raise
        return box

    def _take_skeleton(self) -> str:
        """The name of a sandbox whose directories are laid out (protocol directory with
        its FIFOs, scripts and tools; box with its upper, work and /etc files): one made
        ahead of time if one is ready, else made now. Nothing in them belongs to any state
        yet. They are made again when a sandbox is removed (in the background, after its
        removal): not while a fork runs, which they would slow down on two cores."""
        with self._lock:
            name = self._skeletons.pop() if self._skeletons else None
        return self._skeleton() if name is None else name

    def _skeleton(self) -> str:
        name = f"{PREFIX}{uuid.uuid4().hex[:16]}"
        box = self.boxes / name
        try:
            shell.prepare(self.work_dir / name, None, self._files)
            box.mkdir()
            (box / "owner.json").write_text(json.dumps(self._owner))
            (box / "upper").mkdir()
            (box / "work").mkdir()
            _etc_files(box)
        except BaseException:
            _remove_dirs(self.boxes / name, self.work_dir / name)
            raise
        return name

    def _refill(self) -> None:
        """Lay out sandbox directories until :data:`SKELETONS` are ready."""
        while True:
            with self._lock:
                if self._closing or len(self._skeletons) >= SKELETONS:
                    return
            name = self._skeleton()
            with self._lock:
                if not self._closing:
                    self._skeletons.append(name)
                    continue
            _remove_dirs(self.boxes / name, self.work_dir / name)
            return

    def start(self, box: Box, shell_pid: int) -> tuple[shell.ShellChannel, str, RuncFiles]:
        """``runc start`` a created container and wait for its shell; channel, boot id, files."""
        started = time.perf_counter()
        channel: shell.ShellChannel | None = None
        try:
            _runc.start(box.name, self.oci, box.pid)
            box.phases["runc_start"] = time.perf_counter() - started
            if not _running(box.pid):
                raise _runc.RuncError(f"container {box.name} did not start", "see its runc.log")
            channel = shell.ShellChannel(box.directory, self.alive(box.name), self.ready_timeout)
            shaken = time.perf_counter()
            channel.go(box.pid, shell_pid)
            boot = channel.ping(self.ready_timeout)
            box.phases["shell"] = time.perf_counter() - shaken
        except BaseException:
            if channel is not None:
                channel.close()
            self.discard(box)
            raise
        return channel, boot, self.files(box)

    def launch(
        self,
        image_id: str,
        options: Mapping[str, Any],
        state: shell.SessionState,
        layer: str,
        retire: Box | None = None,
    ) -> Future[tuple[Box, tuple[shell.ShellChannel, str, RuncFiles]]]:
        """Start a container over ``layer`` in the background (a snapshot's source goes on
        there); the future holds the box and what :meth:`start` returns. ``retire`` (the
        frozen source's dead box) is removed once that start is over, not while it runs:
        on two cores its removal would slow the start the next call waits for."""

        stack = self.stack_of(layer)
        with self._lock:  # until the box records its stack, gc must keep it for the box
            self._reserved.update(stack)

        def go() -> tuple[Box, tuple[shell.ShellChannel, str, RuncFiles]]:
            try:
                try:
                    box = self.create(self.image(image_id), options, state, [], stack)
                finally:
                    with self._lock:
                        self._reserved.subtract(stack)
                return box, self.start(box, state.shell_pid())
            finally:
                if retire is not None:
                    self.background(self._dispose, retire)

        return self._launcher.submit(go)

    def files(self, box: Box) -> RuncFiles:
        stack = [str(self.layers.diff(layer)) for layer in reversed(box.stack)]
        image = box.image
        return RuncFiles(self.digests, image.lowers, stack, box.upper, image.created, box.pid)

    def alive(self, name: str) -> Callable[[], bool]:
        def alive() -> bool:
            found = _runc.state(name)
            return found is not None and found.get("status") in ("running", "paused")

        return alive

    def pause(self, name: str) -> None:
        _runc.runc("pause", name, runtime=self.oci)

    def resume(self, name: str) -> None:
        _runc.runc("resume", name, runtime=self.oci)

    def discard(self, box: Box | str) -> None:
        """Remove the container, its mount and its directories. Idempotent."""
        name = box if isinstance(box, str) else box.name
        _runc.delete(name)
        _runc.unmount(self.boxes / name / "rootfs")
        _runc.unmount(self.boxes / name / "netns")  # a full box's network namespace
        _remove_dirs(self.boxes / name, self.work_dir / name)

    def dispose(self, box: Box) -> None:
        """Kill ``box`` now (its PID 1: the kernel ends the whole pid namespace with it) and
        remove what is left in the background; :meth:`drain` waits for that."""
        _kill(box.pid)
        self.background(self._dispose, box)

    def _dispose(self, box: Box) -> None:
        self.discard(box)
        self.gc()
        self._refill()

    def background(self, work: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run ``work`` off the request path; errors are logged, :meth:`drain` waits."""
        future = self._background.submit(work, *args)
        future.add_done_callback(_log_failure)
        return future

    def drain(self, timeout: float = 120.0) -> None:
        """Wait for background removals and flattens (tests, benchmarks, close)."""
        self._background.drain(timeout)

    # -------------------------------------------------------------- snapshots
    def freeze(self, box: Box, retire: bool = True) -> str:
        """Stop ``box`` and make its upper directory a layer over its stack; the layer id.

        No copy and no wait for runc: PID 1 is killed and, once every process of the box is
        gone (nothing writes any more), the upper directory is renamed into the layer store;
        the dead container and its mount are removed in the background (with ``retire``;
        else the caller passes the box to :meth:`launch`). The new layer is mounted as a
        lower while the dead mount lingers, which overlayfs allows (index=off).
        """
        _kill(box.pid)
        below = self.layers.chain(box.stack[0]) if box.stack else []
        if len(below) >= self.flatten_depth:  # the background flatten did not keep up
            below = [self._flatten(box.stack[0])]
        layer = self.layers.freeze(box.upper, below)
        if retire:
            self.background(self._dispose, box)
        if len(below) + 1 > self.flatten_depth // 2:
            self.background(self._flatten, layer)
        return layer

    def _flatten(self, layer: str) -> str:
        """Merge the stack of ``layer`` once (its merged layer's id)."""
        with self._flatten_lock:
            stack = self.layers.chain(layer)
            if len(stack) == 1:
                return stack[0]
            flat = self.layers.flatten(layer)
        self._count("flattens")
        return flat

    def stack_of(self, layer: str) -> list[str]:
        return self.layers.chain(layer)

    def users(self) -> set[str]:
        """Layers the sandboxes on this store read (any process's: from their boxes)."""
        with self._lock:
            used = {layer for layer, count in self._reserved.items() if count > 0}
        for entry in self.boxes.iterdir():
            stack = entry / "stack.json"
            with contextlib.suppress(OSError, ValueError):
                used.update(str(x) for x in json.loads(stack.read_text()))
        return used

    def gc(self, min_age: float = 0.0) -> list[str]:
        return self.layers.gc(self.users(), min_age=min_age)

    def reconcile(self, known_layers: set[str], store: str) -> tuple[list[str], set[str]]:
        """Remove boxes (container, mount, directories) whose creator is gone and runc
        containers whose box is gone; mark layers no record names (older than a minute)
        deleted; remove the layers nothing needs. Returns what was removed (``container:``,
        ``layer:``) and the names of the boxes that stay."""
        removed: list[str] = []
        for name in _runc.containers():
            found = _runc.state(name) or {}
            bundle = Path(str(found.get("bundle", "")))
            if bundle.parent == self.boxes and not (bundle / "owner.json").exists():
                self.discard(name)
                removed.append(f"container:{name}")
        kept: set[str] = set()
        for entry in sorted(self.boxes.iterdir()):
            try:
                labels = json.loads((entry / "owner.json").read_text())
            except (OSError, ValueError):
                labels = {}
            try:
                young = time.time() - entry.lstat().st_mtime < 60
            except FileNotFoundError:  # removed meanwhile (a retired source's box)
                continue
            if docker_fs.creator_alive(labels) or (not labels and young):
                kept.add(entry.name)
                continue
            self.discard(entry.name)
            removed.append(f"container:{entry.name}")
        for layer in self.layers.layers():
            try:
                young = time.time() - (self.layers.root / layer).lstat().st_mtime < 60
            except FileNotFoundError:  # flattened or collected meanwhile
                continue
            if layer not in known_layers and not young:
                self.layers.delete(layer)
        removed.extend(f"layer:{layer}" for layer in self.gc())
        return removed, kept

    # -------------------------------------------------------------- prepared
    def prepare(self, key: str, started: Started) -> None:
        with self._lock:
            self._prepared.setdefault(key, []).append(started)

    def take_prepared(self, key: str) -> Started | None:
        """A container started ahead of time under ``key`` whose PID 1 still lives (the dead
        ones found on the way are removed), or None."""
        while True:
            with self._lock:
                entries = self._prepared.get(key)
                found = entries.pop() if entries else None
            if found is None or _running(found.box.pid):
                return found
            log.warning("container %s started ahead of time died; removed", found.box.name)
            self._drop([found])

    def drop_prepared(self, key: str) -> None:
        """Remove the containers started ahead of time under ``key`` (its snapshot is gone)."""
        with self._lock:
            entries = self._prepared.pop(key, [])
        self._drop(entries)

    def drop_idle(self, seconds: float) -> int:
        """Remove the containers started ahead of time that waited ``seconds`` or longer."""
        now = time.monotonic()
        with self._lock:
            stale = [e for es in self._prepared.values() for e in es if now - e.since >= seconds]
            for key, entries in list(self._prepared.items()):
                self._prepared[key] = [e for e in entries if e not in stale]
        self._drop(stale)
        return len(stale)

    def _drop(self, entries: Sequence[Started]) -> None:
        for entry in entries:
            entry.channel.close()
            self.dispose(entry.box)

    def prepared_total(self) -> int:
        with self._lock:
            return sum(len(entries) for entries in self._prepared.values())

    def prepared(self, key: str) -> int:
        with self._lock:
            return len(self._prepared.get(key, []))

    def prepared_bytes(self) -> int:
        """Resident memory of every process of the containers started ahead of time (what
        keeping them costs; a pool bounds their number)."""
        with self._lock:
            pids = [e.box.pid for es in self._prepared.values() for e in es]
        return sum(_tree_rss(pid) for pid in pids)

    def drop_all_prepared(self) -> None:
        with self._lock:
            entries = [e for es in self._prepared.values() for e in es]
            self._prepared.clear()
        self._drop(entries)

    def close(self) -> None:
        """Remove containers created ahead of time and unused skeletons; wait for
        background work."""
        with self._lock:
            self._closing = True
        self.drop_all_prepared()
        self.drain()
        with self._lock:
            unused, self._skeletons = self._skeletons, []
        for name in unused:
            _remove_dirs(self.boxes / name, self.work_dir / name)


def _remove_dirs(box: Path, protocol: Path) -> None:
    """A sandbox's box and protocol directories (no container, no mount). Idempotent."""
    shutil.rmtree(box, ignore_errors=True)
    delete_tree(protocol)


def _file_digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return "missing"


def _kill(pid: int) -> None:
    """SIGKILL a container's PID 1 and wait until it is dead (then so is all of its pid
    namespace: the kernel kills and reaps the rest before PID 1 may exit)."""
    if pid <= 0:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not _running(pid):
            return
        time.sleep(0.0005)
    raise _runc.RuncError(f"process {pid} did not die within 30 s of SIGKILL")


def _tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and its descendants (0 when it is gone)."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            total += process.memory_info().rss
    return total


def _log_failure(future: Future[Any]) -> None:
    error = future.exception()
    if error is not None:
        log.warning("runc background work failed: %s", error)


def _environment(image: Image, extra: Sequence[str]) -> list[str]:
    """The image's env, overridden by ``extra``, with HOSTNAME and HOME as Docker sets them."""
    merged: dict[str, str] = {"HOSTNAME": "sandbox"}
    for entry in [*image.env, *extra]:
        key, _, value = entry.partition("=")
        merged[key] = value
    merged.setdefault("HOME", "/root" if image.user in ("", "root", "0", "0:0") else "/")
    merged.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    return [f"{k}={v}" for k, v in merged.items()]


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _mb(value: object) -> int | None:
    number = _int(value)
    return None if number is None else number * 1024 * 1024
