"""The HTTP service: many rollout workers share one engine (and so one cache) over JSON."""

from tvcache.service._app import create_app
from tvcache.service._process import ServerProcess
from tvcache.service._server import ServeOptions, is_loopback, serve

__all__ = ["ServeOptions", "ServerProcess", "create_app", "is_loopback", "serve"]
