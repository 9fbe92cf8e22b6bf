"""The persistent shell of a Docker sandbox and the host side of its protocol.

Why this shape: CRIU checkpoints only the tree of the container's PID 1 (``docker exec``
processes are not in it), and a call must cost milliseconds, not a ``docker exec`` (~40 ms).
So PID 1 is a tiny bash *supervisor* whose child, the *session shell*, runs every command with
``eval`` in the same bash process: ``cd``, ``export``, unexported variables, functions, options
and background jobs (``cmd &``) persist from call to call, and a ``full`` snapshot catches them.
Both are a plain ``bash`` (their scripts come through ``BASH_ENV``, not the command line), so
``ps`` shows what a plain shell in a container shows.

PIDs are a function of the history: the session shell of a fresh start is always pid
:data:`FIRST_SHELL_PID` (the host sets the namespace's ``ns_last_pid`` before the supervisor
may start it; an ``fs`` fork's gets the pid the snapshotted one had), every reply carries the
last pid after the call, and after a fork or a snapshot the host sets the counter back to
it before the next call (:func:`set_last_pid`). Nothing of the harness forks in the container
between calls (the state dump uses builtins only), so the counter moves only with commands.

The two sides talk through a host directory bind-mounted at ``/run/tvcache`` (never committed
into images, re-bound to a fresh directory in every fork):

- ``init``/``shell``/``loop``: the scripts; ``go``: a FIFO the supervisor reads once before it
  starts the first session shell (the host writes it after setting the pid counter);
- ``cmd``: the command text; ``req``: a FIFO that carries ``<id> <mode>`` (``sh`` runs in the
  session shell, ``sub`` in a subshell that leaves its state alone, ``ping`` only answers,
  ``state`` writes ``vars``). The
  session shell holds it open, so the host's non-blocking open fails (ENXIO) exactly while no
  shell is listening (a restart after ``exit`` or a timeout);
- ``log``: the merged stdout+stderr of the running call (``O_APPEND``; the host truncates it
  before each call). A background job that keeps it open may write into any later call: the
  sandbox flags such calls nondeterministic (:mod:`sandbox._docker_state`);
- ``status``: a FIFO that answers ``<id> <exit code> <boot id> <last pid>``. The boot id is
  drawn once by the supervisor and lives in memory only: a restored checkpoint answers with the
  old one, which is how a ``full`` fork proves that it restored rather than started cold;
- ``cur``/``jobs``: the running call and the background jobs that existed before it, so a
  timeout kills the call's processes and the session shell but spares earlier jobs;
- ``cwd``/``env``/``functions``/``shellpid``: the shell state after each completed call. A
  session shell that was killed (timeout) or exited (``exit 3``) is restarted by the
  supervisor from them; ``fs`` snapshots record them;
- ``vars``: written on request (mode ``state``): every variable (exported or not), the
  options, aliases and umask, as a script (``names``/``opts`` are its scratch files). ``fs``
  snapshots and fingerprints use it; an ``fs`` fork's shell sources it once at start (as
  ``vars.fork``), a restart does not. Background jobs survive only in the live shell and in
  ``full`` forks.

A command's top-level ``return`` ends the sourced request loop, not the shell: the call ends
there with that exit code (bash would print an error and go on with the next command).
Every host-side open uses ``O_NOFOLLOW``: the container may plant symlinks in the directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import select
import signal
import stat
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import psutil

from sandbox._tool_runner import TOOL_COMMAND, TOOL_GRACE, TOOL_REQUEST
from sandbox._tools import cap_text, timeout_observation
from sandbox._types import Observation, ToolCallError
from snapshots import SnapshotError

MOUNT = "/run/tvcache"
"""Where the protocol directory appears inside the container."""
FIRST_SHELL_PID = 10
"""The session shell's pid in a fresh start: fixed, whatever pids the runtime used starting."""
_LIVENESS_SECONDS = 3.0

_LAST_PID = "/proc/sys/kernel/ns_last_pid"
"""The PID namespace's last allocated pid: readable inside, writable only by the host."""

