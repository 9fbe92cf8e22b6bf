"""Isolation of local-backend commands with bubblewrap (``bwrap``): what a command may see and do.

Each ``bash`` call runs in fresh namespaces (mount, PID, IPC, UTS, network unless the root's
option ``network`` is true): the sandbox's ``home`` is the only writable directory (mounted at
``/sandbox``), ``/tmp`` is a private size-limited tmpfs, ``/usr`` and ``/etc`` are read-only,
and nothing else of the host exists (``$TVCACHE_HOME``, other sandboxes, ``/root``, ``/home``,
``/run``, ``/var``). Every process of the sandbox's PID namespace is killed when a call ends, so
no process outlives a call, and nothing outside can be seen or signalled. Resource limits
(address space, processes, CPU time, file size) are set with ``ulimit`` before the command, as
hard limits it cannot raise.

The command never runs as root: a root server starts ``bwrap`` with its real privileges (so it
can reach sandboxes under a ``0700`` home) and ``setpriv`` drops to :attr:`Isolation.uid` with
``no_new_privs`` before bash starts; a non-root server runs unprivileged ``bwrap`` (a user
namespace) and the command keeps the server's uid.

Cost: bwrap's own start is ~15 ms, so a root server keeps one isolated supervisor per sandbox
(:mod:`sandbox._supervisor`) and each call is a fork of it (~2 ms added); it runs as uid 0 with
three capabilities, out of the calls' reach. A non-root server (or ``TVCACHE_SANDBOX_SUPERVISED=
off``) starts a fresh bwrap per call: a supervisor there would share the calls' uid, and a call
could trace or kill it and keep processes alive past its end.
"""

from __future__ import annotations

import contextlib
import functools
import os
import resource
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sandbox._supervisor import PYTHON
from sandbox._tools import INNER_ROOT, INNER_STATE
from snapshots import TvcacheError

READ_ONLY = ("/usr", "/etc")
LINKABLE = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
MiB = 1024**2


