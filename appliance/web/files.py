"""Uploaded files: upload one, show it, relabel it. The bytes are served by the proxy."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from appliance.web import quotas
from appliance.web.errors import ApiError
from appliance.web.formdata import read_form, sniff_all
from appliance.web.jobs import resource, upload_record
from appliance.web.representations import upload_json
from appliance.web.state import state_of

MEDIA_TYPE_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789!#$&^_.+-/")


async def upload_file(request: Request) -> Response:
    state = state_of(request)
    client = await quotas.admit_upload(request, state.settings, state.store)
    form = await read_form(
        request, state.settings.uploads_dir, state.settings.upload_max_bytes, frozenset({"file"}),
        known=frozenset({"file"}), max_files=1,
    )  # fmt: skip
    try:
        parts = form.files.get("file", [])
        if len(parts) != 1 or set(form.files) != {"file"} or form.fields:
            raise ApiError(
                400,
                "send exactly one multipart part named 'file' and nothing else",
            )
        saved = parts[0]
        # the client's media type, if it said one
        media_type = saved.media_type or (await sniff_all([saved.path], saved.size))[0]
        record = upload_record(saved.id, saved.label, saved.size, media_type)
        await state.store.insert_file(record)
    except BaseException:  # a refusal or any failure: nothing stays behind
        form.discard()
        raise
    await quotas.count_uploads(state.settings, state.store, client, saved.size)
    return JSONResponse(upload_json(record, state.settings), status_code=201,
                        headers={"Location": f"/api/files/{saved.id}"})  # fmt: skip


async def _record(request: Request) -> dict[str, object]:
    state = state_of(request)
    file_id = request.path_params["file_id"]
    record = (
        await state.store.get_file(file_id) if len(file_id) == 16 and file_id.isalnum() else None
    )
    if record is None:
        raise ApiError(404, f"no file {file_id!r}")
    return record


async def show_file(request: Request) -> Response:
    return resource(upload_json(await _record(request), state_of(request).settings))


async def update_file(request: Request) -> Response:
    state = state_of(request)
    record = await _record(request)
    form = await read_form(request, state.settings.uploads_dir, 0, known=frozenset(), max_files=0)
    if form.files:
        form.discard()
        raise ApiError(400, "send only the fields label and mediaType")
    unknown = set(form.fields) - {"label", "mediaType"}
    if unknown:
        raise ApiError(
            400, f"unknown fields: {', '.join(sorted(unknown))} (allowed: label, mediaType)"
        )
    changes: dict[str, object] = {}
    if "label" in form.fields:
        changes["label"] = form.fields["label"][-1][:255]
    if "mediaType" in form.fields:
        media_type = form.fields["mediaType"][-1].strip().lower()
        if not media_type or "/" not in media_type or not set(media_type) <= MEDIA_TYPE_CHARS:
            raise ApiError(400, f"{media_type!r} is not a media type like text/plain")
        changes["media_type"] = media_type
    updated = await state.store.update_file(str(record["_id"]), changes) if changes else record
    return JSONResponse(upload_json(updated or record, state.settings))
