"""Version, service catalogue, health, the OpenAPI document and its docs page."""

from __future__ import annotations

import asyncio
import json

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from appliance import __version__
from appliance.diskspace import volumes, warnings
from appliance.errors import StoreError
from appliance.metrics import CONTENT_TYPE, VolumeSpace, scrape
from appliance.web.jobs import operator_only
from appliance.web.openapi import openapi_document
from appliance.web.representations import service_json
from appliance.web.state import state_of


async def version(request: Request) -> Response:
    return JSONResponse(
        {"slivkaVersion": __version__, "APIVersion": "1.1", "applianceVersion": __version__}
    )


async def stats(request: Request) -> Response:
    """Jobs submitted per month and service, in the previous system's shape (its key's
    spelling included: clients read ``usageStatictics``)."""
    rows = await state_of(request).store.usage_stats()
    return JSONResponse({"usageStatictics": [
        {"month": str(r.get("month")), "service": str(r.get("service")), "count": int(r.get("count", 0))}
        for r in rows
    ]})  # fmt: skip


async def _statuses(request: Request) -> dict[str, dict[str, object]]:
    """Service health from the database; the catalogue itself never needs it."""
    try:
        return await state_of(request).store.service_statuses()
    except StoreError:
        return {}


async def list_services(request: Request) -> Response:
    state = state_of(request)
    statuses = await _statuses(request)
    services = [service_json(s, statuses.get(s.id)) for s in state.catalogue.services.values()]
    return JSONResponse({"services": services})


async def show_service(request: Request) -> Response:
    state = state_of(request)
    service = state.service(request.path_params["service_id"])
    statuses = await _statuses(request)
    body = service_json(service, statuses.get(service.id))
    return JSONResponse(body, headers={"Location": body["@url"]})


async def metrics(request: Request) -> Response:
    """Prometheus metrics of the web processes (all workers'): the operator's, unless the
    setting ``metrics_public`` opens them."""
    state = state_of(request)
    if not state.settings.metrics_public:
        operator_only(request, state.settings, "reading the metrics")
    body = await asyncio.to_thread(scrape, VolumeSpace(state.settings))
    return Response(body, media_type=CONTENT_TYPE)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "alive"})


async def readyz(request: Request) -> Response:
    """Ready when the database answers. How each scheduler address takes this worker's
    wake-ups is said too: one that nothing takes does not make it unready (new jobs are
    claimable from their own record, and start at the schedulers' sweeps), but the
    operator should know; so is a volume fuller than ``disk_warning_percent``."""
    state = state_of(request)
    wakeups = state.waker.connections()
    try:
        await state.store.ping()
    except StoreError as exc:
        return JSONResponse({"status": "unavailable", "message": str(exc), "wakeups": wakeups},
                            status_code=503)  # fmt: skip
    body: dict[str, object] = {"status": "ready", "wakeups": wakeups}
    missed = [f"no scheduler takes wake-ups at {address} ({how}): new jobs start at the "
              f"schedulers' sweeps (every {state.settings.sweep_seconds:g} s) instead of at once"
              for address, how in wakeups.items() if how != "connected"]  # fmt: skip
    missed += warnings(state.settings, await asyncio.to_thread(volumes, state.settings))
    if missed:
        body["warnings"] = missed
    return JSONResponse(body)


async def openapi_json(request: Request) -> Response:
    return JSONResponse(openapi_document())


async def openapi_yaml(request: Request) -> Response:
    # JSON is YAML; a YAML library is not needed to serve the old path.
    return Response(json.dumps(openapi_document(), indent=1), media_type="application/yaml")


DOCS = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>appliance API</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}}
code{{background:#eee;padding:0 .2em}}td,th{{text-align:left;padding:.2em 1em .2em 0}}</style></head>
<body><h1>appliance API {version}</h1>
<p>The previous system's REST API 1.1, under <code>/api</code> and <code>/api/v1.1</code>.
Requests are form-encoded or multipart; answers are JSON, errors too. Times are UTC,
<code>YYYY-MM-DDTHH:MM:SS</code>. The machine-readable description is
<a href="/api/openapi.json">/api/openapi.json</a>.</p>
<table><tr><th>method</th><th>path</th><th>what</th></tr>{rows}</table></body></html>
"""


async def docs_page(request: Request) -> Response:
    document = openapi_document()
    rows = []
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            rows.append(
                f"<tr><td>{method.upper()}</td><td><code>{path}</code></td><td>{operation['summary']}</td></tr>"
            )
    return HTMLResponse(DOCS.format(version=__version__, rows="".join(rows)))
