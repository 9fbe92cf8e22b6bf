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
from concurrent.futures import Future
from pathlib import Path
from typing import IO, Any


class Spawner:
    """The tvcache side: start the helper once, run commands through it (thread-safe)."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # a forked tvcache starts its own

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._waiting: dict[int, Future[int]] = {}
        self._next = 0

    def run(
        self, runtime: str, args: list[str], hide: str | None, timeout: float, warm: bool = False
    ) -> int:
        """``runtime args`` (stdio /dev/null) from a sealed copy of its binary, in a mount
        namespace where ``hide`` is unmounted when given; its exit code. With ``warm``, the
        helper takes the kernel's cgroup migration lock while the runtime starts (see
        :func:`_serve`)."""
        future: Future[int] = Future()
        with self._lock:
            process = self._ensure()
            self._next += 1
            ident = self._next
            self._waiting[ident] = future
            request = {"id": ident, "runtime": runtime, "args": args, "hide": hide, "warm": warm}
            assert process.stdin is not None
            try:
                process.stdin.write(json.dumps(request).encode() + b"\n")
                process.stdin.flush()
            except OSError as error:
                self._waiting.pop(ident, None)
                raise OSError(f"the runtime helper is gone: {error}") from error
        try:
            return future.result(timeout)
        except TimeoutError:
            with self._lock, contextlib.suppress(OSError):
                assert process.stdin is not None
                process.stdin.write(json.dumps({"kill": ident}).encode() + b"\n")
                process.stdin.flush()
            raise

    def _ensure(self) -> subprocess.Popen[bytes]:
        if self._process is not None and self._process.poll() is None:
            return self._process
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", str(Path(__file__).resolve())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            close_fds=True,
        )
        self._process = process
        threading.Thread(
            target=self._read, args=(process,), name="tvcache-runc-spawn", daemon=True
        ).start()
        return process

    def _read(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            reply = json.loads(line)
            with self._lock:
                future = self._waiting.pop(int(reply["id"]), None)
            if future is not None:
                if "error" in reply:
                    future.set_exception(OSError(str(reply["error"])))
                else:
                    future.set_result(int(reply["rc"]))
        with self._lock:  # the helper died: whoever waits fails now, not at its timeout
            waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            future.set_exception(OSError("the runtime helper exited"))


def _serve(requests: IO[bytes], replies: IO[bytes]) -> None:
    """The helper: fork and exec each request; answer each child's exit code."""
    import ctypes
    import fcntl
    import selectors
    import shutil

    libc = ctypes.CDLL(None, use_errno=True)
    binaries: dict[str, int] = {}
    children: dict[int, tuple[int, int]] = {}  # pidfd: (request id, pid)
    by_id: dict[int, int] = {}
    null = os.open(os.devnull, os.O_RDWR)
    selector = selectors.DefaultSelector()
    selector.register(requests, selectors.EVENT_READ, None)

    def answer(reply: dict[str, Any]) -> None:
        replies.write(json.dumps(reply).encode() + b"\n")
        replies.flush()

    def binary(runtime: str) -> int:
        if runtime not in binaries:
            path = shutil.which(runtime)
            if path is None:
                raise OSError(f"no {runtime} binary on PATH")
            fd = os.memfd_create(runtime, os.MFD_ALLOW_SEALING)  # inherited by children
            with open(path, "rb") as handle:
                os.write(fd, handle.read())
            fcntl.fcntl(fd, 1033, 0x1 | 0x2 | 0x4 | 0x8)  # F_ADD_SEALS: seal, shrink, grow, write
            binaries[runtime] = fd
        return binaries[runtime]

    def child(exe: int, argv: list[str], hide: str | None) -> None:
        try:
            os.dup2(null, 0)
            os.dup2(null, 1)
            os.dup2(null, 2)
            if hide is not None:
                if libc.unshare(0x00020000) != 0:  # CLONE_NEWNS
                    os._exit(125)
                if libc.mount(None, b"/", None, 0x4000 | 0x80000, None) != 0:  # MS_REC|SLAVE
                    os._exit(125)
                if libc.umount2(hide.encode(), 2) != 0:  # MNT_DETACH
                    os._exit(125)
            os.execv(f"/proc/self/fd/{exe}", argv)
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
                        child(exe, [request["runtime"], *request["args"]], request["hide"])
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
    """The ``cgroup.procs`` file of this process's own cgroup (a v1 ``pids`` hierarchy's, or
    the v2 one's), or None."""
    try:
        with open("/proc/self/cgroup") as handle:
            lines = [line.rstrip("\n").split(":", 2) for line in handle]
    except OSError:
        return None
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
