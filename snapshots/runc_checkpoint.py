"""runc checkpoint/restore called directly, without Docker: the floor a ``full`` fork can reach.

A narrow API (a bundle from an image's layers, run, checkpoint, restore, delete) kept apart so
that it can later merge with the runc path of ``fs`` forks. CRIU's network lock (iptables rules
around a dump and a restore) guards TCP connections a sandbox without network does not have: a
bundle made with ``network_lock=False`` skips it through runc's per-container CRIU
configuration file (the ``org.criu.config`` annotation). ``criu`` is looked up like Docker's
(:func:`snapshots.criu.find_criu`).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from snapshots import criu_kdat
from snapshots import directory as sdir
from snapshots._errors import SnapshotError
from snapshots.criu import find_criu

CRIU_CONFIG_ANNOTATION = "org.criu.config"
"""runc passes the CRIU configuration file this annotation names to every dump and restore."""
SKIP_NETWORK_LOCK = "network-lock skip\n"
_LAZY_DAEMON = ("lazy-pages", "-o", "lazy-pages.log")


@dataclass(frozen=True, slots=True)
class Bundle:
    """An OCI bundle whose root is an overlay mount of image layers plus a private upper dir."""

    path: Path
    root: Path
    """runc's state directory for containers of this bundle."""
    kdat: bool = True
    """CRIU reads its kernel-probe cache (:func:`criu_env`); False: it probes on every run."""

    @property
    def rootfs(self) -> Path:
        return self.path / "rootfs"


def criu_env(kdat: bool = True, keep: tuple[str, ...] = ()) -> dict[str, str]:
    """The environment for runc: ``criu`` first on PATH (runc finds it there); with ``kdat``,
    the wrapper that lets it read its kernel-probe cache (:mod:`snapshots.criu_kdat`; ``keep``:
    runc's state directory when it lies under /run)."""
    criu = find_criu()
    path = os.environ.get("PATH", "")
    first = [str(Path(criu).parent)] if criu else []
    wrapper = criu_kdat.criu_path_dir(keep) if kdat else None
    if wrapper is not None:
        first.insert(0, str(wrapper))
    return {**os.environ, "PATH": ":".join([*first, path])}


def criu_config(network_lock: bool = False) -> str:
    """runc's CRIU configuration: no network lock (for a container without network), and what
    CRIU needs to run through :func:`criu_env`'s wrapper (:func:`snapshots.criu_kdat.config`)."""
    return ("" if network_lock else SKIP_NETWORK_LOCK) + criu_kdat.config()


def _runc(bundle: Bundle, *args: str) -> None:
    """Run runc; its stderr goes to a file, except for ``run``, whose container inherits runc's
    stdio (CRIU cannot dump a file outside the container, a pipe never reaches end of file)."""
    errors = bundle.path.parent / "runc.err"
    with errors.open("w") as stderr:
        done = subprocess.run(
            ["runc", "--root", str(bundle.root), *args],
            cwd=bundle.path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL if args[0] == "run" else stderr,
            env=criu_env(bundle.kdat),
            timeout=120,
            check=False,
        )
    if done.returncode != 0:
        raise SnapshotError(
            f"runc {args[0]} failed: {errors.read_text().strip()[-400:] or 'no message'}",
            "see the CRIU log in the work directory",
        )


def make_bundle(
    directory: Path,
    layers: Sequence[str],
    args: Sequence[str],
    *,
    network_lock: bool = True,
    kdat: bool = True,
) -> Bundle:
    """A bundle in ``directory`` (which must be new) running ``args`` in a root made of
    ``layers`` (top first, read-only) and its own upper dir, with a loopback-only network
    namespace. Remove it with :func:`remove_bundle`."""
    directory.mkdir(parents=True)
    bundle = Bundle(directory / "bundle", directory / "state", kdat)
    for sub in ("upper", "work", "bundle/rootfs"):
        (directory / sub).mkdir(parents=True)
    options = (
        f"lowerdir={':'.join(layers)},upperdir={directory / 'upper'},workdir={directory / 'work'}"
    )
    subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", options, str(bundle.rootfs)],
        check=True,
        capture_output=True,
    )
    subprocess.run(["runc", "spec"], cwd=bundle.path, check=True, capture_output=True)
    config = json.loads((bundle.path / "config.json").read_text())
    config["process"].update(terminal=False, args=list(args))
    config["root"]["readonly"] = False
    conf = directory / "criu.conf"
    conf.write_text(criu_config(network_lock))
    config["annotations"] = {CRIU_CONFIG_ANNOTATION: str(conf)}
    (bundle.path / "config.json").write_text(json.dumps(config))
    return bundle


def run(bundle: Bundle, container: str) -> None:
    """Start ``container`` from the bundle, detached."""
    _runc(bundle, "run", "-d", container)


def checkpoint(
    bundle: Bundle, container: str, images: Path, *, leave_running: bool = False
) -> None:
    """Dump ``container`` into ``images`` (CRIU's log goes to ``images``/../dump-work)."""
    work = images.parent / f"{images.name}-dump-work"
    extra = ["--leave-running"] if leave_running else []
    _runc(
        bundle,
        "checkpoint",
        *extra,
        "--image-path",
        str(images),
        "--work-path",
        str(work),
        container,
    )


def restore(
    bundle: Bundle, container: str, images: Path, *, lazy: bool = False
) -> subprocess.Popen[bytes] | None:
    """Restore ``container`` from ``images``, detached; the images stay (restore only reads).

    ``lazy``: memory pages come on first touch, over userfaultfd, from a ``criu lazy-pages``
    daemon started here; it is returned (it exits once every page is in: wait for it).
    """
    work = images.parent / f"{images.name}-restore-work"
    daemon = None
    if lazy:
        work.mkdir(exist_ok=True)
        socket = work / "lazy-pages.socket"
        socket.unlink(missing_ok=True)
        daemon = subprocess.Popen(
            [
                find_criu() or "criu",
                *_LAZY_DAEMON,
                "--images-dir",
                str(images),
                "--work-dir",
                str(work),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not socket.exists():
            if daemon.poll() is not None or time.monotonic() > deadline:
                daemon.kill()
                raise SnapshotError("criu lazy-pages did not start", f"see {work}/lazy-pages.log")
            time.sleep(0.001)
    extra = ["--lazy-pages"] if lazy else []
    try:
        _runc(
            bundle,
            "restore",
            "-d",
            *extra,
            "--image-path",
            str(images),
            "--work-path",
            str(work),
            container,
        )
    except BaseException:
        if daemon is not None:
            daemon.kill()
            daemon.wait()
        raise
    return daemon


def processes(bundle: Bundle, container: str) -> list[str]:
    """The command lines of ``container``'s processes (empty when it does not run)."""
    done = subprocess.run(
        ["runc", "--root", str(bundle.root), "ps", "--format", "json", container],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return []
    commands = []
    for pid in json.loads(done.stdout or "[]"):
        try:
            commands.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return commands


def delete(bundle: Bundle, container: str) -> None:
    """Kill and remove ``container``; missing is fine."""
    subprocess.run(
        ["runc", "--root", str(bundle.root), "delete", "-f", container],
        capture_output=True,
        check=False,
    )


def remove_bundle(bundle: Bundle, containers: Sequence[str] = ()) -> None:
    """Delete ``containers``, unmount the root and remove the bundle's directory."""
    for container in containers:
        delete(bundle, container)
    subprocess.run(["umount", str(bundle.rootfs)], capture_output=True, check=False)
    sdir.delete_tree(bundle.path.parent)
