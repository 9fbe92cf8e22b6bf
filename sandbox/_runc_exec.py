"""``start`` of a created container without a runtime process.

A ``<runtime> start`` is a whole process (~12 ms here) that passes one byte through a FIFO:
the container's init waits on ``<state dir>/exec.fifo`` (crun's reads a byte, runc's writes
one), then the FIFO is removed, which is how both runtimes tell ``running`` from
``created``. tvcache's configs have no hooks, the only other thing a ``start`` runs.
"""

from __future__ import annotations

import errno
import os
import select
import time
from pathlib import Path


def start(state_dir: Path, runtime: str, pid: int, timeout: float = 30.0) -> None:
    """Release a created container's init (waiting on ``state_dir/exec.fifo``) into its
    process; what ``<runtime> start`` does, without a process. Raises :class:`OSError` when
    the init is gone or does not take the release within ``timeout`` seconds."""
    fifo = state_dir / "exec.fifo"
    if runtime == "crun":  # init reads one byte; a writer's open fails (ENXIO) once it is gone
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            os.unlink(fifo)
            os.write(fd, b"\0")
        finally:
            os.close(fd)
        return
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # runc's init writes "0"
    try:
        deadline = time.monotonic() + timeout
        while True:
            readable, _, _ = select.select([fd], [], [], 0.05)
            if readable:
                try:
                    if os.read(fd, 1):
                        break
                except BlockingIOError:
                    continue
            if not alive(pid):
                raise OSError(errno.ESRCH, f"the container's init {pid} is gone")
            if time.monotonic() > deadline:
                raise OSError(errno.ETIMEDOUT, f"init {pid} did not open {fifo}")
        os.unlink(fifo)
    finally:
        os.close(fd)


def alive(pid: int) -> bool:
    """``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
    except OSError:
        return False
