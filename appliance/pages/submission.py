"""A page's form made into what the API takes: pasted text becomes an upload, an
unchecked flag becomes false, a box of lines becomes a list, and a file input left
empty (browsers send it as an empty part without a name) is dropped."""

from __future__ import annotations

import contextlib
from pathlib import Path

from appliance.model import ParamType, Service
from appliance.pages.fields import FLAG_SUFFIX, PASTE_SUFFIX, widget_of
from appliance.store import new_id
from appliance.web.errors import ApiError
from appliance.web.formdata import FormData, SavedFile

PASTED_LABEL = "pasted.txt"


def page_fields(service: Service) -> frozenset[str]:
    """The names a page's form may send beside the parameters' own."""
    names = set()
    for param in service.parameters.values():
        if param.type is ParamType.FILE:
            names.add(param.id + PASTE_SUFFIX)
        if param.type is ParamType.FLAG:
            names.add(param.id + FLAG_SUFFIX)
    return frozenset(names)


def as_api_form(service: Service, form: FormData, uploads_dir: Path, max_file: int) -> FormData:
    """The form as the API reads it. Pasted text is written to a new upload (it counts
    against the same size limit as a file); on any error the form's files are removed."""
    try:
        return _convert(service, form, uploads_dir, max_file)
    except BaseException:
        form.discard()
        raise


def _convert(service: Service, form: FormData, uploads_dir: Path, max_file: int) -> FormData:
    fields = form.fields
    for name, files in list(form.files.items()):  # a file input left empty
        kept = [f for f in files if f.size or f.label]
        for f in files:
            if f not in kept:
                with contextlib.suppress(FileNotFoundError):
                    f.path.unlink()
        if kept:
            form.files[name] = kept
        else:
            del form.files[name]
    for param in service.parameters.values():
        if param.type is ParamType.FILE:
            texts = [t for t in fields.pop(param.id + PASTE_SUFFIX, []) if t.strip()]
            for text in texts:
                form.files.setdefault(param.id, []).append(_paste(text, uploads_dir, max_file))
        elif param.type is ParamType.FLAG and not param.array:
            if fields.pop(param.id + FLAG_SUFFIX, None) is not None and not fields.get(param.id):
                fields[param.id] = ["false"]
        elif widget_of(param) == "lines":
            lines = [
                line.strip() for text in fields.get(param.id, []) for line in text.splitlines()
            ]
            fields[param.id] = [line for line in lines if line]
    return form


def _paste(text: str, uploads_dir: Path, max_file: int) -> SavedFile:
    data = text.replace("\r\n", "\n").encode("utf-8")
    if not data.endswith(b"\n"):
        data += b"\n"
    if len(data) > max_file:
        raise ApiError(413, f"the pasted text is larger than the limit of {max_file} bytes")
    file_id = new_id()
    path = uploads_dir / file_id
    with path.open("xb") as out:
        out.write(data)
    return SavedFile(file_id, path, PASTED_LABEL, size=len(data))
