"""Errors the API answers with: every one is JSON with a message, never HTML or a traceback."""

from __future__ import annotations

import asyncio
import logging

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from appliance.errors import FormErrors, StoreUnavailableError

log = logging.getLogger(__name__)

REASONS = {
    400: "bad request",
    401: "unauthorized",
    403: "forbidden",
    404: "not found",
    405: "method not allowed",
    411: "length required",
    413: "request too large",
    415: "unsupported media type",
    422: "invalid parameters",
    429: "too many requests",
    500: "internal error",
    503: "unavailable",
    507: "insufficient storage",
}


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"error": REASONS.get(status, "error"), "message": message, "status": status}
    return JSONResponse(body, status_code=status, headers=headers)


DRAIN_SECONDS = 60.0  # longest a refused request's body is read for, then dropped


async def drain(request: Request) -> None:
    """Reads what is left of a refused request's body and drops it. A request refused
    before its body is read (a quota, a token) would otherwise be answered while the
    proxy still sends the body: hypercorn closes the connection, the proxy's next write
    fails (EPIPE) and the client gets 502 instead of this answer (about one over-quota
    upload in six did). The proxy caps the body's size and pauses, this its time."""
    if request._stream_consumed or hasattr(request, "_body"):  # read whole already
        return
    try:
        async with asyncio.timeout(DRAIN_SECONDS):
            async for _ in request.stream():
                pass
    except (ClientDisconnect, TimeoutError, RuntimeError):
        pass  # gone, or too slow: the answer goes anyway


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    await drain(request)
    return error_response(exc.status, exc.message, exc.headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = exc.detail if isinstance(exc.detail, str) else REASONS.get(exc.status_code, "error")
    if exc.status_code == 404 and message == "Not Found":
        message = f"no such resource: {request.url.path}"
    if exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    await drain(request)
    return error_response(exc.status_code, message, dict(exc.headers or {}))


async def form_errors(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FormErrors)
    await drain(request)
    return JSONResponse(exc.to_json(), status_code=422)


async def unavailable(request: Request, exc: Exception) -> Response:
    log.warning("database unavailable: %s", exc)
    return error_response(
        503, "the database is unavailable; try again shortly", {"Retry-After": "5"}
    )


async def internal(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "the server failed to answer this request; it has been logged")


HANDLERS = {
    ApiError: api_error,
    HTTPException: http_error,
    FormErrors: form_errors,
    StoreUnavailableError: unavailable,
    Exception: internal,
}