_SUPERVISOR = f"""
builtin unset BASH_ENV
exec </dev/null >/dev/null 2>&1
IFS= read -r B </proc/sys/kernel/random/uuid
IFS= read -r _ <@@/go
while :; do
  BASH_ENV=@@/shell TVCACHE_BOOT=$B bash &
  wait "$!"
  rc=$?
  IFS= read -r L <{_LAST_PID}
  if IFS=' ' read -r id rest <@@/cur && [[ -n $id ]]; then
    : >|@@/cur
    echo "$id $rc $B $L" >@@/status
  fi
done
"""
"""PID 1: ``bash`` sourcing this through ``BASH_ENV`` (nothing in its command line). It waits
for the host's ``go`` (sent once the host set the pid counter, so that the session shell's pid
is the same in every fresh start and fs fork), then starts the session shell the same way and
restarts it when it dies. Neither forks anything else."""

_SAVE = (
    'builtin printf %s "$PWD" >|@@/cwd; builtin export -p >|@@/env; '
    "builtin declare -f >|@@/functions"
)

_VOLATILE = (
    "__tvc_*|_|BASH|BASHOPTS|BASHPID|BASH_ALIASES|BASH_ARG*|BASH_CMDS|BASH_COMMAND|"
    "BASH_EXECUTION_STRING|BASH_LINENO|BASH_SOURCE|BASH_SUBSHELL|BASH_VERSINFO|BASH_VERSION|"
    "COLUMNS|COMP_*|DIRSTACK|EPOCHREALTIME|EPOCHSECONDS|EUID|FUNCNAME|GROUPS|HISTCMD|HOSTNAME|"
    "HOSTTYPE|LINENO|LINES|MACHTYPE|OSTYPE|PIPESTATUS|PPID|PWD|RANDOM|SECONDS|SHELLOPTS|SRANDOM|UID"
)
"""Variables that bash sets itself or that say which process this is, not what state it is in."""

_DUMP = (
    "builtin compgen -v >|@@/names; builtin shopt -p >|@@/opts; "
    "{ while IFS= builtin read -r __tvc_v; do case $__tvc_v in "
    f'{_VOLATILE}) ;; *) builtin declare -p -- "$__tvc_v";; esac; done <@@/names; '
    "while IFS= builtin read -r __tvc_v; do "
    '[[ $__tvc_v == *compat* ]] || builtin echo "$__tvc_v"; done <@@/opts; '
    "builtin set +o; builtin alias -p; builtin umask -p; } >|@@/vars 2>/dev/null"
)
"""All variables (exported or not), options, aliases and the umask, as a script that restores
them: the rest of the session shell's state beyond cwd and functions. Builtins and files of
the protocol directory only, no pipe or subshell: a dump must not fork (a fork would move the
pids every later call sees). The ``compat*`` options are left out: setting them back would
set ``BASH_COMPAT``."""

_FINISH = f"""
  IFS= builtin read -r __tvc_pid <{_LAST_PID}
  IFS=' ' builtin read -r __tvc_id __tvc_x <@@/cur
  builtin : >|@@/cur
  {_SAVE}
  builtin echo "$__tvc_id $__tvc_rc $__tvc_boot $__tvc_pid" >@@/status
"""
"""The end of a call: the last pid (the state of the pid counter), then the shell state, then
the reply ``<id> <exit code> <boot id> <last pid>``."""

_LOOP = f"""
while :; do
  IFS=' ' builtin read -r -u 3 __tvc_id __tvc_mode || continue
  IFS= builtin read -r __tvc_pid <{_LAST_PID}
  if [[ $__tvc_mode == ping ]]; then
    builtin echo "$__tvc_id 0 $__tvc_boot $__tvc_pid" >@@/status
    continue
  fi
  if [[ $__tvc_mode == state ]]; then
    {_DUMP}
    builtin echo "$__tvc_id 0 $__tvc_boot $__tvc_pid" >@@/status
    continue
  fi
  builtin jobs -p >|@@/jobs
  builtin echo "$__tvc_id $$" >|@@/cur
  IFS= builtin read -r -d '' __tvc_cmd <@@/cmd
  if [[ $__tvc_mode == sub ]]; then
    ( builtin eval "$__tvc_cmd" ) >>@@/log 2>&1 </dev/null 3<&-
  else
    {{ builtin eval "$__tvc_cmd"; }} >>@@/log 2>&1 </dev/null 3<&-
  fi
  __tvc_rc=$?
  {_FINISH}
done
"""
"""The session shell's request loop, sourced: a top-level ``return`` in a command ends the
``source`` (not the shell), and :data:`_SESSION` finishes that call and sources it again."""

