"""The pages' endpoints: service list, service form (and its submission), job page,
"my jobs". Errors are pages too (with the API's messages), never JSON or a traceback."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from appliance import mail, webhooks
from appliance.errors import FormErrors, StoreError
from appliance.jobrecord import JobRecord
from appliance.model import Preset, Service
from appliance.pages import joblook
from appliance.pages.fields import fields_of
from appliance.pages.render import PAGE_HEADERS, page, render
from appliance.pages.snippets import curl_command, python_snippet
from appliance.pages.submission import as_api_form, page_fields
from appliance.states import JobState
from appliance.web import quotas
from appliance.web.errors import ApiError
from appliance.web.jobs import accept_form, cancel, counted_submission, job_of, read_service_form
from appliance.web.origins import own_origin
from appliance.web.representations import job_json, service_json
from appliance.web.state import state_of

Endpoint = Callable[[Request], Awaitable[Response]]


def html_errors(endpoint: Endpoint) -> Endpoint:
    """A refusal of the API (404, 413, 429, 503, ...) as a page with the same message."""

    @functools.wraps(endpoint)
    async def wrapped(request: Request) -> Response:
        try:
            return await endpoint(request)
        except ApiError as exc:
            return page(request, "error.html", exc.status, code=exc.status,
                        message=exc.message)  # fmt: skip
        except StoreError:
            return page(request, "error.html", 503, code=503,
                        message="The database is unavailable; try again shortly.")  # fmt: skip

    return wrapped


async def _statuses(request: Request) -> dict[str, dict[str, object]]:
    try:
        return await state_of(request).store.service_statuses()
    except StoreError:
        return {}


@html_errors
async def home(request: Request) -> Response:
    state = state_of(request)
    statuses = await _statuses(request)
    query = request.query_params.get("q", "").strip()
    services = [service_json(s, statuses.get(s.id)) for s in state.catalogue.services.values()]
    if query:
        words = query.lower().split()
        services = [s for s in services if all(w in _haystack(s) for w in words)]
    return page(request, "home.html", services=services, query=query)


def _haystack(service: dict[str, Any]) -> str:
    return " ".join([service["id"], service["name"], service["description"],
                     *service["classifiers"]]).lower()  # fmt: skip


def _service_page(
    request: Request, service: Service, status: int = 200, sent: dict[str, list[str]] | None = None,
    errors: dict[str, str] | None = None, problem: str | None = None, preset: Preset | None = None,
) -> Response:  # fmt: skip
    state = state_of(request)
    fields = fields_of(service, sent, errors, preset.values if preset else None)
    return page(
        request, "service.html", status, service=service, fields=fields, preset=preset,
        problem=problem,
        others=[(k, v) for k, v in (errors or {}).items()
                if k not in service.parameters and k not in (webhooks.FIELD, mail.FIELD)],
        max_upload=state.settings.upload_max_bytes,
        webhooks=state.settings.webhook_secret_file is not None,
        webhook_value=((sent or {}).get(webhooks.FIELD) or [""])[0],
        webhook_error=(errors or {}).get(webhooks.FIELD),
        emails=bool(state.settings.smtp_host),
        email_value=((sent or {}).get(mail.FIELD) or [""])[0],
        email_error=(errors or {}).get(mail.FIELD),
    )  # fmt: skip


@html_errors
async def service_form(request: Request) -> Response:
    service = state_of(request).service(request.path_params["service_id"])
    chosen = request.query_params.get("preset")
    preset = next((p for p in service.presets if p.id == chosen), None)
    if chosen is not None and preset is None:
        raise ApiError(404, f"{service.id} has no preset {chosen!r}")
    return _service_page(request, service, preset=preset)


@html_errors
async def submit(request: Request) -> Response:
    state = state_of(request)
    service = state.service(request.path_params["service_id"])
    try:
        with counted_submission(service.id):
            client = await quotas.admit_job(request, state.settings, state.store)
            form = await read_service_form(request, state, service, page_fields(service))
    except ApiError as exc:
        return _service_page(request, service, exc.status, problem=exc.message)
    sent = {name: list(values) for name, values in form.fields.items()}
    try:
        with counted_submission(service.id):
            form = as_api_form(service, form, state.settings.uploads_dir,
                               state.settings.upload_max_bytes)  # fmt: skip
            job = await accept_form(state, service, form, client)
    except FormErrors as exc:
        errors = {e.parameter: e.message for e in exc.errors}
        return _service_page(request, service, 422, sent, errors,
                             "Some values need changing: see the messages beside them.")  # fmt: skip
    except ApiError as exc:
        return _service_page(request, service, exc.status, sent, problem=exc.message)
    return RedirectResponse(f"/jobs/{job['_id']}", status_code=303)


@html_errors
async def job_page(request: Request) -> Response:
    state = state_of(request)
    job = await job_of(request)
    shown = job_json(job)
    service = state.catalogue.services.get(str(job.get("service")))
    finished = JobState(job["state"]).finished
    outputs = (
        await joblook.outputs(job, state.settings.jobs_dir, state.settings.jobs_url)
        if finished
        else []
    )
    tails = {} if finished else await joblook.tail(job, state.settings.jobs_dir)
    base = own_origin(request.headers, request.url.scheme)
    values = job_values(job)
    return page(
        request, "job.html", job=shown, service=service, outputs=outputs, tails=tails,
        labels=_labels(service), finished=finished, values=values,
        curl=curl_command(base, shown["service"], values),
        python=python_snippet(base, shown["service"], values),
    )  # fmt: skip


def job_values(job: JobRecord) -> dict[str, Any]:
    """The job's values as validated (defaults included, a flag left off as false, a file
    as its reference with its label), without the unset ones."""
    values = job.get("values")
    if not isinstance(values, dict):  # a record from before values were kept
        values = job.get("parameters") or {}
    return {key: value for key, value in values.items() if value is not None and value != []}


def _labels(service: Service | None) -> dict[str, str]:
    if service is None:
        return {}
    return {p.id: p.name for p in service.parameters.values()}


@html_errors
async def job_outputs(request: Request) -> Response:
    """The job page's outputs section alone, for its script to put in when the job ends."""
    state = state_of(request)
    job = await job_of(request)
    finished = JobState(job["state"]).finished
    outputs = (
        await joblook.outputs(job, state.settings.jobs_dir, state.settings.jobs_url)
        if finished
        else []
    )
    html = render("outputs.html", job=job_json(job), outputs=outputs, finished=finished)
    return Response(html, media_type="text/html", headers=PAGE_HEADERS)


async def job_tail(request: Request) -> Response:
    """The last lines of a running job's stdout and stderr (JSON, for the job page)."""
    state = state_of(request)
    job = await job_of(request)
    tails = await joblook.tail(job, state.settings.jobs_dir)
    return JSONResponse({**tails, "status": job["state"]}, headers={"Cache-Control": "no-store"})


@html_errors
async def cancel_job(request: Request) -> Response:
    state = state_of(request)
    job = await job_of(request)
    await cancel(state, job)
    return RedirectResponse(f"/jobs/{job['_id']}", status_code=303)


@html_errors
async def my_jobs(request: Request) -> Response:
    return page(request, "myjobs.html")
