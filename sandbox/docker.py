"""The Docker backend: one container per sandbox, snapshots at level ``fs`` or ``full``.

A container runs the persistent shell of :mod:`sandbox._docker_shell` as its PID 1 tree, with no
network unless asked, memory/pids/CPU limits, and a fixed hostname (an output must not depend on
which fork produced it). ``fs`` snapshots are ``docker commit`` plus the shell's state: cwd,
functions, every variable, options, aliases, umask (:mod:`snapshots.docker_fs`); ``full`` ones
add the processes through CRIU (:mod:`snapshots.docker_full`; on the runc path
:mod:`sandbox._runc_full`). A ``full`` fork must prove that it restored (its shell answers
with the boot id it had at checkpoint time); if it cannot, the fork starts in the snapshot's
``fs`` state, says why in ``sandbox.restore_fallback`` and is counted in ``backend.counters``.
Its processes are gone then; files and shell state are as snapshotted, so the caller may
replay what needs running processes.

What persists. In a live sandbox: all of the bash session (cwd, variables, functions, options,
jobs), since every ``bash`` call runs in one shell. After ``exit`` or a timeout the shell restarts
from the cwd, exported variables and functions saved after the last completed call (a timed-out
call's own ``cd``/``export`` are lost; its file changes and earlier background processes stay).
An ``fs`` fork gets files and the shell state (not jobs, not the ``pushd`` stack); a ``full``
fork gets all of it. Files keep their modification times to the second (Docker's tar).

What a fresh run would see: pids follow the history (the same in a fresh start, after
snapshots and fingerprints, in ``fs`` and ``full`` forks; see :mod:`sandbox._docker_shell`).
What background processes do runs on the clock, not on the history: a call is flagged
``nondeterministic`` (the engine then never serves it or its subtree as a plain hit) when,
at its start or end, one of them runs or holds the call output open, or when one wrote,
started or ended between the previous call and this one (:class:`sandbox._docker_state.Activity`).
A job that sleeps on a timer and acts during a later call is not seen.

Fingerprints (:meth:`DockerSandbox.fingerprint`): the files changed since the root image, read
from the overlay layers on the host (:mod:`sandbox._docker_state`), and the whole shell state;
None while a background process runs.

Containers, images and checkpoint directories carry the owning backend instance, its process and
its store (``snapshot_dir``) as labels: :meth:`DockerBackend.reconcile` removes what a crashed
tvcache left behind, and only that. tvcache must run as root on the Docker host: it reads the
protocol directories, signals container processes on timeouts and installs checkpoints into
``DockerRootDir``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from sandbox import _docker_shell as shell
from sandbox import _runc, _runc_full, _runc_full_mounts
from sandbox._docker_ahead import RestoreAhead
from sandbox._docker_state import Activity, Background, ContainerFiles
from sandbox._protocol import DoctorCheck, ReconcileReport
from sandbox._runc_runtime import Box, RuncFiles, RuncRuntime, Started
from sandbox._tool_runner import helper_files, shipped_modules
from sandbox._tools import LocalTool, ShellTool, ToolRegistry, default_tools, tool_entry
from sandbox._types import (
    JSON,
    Observation,
    RootSpec,
    ToolCall,
    ToolSpec,
    call_timeout,
)
from snapshots import (
    SnapshotError,
    SnapshotHandle,
    SnapshotRefusedError,
    TvcacheError,
    criu,
    docker_fs,
    docker_full,
)
from snapshots import _checkpoint_blob as checkpoint_blob
from snapshots import directory as sdir
from snapshots import registry as oci_registry
from snapshots._registry_sync import RegistrySync
from snapshots.docker_fs import (
    LABEL_KIND,
    LABEL_MANAGED,
    LABEL_OWNER,
    LABEL_SNAPSHOT,
    LABEL_STORE,
    DockerAPI,
    api_error,
    is_not_found,
)
from snapshots.overlay import OverlayDigests

log = logging.getLogger(__name__)

BACKEND_NAME = "docker"
DEFAULT_IMAGE = "tvcache/base:bookworm"
Level = Literal["fs", "full"]
Runtime = Literal["runc", "docker"]
RUNTIME_ENV = "TVCACHE_DOCKER_RUNTIME"
DEFAULT_OPTIONS: dict[str, JSON] = {
    "memory": "4g",
    "pids": 4096,
    "cpus": None,
    "network": False,
    "file_mb": 1024,
}
"""Limits and network of a sandbox unless ``RootSpec.options`` says otherwise. ``file_mb`` is
RLIMIT_FSIZE (the largest file a command can write: one command cannot fill the host's disk)."""
OPTIONS = (*DEFAULT_OPTIONS, "env", "sqlite_db")
_OPTIONS_HINT = (
    'e.g. {"memory": "1g", "pids": 512, "cpus": 1.0, "network": false, "file_mb": 1024, '
    '"env": {"K": "V"}, "sqlite_db": "db.sqlite"}; null means no limit'
)


class DockerBackendError(TvcacheError):
    """The Docker backend was misconfigured or misused (missing image, bad option, closed)."""


def _limit(value: JSON, *, integer: bool) -> bool:
    """None (no limit) or a positive number, an int if ``integer`` (never a bool)."""
    if value is None:
        return True
    if isinstance(value, bool) or not isinstance(value, int if integer else int | float):
        return False
    return float(value) > 0


def _check_options(options: Mapping[str, JSON]) -> dict[str, JSON]:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise DockerBackendError(
            f"unknown docker backend option(s) {', '.join(unknown)}", f"known: {', '.join(OPTIONS)}"
        )
    merged = {**DEFAULT_OPTIONS, **options}
    env, db, memory = merged.get("env", {}), merged.get("sqlite_db", "x"), merged["memory"]
    valid = {
        "memory": isinstance(memory, str) or _limit(memory, integer=True),
        "pids": _limit(merged["pids"], integer=True),
        "cpus": _limit(merged["cpus"], integer=False),
        "network": isinstance(merged["network"], bool),
        "file_mb": _limit(merged["file_mb"], integer=True),
        "env": isinstance(env, Mapping)
        and all(isinstance(k, str) and "=" not in k and isinstance(v, str) for k, v in env.items()),
        "sqlite_db": isinstance(db, str) and db != "",
    }
    for name, ok in valid.items():
        if not ok:
            raise DockerBackendError(f"bad docker option {name}={merged[name]!r}", _OPTIONS_HINT)
    return merged


def _file_limit(file_mb: JSON) -> list[Any] | None:
    """RLIMIT_FSIZE as a hard ulimit (container root lacks CAP_SYS_RESOURCE to raise it)."""
    if not isinstance(file_mb, int) or isinstance(file_mb, bool):
        return None
    from docker.types import Ulimit

    return [Ulimit(name="fsize", soft=file_mb * 1024 * 1024, hard=file_mb * 1024 * 1024)]


@dataclass(frozen=True, slots=True)
class _Config:
    """What a fork needs beyond the image: the options, the sqlite tool's root directory, and
    the root image's id (fingerprints are taken relative to it; "" in older snapshots)."""

    options: dict[str, JSON]
    root: str
    image: str = ""

    def to_dict(self) -> dict[str, JSON]:
        return {"options": self.options, "root": self.root, "image": self.image}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> _Config:
        return cls(dict(data["options"]), str(data["root"]), str(data.get("image", "")))


def _choose_runtime(asked: str | None, level: str) -> tuple[Runtime, str]:
    """runc or docker, and why: ``asked``, else ``$TVCACHE_DOCKER_RUNTIME``, else runc when it
    works here. Level ``full`` on runc checkpoints through runc and CRIU directly."""
    source = "asked for" if asked else RUNTIME_ENV + "="
    wanted = asked or os.environ.get(RUNTIME_ENV, "") or "auto"
    if wanted not in ("runc", "docker", "auto"):
        raise DockerBackendError(
            f"{RUNTIME_ENV}={wanted!r} is not a runtime", "use runc, docker or leave it unset"
        )
    if wanted == "docker":
        return "docker", f"{source}docker"
    missing = _runc.available()
    if missing is None and level == "full":
        missing = _runc_full_mounts.unavailable()
    if missing is not None:
        if wanted == "runc":
            raise DockerBackendError(
                f"the runc runtime cannot work here: {missing}", f"unset {RUNTIME_ENV}"
            )
        return "docker", f"runc cannot work here ({missing}); Docker is the fallback"
    if wanted == "auto":
        return "runc", f"runc works here (set {RUNTIME_ENV}=docker for the Docker path)"
    return "runc", f"{source}runc"


class _RestoreFailed(Exception):
    def __init__(self, category: str, reason: str) -> None:
        super().__init__(reason)
        self.category = category


class DockerSandbox:
    """A live container. Not thread-safe: one session drives it at a time.

    ``restore_fallback`` is None unless this is a ``full`` fork that could not restore the
    processes and started in the snapshot's ``fs`` state instead; it then says why.
    """

    def __init__(
        self,
        backend: DockerBackend,
        container_id: str,
        name: str,
        config: _Config,
        channel: shell.ShellChannel,
        boot_id: str,
        files: ContainerFiles | RuncFiles | None = None,
        box: Box | None = None,
    ) -> None:
        self._backend = backend
        self.box = box
        """The runc container (None on the Docker path)."""
        self._moving: Future[tuple[Box, tuple[shell.ShellChannel, str, RuncFiles]]] | None = None
        self._after_move: tuple[int | None, bool] = (None, False)
        self.container_id = container_id
        self._name = name
        self._config = config
        self._channel = channel
        self.boot_id = boot_id
        self.restore_fallback: str | None = None
        self.frozen = False
        """Paused (restored ahead of time, not handed out yet)."""
        self._closed = False
        self._after_last_call: Activity | None = None
        self._background: Background | None = None
        self._moved = False
        """The background wrote, came or went after the last call, before harness work."""
        self._files: ContainerFiles | RuncFiles = files or ContainerFiles(
            backend.api, backend.overlay, container_id, config.image
        )
        channel.set_pin(lambda last: shell.set_last_pid(self._files.init_pid, last))

    @property
    def sandbox_id(self) -> str:
        return self._name

    def run(self, call: ToolCall, timeout: float | None = None) -> Observation:
        """Run ``call``. Timeout: the call's ``timeout`` arg, else ``timeout``, else default."""
        self._check_open()
        tool = self._backend.tools.get(call.tool)
        args = tool.spec.validate(call.args)
        chosen = call_timeout(args, timeout if timeout is not None else self._backend.timeout)
        started, limit = time.perf_counter(), self._backend.max_output_bytes
        unstable = self._moved or self._activity().unstable(self._after_last_call)
        self._moved = False
        if isinstance(tool, ShellTool):  # bash and every command tool: the session shell
            command = tool.shell_command(args)
            observation = self._channel.bash(command, chosen, limit, self._interrupt)
        else:  # sqlite and every Python tool: python3 inside the container
            request = {
                "entry": tool_entry(tool),
                "args": dict(args),
                "root": self._config.root,
                "max_output_bytes": limit,
                "options": {"sqlite_db": "db.sqlite", **self._config.options},
                "timeout": chosen,
            }
            observation = self._channel.python_tool(request, chosen, self._interrupt)
        self._after_last_call = after = self._activity()
        return replace(
            observation,
            seconds=time.perf_counter() - started,
            nondeterministic=observation.nondeterministic or unstable or after.unstable(None),
        )

    def _activity(self) -> Activity:
        """What the background processes do now (see :class:`Activity`)."""
        if self._background is None:
            channel = self._channel
            self._background = Background(
                self._files.init_pid, channel.shell_pid, channel.directory / "log"
            )
        return self._background.sample()

    def settle(self, moved: bool = False) -> None:
        """Take now as the end of the last call: harness work (a checkpoint, a restore) is
        not the background's doing. ``moved``: it did something before that work, which the
        next call must not forget."""
        self._moved = self._moved or moved
        self._after_last_call = self._activity()

    def _interrupt(self) -> None:
        """End the running call: freeze the container, SIGKILL the call's processes, thaw."""
        self._backend.count("timeouts")
        api, runc = self._backend.api, self._backend.runc
        try:
            if self.box is not None and runc is not None:
                runc.pause(self.container_id)
            else:
                docker_fs.pause(api, self.container_id)
        except Exception as error:  # the container is gone: nothing left to kill
            log.warning("timeout in %s: cannot pause: %s", self._name, api_error(error))
            return
        try:
            shell_pid, keep = self._channel.current_call()
            if shell_pid is not None:
                shell.kill_call(self._files.init_pid, shell_pid, keep)
        finally:
            if self.box is not None and runc is not None:
                runc.resume(self.container_id)
            else:
                api.unpause(self.container_id)

    def pin_pid(self, last_pid: object) -> None:
        """Continue the pid counter from ``last_pid`` (a snapshot's), so that the same history
        gives the same pids in a fork as in a fresh run. Anything but an int is ignored."""
        if isinstance(last_pid, int) and not isinstance(last_pid, bool):
            self._channel.pin_pid(last_pid)

    @property
    def init_pid(self) -> int:
        """The container's PID 1 on the host."""
        self._arrive()
        return self._files.init_pid

    def background_processes(self) -> int:
        """Processes besides the supervisor (PID 1) and the session shell."""
        self._arrive()
        return self._files.processes()

    def fingerprint(self) -> str | None:
        """The files changed since the root image (see :mod:`sandbox._docker_state`) and the
        whole shell state: cwd, functions, every variable, options, aliases, umask.

        None while a background process runs (what it will do is in no file), at either
        level, and where the layers cannot be read (a flattened snapshot, not overlay2).
        """
        self._check_open()
        if self.background_processes():
            return None
        files = self._files.digest()
        if files is None:
            return None
        state = self._channel.full_state()
        text = f"{files}\0{state.cwd}\0{state.functions}\0{state.vars}"
        return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:32]

    def snapshot(self, snapshot_id: str) -> SnapshotHandle:
        """Checkpoint at the backend's level; the sandbox keeps running unchanged.

        At ``full``, a checkpoint CRIU refuses gives an ``fs`` handle whose ``full_failure``
        says why (counted as ``full_snapshot_fallbacks``).
        """
        self._check_open()
        backend = self._backend
        running = self.background_processes()
        if running and backend.level == "fs":
            raise SnapshotRefusedError(
                f"{running} background process(es) run in {self._name}: level fs keeps files only",
                "use level full to checkpoint processes; tvcache replays from an earlier snapshot",
            )
        moved = self._moved or self._activity().unstable(self._after_last_call)
        meta: dict[str, Any] = {
            "shell": self._channel.full_state().to_dict(),
            "config": self._config.to_dict(),
            "processes": running,
            "last_pid": self._channel.last_pid,
            "background_moved": moved,
            "home": backend.home,
        }
        labels = backend.labels("snapshot", {LABEL_SNAPSHOT: snapshot_id})
        api, container, depth = backend.api, self.container_id, backend.flatten_depth
        try:
            if self.box is not None and backend.level == "full":
                handle = self._checkpoint_runc(snapshot_id, {**meta, "boot": self.boot_id})
            elif self.box is not None:
                handle = self._freeze(snapshot_id, meta)
            elif backend.level == "fs":
                if backend.registry is not None:
                    meta["registry"] = backend.registry.meta()
                handle = docker_fs.take(
                    api, container, snapshot_id, labels=labels, meta=meta, flatten_depth=depth
                )
            else:
                if backend.registry is not None:
                    meta["registry"] = backend.registry.meta()
                handle = docker_full.take(
                    api,
                    container,
                    snapshot_id,
                    store=backend.snapshot_dir,
                    labels=labels,
                    meta={**meta, "boot": self.boot_id},
                    flatten_depth=depth,
                    while_paused=self._channel.truncate_log,
                )
        except TvcacheError:
            raise
        except Exception as error:  # the SDK's errors: the container died, the disk is full
            raise SnapshotError(
                f"snapshot {snapshot_id} of {self._name} failed: {api_error(error)}",
                "check that the container still runs (else fork a new sandbox) and disk space",
            ) from error
        finally:
            if self._moving is not None:  # a runc snapshot: the sandbox goes on in a new container
                self._after_move = (meta["last_pid"], moved)
            else:
                self._channel.pin_pid(meta["last_pid"])  # whatever the checkpoint did to it
                self.settle(moved)
        if "full_failure" in handle.meta:
            log.warning("snapshot %s is fs only: %s", snapshot_id, handle.meta["full_failure"])
            backend.count("full_snapshot_fallbacks")
            if running:
                backend.delete_snapshot(handle)
                raise SnapshotRefusedError(
                    f"CRIU refused {self._name} ({handle.meta['full_failure']}) while "
                    f"{running} background process(es) run: an fs snapshot would lose them",
                    "tvcache replays from an earlier snapshot instead",
                )
        if handle.meta.get("runtime") != "runc" and backend.registry is not None:  # queued
            backend.registry.push_image_later(snapshot_id, handle.location)
            backend.share_checkpoint(handle)
        backend.count("snapshots")
        if handle.meta.get("flattened"):
            backend.count("flattens")
        return handle

    def _freeze(self, snapshot_id: str, meta: dict[str, Any]) -> SnapshotHandle:
        """An ``fs`` snapshot on the runc path: the upper directory becomes a layer (no copy)
        and this sandbox goes on over a new upper directory stacked on it, with its shell
        state restored as in a fork (at level ``fs`` the shell is its only process)."""
        runc, box = self._backend.runc, self.box
        assert runc is not None and box is not None
        self._channel.close()
        state = shell.SessionState.from_dict(meta["shell"])
        layer = runc.freeze(box, retire=False)  # the move removes it once it is done
        remote = self._backend.registry
        if remote is not None:  # pushed in the background: a snapshot costs no more
            meta = {**meta, "registry": remote.meta()}
            remote.push_later(snapshot_id, layer, self._config.image)
        self._moving = runc.launch(self._config.image, self._config.options, state, layer, box)
        handle = SnapshotHandle(
            snapshot_id=snapshot_id,
            backend=BACKEND_NAME,
            level="fs",
            location=f"layer:{layer}",
            size_bytes=runc.layers.size(layer),
            meta={**meta, "runtime": "runc", "layer": layer, "depth": len(runc.stack_of(layer))},
        )
        return handle

    def _checkpoint_runc(self, snapshot_id: str, meta: dict[str, Any]) -> SnapshotHandle:
        """A ``full`` snapshot on the runc path (:mod:`sandbox._runc_full`): the upper
        directory copied as a layer, the processes dumped; this sandbox runs on unchanged."""
        runc, box = self._backend.runc, self.box
        assert runc is not None and box is not None
        images = _runc_full.checkpoint_path(self._backend.snapshot_dir, snapshot_id)
        layer, failure = _runc_full.take(runc, box, images, self._channel.truncate_log)
        meta = {**meta, "runtime": "runc", "layer": layer, "depth": len(runc.stack_of(layer))}
        size = runc.layers.size(layer)
        if failure is not None:
            meta["full_failure"] = failure
        else:
            meta["checkpoint_bytes"] = sdir.size_on_disk(images)
            meta["checkpoint"] = checkpoint_blob.name_in(self._backend.snapshot_dir, images)
            size += meta["checkpoint_bytes"]
        remote = self._backend.registry
        if remote is not None:  # pushed in the background, as an fs layer snapshot
            meta["registry"] = remote.meta()
            remote.push_later(snapshot_id, layer, self._config.image)
        level = "fs" if failure is not None else "full"
        handle = SnapshotHandle(snapshot_id, BACKEND_NAME, level, f"layer:{layer}", size, meta)
        self._backend.share_checkpoint(handle)
        return handle

    def _arrive(self) -> None:
        """Finish the move a runc snapshot started: go on in the new container."""
        moving, self._moving = self._moving, None
        if moving is None:
            return
        try:
            moved, (channel, boot, files) = moving.result()
        except Exception as error:
            self._closed = True
            raise DockerBackendError(
                f"sandbox {self._name} could not go on after its snapshot: {error}",
                "fork the snapshot instead",
            ) from error
        self.box, self.container_id, self._channel, self._files = moved, moved.name, channel, files
        self.boot_id, self._background = boot, None
        channel.set_pin(lambda last: shell.set_last_pid(files.init_pid, last))
        last_pid, moved_before = self._after_move
        self._channel.pin_pid(last_pid)
        self.settle(moved_before)

    def _check_open(self) -> None:
        if self._closed:
            raise DockerBackendError(f"sandbox {self._name} is closed", "fork or start a new one")
        self._arrive()

    def close(self) -> None:
        """Remove the container and its protocol directory. Idempotent."""
        if not self._closed:
            with contextlib.suppress(DockerBackendError):  # a failed move left nothing
                self._arrive()
            self._closed = True
            self._channel.close()
            if self.box is not None and self._backend.runc is not None:
                if self.frozen:  # a frozen process does not die of SIGKILL until thawed
                    self._backend.runc.resume(self.container_id)
                self._backend.runc.dispose(self.box)
            else:
                self._backend.discard(self.container_id, self._channel.directory)

    def __enter__(self) -> DockerSandbox:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class DockerBackend:
    """Sandboxes as containers; snapshots as committed images, plus CRIU checkpoints at ``full``.

    ``snapshot_dir`` holds the checkpoint directories (on the mount of DockerRootDir, forks
    hard-link them instead of copying) and names this store in every label. ``work_dir`` holds
    the live sandboxes' protocol directories (default ``snapshot_dir/../sandboxes``). Images
    deeper than ``flatten_depth`` layers are flattened. ``counters`` counts starts, forks,
    snapshots, flattens, timeouts, full restores and fallbacks; ``fallback_reasons`` the kinds
    of restore fallbacks. ``api`` is a ``docker.APIClient`` (default: from the environment).
    ``restore_ahead`` forks of each hot ``full`` snapshot are kept restored and paused, so a
    fork only unpauses one (:mod:`sandbox._docker_ahead`; 0, the default, is off); call
    :meth:`close` to remove them. ``registry`` (else ``$TVCACHE_REGISTRY``) is an OCI registry
    URL: ``fs`` snapshots (layer stacks, committed images) are pushed there in the background
    and pulled by a fork that lacks them (:mod:`snapshots._registry_sync`;
    ``registry_budget_bytes`` is its own budget).
    ``oci`` picks the runc path's OCI runtime (``runc`` or ``crun``; default
    ``$TVCACHE_OCI_RUNTIME``, else crun where installed).
    """

    def __init__(
        self,
        snapshot_dir: Path,
        level: Level = "fs",
        *,
        work_dir: Path | None = None,
        max_output_bytes: int = 64 * 1024,
        default_timeout: float = 60.0,
        flatten_depth: int = docker_fs.FLATTEN_DEPTH,
        ready_timeout: float = 30.0,
        api: DockerAPI | None = None,
        tools: Iterable[LocalTool] = (),
        runtime: Runtime | None = None,
        restore_ahead: int = 0,
        registry: str | None = None,
        registry_budget_bytes: int | None = None,
        registry_gc_config: Path | None = None,
        oci: str | None = None,
    ) -> None:
        if level not in ("fs", "full"):
            raise DockerBackendError(f"unknown snapshot level {level!r}", "use 'fs' or 'full'")
        if not 1 <= flatten_depth <= 120:
            raise DockerBackendError(
                f"flatten_depth {flatten_depth} is out of range",
                "use 1..120: Docker fails at 125 layers",
            )
        self.level: Level = level
        self.snapshot_dir = Path(snapshot_dir).resolve()
        self.work_dir = Path(work_dir or self.snapshot_dir.parent / "sandboxes").resolve()
        self.snapshot_dir.mkdir(parents=True, exist_ok=True)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.home = sdir.home_of(self.snapshot_dir)
        """Where this backend's snapshots live (host and snapshot directory); in every handle."""
        self.max_output_bytes = max_output_bytes
        self.timeout = default_timeout
        self.flatten_depth = flatten_depth
        self.ready_timeout = ready_timeout
        self.api: DockerAPI = api if api is not None else docker_fs.connect()
        self.instance = uuid.uuid4().hex[:16]
        names = (
            "starts",
            "forks",
            "snapshots",
            "flattens",
            "timeouts",
            "full_restores",
            "full_restore_fallbacks",
            "full_snapshot_fallbacks",
            "full_ahead_takes",
        )
        self.counters: dict[str, int] = dict.fromkeys(names, 0)
        self.fallback_reasons: dict[str, int] = {}
        self._lock = threading.Lock()
        self._doomed: set[str] = set()
        self._docker_root: Path | None = None
        self.tools = ToolRegistry([*default_tools(), *tools])
        self._files = helper_files(shipped_modules(self.tools))
        self._process = docker_fs.process_labels()
        self.overlay = OverlayDigests()
        self.runtime, self.runtime_reason = _choose_runtime(runtime, level)
        self.runc: RuncRuntime | None = None
        if self.runtime == "runc":
            self.runc = RuncRuntime(
                self.api,
                self.snapshot_dir,
                self.work_dir,
                self._files,
                self.overlay,
                ready_timeout,
                flatten_depth,
                self.labels("sandbox"),
                self.count,
                # level full checkpoints through runc (Debian's crun has no CRIU support)
                oci if oci is not None or level == "fs" else "runc",
                full=level == "full",
            )
        self.registry: RegistrySync | None = None
        remote = oci_registry.from_env(registry)
        if remote is not None:
            self.registry = RegistrySync(
                remote,
                self.runc.layers if self.runc is not None else None,
                api=self.api,
                budget_bytes=registry_budget_bytes,
                gc_config=registry_gc_config,
            )
        self.ahead: RestoreAhead[DockerSandbox] | None = None
        if restore_ahead > 0:
            self.ahead = RestoreAhead(self._restore_frozen, self._thaw, per_snapshot=restore_ahead)

    @property
    def name(self) -> str:
        return BACKEND_NAME

    def tool_specs(self) -> Mapping[str, ToolSpec]:
        """The same tools, specs and keys as the local backend's (plus those given)."""
        return self.tools.specs()

    def _image(self, spec: RootSpec) -> tuple[str, dict[str, Any]]:
        if spec.backend != BACKEND_NAME:
            raise DockerBackendError(f"root {spec.task_id!r} is for backend {spec.backend!r}")
        image = spec.template or DEFAULT_IMAGE
        try:
            return image, docker_fs.inspect_image(self.api, image)
        except Exception as error:
            if not is_not_found(error):
                raise DockerBackendError(f"inspecting image {image}: {api_error(error)}") from error
        hint = "build or import it first (no registry pull is attempted)"
        if image == DEFAULT_IMAGE:
            hint = "build it: bash docker/base/build.sh"
        raise DockerBackendError(f"image {image!r} of task {spec.task_id!r} does not exist", hint)

    def root_identity(self, spec: RootSpec) -> str:
        """The image id (a content digest) of ``spec.template``, with the backend's name."""
        _check_options(spec.options)  # refused at open, not at every call
        return f"{BACKEND_NAME}:{self._image(spec)[1]['Id']}"

    def start(self, spec: RootSpec) -> DockerSandbox:
        image, info = self._image(spec)
        options = _check_options(spec.options)
        config = _Config(options, (info.get("Config") or {}).get("WorkingDir") or "/", info["Id"])
        env = options.get("env") or {}
        assert isinstance(env, Mapping)
        extra = [f"{k}={v}" for k, v in env.items()]
        if self._uses_runc(config):
            sandbox = self._launch_runc(config, None, extra, [], key=f"root:{info['Id']}")
        else:
            sandbox = self._launch(image, config, None, extra)
        self.count("starts")
        return sandbox

    def _uses_runc(self, config: _Config) -> bool:
        """The runc path serves this sandbox: it is chosen and the sandbox has no network."""
        return self.runc is not None and not config.options.get("network")

    def _launch_runc(
        self,
        config: _Config,
        state: shell.SessionState | None,
        env: list[str],
        stack: list[str],
        key: str,
        last_pid: object = None,
    ) -> DockerSandbox:
        """A sandbox on the runc path, its pid counter at ``last_pid``: a container started
        ahead of time under ``key`` if there is one (a hand-out: nothing to wait for), else
        created and started now."""
        runc = self.runc
        assert runc is not None
        ready = runc.take_prepared(key)
        if ready is not None:
            box, channel, boot, files = ready.box, ready.channel, ready.boot, ready.files
            box.phases.clear()  # made ahead of time: not this fork's cost
        else:
            box = runc.create(runc.image(config.image), config.options, state, env, stack)
            channel, boot, files = runc.start(box, (state or shell.SessionState()).shell_pid())
        sandbox = DockerSandbox(self, box.name, box.name, config, channel, boot, files, box)
        if ready is None or ready.pinned is None or ready.pinned != last_pid:
            sandbox.pin_pid(last_pid)
        return sandbox

    def prefork(self, handle: SnapshotHandle, count: int = 1) -> int:
        """Start up to ``count`` containers of ``handle`` ahead of time (runc path, level
        ``fs``): created, started, the shell idle in the snapshot's state, no call run, so a
        fork of it only takes one over. Returns how many are ready."""
        runc = self.runc
        if runc is None or handle.meta.get("runtime") != "runc" or handle.level != "fs":
            return 0  # level full: restore_ahead keeps restored forks instead
        config = _Config.from_dict(handle.meta["config"])
        state = shell.SessionState.from_dict(handle.meta["shell"])
        layer = self._local_layer(handle)  # pulled from the registry if it is not here
        key = f"layer:{layer}"
        last = handle.meta.get("last_pid")
        pinned = last if isinstance(last, int) and not isinstance(last, bool) else None
        while runc.prepared(key) < count:
            stack = runc.stack_of(layer)
            box = runc.create(runc.image(config.image), config.options, state, [], stack)
            channel, boot, files = runc.start(box, state.shell_pid())
            if pinned is not None:  # now, not at the hand-out (nothing forks in it until then)
                try:
                    shell.set_last_pid(box.pid, pinned)
                except BaseException:
                    channel.close()
                    runc.discard(box)
                    raise
                channel.last_pid = pinned
            runc.prepare(key, Started(box, channel, boot, files, pinned))
        return runc.prepared(key)

    def preforked(self) -> dict[str, int]:
        """The containers :meth:`prefork` keeps: how many, and their resident bytes."""
        if self.runc is None:
            return {"count": 0, "bytes": 0}
        return {"count": self.runc.prepared_total(), "bytes": self.runc.prepared_bytes()}

    def shrink_preforked(self, idle_seconds: float) -> int:
        """Remove the containers :meth:`prefork` started that waited ``idle_seconds``."""
        return 0 if self.runc is None else self.runc.drop_idle(idle_seconds)

    def drop_preforked(self) -> None:
        """Remove the containers :meth:`prefork` started that no fork took."""
        if self.runc is not None:
            self.runc.drop_all_prepared()

    def close(self) -> None:
        """Remove what was prepared ahead of time (containers created, forks restored) and
        wait for background flattens; snapshots and live sandboxes stay."""
        if self.ahead is not None:
            self.ahead.close()
        if self.registry is not None:
            self.registry.drain()
        if self.runc is not None:
            self.runc.close()
            self.runc.gc()

    def fork(self, handle: SnapshotHandle) -> DockerSandbox:
        """A new sandbox in the state of ``handle``; see ``restore_fallback`` for ``full``."""
        if handle.backend != BACKEND_NAME:
            raise SnapshotError(f"snapshot {handle.snapshot_id} belongs to {handle.backend!r}")
        config = _Config.from_dict(handle.meta["config"])
        state = shell.SessionState.from_dict(handle.meta["shell"])
        runc = handle.meta.get("runtime") == "runc"
        if runc and handle.level != "full":
            return self._fork_layer(handle, config, state)
        if runc:
            self._layer_runtime(handle)
        else:
            if self.registry is not None and "registry" in handle.meta:
                self.registry.ensure_image(handle.snapshot_id, handle.location)
            self._check_image(handle)
        reason: str | None = None
        if handle.level == "full":
            ready = self.ahead.take(handle) if self.ahead is not None else None
            if ready is not None:
                self.count("full_ahead_takes")
            restore = self._restore_runc if runc else self._restore
            try:
                sandbox = ready or restore(handle, config, state)
            except _RestoreFailed as failure:
                reason = str(failure)
                log.warning("full restore of %s fell back to fs: %s", handle.snapshot_id, reason)
                self.count("full_restore_fallbacks")
                self.count(failure.category, self.fallback_reasons)
                running = int(handle.meta.get("processes", 0))
                if running:
                    raise SnapshotError(
                        f"restore of {handle.snapshot_id} failed ({reason}) and its "
                        f"{running} background process(es) cannot come back at level fs",
                        "tvcache forks an earlier snapshot and replays instead",
                    ) from failure
            else:
                self.count("full_restores")
                self.count("forks")
                sandbox.pin_pid(handle.meta.get("last_pid"))
                sandbox.settle(bool(handle.meta.get("background_moved")))
                return sandbox
        if runc:
            sandbox = self._fork_layer(handle, config, state)
            sandbox.restore_fallback = reason
            return sandbox
        sandbox = self._launch(handle.location, config, state)
        sandbox.restore_fallback = reason
        sandbox.pin_pid(handle.meta.get("last_pid"))
        sandbox.settle(bool(handle.meta.get("background_moved")))  # its files may show it
        self.count("forks")
        return sandbox

    def _check_image(self, handle: SnapshotHandle) -> None:
        try:
            docker_fs.inspect_image(self.api, handle.location)
        except Exception as error:
            raise SnapshotError(
                f"image {handle.location} of snapshot {handle.snapshot_id} is gone: "
                f"{api_error(error)}",
                "drop the record (reconcile reports these as missing)",
            ) from error

    def _fork_layer(
        self, handle: SnapshotHandle, config: _Config, state: shell.SessionState
    ) -> DockerSandbox:
        """A fork of a layer snapshot: a new upper directory over the snapshot's stack."""
        runc = self._layer_runtime(handle)
        layer = self._local_layer(handle)
        stack, last_pid = runc.stack_of(layer), handle.meta.get("last_pid")
        sandbox = self._launch_runc(config, state, [], stack, f"layer:{layer}", last_pid)
        sandbox.settle(bool(handle.meta.get("background_moved")))
        self.count("forks")
        return sandbox

    def _layer_runtime(self, handle: SnapshotHandle) -> RuncRuntime:
        if self.runc is None:
            raise SnapshotError(
                f"snapshot {handle.snapshot_id} is a runc layer; this backend uses Docker",
                f"set {RUNTIME_ENV}=runc (or drop the snapshot)",
            )
        return self.runc

    def _restore_runc(
        self, handle: SnapshotHandle, config: _Config, state: shell.SessionState
    ) -> DockerSandbox:
        """A runc container restored from the checkpoint of ``handle`` over its layer,
        proven by its boot id (as :meth:`_restore`)."""
        runc = self._layer_runtime(handle)
        stack = runc.stack_of(self._local_layer(handle))
        try:
            images = self.checkpoint_dir(handle)  # pulled when another host took it
            box = runc.create(
                runc.image(config.image),
                config.options,
                replace(state, vars=""),  # a restart after a timeout needs the rest
                [],
                stack,
                restore=lambda b: _runc_full.restore(b, images),
            )
        except (SnapshotError, OSError) as error:
            raise _RestoreFailed("restore_failed", str(error)) from error
        channel: shell.ShellChannel | None = None
        try:
            channel = shell.ShellChannel(box.directory, runc.alive(box.name), self.ready_timeout)
            boot = self._prove_restored(channel, handle)
        except BaseException:
            if channel is not None:
                channel.close()
            runc.discard(box)
            raise
        files = runc.files(box)
        return DockerSandbox(self, box.name, box.name, config, channel, boot, files, box)

    def _local_layer(self, handle: SnapshotHandle) -> str:
        """The top layer of a layer snapshot, pulled from the registry if it is not here."""
        layer = str(handle.meta["layer"])
        if self.registry is not None and "registry" in handle.meta:
            self.registry.ensure(handle.snapshot_id, layer)
        return layer

    def delete_snapshot(self, handle: SnapshotHandle) -> None:
        """Remove the checkpoint and the image (later, while a container still uses it); a
        copy in the registry stays (the registry's own budget removes it)."""
        if handle.backend != BACKEND_NAME:
            return
        if handle.meta.get("runtime") == "runc":
            if self.ahead is not None:
                self.ahead.drop(handle.snapshot_id)
            docker_full.delete(handle, self.snapshot_dir)  # its checkpoint directory (full)
            if self.runc is not None:
                layer = str(handle.meta["layer"])
                self.runc.drop_prepared(f"layer:{layer}")
                self.runc.layers.delete(layer)
                self.runc.gc()
            return
        if self.ahead is not None:
            self.ahead.drop(handle.snapshot_id)
        docker_full.delete(handle, self.snapshot_dir)
        if not docker_fs.remove_image(self.api, handle.location):
            with self._lock:
                self._doomed.add(handle.location)

    # --------------------------------------------------------------- containers
    def labels(self, kind: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The labels of everything this backend instance creates."""
        return {
            LABEL_MANAGED: "true",
            LABEL_OWNER: self.instance,
            LABEL_STORE: str(self.snapshot_dir),
            LABEL_KIND: kind,
            **self._process,
            **(extra or {}),
        }

    def count(self, name: str, counters: dict[str, int] | None = None) -> None:
        with self._lock:
            target = self.counters if counters is None else counters
            target[name] = target.get(name, 0) + 1

    def _create(
        self, image: str, config: _Config, state: shell.SessionState | None, env: list[str]
    ) -> tuple[str, str, Path]:
        """A created (not started) container and its protocol directory."""
        name = f"tvcache-{uuid.uuid4().hex[:16]}"
        directory = self.work_dir / name
        shell.prepare(directory, state, self._files)
        options, cpus = config.options, config.options.get("cpus")
        host_config = self.api.create_host_config(
            binds={str(directory): {"bind": shell.MOUNT, "mode": "rw"}},
            network_mode="bridge" if options.get("network") else "none",
            mem_limit=options.get("memory"),
            pids_limit=options.get("pids"),
            ulimits=_file_limit(options.get("file_mb")),
            nano_cpus=int(float(cpus) * 1e9) if isinstance(cpus, int | float) else None,
        )
        try:
            created = self.api.create_container(
                image,
                command=shell.container_command(),
                entrypoint=[""],
                name=name,
                hostname="sandbox",
                labels=self.labels("sandbox"),
                environment=env or None,
                host_config=host_config,
            )
        except Exception as error:
            sdir.delete_tree(directory)
            raise DockerBackendError(
                f"creating a container from {image} failed: {api_error(error)}",
                "check `docker info`",
            ) from error
        return str(created["Id"]), name, directory

    def _launch(
        self,
        image: str,
        config: _Config,
        state: shell.SessionState | None,
        env: list[str] | None = None,
    ) -> DockerSandbox:
        """A container started cold; its shell starts in ``state`` (or the image's defaults)."""
        container, name, directory = self._create(image, config, state, env or [])
        channel: shell.ShellChannel | None = None
        files = ContainerFiles(self.api, self.overlay, container, config.image)
        try:
            self.api.start(container)
            channel = shell.ShellChannel(directory, self._alive(container), self.ready_timeout)
            channel.go(files.init_pid, (state or shell.SessionState()).shell_pid())
            boot = channel.ping(self.ready_timeout)
        except BaseException as error:
            self.discard(container, directory, channel)
            if isinstance(error, TvcacheError) or not isinstance(error, Exception):
                raise
            raise DockerBackendError(
                f"starting a sandbox from {image} failed: {api_error(error)}",
                "the image needs bash",
            ) from error
        return DockerSandbox(self, container, name, config, channel, boot, files)

    def _restore(
        self, handle: SnapshotHandle, config: _Config, state: shell.SessionState
    ) -> DockerSandbox:
        """A container restored from the checkpoint of ``handle``, proven by its boot id."""
        # ``state`` is also written for the restored shell: a restart after a timeout needs it,
        # but not its ``vars`` (the restored shell has them live; a restart does without).
        container, name, directory = self._create(
            handle.location, config, replace(state, vars=""), []
        )
        channel: shell.ShellChannel | None = None
        try:
            try:
                source = self.checkpoint_dir(handle) / docker_full.CHECKPOINT
                marker = docker_full.install(
                    source, self.docker_root(), container, self.snapshot_dir
                )
                docker_full.start(self.api, container, marker)
            except (SnapshotError, OSError) as error:
                raise _RestoreFailed("restore_failed", str(error)) from error
            channel = shell.ShellChannel(directory, self._alive(container), self.ready_timeout)
            boot = self._prove_restored(channel, handle)
        except BaseException:
            self.discard(container, directory, channel)
            raise
        return DockerSandbox(self, container, name, config, channel, boot)

    def _prove_restored(self, channel: shell.ShellChannel, handle: SnapshotHandle) -> str:
        """The restored shell's boot id, which must be the checkpoint's: only a real restore
        keeps the supervisor's in-memory id (a cold start makes a new one)."""
        try:
            boot = channel.ping(min(self.ready_timeout, 10.0))
        except shell.ShellError as error:
            raise _RestoreFailed("shell_silent", f"restored shell is silent: {error}") from None
        if boot != handle.meta.get("boot"):
            raise _RestoreFailed(
                "not_restored",
                f"the shell answers with boot id {boot}, the checkpoint had "
                f"{handle.meta.get('boot')}: its processes were not restored",
            )
        return boot

    def checkpoint_dir(self, handle: SnapshotHandle) -> Path:
        """The checkpoint directory of the ``full`` snapshot ``handle`` on this host, pulled
        from the registry when another host took it (raises SnapshotError when it is neither
        here nor there, or the handle records none)."""
        found = checkpoint_blob.locate(self.snapshot_dir, handle.meta.get("checkpoint"))
        if found is None:
            raise SnapshotError(f"snapshot {handle.snapshot_id} records no checkpoint")
        name = str(handle.meta["checkpoint"])
        if self.registry is not None and "registry" in handle.meta and not os.path.isabs(name):
            self.registry.ensure_checkpoint(handle.snapshot_id, self.snapshot_dir, name)
        return found

    def share_checkpoint(self, handle: SnapshotHandle) -> None:
        """Queue the push of the checkpoint directory of ``handle`` (if it has one) to the
        registry, beside its image or stack: a fork on another host pulls it."""
        name = str(handle.meta.get("checkpoint") or "")
        if self.registry is not None and name and not os.path.isabs(name):
            self.registry.push_checkpoint_later(handle.snapshot_id, self.snapshot_dir, name)

    def _restore_frozen(self, handle: SnapshotHandle) -> DockerSandbox:
        """A restore of ``handle`` done ahead of time, paused until :meth:`_thaw` hands it out."""
        config = _Config.from_dict(handle.meta["config"])
        state = shell.SessionState.from_dict(handle.meta["shell"])
        if handle.meta.get("runtime") == "runc":
            sandbox = self._restore_runc(handle, config, state)
        else:
            sandbox = self._restore(handle, config, state)
        try:
            if sandbox.box is not None:
                _runc_full.pause(self._layer_runtime(handle), sandbox.container_id)
            else:
                docker_fs.pause(self.api, sandbox.container_id)
            sandbox.frozen = True
        except BaseException:
            sandbox.close()
            raise
        return sandbox

    def _thaw(self, sandbox: DockerSandbox) -> None:
        if sandbox.box is not None and self.runc is not None:
            _runc_full.resume(self.runc, sandbox.container_id)
        else:
            self.api.unpause(sandbox.container_id)
        sandbox.frozen = False

    def discard(
        self, container: str, directory: Path, channel: shell.ShellChannel | None = None
    ) -> None:
        """Remove a container and its protocol directory; retry deferred image removals."""
        if channel is not None:
            channel.close()
        try:
            self.api.remove_container(container, force=True, v=True)
        except Exception as error:
            if not is_not_found(error) and "in progress" not in api_error(error):
                raise DockerBackendError(
                    f"removing container {container[:12]}: {api_error(error)}"
                ) from error
        sdir.delete_tree(directory)
        with self._lock:
            doomed = list(self._doomed)
        for ref in doomed:
            if docker_fs.remove_image(self.api, ref):
                with self._lock:
                    self._doomed.discard(ref)

    def _alive(self, container: str) -> Callable[[], bool]:
        def alive() -> bool:
            try:
                return bool(self.api.inspect_container(container)["State"]["Running"])
            except Exception as error:
                if is_not_found(error):
                    return False
                raise

        return alive

    def docker_root(self) -> Path:
        if self._docker_root is None:
            self._docker_root = Path(self.api.info()["DockerRootDir"])
        return self._docker_root

    # -------------------------------------------------------------- maintenance
    def _orphaned(self, labels: Mapping[str, str], *, own: bool) -> bool:
        """Left behind: made by a dead process, or (``own``) by this instance and unrecorded."""
        if labels.get(LABEL_OWNER) == self.instance:
            return own
        return not docker_fs.creator_alive(labels)

    def reconcile(self, known: Mapping[str, SnapshotHandle]) -> ReconcileReport:
        """Remove what tvcache left behind in this store; report records whose image is gone.

        Removed (reported as ``container:<name>``, ``image:<snapshot id>``,
        ``checkpoint:<dir>``, ``dir:<name>``, ``unpacked:<dir>``): containers of dead processes;
        snapshot images and checkpoint directories no handle in ``known`` names, unless a live
        other tvcache process made them; protocol directories without a container; containerd's
        unpacked copies of this store's checkpoints whose container is gone. Other stores'
        objects and anything unlabelled are never touched. Call it at start-up: a snapshot this
        instance is taking right now counts as an orphan.
        """
        mine = {h.snapshot_id: h for h in known.values() if h.backend == BACKEND_NAME}
        layered = {sid: h for sid, h in mine.items() if h.meta.get("runtime") == "runc"}
        mine = {sid: h for sid, h in mine.items() if sid not in layered}
        report = ReconcileReport()
        live_runc = self._reconcile_runc(layered, report)
        label = f"{LABEL_STORE}={self.snapshot_dir}"
        for container in self.api.containers(all=True, filters={"label": label}):
            if self._orphaned(container.get("Labels") or {}, own=False):
                name = container["Names"][0].lstrip("/")
                self.discard(container["Id"], self.work_dir / name)
                report.orphans_removed.append(f"container:{name}")
        removed, present = docker_fs.sweep_images(
            self.api, str(self.snapshot_dir), mine, lambda labels: self._orphaned(labels, own=True)
        )
        report.orphans_removed.extend(f"image:{sid}" for sid in removed)
        removed = docker_full.sweep(
            self.snapshot_dir, mine, lambda labels: self._orphaned(labels, own=True)
        )
        report.orphans_removed.extend(f"checkpoint:{name}" for name in removed)
        managed = self.api.containers(all=True, filters={"label": f"{LABEL_MANAGED}=true"})
        removed = docker_full.sweep_unpacked(self.snapshot_dir, {c["Id"] for c in managed})
        report.orphans_removed.extend(f"unpacked:{name}" for name in removed)
        live = {container["Names"][0].lstrip("/") for container in managed} | live_runc
        for entry in sorted(self.work_dir.iterdir()):
            created_now = time.time() - entry.lstat().st_ctime < 60  # its container may follow
            if entry.name.startswith("tvcache-") and entry.name not in live and not created_now:
                sdir.delete_tree(entry)
                report.orphans_removed.append(f"dir:{entry.name}")
        report.missing.extend(
            sorted(
                sid
                for sid, handle in mine.items()
                if handle.location not in present
                and handle.meta.get("image") not in present
                and self._judges(handle)
            )
        )
        return report

    def _judges(self, handle: SnapshotHandle) -> bool:
        """Whether a snapshot not on this host is missing for this backend to report: one it
        took (its home) or a record from before homes, unless pushed to a registry this backend
        pulls from (a fork pulls it). Another home's snapshots are its own to judge: servers
        sharing a store must not drop each other's records."""
        pulled = self.registry is not None and "registry" in handle.meta
        return sdir.judged_here(handle.meta, self.home) and not pulled

    def _reconcile_runc(
        self, known: Mapping[str, SnapshotHandle], report: ReconcileReport
    ) -> set[str]:
        """The runc path's part of :meth:`reconcile`; the names of the boxes that stay."""
        if self.runc is None:
            return set()
        layers = {str(h.meta.get("layer")) for h in known.values()}
        report.missing.extend(
            sorted(
                sid
                for sid, h in known.items()
                if not self.runc.layers.has(str(h.meta["layer"])) and self._judges(h)
            )
        )
        removed, kept = self.runc.reconcile(layers, str(self.snapshot_dir))
        report.orphans_removed.extend(removed)
        checkpoints = {
            str(checkpoint_blob.locate(self.snapshot_dir, h.meta["checkpoint"]))
            for h in known.values()
            if "checkpoint" in h.meta
        }
        removed = _runc_full.sweep(self.snapshot_dir, checkpoints)
        report.orphans_removed.extend(f"checkpoint:{name}" for name in removed)
        return kept

    def doctor(self) -> list[DoctorCheck]:
        """Daemon, experimental mode, CRIU, base image, checkpoint links, and both levels."""
        try:
            info = self.api.info()
        except Exception as error:
            return [
                DoctorCheck(
                    "docker: engine",
                    False,
                    f"no daemon answers: {api_error(error)}",
                    "run scripts/setup-docker.sh",
                )
            ]
        experimental = bool(info.get("ExperimentalBuild"))
        status = criu.check(criu.dockerd_criu())
        checks = [
            DoctorCheck(
                "docker: engine",
                True,
                f"{info.get('ServerVersion')} "
                f"storage={info.get('Driver')} root={info.get('DockerRootDir')}",
            ),
            DoctorCheck(
                "docker: experimental",
                experimental,
                "on" if experimental else "off: level full cannot checkpoint",
                "" if experimental else "restart dockerd: scripts/setup-docker.sh",
            ),
            DoctorCheck("docker: criu (dockerd's)", status.ok, status.detail, status.hint),
            DoctorCheck(
                "docker: runtime",
                True,
                f"level {self.level} sandboxes start through {self.runtime}: {self.runtime_reason}"
                + (f"; OCI runtime {self.runc.oci}: {self.runc.oci_reason}" if self.runc else ""),
            ),
        ]
        try:
            docker_fs.inspect_image(self.api, DEFAULT_IMAGE)
        except Exception:
            fix = "build it: bash docker/base/build.sh"
            return [*checks, DoctorCheck("docker: base image", False, "missing", fix)]
        checks.append(DoctorCheck("docker: base image", True, DEFAULT_IMAGE))
        driver = str(info.get("Driver"))
        readable = driver == "overlay2" and os.geteuid() == 0
        checks.append(
            DoctorCheck(
                "docker: fingerprints",
                readable,
                "overlay2 layers readable"
                if readable
                else f"storage driver {driver}, uid "
                f"{os.geteuid()}: fingerprints are None (state-aware hits fall back to strict)",
                "" if readable else "run tvcache as root with dockerd's overlay2 storage driver",
            )
        )
        linked = docker_full.can_link(self.snapshot_dir, self.docker_root())
        checks.append(
            DoctorCheck(
                "docker: checkpoint store",
                True,
                f"{self.snapshot_dir}: forks {'hard-link' if linked else 'copy (another mount)'}",
                "" if linked else f"put the snapshot dir on the mount of {self.docker_root()}",
            )
        )
        return [*checks, self._smoke("fs"), self._smoke("full")]

    def _smoke(self, level: Level) -> DoctorCheck:
        """Change files, cwd, env and start a process; snapshot; fork; check the fork."""
        name = f"docker: level {level}"
        backend = DockerBackend(self.snapshot_dir, level, work_dir=self.work_dir, api=self.api)
        command = "cd /tmp && export V=1 && echo ok > f"
        probe = "cat f; pwd; echo $V"
        if level == "full":  # level fs refuses to snapshot running processes
            command += " && { sleep 600 & echo $! > pid; }"
            probe += "; grep -qs sleep /proc/$(cat pid)/cmdline && echo alive"
        try:
            with backend.start(RootSpec("tvcache-doctor", backend=BACKEND_NAME)) as source:
                source.run(ToolCall("bash", {"command": command}))
                handle = source.snapshot(f"doctor-{uuid.uuid4().hex[:12]}")
            try:
                with backend.fork(handle) as fork:
                    output = fork.run(ToolCall("bash", {"command": probe})).output
                    failure = fork.restore_fallback or handle.meta.get("full_failure")
            finally:
                backend.delete_snapshot(handle)
        except TvcacheError as error:
            return DoctorCheck(name, False, str(error), error.hint or "see the error")
        finally:  # what it laid out ahead (skeletons, mounts) goes with it
            backend.close()
        if failure or output != "ok\n/tmp\n1\n" + ("alive\n" if level == "full" else ""):
            return DoctorCheck(
                name, False, f"fork is wrong: {failure or repr(output)}", "see the checks above"
            )
        kept = "files, cwd, env" + (" and processes" if level == "full" else "")
        return DoctorCheck(name, True, f"a fork kept {kept}")
