"""One long-lived isolated supervisor per sandbox (root servers): each ``bash`` call is its fork.

Why: a fresh bubblewrap costs ~15 ms per call, a fork inside a living namespace ~2 ms. The
supervisor is the namespace's PID 1 (``bwrap --as-pid-1``) and runs as uid 0 with only
CAP_SETUID, CAP_SETGID and CAP_KILL; a call runs as the sandbox uid with ``no_new_privs``, so it
can neither signal, trace nor read the supervisor. After each call the supervisor kills every
other process of the namespace (``kill(-1)`` from PID 1 spares only itself) before it reports,
so no process outlives a call. It exits, killing all, when the server closes its request pipe
(the server died or closed the sandbox); a timeout ends the whole namespace.
"""

from __future__ import annotations

import fcntl
import json
import os
import selectors
import signal
import subprocess
import time
import uuid
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from sandbox._tools import OutputBuffer, _drain

if TYPE_CHECKING:
    from sandbox._isolation import Isolation

PYTHON = "/usr/bin/python3"

# argv: uid gid status-fd. Requests on stdin, one JSON line each: {"nonce", "argv"}; replies on
# the status fd: "<nonce> <exit code>\n" once every process of the call is gone.
SCRIPT = r"""
import ctypes, json, os, select, signal, sys
uid, gid, status = (int(a) for a in sys.argv[1:4])
libc = ctypes.CDLL(None, use_errno=True)
null = os.open("/dev/null", os.O_RDONLY)
pending = b""
def sweep():
    while True:
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            return
        try:
            while True:
                os.waitpid(-1, 0)
        except ChildProcessError:
            pass
def more():
    global pending
    chunk = os.read(0, 65536)
    if not chunk:
        sweep()
        os._exit(0)
    pending += chunk
while True:
    while b"\n" not in pending:
        more()
    line, _, pending = pending.partition(b"\n")
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(null, 0)
            os.close(status)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            if libc.prctl(38, 1, 0, 0, 0) == 0:
                os.execve(request["argv"][0], request["argv"], {})
        finally:
            os._exit(127)
    done = os.pidfd_open(pid)
    while not select.select([done, 0], [], [])[0].count(done):
        more()
    os.close(done)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    sweep()
    os.write(status, ("%s %d\n" % (request["nonce"], code)).encode())
"""


class SupervisorError(RuntimeError):
    """The supervisor ended in the middle of a call (never because of the command itself)."""


class Supervisor:
    """The supervisor of one sandbox, started at its first call."""

    def __init__(self, isolation: Isolation, home: Path, state: Path, network: bool) -> None:
        self._isolation, self._home, self._state, self._network = isolation, home, state, network
        self._proc: subprocess.Popen[bytes] | None = None
        self._status = -1

    def _start(self) -> subprocess.Popen[bytes]:
        self.close()
        read, write = (_above_stdio(fd) for fd in os.pipe())
        argv = self._isolation.command(
            self._home,
            self._state,
            [PYTHON, "-I", "-S", "-c", SCRIPT, *self._ids(), str(write)],
            network=self._network,
            supervisor=True,
        )
        try:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(write,),
                env={},
                start_new_session=True,
            )
        finally:
            os.close(write)
        self._status = read
        assert self._proc.stdout is not None
        os.set_blocking(self._proc.stdout.fileno(), False)
        return self._proc

    def _ids(self) -> list[str]:
        return [str(self._isolation.uid), str(self._isolation.gid)]

    def run(self, argv: Sequence[str], timeout: float, sink: OutputBuffer) -> int | None:
        """Run ``argv`` as one call; its exit code, or None if it timed out (then the whole
        namespace is gone, and the next call starts a new one)."""
        proc = self._proc if self._proc is not None and self._proc.poll() is None else None
        proc = proc or self._start()
        assert proc.stdin is not None and proc.stdout is not None
        nonce = uuid.uuid4().hex
        try:
            proc.stdin.write(json.dumps({"nonce": nonce, "argv": list(argv)}).encode() + b"\n")
            proc.stdin.flush()
        except BrokenPipeError:
            raise SupervisorError(f"the supervisor is gone: {self._output(proc)}") from None
        out = proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        reply = b""
        with selectors.DefaultSelector() as selector:
            selector.register(out, selectors.EVENT_READ)
            selector.register(self._status, selectors.EVENT_READ)
            while b"\n" not in reply:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._kill(proc)
                    _drain(out, sink)  # what the call wrote before it was killed
                    self.close()
                    return None
                for key, _ in selector.select(remaining):
                    if key.fd == out:
                        if not _drain(out, sink):
                            selector.unregister(out)
                    else:
                        chunk = os.read(self._status, 4096)
                        if not chunk:
                            said = self._output(proc)
                            self.close()
                            raise SupervisorError(f"the supervisor ended during the call: {said}")
                        reply += chunk
        _drain(out, sink)  # every writer is dead: what they wrote is in the pipe
        got, _, code = reply.decode().strip().partition(" ")
        if got != nonce:
            self.close()
            raise SupervisorError(f"the supervisor answered {reply!r} to request {nonce}")
        return int(code)

    @staticmethod
    def _output(proc: subprocess.Popen[bytes]) -> str:
        """What the supervisor (or bwrap) said before it died."""
        try:
            data = os.read(proc.stdout.fileno(), 4096) if proc.stdout is not None else b""
        except OSError:
            data = b""
        return data.decode(errors="replace").strip()

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes]) -> None:
        with suppress(psutil.Error):  # its PID 1: the namespace dies with it
            for child in psutil.Process(proc.pid).children():
                child.kill()
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def close(self) -> None:
        """End the namespace and everything in it."""
        proc, self._proc = self._proc, None
        if proc is not None:
            self._kill(proc)
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    with suppress(OSError):
                        stream.close()
        if self._status >= 0:
            os.close(self._status)
            self._status = -1


def _above_stdio(fd: int) -> int:
    """``fd`` moved to 10 or above: a server started with stdin closed gets a pipe at 0, which
    the supervisor's own stdin would then replace in the child."""
    if fd >= 10:
        return fd
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved
