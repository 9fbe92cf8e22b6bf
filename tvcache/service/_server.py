"""``tvcache serve``: one engine, one uvicorn process, loopback unless a token guards it.

Shutdown on SIGTERM or SIGINT: uvicorn stops accepting and finishes the requests in flight,
the app closes every session (destroying its sandbox), then the pool (and any fork in flight)
is closed, counters are flushed and the store is closed. Nothing is left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import signal
import socket
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import uvicorn

from snapshots import TvcacheError
from tvcache._engine import Engine
from tvcache._factory import open_engine
from tvcache._heartbeat import Heartbeat
from tvcache._settings import Settings
from tvcache.pool import PreforkPool
from tvcache.service._app import create_app
from tvcache.service._guard import DEFAULT_MAX_REQUEST_BYTES

if TYPE_CHECKING:
    from tvcache._factory import AnyTool


@dataclass(frozen=True, slots=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8710
    token: str | None = None
    backend: str = "local"
    level: str = "fs"
    idle_seconds: float = 600.0
    pool_size: int = 8
    threads: int = 64
    grace: float = 60.0
    log_level: str = "info"
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    tools: tuple[AnyTool, ...] = ()
    advertise: str | None = None  # URL published in the store for clients ("auto": bound URL)
    lease_ttl: float = 10.0  # with advertise: a dead server's roots move after this long


def is_loopback(host: str) -> bool:
    """True when every address ``host`` names is a loopback address."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise TvcacheError(f"cannot resolve host {host!r}: {error}", "pass an address") from error
    return all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: any free port), bound before the engine is opened."""
    family, kind, proto, _name, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as error:
        sock.close()
        raise TvcacheError(
            f"cannot listen on {host}:{port}: {error.strerror}", "choose another --port"
        ) from error
    sock.listen(2048)
    return sock


@contextlib.contextmanager
def _signals_as_shutdown_only() -> Iterator[list[int]]:
    """uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown; make that a no-op so the
    engine and store are closed afterwards instead of the process dying first. A signal that
    comes before uvicorn listens for its own (a stop right after the ready line) is kept in
    the list this yields, for :class:`_Server` to act on: dropping it left the server running."""
    received: list[int] = []

    def keep(sig: int, _frame: object) -> None:
        received.append(sig)

    saved = {sig: signal.signal(sig, keep) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


class _Server(uvicorn.Server):
    """Ends the dashboard's event streams first: uvicorn waits for open responses to finish,
    and a stream would otherwise hold the shutdown for minutes. Stops at once when a signal
    came before uvicorn listened for signals (``early``)."""

    def __init__(self, config: uvicorn.Config, early: list[int]) -> None:
        super().__init__(config)
        self._early = early

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            self.should_exit = self.should_exit or bool(self._early)
            yield

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        app = self.config.app
        closing = getattr(getattr(app, "state", None), "closing", None)
        if closing is not None:
            closing.set()
        await super().shutdown(sockets)


def engine_for(
    settings: Settings, backend: str, level: str = "fs", tools: Sequence[AnyTool] = ()
) -> Engine:
    """``open_engine``; an unknown backend is a TvcacheError the CLI reports."""
    return open_engine(settings, backend=backend, level=level, tools=tools)


def _follow_parent() -> None:
    """What a process started by another inherits that would keep it from stopping: a
    blocked SIGTERM/SIGINT (a Ray worker blocks SIGINT in its threads; the mask survives
    exec) is unblocked; with ``TVCACHE_EXIT_WITH_PARENT=PID`` (a Ray actor), the death of
    that parent sends this process SIGTERM, so no orphan server keeps advertising itself."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    parent = os.environ.pop("TVCACHE_EXIT_WITH_PARENT", "")
    if not parent or not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    if str(os.getppid()) != parent:  # it died before prctl: no signal will come
        raise TvcacheError(
            f"the process that started this server ({parent}) is gone", "start it again"
        )


def serve(settings: Settings, options: ServeOptions) -> int:
    """Serve until SIGTERM/SIGINT; print the URL (one line on stdout) once listening."""
    _follow_parent()
    if not options.token and not is_loopback(options.host):
        raise TvcacheError(
            f"refusing to serve on {options.host} without a token: anyone who can reach it "
            "could run commands",
            "set TVCACHE_TOKEN or pass --token-file FILE, or bind 127.0.0.1",
        )
    sock = bind(options.host, options.port)
    try:
        engine = engine_for(settings, options.backend, options.level, options.tools)
    except BaseException:
        sock.close()
        raise
    if options.pool_size > 0:
        engine.pool = PreforkPool(engine, max_size=options.pool_size)
    heartbeat: Heartbeat | None = None
    try:
        app = create_app(
            engine,
            token=options.token,
            idle_seconds=options.idle_seconds,
            grace=options.grace,
            threads=options.threads,
            max_request_bytes=options.max_request_bytes,
        )
        config = uvicorn.Config(
            app, log_level=options.log_level, access_log=False, lifespan="on", timeout_keep_alive=30
        )
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        heartbeat = _advertise(engine, options, f"http://{shown}:{port}")
        with _signals_as_shutdown_only() as early:  # before the ready line: a stop may follow
            print(f"tvcache serve: listening on http://{shown}:{port}", flush=True)
            _Server(config, early).run(sockets=[sock])
    finally:
        if heartbeat is not None:
            with contextlib.suppress(TvcacheError):
                engine.flush()  # statistics while the leases still fence them in
            heartbeat.stop()
        sock.close()
        engine.close()  # and the store it opened
    print("tvcache serve: stopped", file=sys.stderr, flush=True)
    return 0


def _advertise(engine: Engine, options: ServeOptions, bound: str) -> Heartbeat | None:
    """Put this server on the store's live list (``--advertise``) for routing clients; it
    then serves only the roots it holds the lease of, and fences its writes by them."""
    advertise = options.advertise
    if advertise is None:
        return None
    if engine.store is None:
        raise TvcacheError(
            "--advertise needs a store the clients can read", "set TVCACHE_STORE_URL"
        )
    address = bound if advertise == "auto" else advertise
    heartbeat = Heartbeat(engine.store, address, ttl=options.lease_ttl).start()
    engine.leases = heartbeat.leases
    engine.store.fence = heartbeat.leases
    return heartbeat
