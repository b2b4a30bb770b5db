"""The JSON resources of the API, with the previous system's field names.

Timestamps are UTC in the form ``%Y-%m-%dT%H:%M:%S`` (no fraction, no offset): the
previous system's Python client parses exactly that.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from appliance.jobrecord import JobRecord, OutputRecord, files_dir
from appliance.model import Parameter, ParamType, Preset, Service
from appliance.publictext import public_text
from appliance.settings import Settings
from appliance.states import JobState

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Json = dict[str, Any]


def timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime(TIME_FORMAT)


def parameter_json(param: Parameter) -> Json:
    """A parameter as the previous system describes it: a bound, a length or a media type
    that is not set is left out, not sent as null (Jalview's Java client casts each one it
    finds to a number or reads it as a string, and fails on null). ``condition`` and
    ``maxSize`` are additions (docs/api.md)."""
    data: Json = {
        "type": param.type.value,
        "id": param.id,
        "name": param.name,
        "description": param.description,
        "required": param.required,
        "array": param.array,
        "default": param.default,
    }
    if param.type in (ParamType.INTEGER, ParamType.DECIMAL):
        data.update({k: v for k, v in (("min", param.min), ("max", param.max)) if v is not None})
    if param.type is ParamType.DECIMAL:
        if param.min is not None:
            data["minExclusive"] = param.min_exclusive
        if param.max is not None:
            data["maxExclusive"] = param.max_exclusive
    if param.type is ParamType.TEXT:
        lengths = (("minLength", param.min_length), ("maxLength", param.max_length))
        data.update({k: v for k, v in lengths if v is not None})
    if param.type is ParamType.CHOICE:
        data["choices"] = list(param.choices)
    if param.type is ParamType.FILE:
        if param.media_type:
            data["mediaType"] = data["mimetype"] = param.media_type
            data["mediaTypeParameters"] = param.media_type_parameters
        if param.extensions:
            data["extensions"] = list(param.extensions)
        if param.max_size is not None:
            data["maxSize"] = param.max_size
    if param.condition is not None:
        data["condition"] = param.condition.text
    return data


def preset_json(preset: Preset) -> Json:
    return {"id": preset.id, "name": preset.name, "description": preset.description,
            "values": dict(preset.values)}  # fmt: skip


def service_json(service: Service, status: Json | None) -> Json:
    return {
        "@url": f"/api/services/{service.id}",
        "id": service.id,
        "name": service.name,
        "description": service.description,
        "author": service.author,
        "version": service.version,
        "license": service.license,
        "classifiers": list(service.classifiers),
        "parameters": [parameter_json(p) for p in service.parameters.values()],
        "presets": [preset_json(p) for p in service.presets],
        "status": {
            "status": (status or {}).get("status", "UNKNOWN"),
            "errorMessage": (status or {}).get("message", ""),
            # A service never tested: UNKNOWN since the epoch, as the previous system says.
            "timestamp": timestamp((status or {}).get("timestamp") or EPOCH),
        },
    }


def job_json(job: JobRecord) -> Json:
    state = JobState(job["state"])
    return {
        "@url": f"/api/jobs/{job['_id']}",
        "id": job["_id"],
        "service": job["service"],
        "parameters": shown_parameters(job.get("parameters") or {}),
        "submissionTime": timestamp(job.get("submitted_at")),
        "completionTime": timestamp(job.get("completed_at")) if state.finished else None,
        "finished": state.finished,
        "status": state.value,
        "error": public_text(job.get("error")),
        "exitCode": job.get("exit_code"),
        "startTime": timestamp(job.get("started_at")),
        **waiting_json(job, state),
        **webhook_json(job),
        **email_json(job),
        **({"reusedFrom": str(job["reused_from"])} if job.get("reused_from") else {}),
    }


def webhook_json(job: JobRecord) -> Json:
    """``webhook``: how the job's webhook went (pending, delivered, failed), its attempts,
    when it was delivered, the last error; absent for a job without one. Never its URL
    (which may carry the receiver's own secret). An addition (docs/api.md)."""
    shown = _notice_json(job.get("notify"))
    return {"webhook": shown} if shown else {}


def email_json(job: JobRecord) -> Json:
    """``email``: the same of the e-mail the job named; never the address."""
    shown = _notice_json(job.get("notify_email"))
    return {"email": shown} if shown else {}


def _notice_json(notify: object) -> Json:
    if not isinstance(notify, dict):
        return {}
    shown: Json = {"status": str(notify.get("state") or "pending"),
                   "attempts": int(notify.get("attempts") or 0)}  # fmt: skip
    if notify.get("delivered_at") is not None:
        shown["deliveredAt"] = timestamp(notify["delivered_at"])
    if notify.get("error"):
        shown["error"] = public_text(str(notify["error"]))
    return shown


def waiting_json(job: JobRecord, state: JobState) -> Json:
    """``waiting``: why a job that is not running yet waits (appliance.waiting), as a
    reason code, words and since when; absent once it runs or ends (never null: Jalview's
    client fails on one). An addition to the previous system's API (docs/api.md)."""
    found = job.get("waiting")
    if state.finished or state is JobState.RUNNING or not isinstance(found, dict):
        return {}
    return {"waiting": {"reason": str(found.get("reason") or ""),
                        "message": public_text(str(found.get("message") or "")) or "",
                        "since": timestamp(found.get("since")) or timestamp(job.get("submitted_at"))}}  # fmt: skip


def shown_parameters(parameters: Json) -> Json:
    """A job's echoed parameters without a null anywhere (records stored before unset
    values were left out had them; Jalview's client fails on a null)."""
    shown: Json = {}
    for key, value in parameters.items():
        if isinstance(value, list):
            value = [v for v in value if v is not None]
        if value is not None:
            shown[key] = value
    return shown


def upload_json(record: Json, settings: Settings) -> Json:
    file_id = str(record["_id"])
    return {
        "@url": f"/api/files/{file_id}",
        "@content": f"{settings.uploads_url}/{quote(str(record.get('path', file_id)))}",
        "id": file_id,
        "jobId": None,
        "path": str(record.get("path", file_id)),
        "label": record.get("label", ""),
        "mediaType": record.get("media_type", ""),
    }


def output_json(job: JobRecord, output: OutputRecord, settings: Settings) -> Json:
    job_id, path = str(job["_id"]), str(output["path"])
    return {
        "@url": f"/api/jobs/{job_id}/files/{quote(path)}",
        "@content": f"{settings.jobs_url}/{files_dir(job)}/{quote(path)}",
        "id": f"{job_id}/{path}",
        "jobId": job_id,
        "path": path,
        "label": output.get("name") or output.get("id") or path,  # as the previous system
        "mediaType": output.get("media_type", ""),
    }
