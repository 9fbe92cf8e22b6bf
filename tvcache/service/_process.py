"""``tvcache serve`` as a child process: what benchmarks, tests and examples start and stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, Self

import psutil

from snapshots import TvcacheError

READY = "tvcache serve: listening on "


class ServerProcess:
    """Starts ``tvcache --home HOME serve --port 0 ARGS`` and waits until it listens."""

    def __init__(self, home: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.home = home
        self._log: IO[str] = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed in stop)
        command = [sys.executable, "-m", "tvcache.cli", "--home", str(home), "serve"]
        if "--port" not in args:
            command += ["--port", "0"]
        environment = {**os.environ, **(env or {})}
        if "TVCACHE_STORE_URL" not in (env or {}):  # the home's store unless told otherwise
            environment.pop("TVCACHE_STORE_URL", None)
        self.proc = subprocess.Popen(
            [*command, *args], stdout=subprocess.PIPE, stderr=self._log, text=True, env=environment
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # the server prints it once it listens, or dies
        if not line.startswith(READY):
            self.proc.wait(timeout=30)
            raise TvcacheError(f"tvcache serve did not start:\n{self.log()}", "see its output")
        self.url = line[len(READY) :].strip()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read()

    def rss(self) -> int:
        """Resident memory of the server process, in bytes."""
        return int(psutil.Process(self.pid).memory_info().rss)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Send ``sig`` and wait; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()
        return code

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.stop(signal.SIGKILL if exc[0] is not None else signal.SIGTERM)
        self._log.close()
