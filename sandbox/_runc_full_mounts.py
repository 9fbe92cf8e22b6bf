"""What a ``full`` runc sandbox mounts so that CRIU copies no file system on a dump or restore.

Why: runc mounts a tmpfs at /dev, /dev/shm, /sys/fs/cgroup and on each masked directory
(/proc/acpi, /sys/firmware...), and CRIU tars and gzips every tmpfs on each dump and unpacks it
on each restore: 20-110 ms apiece on a loaded 2-core host, five of them. It also dumps and
restores the network namespace (links, iptables rules: two more tool runs). A bind mount and a
namespace given by path are external to CRIU: recorded by name, bound again on restore. So a
``full`` sandbox gets:

- /dev: a read-only bind of :data:`DEV`, one prepared directory with the device nodes and
  links runc would make (null, zero, full, random, urandom, tty; fd, stdin, stdout, stderr,
  ptmx, core). Shared by every sandbox: read-only and immutable (nothing can be added).
- /dev/shm: a bind of the sandbox's own directory (``<box>/shm``), copied into the checkpoint
  by a snapshot and back by a fork.
- its network namespace (loopback up) made beforehand and given by path (``<box>/netns``).
- the masked directories' and /sys/fs/cgroup's tmpfs made external through CRIU's
  configuration: a restore binds :data:`MOUNTS` ``/empty`` or ``/cgroup`` there, read-only or
  immutable (root in a sandbox has no CAP_LINUX_IMMUTABLE).
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import fcntl
import functools
import hashlib
import os
import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sandbox import _runc
from snapshots import directory as sdir
from snapshots.runc_checkpoint import CRIU_CONFIG_ANNOTATION, criu_config

MOUNTS = _runc.RUNC_ROOT / "mounts"
"""Host directories bound into ``full`` sandboxes in place of tmpfs mounts (see above)."""
DEV = MOUNTS / "dev"
TMPFS_SKIPPED = {"/sys/fs/cgroup": "cgroup", **{path: "empty" for path in _runc.MASKED}}
"""Where runc mounts a tmpfs (a masked path that is a directory on this kernel; masked files
are binds of /dev/null) and what a restore binds there."""
_DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8)}
_DEVICES |= {"urandom": (1, 9), "tty": (5, 0)}
_DEV_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1"}
_DEV_LINKS |= {"stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx", "core": "/proc/kcore"}
_DEV_DIRS = ("pts", "shm", "mqueue")
"""Mount points of /dev (devpts, the sandbox's shm, mqueue)."""
_EMPTY_NETNS = "empty-ns net\n"
"""The network namespace is given (:func:`prepare`): CRIU dumps none of its links, addresses,
routes or firewall rules (two tool runs) and restores none into the one a fork is given."""
_FS_IOC_GETFLAGS, _FS_IOC_SETFLAGS, _FS_IMMUTABLE_FL = 0x80086601, 0x40086602, 0x10
_CLONE_NEWNET, _MS_BIND = 0x40000000, 4096
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
_libc = ctypes.CDLL(None, use_errno=True)


@functools.cache
def _usable() -> None:
    _prepared_dev()
    _externals()


def unavailable() -> str | None:
    """Why ``full`` sandboxes cannot run on runc here, or None when they can: the directories
    every sandbox shares in place of tmpfs must be immutable (a sandbox could otherwise leave
    a file there that another sees), which needs a file system with the immutable flag under
    /run (ext4, xfs, btrfs; tmpfs since Linux 6.0)."""
    try:
        _usable()
    except OSError as error:
        return f"cannot make the shared directories under {MOUNTS} immutable: {error}"
    return None


def criu_annotations() -> dict[str, str]:
    """The annotation that makes runc hand CRIU its configuration: no network lock, no copy
    of the tmpfs mounts of :data:`TMPFS_SKIPPED`."""
    text = criu_config() + _EMPTY_NETNS + _externals()
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    path = _runc.RUNC_ROOT / f"criu-{digest}.conf"  # others' tvcache versions write theirs
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(sdir.temp_name(path.name))
        temp.write_text(text)
        os.replace(temp, path)
    return {CRIU_CONFIG_ANNOTATION: str(path)}


def prepare(box: Path, config: dict[str, Any]) -> None:
    """Give the sandbox of ``box`` (its config being written) the mounts and network namespace
    above: nothing of it is then dumped by CRIU but processes, sockets and pipes."""
    _prepared_dev()
    shm = box / "shm"
    shm.mkdir(mode=0o1777, exist_ok=True)
    shm.chmod(0o1777)
    binds = {
        "/dev": {"source": str(DEV), "options": ["bind", "ro", "nosuid"]},
        "/dev/shm": {"source": str(shm), "options": ["bind", "rw", "nosuid", "nodev", "noexec"]},
    }
    for mount in config["mounts"]:
        if mount["destination"] in binds:
            mount.update(type="bind", **binds[mount["destination"]])
    netns = box / "netns"
    new_network_namespace(netns)
    for namespace in config["linux"]["namespaces"]:
        if namespace["type"] == "network":
            namespace["path"] = str(netns)


def new_network_namespace(path: Path) -> None:
    """A network namespace whose loopback is up, kept by a bind mount at ``path`` (unmount it
    to let it go). Made in a thread of its own: no process to start."""
    path.touch()
    failed: list[BaseException] = []

    def make() -> None:
        try:
            _check(_libc.unshare(_CLONE_NEWNET), "unshare(CLONE_NEWNET)")
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                request = struct.pack("16sH14x", b"lo", 0)
                flags = struct.unpack("16sH14x", fcntl.ioctl(probe, _SIOCGIFFLAGS, request))[1]
                fcntl.ioctl(probe, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))
            source = f"/proc/self/task/{threading.get_native_id()}/ns/net".encode()
            _check(_libc.mount(source, str(path).encode(), None, _MS_BIND, None), "bind")
        except BaseException as error:
            failed.append(error)

    thread = threading.Thread(target=make, name="tvcache-netns")
    thread.start()
    thread.join()
    if failed:
        raise _runc.RuncError(f"making a network namespace at {path} failed: {failed[0]}")