_SESSION = f"""
builtin unset BASH_ENV
readonly __tvc_boot=$TVCACHE_BOOT
builtin unset TVCACHE_BOOT
if [[ -e @@/env ]]; then
  IFS= builtin read -r -d '' __tvc_c <@@/cwd
  builtin cd -- "$__tvc_c" 2>/dev/null
  builtin unset OLDPWD
  builtin compgen -e >|@@/names
  while IFS= builtin read -r __tvc_v; do builtin unset "$__tvc_v" 2>/dev/null; done <@@/names
  builtin source @@/env >/dev/null 2>&1
  builtin source @@/functions >/dev/null 2>&1
  builtin unset __tvc_c __tvc_v
fi
if [[ -s @@/vars.fork ]]; then
  builtin source @@/vars.fork >/dev/null 2>&1
  builtin : >|@@/vars.fork
fi
builtin echo $$ >|@@/shellpid
{_SAVE}
builtin trap '{_SAVE}' EXIT
while :; do
  exec </dev/null >/dev/null 2>&1 3<>@@/req
  builtin source @@/loop
  __tvc_rc=$?
  {_FINISH}
done
"""
"""The session shell (``bash``, from ``BASH_ENV`` like PID 1): every call runs in it with
``eval``, so its whole state persists between calls."""


def container_command() -> list[str]:
    """The container's ``Cmd``: PID 1 becomes a plain ``bash`` that sources the supervisor.

    Scripts are sourced (bash reads the whole file, then closes it), not kept open: a regular
    file that a checkpointed process holds open must exist with the same size in every fork.
    """
    return ["bash", "-c", f"BASH_ENV={MOUNT}/init exec bash"]


SCRIPTS = {
    "init": _SUPERVISOR.replace("@@", MOUNT).encode(),
    "shell": _SESSION.replace("@@", MOUNT).encode(),
    "loop": _LOOP.replace("@@", MOUNT).encode(),
}
"""The files :func:`prepare` writes for :func:`container_command`."""


class ShellError(SnapshotError):
    """The shell server of a sandbox does not answer (the container died or was broken)."""


@dataclass(frozen=True, slots=True)
class SessionState:
    """The session shell's state as files: absolute cwd, ``export -p``, ``declare -f``,
    (when asked for, see :meth:`ShellChannel.full_state`) the ``vars`` script, and its pid."""

    cwd: str = ""
    env: str = ""
    functions: str = ""
    vars: str = ""
    shellpid: str = ""

    def to_dict(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in _STATE_FILES}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> SessionState:
        return cls(*(str(data.get(k, "")) for k in _STATE_FILES))

    def shell_pid(self) -> int:
        """The pid the session shell had (and a fork's gets); a fresh start's if unknown."""
        return int(self.shellpid) if self.shellpid.strip().isdigit() else FIRST_SHELL_PID


_STATE_FILES = ("cwd", "env", "functions", "vars", "shellpid")


def _open(path: Path, flags: int, mode: int = 0o666) -> int:
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)


def write_file(path: Path, data: bytes) -> None:
    fd = _open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        os.fchmod(fd, 0o666)
        while data:
            data = data[os.write(fd, data) :]
    finally:
        os.close(fd)


def read_head(path: Path, limit: int) -> tuple[bytes, int]:
    """The first ``limit`` bytes of a regular file and its size; (b"", 0) when missing."""
    try:
        fd = _open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return b"", 0
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return b"", 0
        return os.pread(fd, min(limit, st.st_size), 0), st.st_size
    finally:
        os.close(fd)


def prepare(directory: Path, state: SessionState | None, files: Mapping[str, bytes]) -> None:
    """Lay out a fresh protocol directory; ``state`` is what the session shell starts in."""
    directory.mkdir(parents=True)
    directory.chmod(0o777)  # the image's USER may not be root
    for fifo in ("req", "status", "go"):
        os.mkfifo(directory / fifo, 0o666)
        (directory / fifo).chmod(0o666)
    for name in ("log", "cmd", "cur", "jobs"):
        write_file(directory / name, b"")
    write_state(directory, state)
    for name, data in {**SCRIPTS, **files}.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        write_file(directory / name, data)


