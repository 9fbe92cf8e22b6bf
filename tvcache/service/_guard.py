"""The service's outer layer: the token, the request size limit, and the last answer to
anything unexpected.

It sits outside FastAPI's exception handling, so an error that escapes every handler is answered
here in the documented JSON format and goes no further: an exception that reached uvicorn would
make it drop the keep-alive connection, failing the client's other requests on it as well.
"""

from __future__ import annotations

import hmac

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tvcache.service._errors import TooLarge, Unauthorized, error_response

DEFAULT_MAX_REQUEST_BYTES = 8 * 1024 * 1024


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
    refuses bodies over ``max_request_bytes`` with 413, and answers any exception with 500."""

    def __init__(self, app: ASGIApp, *, token: str | None, max_request_bytes: int) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.limit = max_request_bytes

    def _authorized(self, header: bytes) -> bool:
        scheme, _, credentials = header.strip().partition(b" ")
        assert self.token is not None
        return scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if self.token is not None and not self._authorized(headers.get(b"authorization", b"")):
            given = b"authorization" in headers
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
