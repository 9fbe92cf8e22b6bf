"""The service's outer layer: the token, the request size limit, and the last answer to
anything unexpected.

It sits outside FastAPI's exception handling, so an error that escapes every handler is answered
here in the documented JSON format and goes no further: an exception that reached uvicorn would
make it drop the keep-alive connection, failing the client's other requests on it as well.
"""

from __future__ import annotations

import hashlib
import hmac
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs

from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tvcache.service._errors import TooLarge, Unauthorized, error_response

DEFAULT_MAX_REQUEST_BYTES = 8 * 1024 * 1024
COOKIE = "tvcache_dashboard"
_READS = ("GET", "HEAD")
_LOGIN_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<link rel="icon" href="data:,"><title>tvcache: token needed</title></head>
<body style="font-family:system-ui,sans-serif;max-width:40em;margin:3em auto">
<h1>tvcache dashboard: {what}</h1>
<p>This server needs its token. Open <code>/?token=&lt;token&gt;</code> once: the server then
sets a cookie (HttpOnly, SameSite=Strict) that opens the dashboard in this browser, and takes
the token out of the address. API clients send <code>Authorization: Bearer &lt;token&gt;</code>.</p>
</body></html>"""


def cookie_name(scope: Scope) -> str:
    """The cookie's name, per port: browsers send a host's cookies to every port on it, and
    two servers on one host must not overwrite each other's."""
    server = scope.get("server")
    return f"{COOKIE}_{server[1]}" if server else COOKIE


def cookie_value(token: bytes) -> str:
    """What the dashboard cookie holds: derived from the token, never the token itself, so a
    leaked cookie only reads (the cookie is honoured on GET and HEAD requests alone)."""
    return hmac.new(token, b"tvcache dashboard cookie v1", hashlib.sha256).hexdigest()


class BodyTooLarge(HTTPException):
    """The body went past the limit while being read (no Content-Length). An HTTPException:
    FastAPI turns any other exception raised while it reads a body into a 400."""

    def __init__(self, limit: int) -> None:
        super().__init__(413)
        self.limit = limit


def too_large(limit: int) -> TooLarge:
    return TooLarge(
        f"the request body is larger than this server's limit of {limit} bytes",
        "send smaller arguments (large data belongs in the task's template), or start the "
        "server with a larger --max-request-bytes",
    )


class Guard:
    """Checks ``Authorization: Bearer <token>`` (scheme in any case, token in constant time),
    refuses bodies over ``max_request_bytes`` with 413, and answers any exception with 500.

    A browser cannot send that header (nor can ``EventSource``): ``GET /?token=<token>`` sets
    an HttpOnly, SameSite=Strict cookie derived from the token, which reads (GET, HEAD) pass.
    """

    def __init__(self, app: ASGIApp, *, token: str | None, max_request_bytes: int) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.limit = max_request_bytes

    def _cookie_ok(self, scope: Scope, header: bytes) -> bool:
        assert self.token is not None
        try:
            morsel = SimpleCookie(header.decode("latin-1")).get(cookie_name(scope))
        except CookieError:
            return False
        expected = cookie_value(self.token).encode()
        return morsel is not None and hmac.compare_digest(morsel.value.encode(), expected)

    def _login(self, scope: Scope) -> Response | None:
        """The answer to ``GET /?token=...``: the cookie and a redirect, or a refusal."""
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if scope["path"] != "/" or scope["method"] != "GET" or "token" not in query:
            return None
        assert self.token is not None
        if not hmac.compare_digest(query["token"][-1].encode(), self.token):
            return HTMLResponse(_LOGIN_PAGE.format(what="wrong token"), 401)
        answer = RedirectResponse("/", 303)
        value = cookie_value(self.token)
        answer.set_cookie(cookie_name(scope), value, httponly=True, samesite="strict", path="/")
        return answer

    def _authorized(self, header: bytes) -> bool:
        scheme, _, credentials = header.strip().partition(b" ")
        assert self.token is not None
        return scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        login = self._login(scope) if self.token is not None else None
        if login is not None:
            await login(scope, receive, send)
            return
        reads = scope["method"] in _READS
        if (
            self.token is not None
            and not self._authorized(headers.get(b"authorization", b""))
            and not (reads and self._cookie_ok(scope, headers.get(b"cookie", b"")))
        ):
            given = b"authorization" in headers
            if scope["path"] == "/":  # a browser: a page that says how to get in
                what = "wrong token" if given else "token needed"
                await HTMLResponse(_LOGIN_PAGE.format(what=what), 401)(scope, receive, send)
                return
            challenge = 'Bearer realm="tvcache"' + (', error="invalid_token"' if given else "")
            error = Unauthorized(
                "wrong token" if given else "this server needs a token",
                "send the header 'Authorization: Bearer <token>' with the server's token",
            )
            await error_response(error, {"WWW-Authenticate": challenge})(scope, receive, send)
            return
        length = headers.get(b"content-length", b"0")
        if length.isdigit() and int(length) > self.limit:
            await error_response(too_large(self.limit))(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except Exception as error:
            if started:  # half an answer is out: nothing valid can follow it on this connection
                raise
            answer = too_large(self.limit) if isinstance(error, BodyTooLarge) else error
            await error_response(answer)(scope, receive, send)