def write_state(directory: Path, state: SessionState | None) -> None:
    """Give a protocol directory whose shell has not started the state it starts in (the
    rest of it can be laid out ahead of time: :func:`prepare` with no state)."""
    if state is not None and state.cwd:
        for name, text in state.to_dict().items():
            name = {"vars": "vars.fork"}.get(name, name)
            write_file(directory / name, text.encode("utf-8", "surrogateescape"))


class ShellChannel:
    """The host end of one sandbox's protocol directory. Not thread-safe, like the sandbox.

    ``alive()`` says whether the container still runs; it is asked every few seconds while
    waiting, so that a dead sandbox raises :class:`ShellError` instead of waiting for a timeout.
    A shell that takes no request for ``ready_timeout`` seconds is an error too.
    """

    def __init__(
        self,
        directory: Path,
        alive: Callable[[], bool],
        ready_timeout: float = 30.0,
    ) -> None:
        self.directory = directory
        self.alive = alive
        self.ready_timeout = ready_timeout
        self._pin: Callable[[int], None] | None = None
        self.last_pid: int | None = None
        """The namespace's last pid after the last call: the pid counter's place in history."""
        self.pending_pid: int | None = None
        """Set the counter to this before the next call (a fork, or harness work, moved it)."""
        # O_RDWR: the FIFO always has a writer (us), so it never reports end-of-file.
        self._status = _open(directory / "status", os.O_RDWR | os.O_NONBLOCK)
        self._pending = b""
        self._next_id = 0

    def close(self) -> None:
        if self._status >= 0:
            os.close(self._status)
            self._status = -1

    def go(self, init_pid: int, shell_pid: int) -> None:
        """Let a cold-started supervisor start the session shell, as pid ``shell_pid``."""
        set_last_pid(init_pid, shell_pid - 1)
        self._send(b"\n", time.monotonic() + self.ready_timeout, fifo="go")

    def ping(self, timeout: float) -> str:
        """Ask the session shell for its boot id; raise :class:`ShellError` if it is silent."""
        reply = self._call("ping", timeout)
        if reply is None:
            raise ShellError(f"the shell server did not answer within {timeout:g} s")
        if self.last_pid is None:
            self.last_pid = reply[2]
        return reply[1]

    def shell_pid(self) -> int | None:
        """The session shell's pid in the container (it writes it when it starts)."""
        text = read_head(self.directory / "shellpid", 64)[0].strip()
        return int(text) if text.isdigit() else None

    def set_pin(self, pin: Callable[[int], None]) -> None:
        """How to set the pid counter (the sandbox knows the container's PID 1)."""
        self._pin = pin

    def pin_pid(self, last_pid: int | None) -> None:
        """Make the next call continue the pid counter from ``last_pid`` (None: where it is)."""
        if last_pid is not None:
            self.last_pid = self.pending_pid = last_pid

    def run(
        self, command: str, mode: str, timeout: float, interrupt: Callable[[], None]
    ) -> int | None:
        """Run ``command``; its exit code, or None when it timed out and ``interrupt()`` ran."""
        write_file(self.directory / "cmd", command.encode("utf-8", "replace") + b"\0")
        self.truncate_log()
        reply = self._call(mode, timeout)
        if reply is not None:
            return reply[0]
        interrupt()
        self._await(self._next_id, time.monotonic() + 2.0)  # the supervisor's report of the kill
        return None

    def bash(
        self, command: str, timeout: float, max_bytes: int, interrupt: Callable[[], None]
    ) -> Observation:
        """``command`` in the session shell, its output capped like the local backend's."""
        code = self.run(command, "sh", timeout, interrupt)
        head, size = read_head(self.directory / "log", 4 * max_bytes + 64 * 1024)
        text, truncated = cap_text(head.decode("utf-8", "replace"), size - len(head), max_bytes)
        if code is None:
            return timeout_observation(text, truncated, timeout)
        return Observation(output=text, exit_code=code, truncated=truncated)

    def python_tool(
        self, request: Mapping[str, object], timeout: float, interrupt: Callable[[], None]
    ) -> Observation:
        """A Python tool run by python3 in the container (see :func:`helper_files`).

        ``request["entry"]`` names it (``module:qualname``). The ``sqlite`` tool stops itself
        at ``timeout``; ``interrupt`` only comes :data:`TOOL_GRACE` later.
        """
        write_file(self.directory / TOOL_REQUEST, json.dumps(request).encode())
        code = self.run(TOOL_COMMAND, "sub", timeout + TOOL_GRACE, interrupt)
        if code is None:
            return timeout_observation("", False, timeout)
        head, _ = read_head(self.directory / "log", 1 << 26)
        lines = head.rstrip(b"\n").rsplit(b"\n", 1)
        try:
            data = json.loads(lines[-1])
        except ValueError:
            said = head.decode("utf-8", "replace")[-2000:]
            raise ToolCallError(
                f"tool {request['entry']} did not run in the container (exit {code}): {said}",
                "the image needs python3 >= 3.10, and the tool's module may import only the"
                " standard library and tool names from tvcache or sandbox",
            ) from None
        if "tool_call_error" in data:
            raise ToolCallError(*data["tool_call_error"])
        return Observation(**data)

    def truncate_log(self) -> None:
        fd = _open(self.directory / "log", os.O_WRONLY | os.O_CREAT)
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)

    def state(self) -> SessionState:
        """The shell state saved after the last completed call."""
        cwd, env, functions, shellpid = (
            read_head(self.directory / name, 1 << 26)[0].decode("utf-8", "surrogateescape")
            for name in ("cwd", "env", "functions", "shellpid")
        )
        return SessionState(cwd, env, functions, shellpid=shellpid.strip())

    def full_state(self, timeout: float = 30.0) -> SessionState:
        """The saved state plus a fresh ``vars`` dump (a round trip to the idle shell)."""
        reply = self._call("state", timeout)
        if reply is None:
            raise ShellError(f"the shell server did not dump its state within {timeout:g} s")
        text = read_head(self.directory / "vars", 1 << 26)[0].decode("utf-8", "surrogateescape")
        return replace(self.state(), vars=text)

    def current_call(self) -> tuple[int | None, set[int]]:
        """Namespace pid of the session shell running a call (None if idle), and kept jobs."""
        cur = read_head(self.directory / "cur", 4096)[0].split()
        jobs = read_head(self.directory / "jobs", 1 << 20)[0].split()
        pid = int(cur[1]) if len(cur) >= 2 and cur[1].isdigit() else None
        return pid, {int(j) for j in jobs if j.isdigit()}

    # ------------------------------------------------------------------ internals
    def _call(self, mode: str, timeout: float) -> tuple[int, str, int | None] | None:
        """Send a request; the reply's ``(exit code, boot id, last pid)``, None at timeout.

        Before a command (modes ``sh``/``sub``) the pid counter is set to :attr:`pending_pid`
        if that is due, once the shell listens (a restarted shell has forked all it forks).
        """
        self._next_id += 1
        deadline = time.monotonic() + timeout
        ready = min(deadline, time.monotonic() + self.ready_timeout)
        command = mode in ("sh", "sub")
        before = self._pin_pending if command else None
        self._send(f"{self._next_id} {mode}\n".encode(), ready, before)
        reply = self._await(self._next_id, deadline)
        if command and reply is not None and reply[2] is not None:
            self.last_pid = reply[2]
        return reply

    def _pin_pending(self) -> None:
        if self.pending_pid is not None and self._pin is not None:
            self._pin(self.pending_pid)
            self.pending_pid = None

    def _send(
        self,
        line: bytes,
        deadline: float,
        before: Callable[[], None] | None = None,
        fifo: str = "req",
    ) -> None:
        """Write to the request FIFO once the session shell has it open (ENXIO until then);
        ``before()`` runs just before the write. ``fifo="go"``: the supervisor's start."""
        delay, checked = 0.0, time.monotonic()
        while True:
            try:
                fd = _open(self.directory / fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as error:
                if error.errno != errno.ENXIO or time.monotonic() > deadline:
                    raise ShellError(
                        f"the shell of {self.directory.name} takes no requests on {fifo} "
                        f"({os.strerror(error.errno or 0)})",
                        "close this sandbox and fork a new one",
                    ) from error
                if time.monotonic() - checked > _LIVENESS_SECONDS:
                    self._check_alive()
                    checked = time.monotonic()
                time.sleep(delay)  # 0 first: the shell reopens in microseconds after a reply
                delay = min(max(delay * 2, 0.0002), 0.02)
                continue
            try:
                if before is not None:
                    before()
                os.write(fd, line)
            finally:
                os.close(fd)
            return

    def _await(self, call_id: int, deadline: float) -> tuple[int, str, int | None] | None:
        """``(exit code, boot id, last pid)`` of the reply to ``call_id``; None at the
        deadline. The last pid is None in replies of shells restored from older snapshots."""
        expected = str(call_id).encode()
        while True:
            while b"\n" in self._pending:
                line, self._pending = self._pending.split(b"\n", 1)
                fields = line.split()
                if len(fields) in (3, 4) and fields[0] == expected and fields[1].isdigit():
                    pid = int(fields[3]) if len(fields) == 4 and fields[3].isdigit() else None
                    return int(fields[1]), fields[2].decode(errors="replace"), pid
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([self._status], [], [], min(remaining, _LIVENESS_SECONDS))
            if ready:
                with contextlib.suppress(BlockingIOError):
                    self._pending += os.read(self._status, 65536)
            elif remaining > _LIVENESS_SECONDS:
                self._check_alive()

    def _check_alive(self) -> None:
        if not self.alive():
            raise ShellError(
                f"the container of {self.directory.name} stopped",
                "it ran out of memory or was stopped; close this sandbox and fork a new one",
            )


def ns_pid(pid: int) -> int | None:
    """A host pid's pid inside its innermost pid namespace (the container's)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError):
        return None
    return None


def kill_call(init_pid: int, shell_pid: int, keep: set[int]) -> int:
    """SIGKILL the session shell ``shell_pid`` and its descendants, except the subtrees of the
    background jobs in ``keep`` (namespace pids). Call with the container paused, so nothing
    forks in between. Returns how many processes were signalled.
    """
    try:
        tree = psutil.Process(init_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return 0
    ns = {proc.pid: ns_pid(proc.pid) for proc in tree}
    shell = next((proc for proc in tree if ns[proc.pid] == shell_pid), None)
    if shell is None:
        return 0
    victims, stack = [shell], [shell]
    while stack:
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in stack.pop().children():
                if ns.get(child.pid, ns_pid(child.pid)) not in keep:
                    victims.append(child)
                    stack.append(child)
    for proc in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
    return len(victims)


_CLONE_NEWPID = 0x20000000
_libc: ctypes.CDLL | None = None


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, _CLONE_NEWPID) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _write_last_pid(last_pid: int) -> str | None:
    """Run the ``sh`` that writes ``ns_last_pid`` (in the calling thread's pid namespace for
    children); None when it did, else what it said. ``posix_spawn`` without pipes (~1 ms
    less than ``subprocess.run``, twice per cold fork); a failure is run again to read why."""
    argv = ["/bin/sh", "-c", f"echo {last_pid} >{_LAST_PID}"]
    quiet = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
    pid = os.posix_spawn(argv[0], argv, {}, file_actions=quiet)
    if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0:
        return None
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env={}, timeout=10)
    return done.stderr.decode(errors="replace").strip() or f"sh exited {done.returncode}"


def set_last_pid(init_pid: int, last_pid: int) -> None:
    """Set the last pid of the pid namespace of host process ``init_pid`` (a container's PID 1).

    The kernel takes ``ns_last_pid`` writes only from a process *inside* the namespace with
    CAP_SYS_ADMIN over it: the calling thread joins the namespace for its children, spawns one
    ``sh`` that writes the value (after taking a pid of its own) and goes back. Nothing in the
    container gets a capability; the ``sh`` lives for about a millisecond while the shell is
    idle. Raises :class:`ShellError` if it cannot (tvcache must run as root).
    """
    try:
        own = os.open("/proc/thread-self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        try:
            target = os.open(f"/proc/{init_pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(target)
                try:
                    said = _write_last_pid(int(last_pid))
                finally:
                    _setns(own)
            finally:
                os.close(target)
        finally:
            os.close(own)
    except (OSError, subprocess.SubprocessError) as error:
        raise ShellError(
            f"cannot set the pid counter of the container of pid {init_pid}: {error}",
            "run tvcache as root on the Docker host",
        ) from error
    if said is not None:
        raise ShellError(
            f"cannot set the pid counter of the container of pid {init_pid}: {said}",
            "run tvcache as root on the Docker host",
        )
