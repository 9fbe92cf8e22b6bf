"""Errors as HTTP answers: a status, a stable code, and a message that names what to fix."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from starlette.responses import Response

from sandbox import ToolCallError
from snapshots import TvcacheError
from tvcache._engine import RootNotFoundError
from tvcache._leases import Full, NotOwner
from tvcache._ownership import LeaseLost
from tvcache._session import SessionClosedError
from tvcache._tree_view import NodeNotFoundError

log = logging.getLogger("tvcache.service")


class ApiError(TvcacheError):
    """An error the service answers with ``status``; ``field`` names the bad request field."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, hint: str | None = None, *, field: str | None = None) -> None:
        super().__init__(message, hint)
        self.field = field


class InvalidRequest(ApiError):
    status, code = 422, "invalid_request"


class BadRoot(ApiError):
    status, code = 422, "bad_root"


class SessionNotFound(ApiError):
    status, code = 404, "session_not_found"


class NodeNotFound(ApiError):
    status, code = 404, "node_not_found"


class OutOfOrder(ApiError):
    status, code = 409, "out_of_order"


class SessionConflict(ApiError):
    status, code = 409, "session_conflict"


class Moved(ApiError):
    """This server no longer owns the session's root (issue 14): reopen it on the owner."""

    status, code = 409, "moved"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class UnreadableBody(ApiError):
    status, code = 400, "invalid_request"


class TooLarge(ApiError):
    status, code = 413, "too_large"


class NotFound(ApiError):
    status, code = 404, "not_found"


class MethodNotAllowed(ApiError):
    status, code = 405, "method_not_allowed"


_BY_TYPE: tuple[tuple[type[TvcacheError], int, str], ...] = (
    (ToolCallError, 422, "tool_call"),
    (RootNotFoundError, 404, "root_not_found"),
    (NodeNotFoundError, 404, "node_not_found"),
    (SessionClosedError, 404, "session_not_found"),
    (NotOwner, 409, "not_owner"),  # the body names the "owner" to open on
    (Full, 409, "full"),  # bounded loads: try the next server of the root's ring walk
    (LeaseLost, 409, "moved"),
)


def error_body(error: BaseException) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of ``error``; anything unexpected is a 500 that says what."""
    status, code, field = 500, "internal", None
    if isinstance(error, ApiError):
        status, code, field = error.status, error.code, error.field
    else:
        for kind, kind_status, kind_code in _BY_TYPE:
            if isinstance(error, kind):
                status, code = kind_status, kind_code
                break
    if isinstance(error, TvcacheError):
        message, hint = error.message, error.hint
    else:
        message, hint = f"{type(error).__name__}: {error}", "see the server log"
    body: dict[str, Any] = {"code": code, "message": message, "hint": hint, "field": field}
    if isinstance(error, NotOwner):
        body["owner"] = error.owner
    return status, {"error": body}


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(json.dumps(data), status, headers, media_type="application/json")


def error_response(error: BaseException, headers: Mapping[str, str] | None = None) -> Response:
    """``error`` as the documented JSON body; an unexpected one is logged with its traceback."""
    status, body = error_body(error)
    if status >= 500:
        log.error("internal error", exc_info=error)
    return json_response(body, status, headers)