class IsolationError(TvcacheError):
    """Isolation is unavailable, misconfigured, or failed to start a command."""


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        message = f"${name}={raw!r} is not an integer"
        raise IsolationError(message, f"unset it or set e.g. {default}") from None
    if value < 0:
        raise IsolationError(f"${name}={raw!r} is negative", "use 0 for no limit, or a size")
    return value


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-command resource limits; 0 means none. Env: ``TVCACHE_SANDBOX_<FIELD>``.

    ``processes`` is RLIMIT_NPROC: it counts every process of the sandbox uid on the host, so
    when the server runs as root all sandboxes share it (a fork bomb in one can make forks fail
    in the others until its call ends).
    """

    memory_mb: int = 4096  # RLIMIT_AS per process
    processes: int = 1024  # RLIMIT_NPROC
    cpu_seconds: int = 600  # RLIMIT_CPU per process
    file_mb: int = 1024  # RLIMIT_FSIZE: the largest file a command can write
    tmp_mb: int = 512  # size of the private /tmp (tmpfs, counts as memory)

    @classmethod
    def from_env(cls) -> Limits:
        defaults = cls()
        return cls(
            **{
                name: _env_int(f"TVCACHE_SANDBOX_{name.upper()}", getattr(defaults, name))
                for name in cls.__slots__
            }
        )

    def ulimit_args(self) -> list[str]:
        """``ulimit`` values (KiB, count, seconds, KiB), never above the server's hard limits."""

        def value(amount: int, scale: int, which: int) -> str:
            hard = resource.getrlimit(which)[1]
            if amount == 0:
                return "unlimited" if hard == resource.RLIM_INFINITY else str(hard // scale)
            if hard != resource.RLIM_INFINITY:
                amount = min(amount, hard // scale)
            return str(amount)

        return [
            value(self.memory_mb * 1024, 1024, resource.RLIMIT_AS),
            value(self.processes, 1, resource.RLIMIT_NPROC),
            value(self.cpu_seconds, 1, resource.RLIMIT_CPU),
            value(self.file_mb * 1024, 1024, resource.RLIMIT_FSIZE),
        ]


@dataclass(frozen=True, slots=True)
class Isolation:
    """How local-backend commands are isolated. ``enabled=False`` is the explicit opt-out.

    ``supervised``: root servers keep one isolated supervisor per sandbox that forks each call
    (:mod:`sandbox._supervisor`, ~2 ms a call) instead of a fresh bwrap per call (~15 ms);
    ``uid``/``gid``: who commands run as when the server is root (default ``nobody``);
    ``hidden``: host paths masked by an empty tmpfs when they lie under a read-only system
    directory (the backend passes its snapshot and sandbox directories).
    """

    enabled: bool = True
    supervised: bool = True
    uid: int = 65534
    gid: int = 65534
    limits: Limits = field(default_factory=Limits)
    hidden: tuple[str, ...] = ()

    @classmethod
    def from_env(cls) -> Isolation:
        """Defaults, with ``TVCACHE_SANDBOX_UID``/``_GID`` and the limits from the environment;
        ``TVCACHE_SANDBOX_ISOLATION=off`` is the opt-out (``serve --unsafe-no-isolation``)."""
        switch = os.environ.get("TVCACHE_SANDBOX_ISOLATION", "on").strip().lower()
        if switch not in ("on", "off"):
            raise IsolationError(
                f"$TVCACHE_SANDBOX_ISOLATION={switch!r} is neither 'on' nor 'off'", "unset it"
            )
        supervised = os.environ.get("TVCACHE_SANDBOX_SUPERVISED", "on").strip().lower() != "off"
        return cls(
            enabled=switch == "on",
            supervised=supervised,
            uid=_env_int("TVCACHE_SANDBOX_UID", 65534),
            gid=_env_int("TVCACHE_SANDBOX_GID", 65534),
            limits=Limits.from_env(),
        )

    @property
    def uses_supervisor(self) -> bool:
        """Whether calls fork from a per-sandbox supervisor (root servers with python3)."""
        return self.supervised and self.drops_privileges and os.access(PYTHON, os.X_OK)

    @property
    def drops_privileges(self) -> bool:
        """Whether commands change uid (the server is root) rather than keep the server's."""
        return os.geteuid() == 0

    def command(
        self,
        home: Path,
        state: Path,
        argv: Sequence[str],
        *,
        network: bool = False,
        supervisor: bool = False,
    ) -> list[str]:
        """``argv`` (run inside) wrapped in bwrap: ``home`` at ``/sandbox``, ``state`` read-only
        at ``/run/tvcache`` with its ``out`` writable, the rest as the module docstring says.

        ``supervisor``: ``argv`` is :mod:`sandbox._supervisor`'s PID 1, which keeps uid 0 with
        CAP_SETUID, CAP_SETGID and CAP_KILL and drops each call itself (root servers only)."""
        tools = _tools()
        if tools is None:
            raise IsolationError("bubblewrap (bwrap) is not installed", _INSTALL)
        bwrap, setpriv = tools
        cmd = [bwrap, "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
        if not network:
            cmd.append("--unshare-net")
        if not self.drops_privileges:
            cmd.append("--unshare-user")
        if not supervisor:  # a supervisor outlives the thread that started it: it ends on EOF
            cmd += ["--die-with-parent", "--new-session"]
        cmd += ["--hostname", "sandbox"]
        cmd += _system_mounts()
        for path in self.hidden:
            if any(Path(path).is_relative_to(p) for p in READ_ONLY):
                cmd += ["--tmpfs", path]
        cmd += ["--proc", "/proc", "--dev", "/dev"]
        if self.limits.tmp_mb:  # bwrap takes --size and --perms before the --tmpfs
            cmd += ["--size", str(self.limits.tmp_mb * MiB)]
        cmd += ["--perms", "1777", "--tmpfs", "/tmp", "--bind", str(home), INNER_ROOT]
        cmd += ["--perms", "0755", "--dir", os.path.dirname(INNER_STATE)]
        cmd += ["--ro-bind", str(state), INNER_STATE]
        # "/": uid 0 without DAC capabilities may not enter a 0700 /sandbox (bash's wrapper does)
        cmd += ["--bind", str(state / "out"), f"{INNER_STATE}/out", "--chdir", "/"]
        if supervisor:  # uid 0 in the sandbox keeps every capability unless told: drop them
            caps = ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
            return [*cmd, *caps, "--cap-add", "CAP_KILL", "--as-pid-1", "--", *argv]
        if self.drops_privileges:
            assert setpriv is not None
            cmd += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
            cmd += ["--", setpriv]
            cmd += [f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups"]
            cmd += ["--no-new-privs", "--inh-caps=-all"]
        return [*cmd, "--", *argv]

    def prepare(self, path: Path) -> None:
        """Give ``path`` and everything under it to the sandbox uid (root servers only).

        For what root made there: a template's copy, files a tool running in the server wrote.
        Symlinks are changed themselves, never followed; entries already owned are skipped.
        """
        if not self.drops_privileges:
            return
        pending = [path]
        self._own(path)
        while pending:
            with os.scandir(pending.pop()) as entries:
                for entry in entries:
                    self._own(Path(entry.path))
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(Path(entry.path))

    def hand_over(self, path: Path) -> None:
        """Give one file to the sandbox uid (root servers only); a missing file is no error."""
        if self.drops_privileges:
            with contextlib.suppress(FileNotFoundError):
                self._own(path)

    def _own(self, path: Path) -> None:
        info = path.lstat()
        if info.st_uid != self.uid or info.st_gid != self.gid:
            os.chown(path, self.uid, self.gid, follow_symlinks=False)


_INSTALL = "run `sh scripts/install-bubblewrap.sh` (apt-get install bubblewrap)"


@functools.cache
def _tools() -> tuple[str, str | None] | None:
    """``bwrap`` and ``setpriv`` as found on ``$PATH`` (None without bwrap)."""
    bwrap = shutil.which("bwrap")
    return None if bwrap is None else (bwrap, shutil.which("setpriv"))


@functools.cache
def _system_mounts() -> tuple[str, ...]:
    """Read-only binds of the system directories; merged-/usr links as links."""
    args: list[str] = []
    for path in READ_ONLY:
        if os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in LINKABLE:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return tuple(args)


@dataclass(frozen=True, slots=True)
class Probe:
    """Whether isolation works here: ``ok``, and what was found or what failed."""

    ok: bool
    detail: str
    fix: str = ""


def probe(isolation: Isolation | None = None) -> Probe:
    """Run one tiny isolated command (cached per process and uid mode) and report."""
    isolation = isolation or Isolation()
    if not isolation.enabled:
        return Probe(
            False,
            "disabled ($TVCACHE_SANDBOX_ISOLATION=off or Isolation(enabled=False))",
            "unset TVCACHE_SANDBOX_ISOLATION",
        )
    return _probe(isolation.drops_privileges, isolation.uid, isolation.gid, isolation.supervised)


@functools.cache
def _probe(root: bool, uid: int, gid: int, supervised: bool) -> Probe:
    tools = _tools()
    if tools is None:
        return Probe(False, "bubblewrap (bwrap) is not installed", _INSTALL)
    if root and tools[1] is None:
        return Probe(False, "setpriv (util-linux) is not installed", "apt-get install util-linux")
    isolation = Isolation(uid=uid, gid=gid, supervised=supervised)
    with tempfile.TemporaryDirectory(prefix="tvcache-probe-") as tmp:
        home, state = Path(tmp) / "home", Path(tmp) / "state"
        (state / "out").mkdir(parents=True)
        home.mkdir()
        state.chmod(0o755)
        isolation.prepare(home)
        isolation.prepare(state / "out")
        argv = ["/bin/sh", "-c", "id -u; touch /sandbox/ok; ls /run/tvcache"]
        try:
            done = subprocess.run(
                isolation.command(home, state, argv),
                capture_output=True,
                text=True,
                timeout=30,
                env={},
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            return Probe(False, f"bwrap could not run: {error}", _INSTALL)
        out = (done.stdout + done.stderr).strip()
        if done.returncode != 0 or not (home / "ok").exists():
            return Probe(
                False,
                f"bwrap failed (exit {done.returncode}): {out[:300]}",
                "unprivileged user namespaces must be allowed "
                "(sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0); "
                "inside a container, run it with --privileged or a seccomp profile allowing them",
            )
        if isolation.uses_supervisor:
            failed = _try_supervisor(isolation, home, state)
            if failed:
                return Probe(False, f"the supervisor failed: {failed}", _NO_SUPERVISOR)
    who = f"uid {uid}" if root else f"the server's uid {os.geteuid()}"
    version = subprocess.run([tools[0], "--version"], capture_output=True, text=True).stdout
    how = ", forked from one supervisor per sandbox" if isolation.uses_supervisor else ""
    return Probe(True, f"{version.strip()}: commands run as {who} in their own namespaces{how}")


_NO_SUPERVISOR = "set TVCACHE_SANDBOX_SUPERVISED=off (a fresh bwrap per call, slower)"


def _try_supervisor(isolation: Isolation, home: Path, state: Path) -> str:
    """Run one call through a supervisor; what went wrong, or ``""``."""
    from sandbox._supervisor import Supervisor
    from sandbox._tools import OutputBuffer

    supervisor = Supervisor(isolation, home, state, network=False)
    output = OutputBuffer(4096)
    try:
        code = supervisor.run(["/bin/sh", "-c", "touch /sandbox/supervised"], 30, output)
    except RuntimeError as error:
        return str(error)
    finally:
        supervisor.close()
    if code != 0 or not (home / "supervised").exists():
        return f"exit {code}"
    return ""


_warned: list[bool] = []


def warn_unisolated(reason: str) -> None:
    """Warn once per process that local commands run without isolation."""
    if _warned:
        return
    _warned.append(True)
    warnings.warn(
        f"tvcache local backend: commands run WITHOUT isolation ({reason}); a command can read "
        f"and write anything this process can, including the cache store. {_INSTALL}.",
        RuntimeWarning,
        stacklevel=3,
    )
