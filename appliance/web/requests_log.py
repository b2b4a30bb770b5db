"""Request ids, the web process's access log and its HTTP metrics.

Every request gets an id: the proxy's (``X-Request-Id``, nginx's ``$request_id``) when it
is a plausible one, else one made here. It is answered in ``X-Request-Id``, put on every
log line written while the request is served (``appliance.logs.REQUEST_ID``), stored with
a job the request submits, and written with one access-log line per request (logger
``appliance.access``; setting ``access_log``: common, json, or off; health checks and the
proxy's internal sub-requests only at DEBUG).
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from appliance.logs import REQUEST_ID
from appliance.metrics import HTTP_REQUESTS, HTTP_SECONDS, method_of, route_of, status_of

access = logging.getLogger("appliance.access")
PLAUSIBLE = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
QUIET = ("/healthz", "/readyz", "/_internal/")


def _printable(text: str) -> str:
    """``text`` with control characters written as escapes (``\\n``, ``\\x1b``)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class RequestIds:
    def __init__(self, app: ASGIApp, access_log: str = "common") -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        given = headers.get("x-request-id", "")
        request_id = given if PLAUSIBLE.match(given) else uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status = 500
        # An answer sent before the request's body was read (a quota's 429, say) closes the
        # connection: the server cannot take another request on it, and the proxy, told
        # so, does not send one there (else it fails as "upstream prematurely closed").
        body_read = headers.get("content-length", "0") in ("", "0") and (
            "chunked" not in headers.get("transfer-encoding", "").lower()
        )

        async def receive_body() -> Message:
            nonlocal body_read
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                body_read = True
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                extra = [(b"x-request-id", request_id.encode())]
                if not body_read:
                    extra.append((b"connection", b"close"))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            await self.app(scope, receive_body, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            # a route the app knows, its ids replaced; anything else is one label
            route = route_of(str(scope.get("path", ""))) if "endpoint" in scope else "(unmatched)"
            HTTP_REQUESTS.labels(route, method_of(str(scope.get("method", ""))),
                                 status_of(status)).inc()  # fmt: skip
            HTTP_SECONDS.labels(route).observe(seconds)
            if self.access_log != "off":
                self._log(scope, headers, status, seconds, request_id)
            REQUEST_ID.reset(token)

    def _log(self, scope: Scope, headers: Headers, status: int, seconds: float,
             request_id: str) -> None:  # fmt: skip
        path = _printable(str(scope.get("path", "")))  # a %0A in a URL forges no log line
        level = logging.DEBUG if path.startswith(QUIET) else logging.INFO
        if not access.isEnabledFor(level):
            return
        client = headers.get("x-real-ip") or (scope.get("client") or ("-",))[0]
        method = _printable(str(scope.get("method", "")))
        client = _printable(client)
        milliseconds = round(seconds * 1000, 2)
        access.log(level, '%s "%s %s" %d %.2f ms', client, method, path, status, milliseconds,
                   extra={"method": method, "path": path, "status": status, "client": client,
                          "duration_ms": milliseconds, "request_id": request_id})  # fmt: skip
