"""A small helper process that starts the OCI runtime's ``create`` for tvcache.

Why: hiding the cgroup v2 hierarchy from crun needs a mount namespace made between fork and
exec. Forked from tvcache itself (a large, many-threaded process) that cost more than the
``unshare`` + ``sh`` + ``umount`` processes it replaced (88 against 70 ms a create, measured
in one run); forked from this helper (a bare, single-threaded interpreter) it costs under a
millisecond. The helper also keeps a copy of the runtime's binary in a memfd sealed against
writes, and runs the runtime from it: runc and crun copy themselves before entering a
container (so that the container cannot write their binary through ``/proc/self/exe``,
CVE-2019-5736) unless they already run from such a copy.

And it takes the kernel's cgroup migration lock while the runtime starts: the first process
to take it after a quiet spell waits for an RCU grace period (``strace`` showed crun's first
write of the container's pid into a v1 ``cgroup.procs`` blocked 30 ms), the next ones do
not. The helper moves itself into its own cgroup (no change) right after forking the
runtime, so that wait runs while the runtime loads and parses its config (``create`` 34 →
22 ms, A/B in docs/forks.md).

The helper reads one JSON request per line on its stdin and answers one line per finished
child on its stdout; it exits when its stdin closes (tvcache ended): nothing is left behind.
This file runs as the helper's script with the standard library only (``python -I -S``).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any


class Spawner:
    """The tvcache side: start the helper once, run commands through it (thread-safe).

    A helper that dies (killed, out of memory) is replaced by the next request; a request it
    had not yet started is sent again to the new one, a started one fails once its runtime
    is dead (the helper's children die with it), so that the caller's clean-up never races
    with a runtime still making what it removes. A timed-out runtime is killed likewise
    before the caller hears of it.
    """

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._forget)  # a forked tvcache starts its own

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._stdin = -1  # the helper's stdin (a raw fd: nothing buffered to copy into a fork)
        self._waiting: dict[int, _Pending] = {}
        self._next = 0

    def _forget(self) -> None:
        """In a forked child: drop the parent's helper without writing to it, closing this
        copy of its stdin (else it would outlive the parent as long as the child lives). Its
        stdout is left alone: the parent's reader thread may hold that file's lock."""
        stdin = self._stdin
        self._reset()
        if stdin >= 0:
            with contextlib.suppress(OSError):
                os.close(stdin)

    def close(self) -> None:
        """End the helper (it exits when its stdin closes); the next request starts one."""
        with self._lock:
            self._process = None
            self._close_stdin()

    def run(
        self, runtime: str, args: list[str], hide: str | None, timeout: float, warm: bool = False
    ) -> int:
        """``runtime args`` (stdio /dev/null) from a sealed copy of its binary, in a mount
        namespace where ``hide`` is unmounted when given; its exit code. With ``warm``, the
        helper takes the kernel's cgroup migration lock while the runtime starts (see
        :func:`_serve`). Raises :class:`OSError` when the helper fails, ``TimeoutError``
        after ``timeout`` seconds (the runtime killed)."""
        request = {"runtime": runtime, "args": args, "hide": hide, "warm": warm}
        for attempt in (1, 2):
            ident, pending = self._send(request)
            try:
                return pending.future.result(timeout)
            except _NotStarted:
                if attempt == 2:
                    raise
            except TimeoutError:
                self._kill(ident)
                with contextlib.suppress(Exception):  # answered once the runtime is reaped
                    pending.future.result(_KILL_WAIT)
                raise
        raise AssertionError("unreachable")

    def _send(self, request: dict[str, Any]) -> tuple[int, _Pending]:
        with self._lock:
            self._ensure()
            self._next += 1
            ident = self._next
            pending = _Pending(str(request["runtime"]))
            self._waiting[ident] = pending
            try:
                _write(self._stdin, {**request, "id": ident})
            except OSError as error:  # the helper died before it read anything
                self._waiting.pop(ident, None)
                pending.future.set_exception(_NotStarted(f"the runtime helper is gone: {error}"))
        return ident, pending

    def _close_stdin(self) -> None:
        if self._stdin >= 0:
            with contextlib.suppress(OSError):
                os.close(self._stdin)
            self._stdin = -1

    def _kill(self, ident: int) -> None:
        with self._lock, contextlib.suppress(OSError):
            _write(self._stdin, {"kill": ident})

    def _ensure(self) -> None:
        if self._process is not None and self._process.poll() is None:
            return
        self._close_stdin()
        read, write = os.pipe2(os.O_CLOEXEC)
        try:
            process = subprocess.Popen(
                [sys.executable, "-I", "-S", str(Path(__file__).resolve())],
                stdin=read,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                close_fds=True,
            )
        except BaseException:
            os.close(write)
            raise
        finally:
            os.close(read)
        self._process, self._stdin, self._waiting = process, write, {}
        threading.Thread(
            target=self._read, args=(process, self._waiting), name="tvcache-runc-spawn", daemon=True
        ).start()

    def _read(self, process: subprocess.Popen[bytes], waiting: dict[int, _Pending]) -> None:
        """Answer the requests of one helper process (``waiting`` is its own: a helper that
        dies fails nothing sent to the next one)."""
        assert process.stdout is not None
        with contextlib.suppress(OSError, ValueError):  # ValueError: closed in a forked child
            for line in process.stdout:
                reply = json.loads(line)
                with self._lock:
                    pending = waiting.get(int(reply["id"]))
                    if pending is not None and "rc" not in reply and "error" not in reply:
                        pending.pid = int(reply["pid"])  # started
                        continue
                    waiting.pop(int(reply["id"]), None)
                if pending is None:
                    continue
                if "error" in reply:
                    pending.future.set_exception(OSError(str(reply["error"])))
                else:
                    pending.future.set_result(int(reply["rc"]))
        with self._lock:  # the helper died: whoever waits fails now, not at its timeout
            lost = list(waiting.values())
            waiting.clear()
            if self._process is process:  # its stdin may take a moment more to close
                self._process = None
                self._close_stdin()
        for pending in lost:
            if pending.pid == 0:
                pending.future.set_exception(_NotStarted("the runtime helper exited"))
                continue
            _wait_gone(pending.pid)  # killed by the helper's death (PR_SET_PDEATHSIG)
            error = OSError(f"the runtime helper exited while {pending.runtime} ran")
            pending.future.set_exception(error)


@dataclass(slots=True)
class _Pending:
    """A request sent to the helper: its runtime's pid once that process said it is about
    to ``exec`` the runtime (0 until then)."""

    runtime: str
    pid: int = 0
    future: Future[int] = field(default_factory=Future)


class _NotStarted(OSError):
    """The helper died before the request's child said it was about to run the runtime:
    safe to send again. That child says so before its ``exec``, after it has made sure it
    dies with the helper; one whose helper died first exits without saying anything."""


_KILL_WAIT = 10.0
"""Seconds a timed-out request waits for its runtime to be killed and reaped."""


def _write(fd: int, message: dict[str, Any]) -> None:
    data = json.dumps(message).encode() + b"\n"
    while data:
        data = data[os.write(fd, data) :]


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    """Wait until ``pid`` is dead (or a zombie)."""
    from sandbox._runc_exec import alive  # here: the helper's script imports no tvcache

    deadline = time.monotonic() + timeout
    while pid > 0 and alive(pid) and time.monotonic() < deadline:
        time.sleep(0.001)


def _serve(requests: IO[bytes], replies: IO[bytes]) -> None:
    """The helper: fork and exec each request; answer each child's exit code."""
    import ctypes
    import fcntl
    import selectors
    import shutil

    libc = ctypes.CDLL(None, use_errno=True)
    binaries: dict[str, tuple[tuple[str, int, int, int, int], int]] = {}  # runtime: (file, fd)
    children: dict[int, tuple[int, int]] = {}  # pidfd: (request id, pid)
    by_id: dict[int, int] = {}
    null = os.open(os.devnull, os.O_RDWR)
    selector = selectors.DefaultSelector()
    selector.register(requests, selectors.EVENT_READ, None)

    def answer(reply: dict[str, Any]) -> None:
        replies.write(json.dumps(reply).encode() + b"\n")
        replies.flush()

    def identity(path: str) -> tuple[str, int, int, int, int]:
        found = os.stat(path)
        return (path, found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns)

    def binary(runtime: str) -> int:
        """A sealed copy of the runtime's binary, made again when the file on PATH changed
        (a package upgrade: its fixes apply from the next ``create``; one ``stat``)."""
        known = binaries.get(runtime)
        if known is not None:
            with contextlib.suppress(OSError):
                if identity(known[0][0]) == known[0]:
                    return known[1]
        path = shutil.which(runtime)
        if path is None:
            raise OSError(f"no {runtime} binary on PATH")
        file = identity(path)
        fd = os.memfd_create(runtime, os.MFD_ALLOW_SEALING)  # inherited by children
        with open(path, "rb") as handle:
            data = handle.read()
        while data:
            data = data[os.write(fd, data) :]
        fcntl.fcntl(fd, 1033, 0x1 | 0x2 | 0x4 | 0x8)  # F_ADD_SEALS: seal, shrink, grow, write
        if known is not None:
            os.close(known[1])  # children started from it keep their own copy of the fd
        binaries[runtime] = (file, fd)
        return fd

    parent = os.getpid()

    def child(ident: int, exe: int, argv: list[str], hide: str | None) -> None:
        out = os.dup(1)  # to say what failed before the runtime runs (closed at exec)

        def fail(what: str) -> None:
            said = f"{what}: {os.strerror(ctypes.get_errno())}"
            os.write(out, json.dumps({"id": ident, "error": said}).encode() + b"\n")
            os._exit(125)

        try:  # dies with the helper: no runtime goes on making what its caller removes
            if libc.prctl(1, 9) != 0 or os.getppid() != parent:  # PR_SET_PDEATHSIG, SIGKILL
                os._exit(125)
            # Said by the child itself, before its exec: a caller that never heard it knows
            # the runtime never ran (the helper's pipe closes only once this copy of it has).
            os.write(out, json.dumps({"id": ident, "pid": os.getpid()}).encode() + b"\n")
            os.dup2(null, 0)
            os.dup2(null, 1)
            os.dup2(null, 2)
            if hide is not None:
                hiding = f"could not hide {hide} from {argv[0]}"
                if libc.unshare(0x00020000) != 0:  # CLONE_NEWNS
                    fail(f"{hiding}: unshare(CLONE_NEWNS)")
                if libc.mount(None, b"/", None, 0x4000 | 0x80000, None) != 0:  # MS_REC|SLAVE
                    fail(f"{hiding}: mount --make-rslave /")
                if libc.umount2(hide.encode(), 2) != 0:  # MNT_DETACH
                    fail(f"{hiding}: umount2")
            try:
                os.execv(f"/proc/self/fd/{exe}", argv)
            except OSError as error:
                ctypes.set_errno(error.errno or 0)
                fail(f"could not run {argv[0]}")
        finally:
            os._exit(127)

    procs = _own_procs()

    def warm(path: str) -> None:
        """Move this process into its own cgroup: no change, but it takes the kernel's
        cgroup migration lock, whose first taker waits for an RCU grace period."""
        with contextlib.suppress(OSError):
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, str(os.getpid()).encode())
            finally:
                os.close(fd)

    buffer = b""
    while True:
        for key, _ in selector.select():
            if key.data is None:
                chunk = os.read(requests.fileno(), 65536)
                if not chunk:
                    return
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    request = json.loads(line)
                    if "kill" in request:
                        pid = by_id.get(int(request["kill"]))
                        if pid is not None:
                            os.kill(pid, 9)
                        continue
                    try:
                        exe = binary(str(request["runtime"]))
                    except OSError as error:
                        answer({"id": request["id"], "error": str(error)})
                        continue
                    pid = os.fork()
                    if pid == 0:
                        child(
                            int(request["id"]),
                            exe,
                            [request["runtime"], *request["args"]],
                            request["hide"],
                        )
                    if request.get("warm") and procs is not None:
                        warm(procs)
                    pidfd = os.pidfd_open(pid)
                    children[pidfd] = (int(request["id"]), pid)
                    by_id[int(request["id"])] = pid
                    selector.register(pidfd, selectors.EVENT_READ, pidfd)
            else:
                pidfd = int(key.data)
                ident, pid = children.pop(pidfd)
                by_id.pop(ident, None)
                selector.unregister(pidfd)
                os.close(pidfd)
                _, status = os.waitpid(pid, 0)
                answer({"id": ident, "rc": os.waitstatus_to_exitcode(status)})


def _own_procs() -> str | None:
    """The ``cgroup.procs`` file of this process's own cgroup, or None."""
    try:
        with open("/proc/self/cgroup") as handle:
            return procs_file(handle.read())
    except OSError:
        return None


def procs_file(cgroups: str) -> str | None:
    """The ``cgroup.procs`` file named by ``cgroups`` (a ``/proc/<pid>/cgroup``): a v1
    ``pids`` hierarchy's on v1 and hybrid hosts, the v2 one's on a pure v2 host; None when
    it has neither."""
    lines = [line.split(":", 2) for line in cgroups.splitlines() if line.count(":") >= 2]
    for _, controllers, path in lines:
        if "pids" in controllers.split(","):
            return f"/sys/fs/cgroup/pids{path}/cgroup.procs".replace("//", "/")
    for ident, controllers, path in lines:
        if ident == "0" and not controllers:
            return f"/sys/fs/cgroup{path}/cgroup.procs".replace("//", "/")
    return None


SPAWNER = Spawner()
"""This process's helper (started on first use)."""


if __name__ == "__main__":
    _serve(sys.stdin.buffer, sys.stdout.buffer)
