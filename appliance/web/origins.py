"""Which web pages may use the API from a browser: cross-site writes and CORS.

A page on another site can make a visitor's browser send a form to the appliance (the
browser adds no credentials the appliance needs, but the page still chooses what is
submitted and may fill the queue). State-changing requests (POST, PUT, DELETE, PATCH)
that a browser marks as coming from another origin (``Origin``, or ``Sec-Fetch-Site``
cross-site / same-site) are refused with 403, unless that origin is in the
``allowed_origins`` setting. Clients that are not browsers (the previous system's Python
client, Jalview, curl, workflow engines) send neither header and are not affected.

CORS is explicit: without ``allowed_origins`` no response carries CORS headers, so no
other site's script can read the API's answers; with it, the listed origins may call the
API (GET, POST, PUT, DELETE; headers Authorization and Content-Type) and read
``Location``.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from appliance.web.errors import error_response

WRITES = frozenset({"POST", "PUT", "DELETE", "PATCH"})
DEFAULT_PORTS = {"http": ":80", "https": ":443"}


def own_origin(headers: Headers, scheme: str) -> str:
    """This server's origin as the client reached it (the proxy passes Host and scheme)."""
    scheme = headers.get("x-forwarded-proto", scheme).split(",")[0].strip().lower() or "http"
    host = headers.get("host", "").lower().removesuffix(DEFAULT_PORTS.get(scheme, "\0"))
    return f"{scheme}://{host}"


def refusal(headers: Headers, scheme: str, allowed: frozenset[str]) -> str | None:
    """Why a write with these headers is refused (a cross-site page sent it), or None."""
    origin = headers.get("origin")
    if origin is not None:
        origin = origin.lower()
        if origin in allowed or origin == own_origin(headers, scheme):
            return None
        return f"a page of {origin[:100]} may not change anything here (allowed_origins)"
    site = headers.get("sec-fetch-site", "").lower()
    if site in ("cross-site", "same-site"):
        return "a page of another site may not change anything here (allowed_origins)"
    return None


class CrossSiteWrites:
    """Refuses state-changing requests that a browser says another site's page sent."""

    def __init__(self, app: ASGIApp, allowed: Sequence[str] = ()) -> None:
        self.app = app
        self.allowed = frozenset(o.lower().rstrip("/") for o in allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in WRITES:
            reason = refusal(Headers(scope=scope), str(scope.get("scheme", "http")), self.allowed)
            if reason is not None:
                await error_response(403, reason)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def middleware(allowed: Sequence[str]) -> list[Middleware]:
    """CORS for the allowed origins (none: no CORS headers at all), then the write check."""
    stack = [Middleware(CrossSiteWrites, allowed=allowed)]
    if allowed:
        stack.insert(0, Middleware(
            CORSMiddleware, allow_origins=[o.rstrip("/") for o in allowed],
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type"], expose_headers=["Location"],
            max_age=600,
        ))  # fmt: skip
    return stack
