"""The low-level runc path: containers tvcache owns, started by ``runc`` without dockerd.

Why: a Docker ``start`` costs ~230 ms here, most of it dockerd's network prestart hook (even
with network ``none``); ``runc run`` on a fresh overlay mount costs ~40 ms. Docker stays for
images (their layers are read from the overlay2 graph driver) and as the fallback.

A container's root file system is an overlay mount: its own upper directory over the stacked
tvcache layers (frozen upper directories of earlier sandboxes, top first) over the image's
layers. The lower directories are passed as short symlinks relative to the bundle (overlayfs
takes one page of mount options). Limits equal the Docker path's: memory, pids, CPU quota and
RLIMIT_FSIZE; namespaces pid, ipc, uts, mount and an empty network namespace (loopback only);
Docker's default capabilities; /proc and /sys masked as Docker does; a seccomp filter that
refuses new namespaces, mounts and the kernel's admin interfaces (no capability would allow
them anyway, except through a user namespace, which it refuses).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sandbox import _runc_exec
from sandbox._runc_spawn import SPAWNER
from snapshots import SnapshotError

RUNC_ROOT = Path("/run/tvcache-runc")
"""runc's state directory for tvcache's containers (not Docker's: ``runc list`` sees ours only)."""
STATE_ROOTS = {"runc": RUNC_ROOT, "crun": Path("/run/tvcache-crun")}
"""Each OCI runtime's state directory (their formats differ)."""
_STATE_FILES = {"runc": "state.json", "crun": "status"}
"""The file that a container's state directory holds once it exists (not while being made)."""
_GONE = ("does not exist", "not exist", "No such file or directory")
"""What the runtimes say of a container that is not there (or not yet, or no longer)."""
OCI_ENV = "TVCACHE_OCI_RUNTIME"
CGROUP_PARENT = "tvcache"
_UNIFIED = Path("/sys/fs/cgroup/unified")
WARM = True
"""Fast ``create``s warm the kernel's cgroup migration lock while the runtime starts
(:mod:`sandbox._runc_spawn`; measured in docs/forks.md; False only to measure without)."""

CAPABILITIES = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
]
"""Docker's default set."""

MASKED = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
]
READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

_REFUSED = [
    "mount",
    "umount2",
    "pivot_root",
    "unshare",
    "setns",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "open_by_handle_at",
    "name_to_handle_at",
    "swapon",
    "swapoff",
    "reboot",
    "syslog",
    "acct",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "userfaultfd",
    "quotactl",
    "lookup_dcookie",
    "iopl",
    "ioperm",
    "fsopen",
    "fsmount",
    "fsconfig",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
]
_NAMESPACE_FLAGS = (
    0x00020000,
    0x02000000,
    0x04000000,
    0x08000000,
    0x10000000,
    0x20000000,
    0x40000000,
)
"""CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET: ``clone`` may make none
(one rule per bit: a seccomp rule can test a masked value for equality only)."""


def seccomp() -> dict[str, Any]:
    """Allow by default; refuse what only an escape or the host's admin needs (EPERM), and
    ``clone3`` (ENOSYS: libc falls back to ``clone``, whose flags the filter can read)."""
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": _REFUSED, "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            *(
                {
                    "names": ["clone"],
                    "action": "SCMP_ACT_ERRNO",
                    "errnoRet": 1,
                    "args": [
                        {"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}
                    ],
                }
                for flag in _NAMESPACE_FLAGS
            ),
        ],
    }


class RuncError(SnapshotError):
    """runc (or the overlay mount under it) failed."""


_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def memory_bytes(value: object) -> int | None:
    """Docker's ``mem_limit`` (an int of bytes, or ``"512m"``, ``"4g"``) in bytes."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = re.fullmatch(r"\s*(\d+)\s*([bkmgt]?)b?\s*", str(value).lower())
    if match is None:
        raise RuncError(f"memory limit {value!r} is not understood", 'use bytes or "512m", "4g"')
    return int(match.group(1)) * _UNITS[match.group(2)]


def image_lowers(graph_driver: Mapping[str, Any]) -> list[str]:
    """An image's layer directories, top first, from its overlay2 ``GraphDriver``."""
    if graph_driver.get("Name") != "overlay2":
        raise RuncError(
            f"the image is stored by {graph_driver.get('Name')!r}, not overlay2",
            "use TVCACHE_DOCKER_RUNTIME=docker",
        )
    data = graph_driver.get("Data") or {}
    lower = str(data.get("LowerDir") or "")
    return [str(data["UpperDir"]), *(d for d in lower.split(":") if d)]


