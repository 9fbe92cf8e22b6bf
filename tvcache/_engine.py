"""The engine: holds policy and the graph, asks a backend for I/O, serves sessions' calls."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from typing import TYPE_CHECKING

from sandbox import JSON, Backend, Observation, RootSpec, Sandbox, ToolCall, ToolCallError, ToolSpec
from snapshots import TvcacheError
from tvcache._cursor import Cursor, Served
from tvcache._graph import (
    Clock,
    Graph,
    Node,
    calls_between,
    faithful_replay_seconds,
    replay_seconds,
)
from tvcache._keys import checked_call_key, child_id, root_id
from tvcache._policy import (
    CostAwarePolicy,
    EvictionStrategy,
    SecondsSavedPerByte,
    SnapshotPolicy,
)
from tvcache._records import NodeRecord, NodeStats, RootRecord, SnapshotRecord
from tvcache._settings import Settings
from tvcache._snapshots import Counters, Snapshots
from tvcache._stats import EngineStats

if TYPE_CHECKING:
    from tvcache._leases import Leases
    from tvcache._pool import SandboxPool
    from tvcache._session import Session
    from tvcache._shadow import ShadowVerifier
    from tvcache._store import StatsWriter, Store

log = logging.getLogger("tvcache")


class RootNotFoundError(TvcacheError):
    """A root id that no store or engine knows."""


def node_record(node: Node) -> NodeRecord:
    return NodeRecord(
        node_id=node.node_id,
        root_id=node.root_id,
        parent_id=node.parent.node_id if node.parent is not None else None,
        depth=node.depth,
        call_key=node.call_key,
        call=node.call,
        observation=node.observation,
        nondeterministic=node.nondeterministic,
        read_only=node.read_only,
        stats=node.stats,
        created=node.created,
    )


class Engine:
    """Serves rollouts' tool calls from the graph, a backend's sandboxes and a store.

    Thread-safe. The graph is mutated under one short lock; sandbox I/O and disk writes
    happen outside it, so a hit never waits for a miss.
    """

    def __init__(
        self,
        backend: Backend,
        store: Store | None = None,
        *,
        settings: Settings | None = None,
        policy: SnapshotPolicy | None = None,
        eviction: EvictionStrategy | None = None,
        clock: Clock | None = None,
        pool: SandboxPool | None = None,
        owns_store: bool = False,
    ) -> None:
        self.backend = backend
        self.owns_store = owns_store  # close() closes the store
        self.settings = settings or Settings()
        self.store = store
        self.policy: SnapshotPolicy = policy or CostAwarePolicy()
        self.eviction: EvictionStrategy = eviction or SecondsSavedPerByte()
        self.pool = pool
        self.leases: Leases | None = None  # a cluster server's: it serves owned roots only
        self.shadow: ShadowVerifier | None = None
        if self.settings.state.shadow_fraction > 0:
            from tvcache._shadow import ShadowVerifier

            self.shadow = ShadowVerifier(self, self.settings.state.shadow_fraction)
        self._clock = clock or time.time
        self.graph = Graph(self._clock)
        self.counters = Counters()
        self._lock = threading.Lock()
        self._flights: dict[tuple[str, str], Future[Node]] = {}
        self._specs: dict[str, RootSpec] = {}
        self.snapshots = Snapshots(
            backend=backend,
            store=store,
            graph=self.graph,
            settings=self.settings,
            policy=self.policy,
            eviction=self.eviction,
            counters=self.counters,
            lock=self._lock,
            clock=self._clock,
            root_spec=self.root_spec,
        )
        self._tools: Mapping[str, ToolSpec] = backend.tool_specs()
        self._stats_writer: StatsWriter | None = None
        if store is not None:
            from tvcache._store import StatsWriter

            self._stats_writer = StatsWriter(store, interval=self.settings.stats_flush_seconds)
        self.recovery: dict[str, int] = self.reconcile() if store is not None else {}

    # ----------------------------------------------------------------- roots
    def open_root(self, spec: RootSpec) -> str:
        """Register (or load) the root of ``spec`` and return its id."""
        if spec.backend != self.backend.name:
            raise TvcacheError(
                f"root of task {spec.task_id!r} asks for backend {spec.backend!r}, "
                f"but this engine runs {self.backend.name!r}",
                f"set RootSpec(backend={self.backend.name!r}) or start an engine with that backend",
            )
        identity = self.backend.root_identity(spec)
        rid = root_id(spec, identity)
        if self.leases is not None and self.leases.claim(rid).fresh:
            self.forget_root(rid)  # taken over (again): what this server holds may be stale
        with self._lock:
            if self.graph.root(rid) is not None:
                return rid
        records: list[NodeRecord] = []
        snaps: list[SnapshotRecord] = []
        if self.store is not None:
            now = self._clock()
            new = self.store.put_root(RootRecord(rid, spec, identity, now))
            records = [] if new else self.store.load_nodes(rid)
            if not records:  # new, or a crash came between the root and its node
                self.store.put_node(node_record(Graph(lambda: now).add_root(rid)))
            snaps = [] if new else self.store.snapshots(rid)
        with self._lock:
            if self.graph.root(rid) is None:
                self._load(rid, records, snaps)
            self._specs[rid] = spec
        return rid

    def load_root(self, record: RootRecord) -> str:
        """Load a stored root under its stored id, without asking the backend: its template
        may be gone or edited since. For maintenance (``tvcache gc``); writes nothing."""
        rid = record.root_id
        with self._lock:
            if self.graph.root(rid) is not None:
                return rid
        assert self.store is not None
        records, snaps = self.store.load_nodes(rid), self.store.snapshots(rid)
        with self._lock:
            if self.graph.root(rid) is None:
                self._load(rid, records, snaps)
            self._specs.setdefault(rid, record.spec)
        return rid

    def forget_root(self, rid: str) -> None:
        """Drop a root's in-memory nodes (its stored rows and snapshot files stay); the next
        open loads it from the store as it is now."""
        with self._lock:
            dropped = self.graph.drop_root(rid)
            self._specs.pop(rid, None)
        if dropped:
            log.info("tvcache: dropped %d in-memory node(s) of root %s to reload it", dropped, rid)

    def root_spec(self, rid: str) -> RootSpec:
        spec = self._specs.get(rid)
        if spec is None and self.store is not None:
            record = self.store.get_root(rid)
            if record is not None:
                self.open_root(record.spec)
                spec = record.spec
        if spec is None:
            raise RootNotFoundError(
                f"no root with id {rid!r}", "list roots with `tvcache stats` and pass one of them"
            )
        return spec

    def _load(self, rid: str, records: list[NodeRecord], snaps: list[SnapshotRecord]) -> None:
        root_record = next((r for r in records if r.parent_id is None), None)
        self.graph.add_root(rid, root_record.created if root_record else None)
        for record in records:
            if record.parent_id is None:
                continue
            parent = self.graph.get(record.parent_id)
            if parent is None or record.call is None or record.call_key is None:
                log.warning("store node %s has no loaded parent; skipped", record.node_id)
                continue
            self._add_stored(parent, record.call_key, record.call, record)
        # merged nodes were leaves when merged; index nodes with children first so that
        # none of them is re-pointed, then merge fingerprinted leaves into them
        parents = {r.parent_id for r in records}
        ordered = sorted(records, key=lambda r: r.node_id not in parents)
        for record in ordered:
            held = self.graph.get(record.node_id)
            if held is not None and record.fingerprint is not None:
                leaf = record.node_id not in parents and record.parent_id is not None
                merge = leaf and self.settings.state.merge
                self.graph.set_fingerprint(held, record.fingerprint, merge=merge)
        for snap in snaps:
            held = self.graph.get(snap.node_id)
            if held is not None:
                held.snapshot = snap.handle

    def _add_stored(self, parent: Node, key: str, call: ToolCall, record: NodeRecord) -> Node:
        """A stored node under its loaded parent, with its stored flags and statistics."""
        node = self.graph.add_child(
            parent,
            key,
            call,
            record.observation,
            nondeterministic=record.nondeterministic,
            created=record.created,
        )
        node.read_only = record.read_only
        node.stats = record.stats
        return node

    def catch_up(self, node_id: str) -> Node | None:
        """``node_id`` as another server sharing the store recorded it after this engine
        loaded its root: the stored path down to it is added as stored (observations and
        flags; not its snapshots, which may live on another host, nor fingerprint merges), so
        a session moved here from a dead server resumes at it. None when not all of it is
        stored under a loaded root, or when the stored ids disagree with this graph."""
        with self._lock:
            held = self.graph.get(node_id)
        if held is not None or self.store is None:
            return held
        path: list[NodeRecord] = []
        record = self.store.get_node(node_id)
        while record is not None and record.parent_id is not None:
            with self._lock:
                known = self.graph.get(record.parent_id)
            path.append(record)
            if known is not None:
                break
            record = self.store.get_node(record.parent_id)
        if record is None or not path:
            return None
        with self._lock:
            parent = self.graph.get(path[-1].parent_id or "")
            for stored in reversed(path):
                if parent is None or stored.call is None or stored.call_key is None:
                    return None
                known = parent.children.get(stored.call_key)
                if known is not None:  # this server's own: left as it is
                    parent = known
                    continue
                node = self._add_stored(parent, stored.call_key, stored.call, stored)
                if node.node_id != stored.node_id:
                    return None
                parent = node
            return parent if parent is not None and parent.node_id == node_id else None

    # -------------------------------------------------------------- sessions
    def session(self, spec: RootSpec | str, **spec_fields: object) -> Session:
        """A rollout on ``spec`` (or on ``RootSpec(task_id=spec, **spec_fields)``)."""
        from tvcache._session import Session

        if isinstance(spec, str):
            spec = RootSpec(task_id=spec, backend=self.backend.name, **spec_fields)  # type: ignore[arg-type]
        rid = self.open_root(spec)
        if self.pool is not None:
            root = self.graph.root(rid)
            assert root is not None
            self.pool.note_session(root)
        return Session(self, rid)

    def tool_spec(self, tool: str) -> ToolSpec:
        spec = self._tools.get(tool)
        if spec is None:
            raise ToolCallError(
                f"unknown tool {tool!r}",
                f"backend {self.backend.name!r} has: {', '.join(sorted(self._tools))}",
            )
        return spec

    def key_of(self, tool: str, args: Mapping[str, object]) -> tuple[ToolSpec, str]:
        spec = self.tool_spec(tool)
        return spec, checked_call_key(spec, args)

    # ---------------------------------------------------------------- serving
    def serve(self, cursor: Cursor, tool: str, args: Mapping[str, JSON]) -> Served:
        """Serve one call at ``cursor`` and move it: the one path every call takes.

        A hit is the cached child of the position under the call's key. Else single flight:
        the first session to miss on (node, call) executes it while the others wait for its
        child and count it as a hit; a leader that failed lets the next one lead.
        """
        spec, key = self.key_of(tool, args)
        anchor = self.anchor(cursor.position, spec, key)
        for _attempt in range(3):
            with self._lock:
                child = self._hit(anchor, key)
                flight = None if child is not None else self._flights.get((anchor.node_id, key))
                leader = child is None and flight is None
                if leader:
                    flight = self._flights[(anchor.node_id, key)] = Future()
                    flight.set_running_or_notify_cancel()
            if child is not None:
                self._verify_later(anchor, child)
                return cursor.advance(child, hit=True)
            assert flight is not None
            if not leader:
                try:
                    child = flight.result()
                except TvcacheError:
                    continue  # the leader failed; try to lead ourselves
                if child.parent is not anchor:
                    continue  # the leader stored it elsewhere (a pure tool that wrote)
                with self._lock:
                    self._count_hit(child)
                    self.counters.shared_hits += 1
                return cursor.advance(child, hit=True)
            try:
                child = self._miss(cursor, anchor, key, ToolCall(tool, dict(args)), spec)
                flight.set_result(child)
            except BaseException as error:
                flight.set_exception(error)
                raise
            finally:
                with self._lock:
                    self._flights.pop((anchor.node_id, key), None)
            return cursor.advance(child, hit=False)
        raise TvcacheError(f"call {tool!r} failed in three other sessions", "see the log for why")

    def serve_hit(self, cursor: Cursor, tool: str, args: Mapping[str, JSON]) -> Served | None:
        """:meth:`serve` if the call is a hit, else None: never waits, never runs a sandbox
        (an async session serves these inline and offloads the rest)."""
        spec, key = self.key_of(tool, args)
        anchor = self.anchor(cursor.position, spec, key)
        with self._lock:
            child = self._hit(anchor, key)
        if child is None:
            return None
        self._verify_later(anchor, child)
        return cursor.advance(child, hit=True)

    def cached(self, position: Node, call: ToolCall) -> Node | None:
        """The node that would answer ``call`` at ``position`` as a hit; counts nothing."""
        spec, key = self.key_of(call.tool, call.args)
        anchor = self.anchor(position, spec, key)
        with self._lock:
            return self._cached(anchor, key)

    @staticmethod
    def _cached(anchor: Node, key: str) -> Node | None:
        """The hit lookup (the only one): a child under ``key`` that holds an observation."""
        child = anchor.children.get(key)
        return child if child is not None and child.observation is not None else None

    def _hit(self, anchor: Node, key: str) -> Node | None:
        """:meth:`_cached`, counted as a hit; called under the lock."""
        child = self._cached(anchor, key)
        if child is not None:
            self._count_hit(child)
        return child

    def _verify_later(self, anchor: Node, child: Node) -> None:
        if self.shadow is not None:
            self.shadow.maybe_verify(anchor, child)

    def _count_hit(self, child: Node) -> None:
        assert child.observation is not None
        saved = child.observation.seconds
        child.stats.hits += 1
        child.stats.seconds_saved += saved
        child.stats.last_use = self._clock()
        self.counters.calls += 1
        self.counters.hits += 1
        self.counters.seconds_saved += saved
        if self._stats_writer is not None:
            self._stats_writer.mark(child.node_id, child.stats)

    def _miss(self, cursor: Cursor, anchor: Node, key: str, call: ToolCall, spec: ToolSpec) -> Node:
        """Bring a sandbox to the cursor's position, run the call there, store the child."""
        sandbox, at = self.place(cursor.sandbox, cursor.sandbox_node, cursor.position)
        cursor.sandbox, cursor.sandbox_node = sandbox, at
        try:
            child = self.execute(sandbox, at, anchor, key, call, spec)
        except BaseException:
            cursor.drop_sandbox()
            raise
        if not child.read_only:
            cursor.sandbox_node = child.state()
        return child

    def anchor(self, position: Node, spec: ToolSpec, key: str) -> Node:
        """Where a call's observation lives: the root for a pure tool, else the position.

        A call of a "pure" tool that was caught changing the state lives at the position.
        """
        if not (spec.pure or spec.name in self.settings.state.pure_tools):
            return position
        root = self.graph.root(position.root_id)
        assert root is not None
        with self._lock:
            known = root.children.get(key)
        return position if known is not None and not known.read_only else root

    def execute(
        self,
        sandbox: Sandbox,
        position: Node,
        anchor: Node,
        key: str,
        call: ToolCall,
        spec: ToolSpec,
    ) -> Node:
        """Run ``call`` on a sandbox at ``position``; store the child under ``anchor`` durably.

        Read-only is established, never assumed: from the tool's own proof, or from equal
        fingerprints before and after. A pure tool that changed the state is a write. Where
        the tool proved the call read-only, the state after is the state before: it is not
        measured again (a fingerprint of a database costs more than the query).
        """
        aware = self.settings.state
        pure = anchor.is_root and (spec.pure or spec.name in aware.pure_tools)
        task_id = self.root_spec(position.root_id).task_id
        configured = pure or aware.fingerprints(spec.name, task_id)  # opted into merging
        fingerprinting = configured or spec.read_only  # a claim is checked, never merged on
        if position.children and position.snapshot is None:
            self.snapshots.maybe_take(sandbox, position, "branch")
        before = self._state_fingerprint(sandbox, position) if fingerprinting else None
        observation = sandbox.run(call, timeout=self.settings.call_timeout)
        proven = aware.read_only and observation.read_only  # the tool's proof: nothing changed
        after = None
        if fingerprinting:
            after = before if proven and before is not None else self._measured_fingerprint(sandbox)
        unchanged = before is not None and before == after
        if pure and spec.name not in aware.pure_tools and (before is None or after is None):
            pure, anchor = False, position  # a tool's own claim counts only where it is checked
        read_only = proven or unchanged
        if pure and before is not None and after is not None and not unchanged:
            log.warning("tool %r is configured pure but changed the state: a write", spec.name)
            with self._lock:
                self.counters.misdeclared_pure += 1
            anchor = position
        elif pure:
            read_only = True
        elif spec.read_only and before is not None and after is not None and not unchanged:
            log.warning("tool %r claims read-only but changed the state: a write", spec.name)
        merged_on = after if configured else None
        child = self.graph_child(anchor, key, call, observation, spec, read_only, merged_on)
        if not child.read_only:
            self.snapshots.maybe_take(sandbox, child.state(), "after_call")
        return child

    def _measured_fingerprint(self, sandbox: Sandbox) -> str | None:
        started = time.perf_counter()
        fingerprint = sandbox.fingerprint()
        with self._lock:
            self.counters.fingerprints += 1
            self.counters.fingerprint_seconds += time.perf_counter() - started
        return fingerprint

    def _state_fingerprint(self, sandbox: Sandbox, position: Node) -> str | None:
        """The fingerprint of ``position``, measured on ``sandbox`` (which is there) if unknown."""
        if position.fingerprint is not None:
            return position.fingerprint
        fingerprint = self._measured_fingerprint(sandbox)
        if fingerprint is not None:
            with self._lock:
                self.graph.set_fingerprint(position, fingerprint, merge=False)
            if self.store is not None:
                self.store.set_flags(position.node_id, fingerprint=fingerprint)
        return fingerprint

    def graph_child(
        self,
        anchor: Node,
        key: str,
        call: ToolCall,
        observation: Observation,
        spec: ToolSpec,
        read_only: bool = False,
        fingerprint: str | None = None,
    ) -> Node:
        """Make the child durable, then visible: nobody is served what a crash would lose.

        A timed-out call left the environment in whatever state the kill caught it in, and its
        timeout is volatile (not in the key): its node counts as nondeterministic. So does a
        call whose sandbox says a fresh run may see other output (``observation``'s flag).
        """
        now = self._clock()
        nondeterministic = (
            not spec.deterministic or observation.timed_out or observation.nondeterministic
        )
        with self._lock:
            existing = anchor.children.get(key)
        if existing is not None and existing.observation is None:  # withdrawn: serve anew
            if self.store is not None:
                self.store.set_observation(existing.node_id, observation)
            with self._lock:
                existing.observation = observation
                existing.stats.executions += 1
                existing.stats.exec_seconds += observation.seconds
                self._count_miss(observation)
            return existing
        if existing is not None:
            return existing
        stats = NodeStats(executions=1, exec_seconds=observation.seconds, last_use=now)
        node_id = child_id(anchor.node_id, key)
        record = NodeRecord(
            node_id=node_id,
            root_id=anchor.root_id,
            parent_id=anchor.node_id,
            depth=anchor.depth + 1,
            call_key=key,
            call=call,
            observation=observation,
            nondeterministic=nondeterministic,
            read_only=read_only,
            stats=stats,
            created=now,
            fingerprint=fingerprint,
        )
        if self.store is not None:
            self.store.put_node(record)
        with self._lock:
            child = self.graph.add_child(
                anchor,
                key,
                call,
                observation,
                nondeterministic=nondeterministic,
                created=now,
                node_id=node_id,
            )
            child.read_only = read_only
            child.stats = stats
            if fingerprint is not None:
                self.graph.set_fingerprint(child, fingerprint, merge=self.settings.state.merge)
            self.counters.read_only_nodes += read_only
            self.counters.merged_nodes += child.alias is not None
            self._count_miss(observation)
        return child

    def _count_miss(self, observation: Observation) -> None:
        self.counters.calls += 1
        self.counters.misses += 1
        self.counters.executed_seconds += observation.seconds

    # ------------------------------------------------------ sandbox placement
    def place(
        self, bound: Sandbox | None, bound_node: Node | None, target: Node
    ) -> tuple[Sandbox, Node]:
        """A sandbox in the state of ``target``: the cheapest of catching up or forking.

        Returns the sandbox and the node it is at (``target``). The bound sandbox is closed
        when a fork is cheaper.
        """
        if bound is not None and bound_node is target:  # the common miss: nothing can be cheaper
            if self.pool is not None:
                self.pool.note_miss(target)
            return bound, target
        catch_up: float | None = None
        if bound is not None and bound_node is not None and bound_node.is_ancestor_of(target):
            catch_up = faithful_replay_seconds(bound_node, target)
        base = target.deepest_snapshot()
        fork_cost = self.snapshots.fork_cost(base) + replay_seconds(base, target)
        if self.pool is not None:
            self.pool.note_miss(target)
            best = fork_cost if catch_up is None else min(fork_cost, catch_up)
            pooled = self.pool.take(target, max_replay_seconds=best)
            if pooled is not None:
                if bound is not None:
                    bound.close()
                sandbox, at = pooled
                with self._lock:
                    self.counters.pool_takes += 1
                return self._replayed(sandbox, at, target), target
        if (
            bound is not None
            and bound_node is not None
            and catch_up is not None
            and catch_up <= fork_cost
        ):
            if bound_node is not target:
                with self._lock:
                    self.counters.catch_ups += 1
                self.replay(bound, bound_node, target)
            return bound, target
        if bound is not None:
            bound.close()
        sandbox, base = self.fork_nearest(target)
        return self._replayed(sandbox, base, target), target

    def fork_nearest(self, target: Node) -> tuple[Sandbox, Node]:
        """A sandbox forked from the deepest snapshot on ``target``'s path that forks."""
        return self.snapshots.fork_nearest(target)

    def sandbox_at(self, target: Node) -> tuple[Sandbox, Node]:
        """A new sandbox in the state of ``target`` (forked from the deepest snapshot on its
        path, then the calls below it replayed and verified), and the node it was forked at.
        The caller owns (closes) it."""
        sandbox, base = self.fork_nearest(target)
        return self._replayed(sandbox, base, target), base

    def _replayed(self, sandbox: Sandbox, start: Node, target: Node) -> Sandbox:
        """``sandbox`` brought from ``start`` to ``target``; closed if the replay fails."""
        try:
            self.replay(sandbox, start, target)
        except BaseException:
            sandbox.close()
            raise
        return sandbox

    def replay(self, sandbox: Sandbox, start: Node, target: Node) -> None:
        """Re-execute the calls from ``start`` to ``target``, verifying each output."""
        for step in calls_between(start, target):
            assert step.call is not None and step.observation is not None
            fresh = sandbox.run(step.call, timeout=self.settings.call_timeout)
            with self._lock:
                self.counters.replayed_calls += 1
                self.counters.replayed_seconds += fresh.seconds
            if self.settings.verify_replays and not fresh.same_as(step.observation):
                self.mark_nondeterministic(step)
            elif fresh.nondeterministic:
                self.mark_nondeterministic(step, diverged=False)

    def count(self, **increments: int) -> None:
        """Add to engine counters by name (for the engine's helpers, e.g. shadow runs)."""
        with self._lock:
            for name, by in increments.items():
                setattr(self.counters, name, getattr(self.counters, name) + by)

    def withdraw(self, node: Node) -> None:
        """Take ``node``'s observation out of service (it failed verification); the next call
        there re-executes. Its future is kept but tainted: the node is nondeterministic."""
        with self._lock:
            node.observation = None
            node.nondeterministic = True
        if self.store is not None:
            self.store.set_observation(node.node_id, None)
            self.store.set_flags(node.node_id, nondeterministic=True)

    def mark_nondeterministic(self, node: Node, *, diverged: bool = True) -> None:
        """Flag ``node``: its replay ``diverged``, or the sandbox said a rerun may differ."""
        with self._lock:
            already = node.nondeterministic
            node.nondeterministic = True
            self.counters.divergences += diverged
        if not already:
            why = "diverged" if diverged else "may differ in a fresh run"
            log.warning("replay of node %s %s: marked nondeterministic", node.node_id, why)
            if self.store is not None:
                self.store.set_flags(node.node_id, nondeterministic=True)

    def enforce_budget(self) -> None:
        """Evict snapshots (never nodes) until the byte budget holds (see ``Snapshots``)."""
        self.snapshots.enforce_budget()

    # ----------------------------------------------------------- maintenance
    def reconcile(self) -> dict[str, int]:
        """Bring store and backend storage into agreement after a crash."""
        assert self.store is not None
        released = self.store.release_stale_locks()
        records = {r.handle.snapshot_id: r for r in self.store.snapshots()}
        report = self.backend.reconcile({sid: r.handle for sid, r in records.items()})
        for sid in report.missing:
            self.store.delete_snapshot(records[sid].node_id)
        return {
            "stale_locks_released": released,
            "orphans_removed": len(report.orphans_removed),
            "missing_snapshots_dropped": len(report.missing),
        }

    def stats(self) -> EngineStats:
        """Engine-wide counters and estimates (``.to_dict()`` for JSON)."""
        with self._lock:
            c = self.counters
            counted = {f.name: getattr(c, f.name) for f in dataclasses.fields(c)}
            return EngineStats(
                **{**counted, "snapshot_reasons": dict(c.snapshot_reasons)},
                hit_rate=c.hits / c.calls if c.calls else 0.0,
                nodes=len(self.graph),
                snapshot_bytes=self.graph.snapshot_bytes(),
                fork_seconds_estimate=self.snapshots.fork_estimate.value,
                snapshot_seconds_estimate=self.snapshots.snapshot_estimate.value,
            )

    def timings(self) -> dict[str, list[float]]:
        """The last 10,000 measured seconds of starts, forks and snapshots (for percentiles)."""
        with self._lock:
            return {
                "start": list(self.snapshots.start_estimate.samples),
                "fork": list(self.snapshots.fork_estimate.samples),
                "snapshot": list(self.snapshots.snapshot_estimate.samples),
            }

    def flush(self) -> None:
        if self._stats_writer is not None:
            self._stats_writer.flush()

    def close(self) -> None:
        """Close the pool and flush counters; close the store if the engine opened it
        (``open_engine``), else it stays open for the caller that passed it in. Idempotent."""
        if self.pool is not None:
            self.pool.close()
        if self.shadow is not None:
            self.shadow.close()
        if self._stats_writer is not None:
            self._stats_writer.close()
            self._stats_writer = None
        if self.owns_store and self.store is not None:
            self.store.close()
