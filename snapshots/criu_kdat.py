"""CRIU's kernel-probe cache (``/run/criu.kdat``) where the host's /run is not a tmpfs.

Why: every CRIU run first probes the kernel (vDSO layout, pagemap, netlink, uffd...) unless it
finds its cache ``/run/criu.kdat``: 60-110 ms of each dump and restore on a loaded 2-core host.
CRIU only writes that cache on a tmpfs (a reboot must drop it), and on hosts whose /run is an
ordinary directory (containers, some VMs) it never does. tvcache then makes the cache itself:
once per boot, ``criu check`` runs in a private mount namespace whose /run is a fresh tmpfs, and
the file it leaves is kept in :data:`CACHE_DIR` (outside /run: an overlay may not
stack a directory over its own parent) with the boot id it was made under. CRIU runs of
the runc path go through a wrapper (:func:`criu_path_dir`, first on runc's PATH) that starts
CRIU in a private mount namespace whose /run is a read-only overlay of that cache over the
host's /run: CRIU reads the cache, and everything else in /run is what the host has. The host's
/run is never changed, and a cache made under another boot is never read (a new kernel may
differ; it is made again).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

from snapshots import directory as sdir
from snapshots.criu import find_criu

CACHE_DIR = Path("/var/cache/tvcache-criu")
"""The cache (``run/criu.kdat``), the boot id it was made under and the wrapper (``bin/criu``)."""
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
_MAKE = (
    'mount -t tmpfs tvcache-criu-kdat /run && "$0" check >/dev/null 2>&1; exec cat /run/criu.kdat'
)
"""In a private mount namespace: /run a tmpfs, ``criu check`` saves its cache there; print it."""


def _boot_id() -> str:
    return _BOOT_ID.read_text().strip()


def _tmpfs_run() -> bool:
    """The host's /run is a tmpfs: CRIU keeps its cache itself."""
    return _fstype("/run") == "tmpfs"


def _fstype(path: str) -> str:
    """The file system type of the mount at exactly ``path`` ('' when it is no mount point)."""
    found = ""
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            fields = line.split()
            if fields[4] == path:
                found = fields[fields.index("-") + 1]  # the last one mounted wins
    return found


def _make(criu: str, cache: Path) -> bool:
    """Run ``criu check`` over a tmpfs /run and keep the cache it writes; False if none."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            ["unshare", "--mount", "sh", "-c", _MAKE, criu],
            capture_output=True,
            timeout=60,
            check=False,
        )
        if done.returncode == 0 and done.stdout:
            cache.mkdir(parents=True, exist_ok=True)
            temp = cache / sdir.temp_name("criu.kdat")
            temp.write_bytes(done.stdout)
            os.replace(temp, cache / "criu.kdat")
            return True
    return False


def _fstab(run: Path, stash: Path, keep: tuple[str, ...]) -> str:
    """Mounts (``mount -a -T``, one process) of CRIU's namespace: the directories of ``keep``
    (with the mounts below them: runc's bind of a restore's root) put aside, /run a read-only
    overlay of ``run`` over the host's /run (which shows no mounts below it), ``keep`` back."""
    aside = [(path, stash / str(index)) for index, path in enumerate(keep)]
    lines = [f"{path} {place} none rbind 0 0" for path, place in aside]
    lines.append(f"tvcache-criu /run overlay ro,lowerdir={run}:/run 0 0")
    lines += [f"{place} {path} none rbind 0 0" for path, place in aside]
    return "\n".join(lines) + "\n"


def _wrapper(criu: str, fstab: Path, tools: dict[str, str]) -> str:
    """The script runc runs as ``criu`` (tools by absolute path: no PATH walk per run)."""
    inner = f'{tools["mount"]} -a -T {shlex.quote(str(fstab))} && exec "$0" "$@"'
    command = [tools["unshare"], "--mount", tools["sh"], "-c", inner, criu]
    return (
        "#!/bin/sh\n"
        "# written by tvcache (snapshots/criu_kdat.py): CRIU reading its kernel-probe cache\n"
        f'exec {shlex.join(command)} "$@"\n'
    )