def _user(rootfs: Path, user: str) -> dict[str, int]:
    """The image's ``USER`` as uid/gid, resolved in the image's own /etc/passwd."""
    name, _, group = user.partition(":")
    uid = gid = 0
    if name.isdigit():
        uid = gid = int(name)
    elif name and name != "root":
        for line in (rootfs / "etc/passwd").read_text(errors="replace").splitlines():
            fields = line.split(":")
            if len(fields) > 3 and fields[0] == name:
                uid, gid = int(fields[2]), int(fields[3])
                break
        else:
            raise RuncError(f"user {name!r} is not in the image's /etc/passwd")
    if group.isdigit():
        gid = int(group)
    return {"uid": uid, "gid": gid}


def config(
    *,
    rootfs: Path,
    args: Sequence[str],
    env: Sequence[str],
    cwd: str,
    user: str,
    hostname: str,
    binds: Mapping[str, str],
    memory: int | None,
    pids: int | None,
    cpus: float | None,
    file_bytes: int | None,
    cgroup: str,
) -> dict[str, Any]:
    """An OCI runtime config equal in limits and isolation to what the Docker path creates."""
    resources: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    if memory is not None:
        resources["memory"] = {"limit": memory, "swap": 2 * memory}
    if pids is not None:
        resources["pids"] = {"limit": pids}
    if cpus is not None:
        resources["cpu"] = {"quota": int(cpus * 100_000), "period": 100_000}
    rlimits: list[dict[str, Any]] = []
    if file_bytes is not None:
        rlimits.append({"type": "RLIMIT_FSIZE", "hard": file_bytes, "soft": file_bytes})
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"],
        },
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
        },
    ]
    for source, target in binds.items():
        mounts.append(
            {"destination": target, "type": "bind", "source": source, "options": ["rbind", "rw"]}
        )
    caps = list(CAPABILITIES)
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": False,
            "user": _user(rootfs, user),
            "args": list(args),
            "env": list(env),
            "cwd": cwd or "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": rlimits,
            "noNewPrivileges": True,
        },
        "root": {"path": str(rootfs), "readonly": False},
        "hostname": hostname,
        "mounts": mounts,
        "linux": {
            "cgroupsPath": cgroup,
            "resources": resources,
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": MASKED,
            "readonlyPaths": READONLY,
            "seccomp": seccomp(),
        },
    }


def choose_oci(asked: str | None = None) -> tuple[str, str]:
    """The OCI runtime of ``fs`` sandboxes and why: ``asked``, else ``$TVCACHE_OCI_RUNTIME``,
    else crun where it is installed (C: no Go runtime to start, no re-exec of an init binary;
    ``bench forks`` measures it beside runc), else runc."""
    wanted = asked or os.environ.get(OCI_ENV, "") or "auto"
    if wanted not in ("runc", "crun", "auto"):
        raise RuncError(f"{OCI_ENV}={wanted!r} is not an OCI runtime", "use runc, crun or unset it")
    if wanted != "auto":
        if shutil.which(wanted) is None:
            raise RuncError(f"{OCI_ENV}={wanted} but no {wanted} binary is on PATH", "install it")
        return wanted, f"asked for {wanted}" if asked else f"{OCI_ENV}={wanted}"
    if shutil.which("crun") is not None:
        return "crun", f"crun is installed (set {OCI_ENV}=runc for runc)"
    return "runc", "no crun binary (sh scripts/install-crun.sh installs it)"


def _hybrid_cgroups(unified: Path | None = None) -> bool:
    """A cgroup v2 hierarchy with controllers beside the v1 ones (crun refuses that layout);
    False on a pure v2 host (no ``unified`` mount) and on v1 ones. ``unified`` defaults to
    :data:`_UNIFIED` as it is when called (tests point it elsewhere)."""
    try:
        return bool(((unified or _UNIFIED) / "cgroup.controllers").read_text().split())
    except OSError:
        return False


def oci_command(runtime: str, verb: str) -> list[str]:
    """How to run ``runtime verb``. crun refuses hosts whose cgroup v2 hierarchy has
    controllers beside v1 ones (hybrid): its ``create``/``run`` then run in a mount namespace
    of their own where that hierarchy is unmounted (the container's limits are the v1
    controllers', as with runc; nothing changes outside that short-lived namespace)."""
    if runtime == "crun" and verb in ("create", "run") and _hybrid_cgroups():
        hide = f'umount -l {_UNIFIED} && exec "$0" "$@"'
        return ["unshare", "--mount", "--propagation", "slave", "sh", "-c", hide, runtime]
    return [runtime]


def runtime_of(container: str) -> str:
    """The OCI runtime whose state directory holds ``container`` (runc when none does)."""
    for runtime, root in STATE_ROOTS.items():
        if (root / container).is_dir():
            return runtime
    return "runc"


