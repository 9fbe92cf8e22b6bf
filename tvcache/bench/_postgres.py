"""A private, throwaway PostgreSQL server from the local binaries (initdb, pg_ctl): what a
benchmark of several servers sharing one store (and the integration tests) start for
themselves. Fast and unsafe (fsync off): never for data that matters."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Self

from snapshots import TvcacheError

INSTALL_HINT = "install it with `apt-get install postgresql` (or scripts/install-postgres.sh)"


def postgres_bindir() -> Path | None:
    """The newest installed PostgreSQL's ``bin`` directory, else the one on ``PATH``."""

    def version(initdb: Path) -> tuple[int, ...]:
        name = initdb.parent.parent.name
        return tuple(int(part) for part in name.split(".") if part.isdigit())

    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=version)
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PrivatePostgres:
    """A PostgreSQL cluster in a temporary directory, on a free loopback port."""

    def __init__(self, bindir: Path | None = None) -> None:
        found = bindir or postgres_bindir()
        if found is None:
            raise TvcacheError("no PostgreSQL server binaries (initdb, pg_ctl) found", INSTALL_HINT)
        self.bindir = found
        self.dir = Path(tempfile.mkdtemp(prefix="tvcache-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self.user: str | None = None
        if os.geteuid() == 0:  # initdb refuses to run as root
            try:
                entry = pwd.getpwnam("postgres")
            except KeyError as error:
                shutil.rmtree(self.dir, ignore_errors=True)
                raise TvcacheError(
                    "running as root and there is no `postgres` user to run initdb as",
                    "create one (apt-get install postgresql does), or run as another user",
                ) from error
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
            self.user = "postgres"

    def _run(self, *args: str) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        result = subprocess.run(command, cwd=self.dir, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")

    def start(self) -> str:
        """Start it; its superuser URL (database ``postgres``)."""
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--no-sync")  # fmt: skip
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} "
            "-c fsync=off -c full_page_writes=off -c synchronous_commit=off"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-o", options,
                  "-w", "-t", "60", "start")  # fmt: skip
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        """Stop it at once and delete everything it held."""
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