def shm_into(box: Path, saved: Path) -> None:
    """Put the /dev/shm files a checkpoint saved (``saved``, if any) into ``box``'s own."""
    if saved.is_dir() and any(saved.iterdir()):
        sdir.delete_tree(box / "shm")
        sdir.copy_tree(saved, box / "shm")


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def _prepared_dev() -> None:
    _immutable_directory(DEV, _fill_dev)


def _fill_dev(directory: Path) -> None:
    directory.chmod(0o755)
    for name, (major, minor) in _DEVICES.items():
        os.mknod(directory / name, 0o666 | 0o020000, os.makedev(major, minor))
        (directory / name).chmod(0o666)
    for name, target in _DEV_LINKS.items():
        (directory / name).symlink_to(target)
    for name in _DEV_DIRS:
        (directory / name).mkdir()


def _externals() -> str:
    """CRIU configuration lines that make the tmpfs of :data:`TMPFS_SKIPPED` external: a dump
    records them by key (the host directory) without their content; a restore binds that
    directory (the key of each is its path: the same lines serve a dump and a restore)."""
    entries = _cgroup_entries()
    _immutable_directory(MOUNTS / "empty", lambda _: None)
    _immutable_directory(MOUNTS / "cgroup", lambda directory: _fill(directory, entries))
    lines = [
        f"external mnt[{path}]:{MOUNTS / name}"
        for path, name in TMPFS_SKIPPED.items()
        if Path(path).is_dir()
    ]
    lines += [f"external mnt[{MOUNTS / name}]:{MOUNTS / name}" for name in ("empty", "cgroup")]
    return "".join(f"{line}\n" for line in lines)


def _cgroup_entries() -> list[tuple[str, str | None]]:
    """What runc's tmpfs at /sys/fs/cgroup holds: a directory per hierarchy (None) and a
    symlink per co-mounted controller (its target), as the host's /sys/fs/cgroup."""
    found: list[tuple[str, str | None]] = []
    with contextlib.suppress(OSError), os.scandir("/sys/fs/cgroup") as entries:
        for entry in entries:
            if entry.is_symlink():
                found.append((entry.name, os.readlink(entry.path)))
            elif entry.is_dir():
                found.append((entry.name, None))
    return found


def _fill(directory: Path, entries: list[tuple[str, str | None]]) -> None:
    for name, target in entries:
        if target is None:
            (directory / name).mkdir()
        else:
            (directory / name).symlink_to(target)


def _immutable_directory(path: Path, fill: Callable[[Path], None]) -> None:
    """Make ``path`` (``fill`` puts its entries in) unless it exists, and mark it immutable:
    every sandbox binds it, and root in a sandbox (no CAP_LINUX_IMMUTABLE) can then add or
    remove nothing in it, even where the bind is writable as runc's tmpfs was."""
    if not path.is_dir():
        temp = path.with_name(sdir.temp_name(path.name))
        temp.mkdir(parents=True)
        fill(temp)
        try:
            os.rename(temp, path)
        except OSError:  # another process made it meanwhile: keep that one
            sdir.delete_tree(temp)
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:  # (an immutable directory cannot be renamed: marked in place, every time)
        flags = array.array("i", [0])
        fcntl.ioctl(descriptor, _FS_IOC_GETFLAGS, flags, True)
        if not flags[0] & _FS_IMMUTABLE_FL:
            flags[0] |= _FS_IMMUTABLE_FL
            fcntl.ioctl(descriptor, _FS_IOC_SETFLAGS, flags, True)
    finally:
        os.close(descriptor)
