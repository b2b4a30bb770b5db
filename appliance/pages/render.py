"""Rendering: one Jinja2 environment (made on first use, autoescaping every template),
the static files' URLs with their content hash (so the proxy may let browsers keep them
for a year), and the headers every page carries."""

from __future__ import annotations

import functools
import hashlib
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from appliance import __version__
from appliance.pages.staticfiles import STATIC_URL, static_dir
from appliance.units import format_size

# Scripts and styles only from this origin's /static; no inline script, no frames, forms
# only to this origin. An output or upload is never shown inline (the proxy sends those
# with a sandboxing policy of their own).
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@functools.cache
def asset(name: str) -> str:
    """A static file's URL, with its content's hash: a changed file gets a new URL."""
    digest = hashlib.sha256((static_dir() / name).read_bytes()).hexdigest()[:12]
    return f"{STATIC_URL}/{name}?v={digest}"


@functools.cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("appliance.pages", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(asset=asset, version=__version__)
    env.filters["size"] = format_size
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


def page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(render(template, request=request, **context), status_code=status_code,
                        headers=PAGE_HEADERS)  # fmt: skip
