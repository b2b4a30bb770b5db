"""The GA4GH Task Execution API 1.1 under ``/ga4gh/tes/v1`` (docs/tes.md).

Off until the setting ``tes_enabled``; every call then needs a client's bearer token (or
``tes_anonymous``), and a client sees only its own tasks (another's is 404, as an
unknown one). A task is recorded as a job of kind ``task`` with its plan and run by the
schedulers like any job. Errors are JSON naming the field: 400 an invalid task, 401 no
or a wrong token, 403 an image the site does not allow, 404 an unknown task.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from appliance import __version__, mail, webhooks
from appliance.jobrecord import JobRecord
from appliance.settings import Settings
from appliance.states import JobState
from appliance.store import new_id
from appliance.submission import record
from appliance.tes.auth import AuthError
from appliance.tes.s3 import prefixes_for
from appliance.tes.setup import TesState
from appliance.tes.shared import roots_for
from appliance.tes.task import TaskError
from appliance.tes.views import JOB_STATES, VIEWS, task_json, tes_state
from appliance.waiting import waiting
from appliance.web import quotas
from appliance.web.errors import ApiError
from appliance.web.jsonbody import read_json
from appliance.web.state import state_of

DEFAULT_PAGE = 256
MAX_PAGE = 2048
FINAL_STATES = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"}


def _tes(request: Request) -> tuple[TesState, str]:
    """The TES state and the calling client; ApiError when off or not allowed."""
    tes = state_of(request).tes
    if tes is None:
        raise ApiError(404, "the Task Execution API is not enabled here (setting tes_enabled)")
    try:
        return tes, tes.clients.who(request.headers.get("authorization"))
    except AuthError as exc:
        raise ApiError(exc.status, exc.message) from None


async def service_info(request: Request) -> Response:
    state = state_of(request)
    _, client = _tes(request)
    settings = state.settings
    storage = [f"file://{root.path}" for root in roots_for(settings.tes_file_roots, client)]
    storage += ["http://", "https://"]
    if settings.tes_s3_endpoint:
        storage += [f"s3://{place}" for place in prefixes_for(settings.tes_s3_roots, client)]
    storage += [f"{scheme}://" for scheme in settings.tes_staged_schemes]
    base = str(request.base_url)
    return JSONResponse({
        "id": f"appliance.{settings.instance}.tes",
        "name": f"appliance {settings.instance}",
        "type": {"group": "org.ga4gh", "artifact": "tes", "version": "1.1.0"},
        "description": "Tasks run in locked-down containers (no network unless allowed, no "
                       "capabilities, non-root, read-only root, limits).",
        "organization": {"name": settings.instance, "url": base},
        "documentationUrl": base + "api/",
        "version": __version__,
        "storage": storage,
        "tesResources_backend_parameters": ["runner"],
    })  # fmt: skip


async def create_task(request: Request) -> Response:
    state = state_of(request)
    tes, owner = _tes(request)
    # the site's disk and queue (a client's own share is its token's business)
    await quotas.check_disk(state.settings, state.settings.jobs_dir)
    await quotas.check_jobs(state.settings, state.store, None)
    await quotas.check_tasks(state.settings, state.store, owner)
    task = await read_json(request, state.settings.tes_max_task_bytes, "a task")
    job_id = new_id()
    try:
        accepted = tes.checker.check(task, job_id, owner)
    except TaskError as exc:
        raise ApiError(exc.status, str(exc)) from None
    now = await state.store.now()
    job: JobRecord = {"_id": job_id, "kind": "task", "service": "tes", "state": str(JobState.ACCEPTED),
                      "submitted_at": now, "parameters": {}, "values": {}, "owner": owner,
                      "task": accepted.document, "runner": accepted.runner,
                      "plan": accepted.plan.stored(),
                      "waiting": waiting("scheduler", now)}  # fmt: skip
    webhook = _webhook(state.settings, accepted.document)
    if webhook:
        job["notify"] = {"url": webhook, "state": "pending"}
    await record(state.store, job, state.wake, _email(state.settings, accepted.document))
    state.store.accepted_job(f"owner:{owner}", quotas.WAITING)  # counted at once, for its cap
    await _wait_briefly(request, job_id, len(accepted.plan.steps), state.settings.tes_create_wait)
    return JSONResponse({"id": job_id})


def _webhook(settings: Settings, task: dict[str, Any]) -> str | None:
    """The webhook a task names in its tag ``appliance-webhook``, checked (400 if not
    taken here)."""
    url = str((task.get("tags") or {}).get(webhooks.TAG) or "").strip()
    if not url:
        return None
    try:
        return webhooks.check_submitted(url, enabled=settings.webhook_secret_file is not None,
                                        private=settings.webhook_private)  # fmt: skip
    except webhooks.WebhookError as exc:
        raise ApiError(400, f"tag {webhooks.TAG}: {exc}") from None


def _email(settings: Settings, task: dict[str, Any]) -> str | None:
    """The address a task names in its tag ``appliance-email``, checked (400 if not)."""
    address = str((task.get("tags") or {}).get(mail.TAG) or "").strip()
    if not address:
        return None
    try:
        return mail.check_address(address, enabled=bool(settings.smtp_host))
    except mail.MailError as exc:
        raise ApiError(400, f"tag {mail.TAG}: {exc}") from None


async def _wait_briefly(request: Request, job_id: str, executors: int, seconds: float) -> None:
    """With ``tes_create_wait``: answer once every executor but the last has ended (at
    once for one executor), or the task has, or the time is up (docs/tes.md says why)."""
    deadline = time.monotonic() + seconds
    store = state_of(request).store
    while time.monotonic() < deadline:
        job = await store.get_job(job_id)
        if job is None or JobState(job["state"]).finished:
            return
        if int(job.get("step") or 0) >= executors - 1:
            return
        await asyncio.sleep(0.05)


async def _canceling(request: Request, jobs: list[JobRecord]) -> set[str]:
    """Which of these unfinished tasks their owner asked to cancel."""
    waiting = [str(j["_id"]) for j in jobs if not JobState(j["state"]).finished]
    return await state_of(request).store.cancel_requested(waiting) if waiting else set()


def _view(request: Request, default: str) -> str:
    view = request.query_params.get("view", default).upper()
    if view not in VIEWS:
        raise ApiError(400, f"view: expected one of {', '.join(VIEWS)}, got {view!r}")
    return view


async def _own_task(request: Request, task_id: str) -> JobRecord:
    state = state_of(request)
    _, owner = _tes(request)
    job = await state.store.get_job(task_id) if len(task_id) == 16 and task_id.isalnum() else None
    if job is None or job.get("kind") != "task" or job.get("owner") != owner:
        raise ApiError(404, f"no task {task_id!r}")
    return job


async def get_task(request: Request) -> Response:
    state = state_of(request)
    view = _view(request, "MINIMAL")
    job = await _own_task(request, request.path_params["task"])
    canceling = bool(await _canceling(request, [job]))
    return JSONResponse(task_json(job, view, state.settings.jobs_dir / job["_id"], canceling))


async def cancel_task(request: Request) -> Response:
    state = state_of(request)
    task_id, _, action = request.path_params["task"].partition(":")
    if action != "cancel":
        raise ApiError(404, f"no such action: {request.url.path}")
    job = await _own_task(request, task_id)
    if not JobState(job["state"]).finished and not await state.store.request_cancel(task_id):
        await state.waker.notify("cancel", task_id)
    return JSONResponse({})


def _page_token(text: str | None) -> tuple[datetime, str] | None:
    if not text:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(text.encode() + b"=="))
        return datetime.fromisoformat(data["t"]), str(data["id"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise ApiError(400, "page_token: not a token this server gave") from None


def _make_token(job: JobRecord) -> str:
    data = json.dumps({"t": job["submitted_at"].isoformat(), "id": job["_id"]}).encode()
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _tag_filter(request: Request) -> list[tuple[str, str | None]]:
    keys = request.query_params.getlist("tag_key")
    values = request.query_params.getlist("tag_value")
    if len(values) > len(keys):
        raise ApiError(400, "tag_value: more values than tag_key")
    return [(key, values[i] if i < len(values) else None) for i, key in enumerate(keys)]


def _matches(job: JobRecord, prefix: str, state: str | None,
             tags: list[tuple[str, str | None]]) -> bool:  # fmt: skip
    document = job.get("task") or {}
    if prefix and not str(document.get("name") or "").startswith(prefix):
        return False
    if state is not None and tes_state(job) != state:
        return False
    have = document.get("tags") or {}
    return all(key in have and (value in (None, "") or have[key] == value) for key, value in tags)


async def list_tasks(request: Request) -> Response:
    state = state_of(request)
    _, owner = _tes(request)
    view = _view(request, "MINIMAL")
    size_text = request.query_params.get("page_size", str(DEFAULT_PAGE))
    if (
        not size_text.isascii()
        or not size_text.isdigit()
        or len(size_text) > 6
        or not (1 <= int(size_text) <= MAX_PAGE)
    ):
        raise ApiError(400, f"page_size: expected a whole number from 1 to {MAX_PAGE}")
    page_size = int(size_text)
    wanted_state = request.query_params.get("state")
    if wanted_state is not None and wanted_state not in JOB_STATES:
        raise ApiError(400, f"state: unknown TES state {wanted_state!r}")
    prefix = request.query_params.get("name_prefix", "")
    tags = _tag_filter(request)
    after = _page_token(request.query_params.get("page_token"))
    states = JOB_STATES[wanted_state] if wanted_state else None
    found: list[JobRecord] = []
    more = False
    while True:
        batch = await state.store.find_tasks(owner, states, after, page_size * 2)
        for job in batch:
            if _matches(job, prefix, wanted_state, tags):
                if len(found) == page_size:
                    more = True
                    break
                found.append(job)
        if more or len(batch) < page_size * 2:
            break
        after = (batch[-1]["submitted_at"], batch[-1]["_id"])
    canceling = await _canceling(request, found)
    body: dict[str, Any] = {"tasks": [
        task_json(j, view, state.settings.jobs_dir / j["_id"], j["_id"] in canceling)
        for j in found]}  # fmt: skip
    if more and found:
        body["next_page_token"] = _make_token(found[-1])
    return JSONResponse(body)
