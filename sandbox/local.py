"""The local backend: a sandbox is a private directory plus tools that run in it; no Docker.

Layout: ``work_dir/<sandbox_id>/{home/, state/, owner}`` — ``home`` is the agent's working
directory and ``$HOME`` (shown as ``/sandbox`` in outputs), ``state`` is private scratch for the
tools, ``owner`` names the owning process so :meth:`LocalBackend.reconcile` can remove sandboxes
of dead processes. A snapshot is ``snapshot_dir/<snapshot_id>/{home/, sandbox.json}`` (the shell
state and root options), created atomically. Snapshots are level ``fs``: no processes survive.

Isolated by default (:mod:`sandbox._isolation`): ``bash`` commands run in bubblewrap namespaces
that see ``home`` at ``/sandbox`` and a private ``/tmp``, never the host's other files, the store
or other sandboxes, with no network unless the root's option ``network`` is true. Without
bubblewrap (or with ``Isolation(enabled=False)``) a warning is given once and commands run as the
calling user with the whole host in reach; each sandbox then has its own real path, which outputs
show as ``/sandbox`` (the shell state and absolute symlinks are rewritten on snapshot and fork,
absolute paths written *into files* keep the original sandbox's path). ``/tmp`` is never
snapshotted.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from types import TracebackType

import psutil

from sandbox._isolation import Isolation, probe, warn_unisolated
from sandbox._protocol import DoctorCheck, ReconcileReport
from sandbox._tool_runner import run_isolated, shipped_modules
from sandbox._tools import (
    INNER_ROOT,
    ROOT_PLACEHOLDER,
    LocalTool,
    ShellState,
    ShellTool,
    SqliteTool,
    ToolContext,
    ToolRegistry,
    default_tools,
    initial_env,
)
from sandbox._types import JSON, Observation, RootSpec, ToolCall, ToolSpec, call_timeout
from snapshots import SnapshotError, SnapshotHandle, TvcacheError
from snapshots import directory as sdir
from snapshots.fingerprint import directory_fingerprint

log = logging.getLogger(__name__)

BACKEND_NAME = "local"
MARKER = "sandbox.json"
OPTIONS = ("env", "network", "sqlite_db")
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+=-]{0,199}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class LocalBackendError(TvcacheError):
    """The local backend was misconfigured or misused (missing template, bad option, closed)."""


def _process_tag(pid: int) -> str | None:
    """``"<pid> <start time>"`` of a live process (pid reuse proof), or None if it is gone."""
    try:
        return f"{pid} {psutil.Process(pid).create_time():.3f}"
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _check_options(options: Mapping[str, JSON]) -> dict[str, JSON]:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise LocalBackendError(
            f"unknown local backend option(s) {', '.join(unknown)}", f"known: {', '.join(OPTIONS)}"
        )
    env = options.get("env", {})
    if not isinstance(env, Mapping) or not all(
        isinstance(k, str) and _ENV_NAME.fullmatch(k) and isinstance(v, str) for k, v in env.items()
    ):
        raise LocalBackendError("option 'env' must map variable names to strings")
    if not isinstance(options.get("sqlite_db", ""), str):
        raise LocalBackendError("option 'sqlite_db' must be a path relative to the sandbox")
    if not isinstance(options.get("network", False), bool):
        raise LocalBackendError(
            "option 'network' must be true or false",
            "true lets commands reach the network (and the host's loopback services)",
        )
    return dict(options)


class LocalSandbox:
    """A live local sandbox. Not thread-safe: one session drives it at a time."""

    def __init__(
        self,
        backend: LocalBackend,
        directory: Path,
        shell: ShellState,
        options: dict[str, JSON],
        times_since: int = 0,
    ) -> None:
        self._backend = backend
        self._dir = directory
        self._closed = False
        self._times_since = times_since  # the template's newest time: later ones are the clock's
        self._ctx = ToolContext(
            root=(directory / "home").resolve(),
            private=directory / "state",
            shell=shell,
            max_output_bytes=backend.max_output_bytes,
            options=options,
            isolation=backend.isolation,
        )

    @property
    def sandbox_id(self) -> str:
        return self._dir.name

    @property
    def root(self) -> Path:
        """The real path of the working directory (outputs show it as ``/sandbox``)."""
        return self._ctx.root

    @property
    def shell(self) -> ShellState:
        return ShellState(self._ctx.shell.cwd, self._ctx.shell.env)

    def run(self, call: ToolCall, timeout: float | None = None) -> Observation:
        """Run ``call``. Timeout: the call's ``timeout`` arg, else ``timeout``, else default."""
        if self._closed:
            raise LocalBackendError(
                f"sandbox {self.sandbox_id} is closed", "fork or start a new one"
            )
        tool = self._backend.tools.get(call.tool)
        args = tool.spec.validate(call.args)
        chosen = call_timeout(args, timeout if timeout is not None else self._backend.timeout)
        start = time.perf_counter()
        if self._ctx.isolation is None or isinstance(tool, ShellTool):
            observation = tool.run(self._ctx, args, chosen)
        elif isinstance(tool, SqliteTool):  # the one tool run in this process beside isolation
            observation = tool.run(self._ctx, args, chosen)
            if not observation.read_only:  # read-only: the files, owners included, are as before
                for path in tool.written_files(self._ctx, args):  # what it made, to the sandbox uid
                    self._ctx.isolation.hand_over(path)
        else:  # a Python tool: inside the isolation as the sandbox uid, never in this process
            observation = run_isolated(self._ctx, tool, args, chosen)
        return replace(observation, seconds=time.perf_counter() - start)

    def fingerprint(self) -> str:
        """Working-directory content (databases by content), the order of its modification
        times, cwd and exported variables.

        Always available: no process outlives a call in this backend.
        """
        shell = self._ctx.shell
        state = json.dumps([shell.cwd, shell.env])
        return directory_fingerprint(self._ctx.root, state, self._times_since)

    def snapshot(self, snapshot_id: str) -> SnapshotHandle:
        """Copy ``home`` and the shell state into ``snapshot_dir/<snapshot_id>`` atomically."""
        if self._closed:
            raise SnapshotError(f"sandbox {self.sandbox_id} is closed", "snapshot before close()")
        final = self._backend.snapshot_path(snapshot_id)
        record = {
            "format": 1,
            "shell": self._ctx.shell.to_dict(),
            "options": self._ctx.options,
            "times_since": self._times_since,
        }
        with sdir.atomic_directory(final) as tmp:
            sdir.copy_tree(self._ctx.root, tmp / "home")
            sdir.retarget_symlinks(tmp / "home", str(self._ctx.root), ROOT_PLACEHOLDER)
            (tmp / MARKER).write_text(json.dumps(record, sort_keys=True))
        return SnapshotHandle(
            snapshot_id=snapshot_id,
            backend=BACKEND_NAME,
            level="fs",
            location=str(final),
            size_bytes=sdir.size_on_disk(final),
            meta={"cwd": self._ctx.shell.cwd, "home": self._backend.home},
        )

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._ctx.supervisor is not None:
                self._ctx.supervisor.close()
            self._backend.discard(self._dir)

    def __enter__(self) -> LocalSandbox:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class LocalBackend:
    """Sandboxes as directories; snapshots as (reflinked when possible) directory copies.

    ``tools`` are added to ``bash`` and ``sqlite`` (a same-named tool replaces a built-in).
    ``work_dir`` holds live sandboxes (default: ``snapshot_dir/../sandboxes``).
    ``isolation``: default :meth:`Isolation.from_env`; when it does not work here (or is
    disabled) a warning is given once and commands run unisolated (:attr:`isolated` is False).
    """

    def __init__(
        self,
        snapshot_dir: Path,
        max_output_bytes: int = 64 * 1024,
        default_timeout: float = 60.0,
        tools: Iterable[LocalTool] = (),
        work_dir: Path | None = None,
        isolation: Isolation | None = None,
    ) -> None:
        self.snapshot_dir = Path(snapshot_dir).resolve()
        self.home = sdir.home_of(self.snapshot_dir)
        self._identities: dict[tuple[str, int], str] = {}
        self._settled_env: dict[str, str] = {}
        self.work_dir = (
            Path(work_dir) if work_dir else self.snapshot_dir.parent / "sandboxes"
        ).resolve()
        if any(c in str(self.work_dir) for c in '"$`\\\n'):
            raise LocalBackendError(
                f"work dir {self.work_dir} contains a shell-special character", "use a plainer path"
            )
        self.snapshot_dir.mkdir(parents=True, exist_ok=True)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.max_output_bytes = max_output_bytes
        self.timeout = default_timeout
        self.tools = ToolRegistry([*default_tools(), *tools])
        self._owner = _process_tag(os.getpid()) or str(os.getpid())
        self._deleter: ThreadPoolExecutor | None = None
        self._deleter_lock = threading.Lock()
        self.isolation = self._isolation(isolation or Isolation.from_env())
        if self.isolation is not None:  # Python tools run isolated: their modules must ship
            shipped_modules(self.tools)

    def discard(self, directory: Path) -> None:
        """Take a closed sandbox's directory away now, delete its files in the background.

        Deleting took 12-22 ms on a call's path (a session's close, a swap for a fork); the
        rename is one system call. The renamed entry carries this process's pid, so what a
        crash leaves behind is removed by :meth:`reconcile`; :meth:`close` waits for the rest.
        """
        doomed = directory.parent / sdir.temp_name(directory.name)
        try:
            os.rename(directory, doomed)
        except FileNotFoundError:
            return
        with self._deleter_lock:
            if self._deleter is None:
                self._deleter = ThreadPoolExecutor(1, thread_name_prefix="tvcache-local-delete")
            self._deleter.submit(_delete_logged, doomed)

    def close(self) -> None:
        """Wait until the directories of closed sandboxes are deleted. Idempotent; the
        backend stays usable (the next close starts the background deleter again)."""
        with self._deleter_lock:
            deleter, self._deleter = self._deleter, None
        if deleter is not None:
            deleter.shutdown(wait=True)

    def _isolation(self, wanted: Isolation) -> Isolation | None:
        """``wanted`` with this backend's directories hidden, or None (warned) if unusable."""
        if not wanted.enabled:
            warn_unisolated("isolation disabled")
            return None
        found = probe(wanted)
        if not found.ok:
            warn_unisolated(found.detail)
            return None
        hidden = (str(self.work_dir), str(self.snapshot_dir), str(self.snapshot_dir.parent))
        return replace(wanted, hidden=hidden)

    @property
    def isolated(self) -> bool:
        """Whether commands run isolated (see :mod:`sandbox._isolation`)."""
        return self.isolation is not None

    @property
    def name(self) -> str:
        return BACKEND_NAME

    def tool_specs(self) -> Mapping[str, ToolSpec]:
        return self.tools.specs()

    def _template(self, spec: RootSpec) -> Path | None:
        if spec.backend != BACKEND_NAME:
            raise LocalBackendError(f"root {spec.task_id!r} is for backend {spec.backend!r}")
        if spec.template is None:
            return None
        path = Path(spec.template).expanduser().resolve()
        if not path.is_dir():
            raise LocalBackendError(
                f"template directory {spec.template!r} of task {spec.task_id!r} does not exist",
                "create it, or pass template=None for an empty sandbox",
            )
        return path

    def root_identity(self, spec: RootSpec) -> str:
        """sha256 of the template's content (paths, modes, bytes) and the backend name.

        Options are not included: the caller keys roots by the whole spec as well. The digest
        is memoised per template under a stat signature (paths, sizes, modes, mtimes), so a
        template is hashed again only when something in it changed.
        """
        template = self._template(spec)
        _check_options(spec.options)  # refused at open, not at every call
        # unisolated commands see another system (real paths, the host's /tmp): another root
        prefix = BACKEND_NAME if self.isolated else f"{BACKEND_NAME}-unisolated"
        if template is None:
            return f"{prefix}:{sdir.tree_digest(None)}"
        signature = (str(template), _stat_signature(template)[0])
        digest = self._identities.get(signature)
        if digest is None:
            digest = self._identities[signature] = sdir.tree_digest(template)
        return f"{prefix}:{digest}"

    def start(self, spec: RootSpec) -> LocalSandbox:
        template, options = self._template(spec), _check_options(spec.options)
        env = options.get("env", {})
        initial = initial_env(env if isinstance(env, Mapping) else {})
        shell = ShellState(cwd=".", env=self._settled_env.get(initial, initial))

        def fill(home: Path) -> None:
            if template is None:
                home.mkdir()
            else:
                sdir.copy_tree(template, home)
                sdir.retarget_symlinks(home, str(template), self._inside(home))

        since = _stat_signature(template)[1] if template is not None else 0
        sandbox = self._new_sandbox(fill, shell, options, since)
        if initial not in self._settled_env:
            # bash writes the environment in its own form (declare -x, PWD, OLDPWD, SHLVL);
            # start every sandbox in that form so a no-op command leaves the state unchanged
            sandbox.run(ToolCall("bash", {"command": "true"}))
            self._settled_env[initial] = sandbox.shell.env
        return sandbox

    def fork(self, handle: SnapshotHandle) -> LocalSandbox:
        if handle.backend != BACKEND_NAME:
            raise SnapshotError(f"snapshot {handle.snapshot_id} belongs to {handle.backend!r}")
        path = self.snapshot_path(handle.snapshot_id)
        try:
            record = json.loads((path / MARKER).read_text())
        except FileNotFoundError:
            raise SnapshotError(
                f"snapshot {handle.snapshot_id} is missing from {self.snapshot_dir}",
                "it was deleted or never finished; drop the record (reconcile reports these)",
            ) from None
        shell = ShellState.from_dict(record["shell"])

        def fill(home: Path) -> None:
            sdir.copy_tree(path / "home", home)
            sdir.retarget_symlinks(home, ROOT_PLACEHOLDER, self._inside(home))

        since = int(record.get("times_since", 0))
        return self._new_sandbox(fill, shell, dict(record["options"]), since)

    def _inside(self, home: Path) -> str:
        """``home``'s path as its commands see it (where absolute links must point)."""
        return INNER_ROOT if self.isolated else str(home.resolve())

    def _new_sandbox(
        self,
        fill: Callable[[Path], None],
        shell: ShellState,
        options: dict[str, JSON],
        times_since: int = 0,
    ) -> LocalSandbox:
        directory = self.work_dir / f"{BACKEND_NAME}-{uuid.uuid4().hex[:16]}"
        # appears with its owner file: a crash before that leaves a temp entry, which
        # reconcile removes once its process is dead (not a nameless dir it must wait out)
        with sdir.atomic_directory(directory) as tmp:
            (tmp / "owner").write_text(self._owner)
        try:
            (directory / "state" / "out").mkdir(parents=True)
            fill(directory / "home")
            if self.isolation is not None:
                self.isolation.prepare(directory / "state" / "out")
                self.isolation.prepare(directory / "home")  # a template's copy, retargeted links
        except BaseException:
            sdir.delete_tree(directory)
            raise
        return LocalSandbox(self, directory, shell, options, times_since)

    def snapshot_path(self, snapshot_id: str) -> Path:
        if not _SAFE_ID.fullmatch(snapshot_id):
            raise SnapshotError(
                f"snapshot id {snapshot_id!r} is not a safe file name",
                "use letters, digits and ._:@+=- (not starting with a dot), at most 200 chars",
            )
        return self.snapshot_dir / snapshot_id

    def delete_snapshot(self, handle: SnapshotHandle) -> None:
        sdir.delete_tree(self.snapshot_path(handle.snapshot_id))

    def reconcile(self, known: Mapping[str, SnapshotHandle]) -> ReconcileReport:
        """Remove unknown snapshots, temp leftovers and sandboxes of dead processes.

        Reported names: snapshot ids, ``.tmp-*`` names, ``sandbox:<id>``. Call it when no
        snapshot is being taken (at start-up): a snapshot not yet recorded counts as an orphan.
        """
        ids = {h.snapshot_id for h in known.values() if h.backend == BACKEND_NAME}
        report = ReconcileReport()
        for entry in sorted(self.snapshot_dir.iterdir()):
            if entry.name.startswith(sdir.TMP_PREFIX):
                orphan = self._is_dead_temp(entry)
            elif entry.name in ids:
                continue
            elif not (orphan := (entry / MARKER).is_file() and not entry.is_symlink()):
                log.warning("reconcile: leaving %s alone: not a tvcache snapshot", entry)
            if orphan:
                sdir.delete_tree(entry)
                report.orphans_removed.append(entry.name)
        report.missing = sorted(
            h.snapshot_id
            for h in known.values()
            if h.snapshot_id in ids
            and not (self.snapshot_dir / h.snapshot_id / MARKER).is_file()
            and sdir.judged_here(h.meta, self.home)  # another server's are its own to judge
        )
        for entry in sorted(self.work_dir.iterdir()):
            if self._is_dead_temp(entry):
                sdir.delete_tree(entry)
                report.orphans_removed.append(entry.name)
            elif entry.name.startswith(f"{BACKEND_NAME}-") and self._is_stale_sandbox(entry):
                sdir.delete_tree(entry)
                report.orphans_removed.append(f"sandbox:{entry.name}")
        return report

    @staticmethod
    def _is_dead_temp(entry: Path) -> bool:
        if not entry.name.startswith(sdir.TMP_PREFIX):
            return False
        pid = sdir.temp_owner_pid(entry.name)
        return pid is None or (pid != os.getpid() and _process_tag(pid) is None)

    @staticmethod
    def _is_stale_sandbox(entry: Path) -> bool:
        try:
            owner = (entry / "owner").read_text().strip()
        except FileNotFoundError:  # being created right now, or a crash before the owner file
            try:
                return time.time() - entry.stat().st_mtime > 60
            except FileNotFoundError:  # closed by its owner meanwhile (a home shared by servers)
                return False
        pid = owner.split()[0]
        return not pid.isdigit() or _process_tag(int(pid)) != owner

    def doctor(self) -> list[DoctorCheck]:
        bash = shutil.which("bash")
        reflink = sdir.reflink_supported(self.snapshot_dir)
        writable = os.access(self.snapshot_dir, os.W_OK) and os.access(self.work_dir, os.W_OK)
        isolation = probe(self.isolation or Isolation.from_env())
        if isolation.ok and not self.isolated:
            isolation = probe(Isolation(enabled=False))
        return [
            DoctorCheck("local: isolation", isolation.ok, isolation.detail, isolation.fix),
            DoctorCheck("local: bash", bash is not None, bash or "not found", "install bash"),
            DoctorCheck("local: sqlite3", True, f"SQLite {sqlite3.sqlite_version}"),
            DoctorCheck(
                "local: reflink",
                True,
                "yes: snapshots are copy-on-write clones"
                if reflink
                else "no: snapshots are full copies (time and disk grow with size)",
                "" if reflink else "put the snapshot dir on btrfs or XFS (reflink=1)",
            ),
            DoctorCheck(
                "local: storage",
                writable,
                f"snapshots {self.snapshot_dir}, sandboxes {self.work_dir}",
                "" if writable else "make both directories writable",
            ),
        ]


def _delete_logged(doomed: Path) -> None:
    """Delete a discarded sandbox's tree; a failure is logged (reconcile retries it)."""
    try:
        sdir.delete_tree(doomed)
    except (OSError, SnapshotError) as error:
        log.warning("could not delete closed sandbox %s: %s", doomed, error)


def _stat_signature(template: Path) -> tuple[int, int]:
    """A hash of every entry's path, size, mode and mtime (cheap to compute, changes on edit),
    and the newest mtime in whole seconds."""
    entries = []
    for dirpath, dirnames, filenames in os.walk(template):
        for name in sorted(dirnames + filenames):
            st = os.lstat(os.path.join(dirpath, name))
            entries.append((dirpath, name, st.st_size, st.st_mode, st.st_mtime_ns))
    newest = max((entry[4] for entry in entries), default=0) // 10**9
    return hash(tuple(sorted(entries))), int(newest) + 1
