"""Reading submitted forms: multipart streamed straight to disk, or URL-encoded.

File parts are written to the uploads folder as they arrive, under names the server
makes (the client's file name is kept only as a label); the whole body is never held in
memory. Past the size limit the request fails with 413 and every file it wrote is
deleted, so a refused request leaves nothing behind. A file part under a name the
endpoint does not know, or one file too many, is refused before a byte of it is
written; the parsing (and so the writing) runs off the event loop, so a large body
never holds up the process's other requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import parse_qsl

from python_multipart import MultipartParser
from python_multipart.multipart import parse_options_header
from starlette.requests import Request

from appliance.mediatypes import sniff_media_type
from appliance.store import new_id
from appliance.web.errors import ApiError
from appliance.web_limits import MAX_FIELD_BYTES, request_limit

MAX_PARTS = 1000
DEFAULT_MAX_FILES = 50
PARSE_BATCH = 1024 * 1024  # bytes handed to the parser's thread at a time
INLINE_PARSE = 64 * 1024  # a body this small is parsed on the event loop
MADE: set[Path] = set()  # upload folders made by this process
DRAIN_MARGIN = 1024 * 1024
MAX_LABEL = 255


MEDIA_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")
GENERIC_TYPES = {"application/octet-stream", ""}


@dataclass
class SavedFile:
    id: str
    path: Path
    label: str
    size: int = 0
    media_type: str = ""  # as the client sent it for the part (parameters dropped), or ""


@dataclass
class FormData:
    fields: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, list[SavedFile]] = field(default_factory=dict)

    def saved(self) -> list[SavedFile]:
        return [f for group in self.files.values() for f in group]

    def discard(self) -> None:
        for saved in self.saved():
            with contextlib.suppress(FileNotFoundError):
                saved.path.unlink()


class _Multipart:
    """Callbacks for python-multipart's streaming parser."""

    def __init__(self, uploads_dir: Path, max_file: int, file_fields: frozenset[str],
                 known: frozenset[str] | None, max_files: int) -> None:  # fmt: skip
        self.uploads_dir = uploads_dir
        self.file_fields = file_fields
        self.known = known
        self.max_files = max_files
        self.files = 0
        self.max_file = max_file
        self.form = FormData()
        self.header_name = b""
        self.header_value = b""
        self.headers: dict[bytes, bytes] = {}
        self.name = ""
        self.current_file: SavedFile | None = None
        self.stream: IO[bytes] | None = None
        self.value = bytearray()
        self.field_bytes = 0
        self.parts = 0
        self.ended = False
        self.parser: MultipartParser | None = None

    def begin(self) -> None:
        self.headers = {}
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise ApiError(413, f"too many parts (at most {MAX_PARTS})")

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def header_value_part(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def header_end(self) -> None:
        self.headers[self.header_name.strip().lower()] = self.header_value.strip()
        self.header_name = self.header_value = b""

    def headers_finished(self) -> None:
        disposition, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        if disposition != b"form-data" or b"name" not in options:
            raise ApiError(
                400, "each multipart part needs 'Content-Disposition: form-data; name=...'"
            )
        self.name = _text(options[b"name"], "a part name")
        filename = options.get(b"filename")
        if filename is None and self.name in self.file_fields:
            filename = b""  # a file sent without a file name is still a file
        if filename is None:
            self.value = bytearray()
            return
        if self.known is not None and self.name not in self.known:
            raise ApiError(400, f"{self.name[:100]!r} is not a parameter here: its file is refused")
        self.files += 1
        if self.files > self.max_files:
            raise ApiError(413, f"too many files in one request (at most {self.max_files})")
        label = os.path.basename(filename.decode("utf-8", errors="replace").replace("\\", "/"))
        file_id = new_id()
        saved = SavedFile(file_id, self.uploads_dir / file_id, label[:MAX_LABEL],
                          media_type=_part_media_type(self.headers.get(b"content-type", b"")))  # fmt: skip
        self.form.files.setdefault(self.name, []).append(saved)
        self.current_file = saved
        self.stream = saved.path.open("xb")

    def data(self, data: bytes, start: int, end: int) -> None:
        size = end - start
        if self.current_file is not None and self.stream is not None:
            self.current_file.size += size
            if self.current_file.size > self.max_file:
                raise ApiError(413, f"a file is larger than the limit of {self.max_file} bytes")
            self.stream.write(data[start:end])
            return
        self.field_bytes += size
        if self.field_bytes > MAX_FIELD_BYTES:
            raise ApiError(413, f"form fields are larger than {MAX_FIELD_BYTES} bytes together")
        self.value += data[start:end]

    def part_end(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None
            self.current_file = None
            return
        self.form.fields.setdefault(self.name, []).append(
            _text(bytes(self.value), f"field {self.name!r}")
        )

    def end(self) -> None:
        self.ended = True

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None

    def parser_for(self, boundary: bytes) -> MultipartParser:
        return MultipartParser(
            boundary,
            {
                "on_part_begin": self.begin,
                "on_header_field": self.header_field,
                "on_header_value": self.header_value_part,
                "on_header_end": self.header_end,
                "on_headers_finished": self.headers_finished,
                "on_part_data": self.data,
                "on_part_end": self.part_end,
                "on_end": self.end,
            },
        )


def _text(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, f"{what} is not valid UTF-8") from None


def _declared_length(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared is None:
        return
    if not declared.isascii() or not declared.isdigit():
        raise ApiError(400, "Content-Length is not a number")
    if len(declared) > 18 or int(declared) > limit:
        raise ApiError(413, f"the request is larger than the limit of {limit} bytes")


async def read_form(
    request: Request, uploads_dir: Path, max_file: int, file_fields: frozenset[str] = frozenset(),
    *, known: frozenset[str] | None = None, max_files: int = DEFAULT_MAX_FILES,
) -> FormData:  # fmt: skip
    """The request's form; files are saved in ``uploads_dir``. Raises ApiError (400/413/415).

    Parts with a file name, and parts named in ``file_fields``, are files.
    """
    limit = request_limit(max_file)
    _declared_length(request, limit)
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type == b"multipart/form-data":
        boundary = options.get(b"boundary")
        reader = _Multipart(uploads_dir, max_file, file_fields, known, max_files)
        return await _read_multipart(request, reader, limit, boundary)
    if content_type in (b"application/x-www-form-urlencoded", b""):
        return await _read_urlencoded(request)
    raise ApiError(415, "send multipart/form-data or application/x-www-form-urlencoded")


async def _read_multipart(
    request: Request, reader: _Multipart, limit: int, boundary: bytes | None
) -> FormData:
    if not boundary:
        raise ApiError(400, "the multipart content type has no boundary")
    if reader.uploads_dir not in MADE:  # once per process (it is not removed)
        await asyncio.to_thread(reader.uploads_dir.mkdir, parents=True, exist_ok=True)
        MADE.add(reader.uploads_dir)
    parser = reader.parser_for(boundary)
    received = 0
    stream = request.stream()
    try:
        pending = bytearray()
        async for chunk in stream:
            received += len(chunk)
            if received > limit:
                raise ApiError(413, f"the request is larger than the limit of {limit} bytes")
            pending += chunk
            if len(pending) >= PARSE_BATCH:  # files are written here, off the event loop
                await asyncio.to_thread(_parse, parser, bytes(pending))
                pending.clear()
        if len(pending) > INLINE_PARSE:
            await asyncio.to_thread(_parse, parser, bytes(pending))
        elif pending:  # a small form: not worth a thread
            _parse(parser, bytes(pending))
        if not reader.ended:
            raise ApiError(400, "the multipart body is incomplete")
    except ApiError as exc:
        reader.close()
        reader.form.discard()
        if exc.status == 413:
            await _drain(stream, received, limit)
        raise
    except OSError as exc:  # the uploads volume is full or broken: not the client's fault
        reader.close()
        reader.form.discard()
        raise ApiError(503, f"the server cannot store files right now ({exc.strerror})") from None
    except Exception:  # the parser's own errors, a dropped connection
        reader.close()
        reader.form.discard()
        raise ApiError(400, "the multipart body is malformed") from None
    except BaseException:  # cancelled (the client went away): nothing stays behind
        reader.close()
        reader.form.discard()
        raise
    return reader.form


def _parse(parser: MultipartParser, data: bytes) -> None:
    if parser.write(data) != len(data):
        raise ApiError(400, "the multipart body is malformed")


async def _drain(stream: AsyncIterator[bytes], received: int, limit: int) -> None:
    """Read (and drop) the rest of a refused body, up to a little past the limit.

    A proxy that streams the body to us (nginx with request buffering off) turns an
    answer sent before the body is read into a 502. Reading on lets the proxy's own limit,
    the same as ours, answer 413 first; without a proxy the client gets ours.
    """
    budget = limit + DRAIN_MARGIN
    with contextlib.suppress(Exception):
        async for chunk in stream:
            received += len(chunk)
            if received > budget:
                break


async def _read_urlencoded(request: Request) -> FormData:
    body = bytearray()
    stream = request.stream()
    async for chunk in stream:
        body += chunk
        if len(body) > MAX_FIELD_BYTES:
            await _drain(stream, len(body), request_limit(0))
            raise ApiError(413, f"the form is larger than {MAX_FIELD_BYTES} bytes")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict",
                          max_num_fields=MAX_PARTS)  # fmt: skip
    except UnicodeDecodeError:
        raise ApiError(400, "the form is not valid UTF-8") from None
    except ValueError as exc:
        raise ApiError(413, str(exc)) from None
    form = FormData()
    for name, value in pairs:
        form.fields.setdefault(name, []).append(value)
    return form


def _part_media_type(header: bytes) -> str:
    """A part's own media type, without parameters (``text/plain; charset=UTF-8`` is
    ``text/plain``); "" when it says nothing useful (none, octet-stream, or malformed)."""
    value, _ = parse_options_header(header)
    text = value.decode("latin-1", errors="replace").strip().lower()
    return text if MEDIA_TYPE.match(text) and text not in GENERIC_TYPES else ""


async def sniff_all(paths: list[Path], size: int) -> list[str]:
    """The media types of saved uploads (``size`` bytes in all): on the event loop when
    they are small (handing them to a thread costs more than reading a few kilobytes,
    and under load the hand-offs contended for the interpreter lock), else in a thread."""
    if size <= INLINE_PARSE:
        return [sniff_media_type(p) for p in paths]
    return await asyncio.to_thread(lambda: [sniff_media_type(p) for p in paths])