_PERL = """#!{perl}
# written by tvcache (snapshots/criu_kdat.py): CRIU reading its kernel-probe cache.
# unshare(2) and mount(2) called directly (x86_64 numbers): one process instead of five.
my @aside = ({aside});
my ($root, $run, $name, $type, $options) = ("/", "/run", "tvcache-criu", "overlay", "{overlay}");
syscall(272, 0x20000) == 0 or die "unshare: $!";
syscall(165, 0, $root, 0, 0x44000, 0) == 0 or die "private /: $!";
for (@aside) {{ syscall(165, $_->[0], $_->[1], 0, 0x5000, 0) == 0 or die "bind: $!" }}
syscall(165, $name, $run, $type, 1, $options) == 0 or die "overlay: $!";
for (@aside) {{ syscall(165, $_->[1], $_->[0], 0, 0x5000, 0) == 0 or die "bind: $!" }}
exec {{ "{criu}" }} "{criu}", @ARGV or die "exec {criu}: $!";
"""
"""The wrapper where perl (Debian's perl-base is essential) runs on x86_64: CLONE_NEWNS;
MS_REC|MS_PRIVATE; MS_BIND|MS_REC; MS_RDONLY."""


def _perl_wrapper(perl: str, criu: str, run: Path, stash: Path, keep: tuple[str, ...]) -> str:
    aside = ", ".join(f'["{path}", "{stash / str(index)}"]' for index, path in enumerate(keep))
    overlay = f"lowerdir={run}:/run"
    return _PERL.format(perl=perl, aside=aside, overlay=overlay, criu=criu)


@functools.cache
def _prepared(criu: str, boot: str, keep: tuple[str, ...]) -> Path | None:
    found = {name: shutil.which(name) for name in ("unshare", "mount", "sh")}
    tools = {name: path for name, path in found.items() if path is not None}
    if _tmpfs_run() or len(tools) < len(found):
        return None
    run, stamp = CACHE_DIR / "run", CACHE_DIR / "boot_id"
    fresh = False
    with contextlib.suppress(OSError):
        fresh = stamp.read_text() == boot and (run / "criu.kdat").is_file()
    if not fresh:
        sdir.delete_tree(run)
        if not _make(criu, run):
            return None
        _replace(stamp, boot)
    name = hashlib.sha256("\0".join([criu, *keep]).encode()).hexdigest()[:12]
    bin_dir, stash = CACHE_DIR / f"bin-{name}", CACHE_DIR / f"stash-{name}"
    for index in range(len(keep)):
        (stash / str(index)).mkdir(parents=True, exist_ok=True)
    perl = shutil.which("perl")
    if perl is not None and os.uname().machine == "x86_64" and _plain(criu, *keep, run, stash):
        text = _perl_wrapper(perl, criu, run, stash, keep)
    else:
        _replace(CACHE_DIR / f"fstab-{name}", _fstab(run, stash, keep))
        text = _wrapper(criu, CACHE_DIR / f"fstab-{name}", tools)
    _replace(bin_dir / "criu", text, 0o755)
    return bin_dir


def _plain(*paths: str | Path) -> bool:
    """No character in ``paths`` that would need quoting in the perl wrapper."""
    return all(re.fullmatch(r"[\w./-]+", str(path)) for path in paths)


def _replace(path: Path, text: str, mode: int = 0o644) -> None:
    """Write ``path`` whole or not at all (other processes may read it meanwhile); unchanged
    content is not rewritten."""
    with contextlib.suppress(OSError):
        if path.read_text() == text:
            return
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(sdir.temp_name(path.name))
    temp.write_text(text)
    temp.chmod(mode)
    os.replace(temp, path)


def criu_path_dir(keep: tuple[str, ...] = ()) -> Path | None:
    """The directory to put first on PATH so that runc's CRIU reads a kernel-probe cache of
    this boot; None where CRIU keeps one itself (/run is a tmpfs), or none can be made (not
    root, no ``unshare``, no CRIU: CRIU then probes, as before). ``keep``: directories under
    /run whose mounts CRIU must see (runc's state directory: runc binds a restore's root
    there)."""
    criu = find_criu()
    if criu is None or os.geteuid() != 0:
        return None
    return _prepared(criu, _boot_id(), keep)


def config() -> str:
    """Lines for CRIU's configuration file when it runs through the wrapper: its cgroup mounts
    are the host's (``cgroup-yard``: in its own mount namespace CRIU cannot mount a tmpfs in
    its work directory, which runc opened in the host's), where the host lays them out as CRIU
    does (a tmpfs at /sys/fs/cgroup with one mount per controller)."""
    if criu_path_dir() is None or _fstype("/sys/fs/cgroup") != "tmpfs":
        return ""
    return "cgroup-yard /sys/fs/cgroup\n"