def runc(
    *args: str,
    timeout: float = 60.0,
    log: Path | None = None,
    runtime: str = "runc",
    env: Mapping[str, str] | None = None,
    fast: bool = False,
) -> str:
    """Run ``<runtime> --root <its state dir> args``; its stdout, or :class:`RuncError`.

    With ``log`` (``create``/``run``/``start``), the runtime's stdio is /dev/null and its
    messages go to that file: the container inherits its stdio, so a pipe would never end.
    With ``fast`` (``create``/``run`` with ``log``), through :mod:`sandbox._runc_spawn`: a
    sealed copy of the runtime's binary, the cgroup v2 hierarchy hidden from crun without a
    process; else as a user runs it (``bench forks``' floors).
    """
    if fast and log is not None and args[0] in ("create", "run"):
        hide = str(_UNIFIED) if runtime == "crun" and _hybrid_cgroups() else None
        command = ["--root", str(STATE_ROOTS[runtime]), "--log", str(log), *args]
        try:
            code = SPAWNER.run(runtime, command, hide, timeout, warm=WARM)
        except (OSError, TimeoutError) as error:
            raise RuncError(
                f"{runtime} {args[0]} failed: {error!r}", "see `tvcache doctor`"
            ) from error
        if code != 0:
            raise RuncError(f"{runtime} {' '.join(args[:2])} failed: {_log_tail(log)}")
        return ""
    command = [*oci_command(runtime, args[0]), "--root", str(STATE_ROOTS[runtime])]
    if log is not None:
        command += ["--log", str(log)]
    command += args
    quiet = subprocess.DEVNULL
    try:
        done = subprocess.run(
            command,
            stdin=quiet,
            env=env,
            stdout=quiet if log is not None else subprocess.PIPE,
            stderr=quiet if log is not None else subprocess.PIPE,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as error:
        raise RuncError(
            f"{runtime} {args[0]} failed: {error}", f"is {runtime} installed?"
        ) from error
    if done.returncode != 0:
        if log is not None:
            said = _log_tail(log)
        else:
            said = (done.stderr or done.stdout).decode(errors="replace").strip()[-500:]
        raise RuncError(f"{runtime} {' '.join(args[:2])} failed: {said}", "see `tvcache doctor`")
    return (done.stdout or b"").decode(errors="replace")


def start(container: str, runtime: str, pid: int, timeout: float = 30.0) -> None:
    """Start a created container (its init ``pid``) without a runtime process."""
    try:
        _runc_exec.start(STATE_ROOTS[runtime] / container, runtime, pid, timeout)
    except OSError as error:
        raise RuncError(
            f"{runtime} start {container} failed: {error}", "see its runc.log"
        ) from error


def _log_tail(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return lines[-1][-500:] if lines else "(empty log)"


def state(container: str) -> dict[str, Any] | None:
    """The runtime's state of ``container`` (status, pid, bundle), or None when it does not
    exist."""
    try:
        result: dict[str, Any] = json.loads(runc("state", container, runtime=runtime_of(container)))
    except RuncError as error:
        if any(gone in str(error) for gone in _GONE):
            return None
        raise
    return result


def containers() -> list[str]:
    """Ids of every container in the runtimes' state directories (:data:`STATE_ROOTS`)."""
    found: list[str] = []
    for runtime, root in STATE_ROOTS.items():
        if root.is_dir():
            found += [e.name for e in root.iterdir() if (e / _STATE_FILES[runtime]).exists()]
    return sorted(found)


def delete(container: str) -> None:
    """Kill and remove ``container``. Idempotent."""
    try:
        runc("delete", "--force", container, runtime=runtime_of(container))
    except RuncError as error:
        if not any(gone in str(error) for gone in _GONE):
            raise


_MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)


def mount_overlay(bundle: Path, lowers: Sequence[str], upper: Path, work: Path) -> Path:
    """Mount ``bundle/rootfs``: ``upper`` over ``lowers`` (top first).

    Through the kernel's mount API (``fsopen``/``fsconfig``, one ``lowerdir+`` per layer: no
    page limit on the options, no ``mount`` process); on kernels without it (< 6.8), through
    ``mount`` with short relative symlinks ``bundle/l/<n>`` naming the lowers.
    """
    rootfs = bundle / "rootfs"
    rootfs.mkdir(exist_ok=True)
    if _fs_mount(rootfs, lowers, upper, work):
        return rootfs
    links = bundle / "l"
    links.mkdir(exist_ok=True)
    for index, lower in enumerate(lowers):
        (links / str(index)).symlink_to(lower)
    lower_option = ":".join(f"l/{index}" for index in range(len(lowers)))
    options = f"lowerdir={lower_option},upperdir={upper},workdir={work},index=off"
    done = subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", options, "rootfs"],
        cwd=bundle,
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip()
        raise RuncError(f"overlay mount of {bundle.name} failed: {said}", "run tvcache as root")
    return rootfs


_SYS_MOVE_MOUNT, _SYS_FSOPEN, _SYS_FSCONFIG, _SYS_FSMOUNT = 429, 430, 431, 432  # x86_64
_FSCONFIG_SET_STRING, _FSCONFIG_CMD_CREATE = 1, 6
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
_fs_api = os.uname().machine == "x86_64"


def _syscall(number: int, *args: object) -> int:
    result = int(_libc.syscall(number, *args))
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


def _fs_mount(target: Path, lowers: Sequence[str], upper: Path, work: Path) -> bool:
    """Mount overlayfs at ``target`` with the new mount API; False where it is missing."""
    global _fs_api
    if not _fs_api:
        return False
    try:
        fs = _syscall(_SYS_FSOPEN, b"overlay", 0)
    except OSError:
        _fs_api = False
        return False
    try:
        settings = [(b"lowerdir+", lower) for lower in lowers]
        settings += [(b"upperdir", str(upper)), (b"workdir", str(work)), (b"index", "off")]
        for key, value in settings:
            try:
                _syscall(_SYS_FSCONFIG, fs, _FSCONFIG_SET_STRING, key, value.encode(), 0)
            except OSError as error:
                if key == b"lowerdir+" and error.errno == 22:  # EINVAL: no lowerdir+ (< 6.8)
                    _fs_api = False
                    return False
                raise RuncError(f"overlay option {key.decode()}={value}: {error}") from error
        try:
            _syscall(_SYS_FSCONFIG, fs, _FSCONFIG_CMD_CREATE, None, None, 0)
            mount = _syscall(_SYS_FSMOUNT, fs, 0, 0)
        except OSError as error:
            raise RuncError(f"overlay mount at {target} failed: {error}") from error
        try:
            _syscall(
                _SYS_MOVE_MOUNT, mount, b"", -100, str(target).encode(), _MOVE_MOUNT_F_EMPTY_PATH
            )
        finally:
            os.close(mount)
    finally:
        os.close(fs)
    return True


def unmount(path: Path) -> None:
    """Detach a mount (lazily: nothing inside may still hold it). Idempotent."""
    if _libc.umount2(str(path).encode(), _MNT_DETACH) != 0:
        code = ctypes.get_errno()
        if code not in (22, 2):  # EINVAL: not a mount point; ENOENT: gone
            raise RuncError(f"unmounting {path} failed: {os.strerror(code)}")


def mounted_under(directory: Path) -> list[Path]:
    """Mount points below ``directory`` (leftovers a test or reconcile looks for)."""
    prefix = str(directory.resolve()).rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            point = line.split()[4].encode().decode("unicode_escape")
            if point.startswith(prefix):
                found.append(Path(point))
    return found


def available() -> str | None:
    """Why the runc path cannot work here, or None when it can."""
    if os.geteuid() != 0:
        return "tvcache does not run as root"
    if shutil.which("runc") is None and shutil.which("crun") is None:
        return "no runc (or crun) binary on PATH"
    with contextlib.suppress(OSError):
        if "overlay" in Path("/proc/filesystems").read_text():
            return None
    return "the kernel has no overlayfs"


def bare_bundle(bundle: Path, name: str, lowers: Sequence[str], args: list[str]) -> None:
    """A bundle at ``bundle`` for container ``name``: ``args`` over ``lowers`` with none of a
    sandbox's limits, binds or files (the floors of benchmarks, tests of the runtime itself);
    :func:`remove_bundle` removes it."""
    (bundle / "upper").mkdir(parents=True)
    (bundle / "work").mkdir()
    rootfs = mount_overlay(bundle, lowers, bundle / "upper", bundle / "work")
    spec = config(
        rootfs=rootfs,
        args=args,
        env=["PATH=/usr/bin:/bin"],
        cwd="/",
        user="",
        hostname="sandbox",
        binds={},
        memory=None,
        pids=None,
        cpus=None,
        file_bytes=None,
        cgroup=f"/{CGROUP_PARENT}/{name}",
    )
    (bundle / "config.json").write_text(json.dumps(spec))


def remove_bundle(name: str, bundle: Path) -> None:
    """Remove container ``name`` (if any), the overlay and directory of a :func:`bare_bundle`."""
    delete(name)
    unmount(bundle / "rootfs")
    shutil.rmtree(bundle, ignore_errors=True)
