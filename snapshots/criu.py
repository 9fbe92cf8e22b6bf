"""The ``criu`` binary: where it is, its version, whether ``criu check`` passes, what errors mean.

Docker runs CRIU itself (dockerd → containerd → runc → ``criu`` from dockerd's PATH); tvcache calls
the binary only to diagnose, and turns the errors Docker relays into actions a user can take.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psutil

FALLBACK_PATH = "/opt/tvcache/criu/bin/criu"
"""Where ``scripts/setup-criu.sh`` installs CRIU when the system has none that works."""

SETUP_HINT = "install CRIU 4.x: scripts/setup-criu.sh"
SOCKETS_VERSION = (4, 2)
"""CRIU before 4.2 cannot dump inet sockets on Linux >= 6.16 (SO_PASSCRED now fails on them)."""

_SOCKETS_HINT = (
    "install CRIU >= 4.2 (Debian forky's: TVCACHE_CRIU_SUITE=forky scripts/setup-criu.sh into "
    "an empty TVCACHE_CRIU_PREFIX) first on dockerd's PATH, or use level fs"
)

# (pattern in Docker's error or the CRIU log, what went wrong, what to do), first match wins.
_KNOWN: list[tuple[str, str, str]] = [
    (r"vdso", "this CRIU cannot handle the kernel's vDSO (CRIU 3.x on a 6.x kernel)", SETUP_HINT),
    (
        r"can't get 1:(16|34) opt",
        "CRIU < 4.2 cannot checkpoint network sockets on Linux >= 6.16",
        _SOCKETS_HINT,
    ),
    (
        r"\"criu\": executable file not found",
        "dockerd finds no criu binary on its PATH",
        "restart dockerd with scripts/setup-docker.sh (it puts /opt/tvcache/criu/bin first)",
    ),
    (
        r"experimental",
        "checkpoints need dockerd's experimental features",
        "restart dockerd with --experimental: scripts/setup-docker.sh",
    ),
    (
        r"connected tcp socket|tcp-established",
        "a process holds an established TCP connection, which Docker's checkpoint cannot save",
        "close connections before the snapshot, or use level fs",
    ),
    (
        r"external (unix )?socket|unix socket.*(peer|external)",
        "a process holds a socket connected outside the container",
        "close it before the snapshot, or use level fs",
    ),
    (
        r"ghost",
        "a process keeps a large deleted file open (CRIU copies at most 1 MB of those)",
        "close or truncate it before the snapshot, or use level fs",
    ),
    (
        r"checkpoint .* does not exist",
        "the checkpoint files are missing",
        "the snapshot was deleted or never finished; fork from another one",
    ),
    (
        r"content sha256:.* already exists",
        "an identical checkpoint was being restored at the same time",
        "retry; every fork copy must be unique",
    ),
    (
        r"descriptors\.json: no such file",
        "the checkpoint files are missing or incomplete",
        "the snapshot was damaged; fork from another one",
    ),
    (
        r"has bad size",
        "a file a checkpointed process had open is missing or changed in the fork",
        "keep files that background processes hold open unchanged, or use level fs",
    ),
]


@dataclass(frozen=True, slots=True)
class CriuStatus:
    """What ``criu --version`` and ``criu check`` said about one binary."""

    path: str | None
    version: tuple[int, ...] | None
    ok: bool
    detail: str
    hint: str = ""


def find_criu() -> str | None:
    """``criu`` on PATH, else the private install of ``scripts/setup-criu.sh``."""
    found = shutil.which("criu")
    if found:
        return found
    return FALLBACK_PATH if os.access(FALLBACK_PATH, os.X_OK) else None


def criu_version(path: str) -> tuple[int, ...] | None:
    """``(4, 2, 1)`` from ``criu --version``; None if it does not run."""
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"Version:\s*([\d.]+)", done.stdout)
    return tuple(int(p) for p in match.group(1).split(".") if p) if match else None


@functools.cache
def _kernel() -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", os.uname().release)[:2])


def check(path: str | None = None) -> CriuStatus:
    """Run ``criu check`` on ``path`` (default :func:`find_criu`); never raises."""
    path = path or find_criu()
    if path is None:
        return CriuStatus(None, None, False, "no criu binary found", SETUP_HINT)
    version = criu_version(path)
    if version is None:
        return CriuStatus(path, None, False, f"{path} does not run", SETUP_HINT)
    shown = ".".join(map(str, version))
    if version < (4,):
        return CriuStatus(path, version, False, f"{path}: CRIU {shown} is too old", SETUP_HINT)
    try:
        done = subprocess.run([path, "check"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as error:
        return CriuStatus(path, version, False, f"`criu check` failed: {error}", SETUP_HINT)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
        reason, hint = explain(lines[-1])
        return CriuStatus(path, version, False, f"`criu check` failed: {reason}", hint)
    if version < SOCKETS_VERSION and _kernel() >= (6, 16):
        return CriuStatus(
            path,
            version,
            True,
            f"{path}: CRIU {shown}; processes with network sockets cannot be checkpointed "
            f"on Linux {'.'.join(map(str, _kernel()))}",
            _SOCKETS_HINT,
        )
    return CriuStatus(path, version, True, f"{path}: CRIU {shown}, `criu check` passes")


def dockerd_criu() -> str | None:
    """The ``criu`` that dockerd would run (first on its PATH), when this host can tell."""
    try:
        daemon = next(p for p in psutil.process_iter(["name"]) if p.info["name"] == "dockerd")
        path_var = daemon.environ().get("PATH", "")
    except (StopIteration, psutil.Error):
        return None
    for directory in path_var.split(":"):
        candidate = Path(directory or ".") / "criu"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return None


_NOISE = ("RLIMIT_NOFILE", "FAILED")
"""Error lines in every failed log here: a harmless rlimit note and the final summary."""


def log_errors(message: str) -> list[str]:
    """The ``Error`` lines of the CRIU log a Docker error message names, if it is readable."""
    for path in re.findall(r"(/[^\s:]+\.log)", message):
        with contextlib.suppress(OSError):
            lines = Path(path).read_text(errors="replace").splitlines()
            return [
                line for line in lines if "Error" in line and not any(n in line for n in _NOISE)
            ]
    return []


def explain(message: str) -> tuple[str, str]:
    """``(what went wrong, what to do)`` for an error from Docker's checkpoint API or CRIU."""
    errors = log_errors(message)
    haystack = "\n".join([message, *errors]).lower()
    for pattern, reason, hint in _KNOWN:
        if re.search(pattern, haystack):
            return reason, hint
    if errors:  # the first error is the cause; later ones are its consequences
        return f"CRIU failed: {errors[0].strip()}", "see its log, or use level fs"
    first = (message.strip().splitlines() or ["unknown error"])[0]
    return first, "its CRIU log went with the container; or use level fs"
