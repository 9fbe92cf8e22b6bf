"""``tvcache restore``: a live sandbox in the state of any node of a recorded trajectory.

The deepest snapshot on the node's path is forked and the calls below it are replayed (the
same placement a miss uses), then the sandbox is kept alive after this process exits: for the
local backend it moves to ``$TVCACHE_HOME/restored/`` (out of reach of the crash recovery that
removes sandboxes of dead processes) until ``tvcache restore --remove`` deletes it; another
backend must offer ``sandbox.detach() -> str`` (a container name for ``docker exec -it``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sandbox import LocalSandbox, Sandbox, ToolCall
from sandbox._tools import ROOT_PLACEHOLDER
from snapshots import TvcacheError
from snapshots import directory as sdir
from tvcache._engine import Engine, RootNotFoundError
from tvcache._graph import Node, calls_between

RESTORED = "restored"


def walk(engine: Engine, root_id: str, calls: Sequence[ToolCall]) -> list[Node]:
    """The cached nodes that answer ``calls`` from the root, as a session would be served
    them (read-only calls stay in place), up to the first call not in the cache."""
    position = engine.graph.root(root_id)
    assert position is not None, "open the root first"
    answered: list[Node] = []
    for call in calls:
        child = engine.cached(position, call)
        if child is None:
            break
        answered.append(child)
        if not child.read_only:
            position = child.state()
    return answered


@dataclass(frozen=True, slots=True)
class Restored:
    """Where the sandbox is, at which node, and how it got there."""

    location: str
    node_id: str
    forked_from: str
    replayed: int
    executed: int


def find_node(engine: Engine, root_id: str, name: str) -> Node:
    """A node of the root by id or unique id prefix."""
    matches = [n for n in engine.graph.nodes(root_id) if n.node_id.startswith(name)]
    exact = [n for n in matches if n.node_id == name]
    if len(exact or matches) == 1:
        return (exact or matches)[0]
    raise RootNotFoundError(
        f"{len(matches) or 'no'} nodes of root {root_id[:12]} match {name!r}",
        "pass a longer node id (see `tvcache tree ROOT`)",
    )


def restore(engine: Engine, root_id: str, target: Node, tail: Sequence[ToolCall]) -> Restored:
    """A sandbox at ``target`` (then ``tail`` executed in it, uncached), kept alive."""
    state = target.state()
    sandbox, base = engine.sandbox_at(state)
    try:
        for call in tail:
            sandbox.run(call, timeout=engine.settings.call_timeout)
        location = keep_alive(sandbox, engine.settings.home / RESTORED)
    except BaseException:
        sandbox.close()
        raise
    return Restored(
        location, target.node_id, base.node_id, len(calls_between(base, state)), len(tail)
    )


def keep_alive(sandbox: Sandbox, restored: Path) -> str:
    """Detach ``sandbox`` from this process; return what the user opens (directory, name)."""
    if isinstance(sandbox, LocalSandbox):
        home = sandbox.root
        source = home.parent
        restored.mkdir(parents=True, exist_ok=True)
        dest = restored / source.name
        source.rename(dest)  # same file system: both live in the tvcache home
        (dest / "owner").write_text("restored\n")
        new_home = dest / "home"
        sdir.retarget_symlinks(new_home, str(home), str(new_home))
        shell = sandbox.shell
        cwd = new_home / shell.cwd if not shell.cwd.startswith("/") else Path(shell.cwd)
        script = shell.env.replace(ROOT_PLACEHOLDER, str(new_home)) + f"cd {str(cwd)!r}\n"
        (dest / "shell.sh").write_text(script)
        return str(new_home)
    detach = getattr(sandbox, "detach", None)
    if callable(detach):
        return str(detach())
    raise TvcacheError(
        f"the {type(sandbox).__name__} sandbox cannot outlive this process",
        "its backend needs a detach() method that returns a name the user can open",
    )


def list_restored(home: Path) -> list[Path]:
    folder = home / RESTORED
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def remove_restored(home: Path, name: str) -> list[str]:
    """Delete one restored sandbox (by directory name) or, with ``"all"``, every one."""
    doomed = [p for p in list_restored(home) if name in ("all", p.name)]
    if not doomed:
        raise TvcacheError(
            f"no restored sandbox named {name!r}", "list them with `tvcache restore --list`"
        )
    for path in doomed:
        sdir.delete_tree(path)
    return [p.name for p in doomed]
