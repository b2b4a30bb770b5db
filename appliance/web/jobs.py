"""Job endpoints: submit, show, list, cancel, and the files a job made."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from appliance import mail, webhooks
from appliance.errors import FormErrors, ValidationError
from appliance.forms import FileRef, RawValue, validate
from appliance.jobrecord import JobRecord
from appliance.logs import REQUEST_ID, job_fields
from appliance.metrics import SUBMISSIONS
from appliance.model import Service
from appliance.plan import UPLOADS, Location
from appliance.settings import Settings
from appliance.states import JobState
from appliance.store import utcnow
from appliance.submission import is_active, record_job
from appliance.tokens import bearer, known
from appliance.web import quotas
from appliance.web.errors import ApiError
from appliance.web.formdata import FormData, read_form, sniff_all
from appliance.web.representations import TIME_FORMAT, job_json, output_json
from appliance.web.state import WebState, state_of

log = logging.getLogger(__name__)
MAX_LIMIT = 1000
MAX_SKIP = 10**12  # MongoDB takes 8-byte numbers; a larger skip made a 500
JOB_ID_LENGTH = 16
REUSE_FIELD = "_reuse"  # "false": run this job even if an identical one has results
REUSE_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


async def submit_job(request: Request) -> Response:
    state = state_of(request)
    service = state.service(request.path_params["service_id"])
    with counted_submission(service.id):
        client = await quotas.admit_job(request, state.settings, state.store)
        form = await read_service_form(request, state, service)
        job = await accept_form(state, service, form, client)
    return JSONResponse(
        job_json(job), status_code=202, headers={"Location": f"/api/jobs/{job['_id']}"}
    )


@contextlib.contextmanager
def counted_submission(service_id: str) -> Iterator[None]:
    """Counts a submission's outcome (metrics): accepted or rejected (its job's state at
    once), invalid (its values), refused (anything else: size, quotas, the database)."""
    try:
        yield
    except FormErrors:
        SUBMISSIONS.labels(service_id, "invalid").inc()
        raise
    except BaseException:
        SUBMISSIONS.labels(service_id, "refused").inc()
        raise


async def read_service_form(
    request: Request, state: WebState, service: Service, extra: frozenset[str] = frozenset()
) -> FormData:
    """The submitted form, its files saved; ``extra`` names more file fields allowed. A
    part without a file name is a value: for a file parameter, a file's id (clients send
    uploaded ids beside new files in one form, as to the previous system)."""
    return await read_form(
        request, state.settings.uploads_dir, state.settings.upload_max_bytes, frozenset(),
        known=frozenset(service.parameters) | extra | {webhooks.FIELD, mail.FIELD, REUSE_FIELD},
        max_files=state.settings.upload_max_files,
    )  # fmt: skip


async def accept_form(state: WebState, service: Service, form: FormData, client: str) -> JobRecord:
    """Validate the form and record its job, or raise (FormErrors, ApiError) leaving nothing
    behind; the scheduler is woken for the new job."""
    recorded: list[str] = []
    try:
        job = await _accept(state, service, form, recorded, client)
    except BaseException:  # any failure at all (not only a refusal): nothing stays behind
        form.discard()
        for file_id in recorded:
            with contextlib.suppress(Exception):
                await state.store.delete_file(file_id)
        raise
    await quotas.count_uploads(state.settings, state.store, client,
                               sum(f.size for f in form.saved()))  # fmt: skip
    if is_active(job):
        state.store.accepted_job(client, quotas.WAITING)
    return job


async def _accept(
    state: WebState, service: Service, form: FormData, recorded: list[str], client: str
) -> JobRecord:
    """Validate the form, keep its files and record the job; ``recorded`` gets the ids of
    the file records made (so that a failure after them can take them back)."""
    raw: dict[str, list[RawValue]] = {name: list(values) for name, values in form.fields.items()}
    webhook = None if webhooks.FIELD in service.parameters else webhook_of(state.settings, raw)
    email = None if mail.FIELD in service.parameters else email_of(state.settings, raw)
    reuse = True if REUSE_FIELD in service.parameters else reuse_of(raw)
    saved = form.saved()
    kinds = await sniff_all([f.path for f in saved], sum(f.size for f in saved))
    sniffed = {f.id: kind for f, kind in zip(saved, kinds, strict=True)}
    for name, files in form.files.items():
        raw.setdefault(name, []).extend(
            FileRef(f.id, f.path, f.label, sniffed[f.id], Location(UPLOADS, f.id)) for f in files
        )
    values = await validate(service, raw, state.lookup)
    for f in saved:  # the client's media type is kept, once the service's check passed
        await state.store.insert_file(upload_record(f.id, f.label, f.size,
                                                    f.media_type or sniffed[f.id]))  # fmt: skip
        recorded.append(f.id)
    job = await record_job(state.store, state.planner, service, values, client=client,
                           request_id=REQUEST_ID.get() or "", webhook=webhook,
                           email=email, reuse=reuse, wake=state.wake,
                           answers=state.answers)  # fmt: skip
    log.info("job %s %s for %s%s", job["_id"], job["state"], service.id,
             f", answered from job {job['reused_from']}" if job.get("reused_from") else "",
             extra=job_fields(job))  # fmt: skip
    outcome = ("reused" if job.get("reused_from")
               else "rejected" if JobState(job["state"]).finished else "accepted")  # fmt: skip
    SUBMISSIONS.labels(service.id, outcome).inc()
    return job


def _one(raw: dict[str, list[RawValue]], field: str, what: str,
         check: Callable[[str], str]) -> str | None:  # fmt: skip
    """The one value of ``field`` (taken out of ``raw``), checked by ``check`` (which
    raises ValueError saying why not); FormErrors naming the field if it is not taken."""
    values = [str(v).strip() for v in raw.pop(field, []) if str(v).strip()]
    if not values:
        return None
    try:
        if len(values) > 1:
            raise ValueError(f"name one {what}")
        return check(values[0])
    except ValueError as exc:
        raise FormErrors([ValidationError(field, "invalid", str(exc))]) from None


def webhook_of(settings: Settings, raw: dict[str, list[RawValue]]) -> str | None:
    """The webhook a submission names, checked."""
    return _one(raw, webhooks.FIELD, "webhook", lambda url: webhooks.check_submitted(
        url, enabled=settings.webhook_secret_file is not None, private=settings.webhook_private))  # fmt: skip


def email_of(settings: Settings, raw: dict[str, list[RawValue]]) -> str | None:
    """The address a submission names, checked."""
    return _one(raw, mail.FIELD, "address",
                lambda address: mail.check_address(address, enabled=bool(settings.smtp_host)))  # fmt: skip


def reuse_of(raw: dict[str, list[RawValue]]) -> bool:
    """False when the submission refuses an earlier identical job's results (the form
    field ``_reuse``: false, no or 0), taken out of ``raw``; FormErrors for another value."""
    values = [str(v).strip().lower() for v in raw.pop(REUSE_FIELD, [])]
    if not values:
        return True
    if len(values) > 1 or values[0] not in REUSE_WORDS:
        raise FormErrors([ValidationError(REUSE_FIELD, "invalid",
                                          "give true or false (once)")])  # fmt: skip
    return REUSE_WORDS[values[0]]


def upload_record(file_id: str, label: str, size: int, media_type: str) -> dict[str, Any]:
    return {"_id": file_id, "path": file_id, "label": label, "size": size,
            "media_type": media_type, "created_at": utcnow()}  # fmt: skip


async def job_of(request: Request, *, tasks: bool = False) -> JobRecord:
    """The job the path names; 404 if there is none. A TES task is its client's (its
    bearer token, through the TES API): here it is no job, unless ``tasks`` (its files'
    list, which a task's logs point to, readable like any job's by whoever has its id)."""
    state = state_of(request)
    job_id = request.path_params["job_id"]
    job = await state.store.get_job(job_id) if plausible_id(job_id) else None
    service_id = request.path_params.get("service_id")
    if (job is None or (service_id is not None and job["service"] != service_id)
            or (job.get("kind") == "task" and not tasks)):  # fmt: skip
        raise ApiError(404, f"no job {job_id!r}")
    return job


def plausible_id(value: str) -> bool:
    return len(value) == JOB_ID_LENGTH and value.isalnum()


def resource(body: dict[str, Any], status_code: int = 200) -> JSONResponse:
    """A resource, with a ``Location`` header equal to its ``@url`` (as the previous
    system's GET answers have)."""
    return JSONResponse(body, status_code=status_code, headers={"Location": body["@url"]})


async def show_job(request: Request) -> Response:
    return resource(job_json(await job_of(request)))


async def cancel_job(request: Request) -> Response:
    state = state_of(request)
    await cancel(state, await job_of(request))
    return Response(status_code=204)


async def cancel(state: WebState, job: JobRecord) -> None:
    """Ask for a job's end (nothing for one that has ended). One no scheduler holds ends
    at once; for a held one the holder is woken to stop it."""
    if not JobState(job["state"]).finished and not await state.store.request_cancel(
        str(job["_id"])
    ):
        await state.waker.notify("cancel", str(job["_id"]))


def _time_filter(text: str) -> tuple[datetime | None, datetime | None]:
    for operator in (">=", "<=", ">", "<"):
        if text.startswith(operator):
            moment = _parse_time(text[len(operator) :])
            return {
                ">=": (moment, None),
                ">": (_next_second(moment), None),
                "<=": (None, _next_second(moment)),
                "<": (None, moment),
            }[operator]
    moment = _parse_time(text)
    return moment, _next_second(moment)


def _next_second(moment: datetime) -> datetime:
    """The second after ``moment`` (the last second of year 9999 has none: it stays)."""
    try:
        return moment + timedelta(seconds=1)
    except OverflowError:
        return moment.replace(microsecond=999999)


def _parse_time(text: str) -> datetime:
    try:
        return datetime.strptime(text.strip(), TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise ApiError(
            400,
            f"submissionTime takes [>=|>|<=|<]{TIME_FORMAT.replace('%', '')} in UTC, got {text!r}",
        ) from None


def _count(value: str, name: str) -> int:
    if not value.isascii() or not value.isdigit():
        raise ApiError(400, f"{name} must be a whole number, got {value!r}")
    if len(value) > 13 or int(value) > MAX_SKIP:
        raise ApiError(400, f"{name} must be at most {MAX_SKIP}, got {value}")
    return int(value)


async def served(request: Request) -> Response:
    """May the proxy serve this file of a job's directory? (its ``auth_request``, with the
    client's URI in ``X-Served-Uri``): only a recorded output of a job that has ended,
    never the rest of the directory, and nothing while the job runs. 204 or 403."""
    state = state_of(request)
    uri = unquote(request.headers.get("x-served-uri", "").split("?", 1)[0])
    prefix = urlsplit(state.settings.jobs_url).path.rstrip("/") + "/"
    job_id, _, path = uri.removeprefix(prefix).partition("/")
    if not uri.startswith(prefix) or not plausible_id(job_id) or not path:
        return Response(status_code=403)
    job = await state.store.get_job(job_id)
    if (
        job is None
        or not JobState(job["state"]).finished
        or path not in {str(o.get("path")) for o in job.get("outputs") or ()}
    ):
        return Response(status_code=403)
    return Response(status_code=204)


def operator_only(request: Request, settings: Settings, what: str = "listing jobs") -> None:
    """Lists of everyone's jobs are for the operator (a job's id is the capability to see
    it): the operator's bearer token, unless ``public_job_lists`` opens them (for the
    lists; other callers check their own setting first)."""
    if settings.public_job_lists and what == "listing jobs":
        return
    token = bearer(request.headers.get("authorization"))
    if not settings.operator_token_sha256:
        raise ApiError(403, f"{what} is the operator's, and no operator token is set here")
    if token is None:
        raise ApiError(401, f"{what} needs the operator's token (Authorization: Bearer ...)",
                       {"WWW-Authenticate": 'Bearer realm="appliance"'})  # fmt: skip
    if known(token, [settings.operator_token_sha256]) is None:
        raise ApiError(403, f"this token may not do this ({what})")


async def list_jobs(request: Request) -> Response:
    state = state_of(request)
    operator_only(request, state.settings)
    query: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        query.setdefault(key, []).append(value)
    unknown = set(query) - {"limit", "skip", "status", "service", "id", "submissionTime"}
    if unknown:
        raise ApiError(400, f"unknown query parameters: {', '.join(sorted(unknown))}")
    limit = min(_count(query.get("limit", ["100"])[-1], "limit"), MAX_LIMIT)
    skip = _count(query.get("skip", ["0"])[-1], "skip")
    states = []
    for status in query.get("status", []):
        try:
            states.append(JobState(status.upper()).value)
        except ValueError:
            raise ApiError(400, f"unknown status {status!r}") from None
    services = query.get("service", [])
    if "service_id" in request.path_params:
        state.service(request.path_params["service_id"])
        services = [request.path_params["service_id"]]
    after = before = None
    for text in query.get("submissionTime", []):
        low, high = _time_filter(text)
        after = low if low is not None else after
        before = high if high is not None else before
    total, jobs = await state.store.find_jobs(
        states=states, services=services, ids=query.get("id", []),
        submitted_after=after, submitted_before=before, skip=skip, limit=limit,
    )  # fmt: skip
    return JSONResponse({"totalCount": total, "jobs": [job_json(j) for j in jobs]})


async def job_files(request: Request) -> Response:
    state = state_of(request)
    job = await job_of(request, tasks=True)
    outputs = job.get("outputs") or []
    return JSONResponse({"files": [output_json(job, o, state.settings) for o in outputs]})


async def job_file(request: Request) -> Response:
    state = state_of(request)
    job = await job_of(request, tasks=True)
    path = request.path_params["path"]
    for output in job.get("outputs") or []:
        if output.get("path") == path:
            return resource(output_json(job, output, state.settings))
    raise ApiError(404, f"job {job['_id']} has no file {path!r}")
