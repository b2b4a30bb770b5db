"""s3:// inputs and outputs of tasks: fetched and sent by the scheduler.

The site names one S3 server (``tes_s3_endpoint``), its region and a credentials file;
a task names only ``s3://bucket/key``, and only under the site's ``tes_s3_roots`` (with
``{client}``: a prefix of each TES client's own). Keys never come from a task, so a
task cannot reach a bucket the site has not listed, with keys it has not given.

Downloads are streamed to the job's folder and checked against the object's MD5 (its
ETag, when the object was sent in one part) or its stored SHA-256 (when the server keeps
one); uploads are signed over their SHA-256 and carry Content-MD5, so the server checks
them too. Outputs larger than ``tes_s3_part_bytes`` go up in parts (one part in memory
at a time) and a failed upload is aborted, leaving no parts behind.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

import httpx

from appliance.s3sign import EMPTY_SHA256, encode_path, encode_query, sign
from appliance.settings import Settings
from appliance.settingvalues import FILE_ROOT_CLIENT, S3_BUCKET
from appliance.tes.shared import CLIENT_NAME

CHUNK = 1024 * 1024
NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
PLAIN_ETAG = re.compile(r'"?([0-9a-f]{32})"?')


class S3Error(Exception):
    """An s3:// URL a task may not use, or an object that could not be moved."""


def split(url: str) -> tuple[str, str]:
    """The bucket and key of ``s3://bucket/key`` (the key may be empty: a bucket)."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "s3" or parts.query or parts.fragment:
        raise S3Error(f"{url}: expected s3://bucket/key")
    bucket, key = parts.netloc, unquote(parts.path).lstrip("/")
    if not S3_BUCKET.fullmatch(bucket):
        raise S3Error(f"{url}: {bucket!r} is not a bucket name")
    segments = key.rstrip("/").split("/")
    if key and any(s in ("", ".", "..") for s in segments):
        raise S3Error(f"{url}: a key holds no '.', '..' or empty names")
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise S3Error(f"{url}: a key holds no control characters")
    return bucket, key.rstrip("/")


def prefixes_for(roots: tuple[str, ...], client: str) -> list[str]:
    """The ``bucket/prefix`` places ``client`` may use."""
    places = []
    for root in roots:
        if FILE_ROOT_CLIENT in root.split("/"):
            if not CLIENT_NAME.fullmatch(client):
                continue
            root = root.replace(FILE_ROOT_CLIENT, client)
        places.append(root)
    return places


def locate(url: str, settings: Settings, client: str) -> tuple[str, str]:
    """The bucket and key of ``url`` if the site stages s3:// and ``client`` may use it."""
    if not settings.tes_s3_endpoint or not settings.tes_s3_roots:
        raise S3Error(f"{url}: s3:// URLs are not staged here (no tes_s3_endpoint and "
                      "tes_s3_roots set)")  # fmt: skip
    bucket, key = split(url)
    where = f"{bucket}/{key}" if key else bucket
    for place in prefixes_for(settings.tes_s3_roots, client):
        if where == place or where.startswith(place + "/"):
            return bucket, key
    allowed = ", ".join(f"s3://{p}" for p in prefixes_for(settings.tes_s3_roots, client))
    raise S3Error(f"{url} is outside the places tasks may use ({allowed or 'none'})")


@dataclass(frozen=True)
class Site:
    """The site's S3 server and keys, from its settings."""

    endpoint: str
    region: str
    access_key: str
    secret_key: str
    virtual_hosts: bool
    part_bytes: int
    timeout: float
    max_bytes: int

    @classmethod
    def of(cls, settings: Settings) -> Site:
        path = settings.tes_s3_credentials_file
        if path is None:
            raise S3Error("no S3 keys: tes_s3_credentials_file is not set")
        try:
            lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        except OSError as exc:
            raise S3Error(f"cannot read tes_s3_credentials_file: {exc.strerror}") from None
        if len(lines) != 2:
            raise S3Error("tes_s3_credentials_file holds two lines: access key id, then secret")
        return cls(settings.tes_s3_endpoint, settings.tes_s3_region, lines[0], lines[1],
                   settings.tes_s3_virtual_hosts, settings.tes_s3_part_bytes,
                   settings.tes_fetch_timeout, settings.tes_fetch_max_bytes)  # fmt: skip


def _xml(content: bytes) -> ET.Element:
    """An S3 answer parsed; one with a document type (where entities would be declared,
    the way to blow up a parser) is refused unread."""
    if b"<!DOCTYPE" in content or b"<!ENTITY" in content:
        raise S3Error("the S3 server's answer declares a document type")
    try:
        return ET.fromstring(content)  # noqa: S314  # no DTD, so no entity to expand
    except ET.ParseError as exc:
        raise S3Error(f"the S3 server's answer is not XML: {exc}") from None


def _error(response: httpx.Response, what: str) -> S3Error:
    code = message = ""
    try:
        root = _xml(response.content[:65536])
        code, message = root.findtext("Code") or "", root.findtext("Message") or ""
    except S3Error:
        pass
    said = ": ".join(p for p in (code, message) if p)
    return S3Error(f"{what}: the S3 server answered {response.status_code}"
                   + (f" ({said})" if said else ""))  # fmt: skip


def _take(chunk: bytes, sink: BinaryIO, digests: list[Any]) -> None:
    for digest in digests:
        digest.update(chunk)
    sink.write(chunk)


def _read(source: BinaryIO, size: int) -> tuple[bytes, str, str]:
    """Up to ``size`` bytes of ``source``, their MD5 (base64) and SHA-256 (hex)."""
    body = source.read(size)
    md5 = hashlib.md5(body, usedforsecurity=False).digest()
    return body, base64.b64encode(md5).decode(), hashlib.sha256(body).hexdigest()


class Client:
    """Requests to the site's S3 server, over one connection pool."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.http = httpx.AsyncClient(timeout=site.timeout, follow_redirects=False)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, *exc: type[BaseException] | BaseException | TracebackType | None
    ) -> None:
        await self.http.aclose()

    def _request(self, method: str, bucket: str, key: str, query: dict[str, str] | None = None,
                 body: bytes = b"", headers: dict[str, str] | None = None,
                 payload: str = "") -> httpx.Request:  # fmt: skip
        endpoint = urlsplit(self.site.endpoint)
        host, path = endpoint.netloc, encode_path(f"/{bucket}/{key}" if key else f"/{bucket}")
        if self.site.virtual_hosts:
            host, path = f"{bucket}.{endpoint.netloc}", encode_path(f"/{key}")
        query = query or {}
        payload = payload or (hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256)
        sent = sign(method, host, path, query, headers or {}, payload,
                    access_key=self.site.access_key, secret_key=self.site.secret_key,
                    region=self.site.region, now=datetime.now(UTC))  # fmt: skip
        url = f"{endpoint.scheme}://{host}{path}" + (f"?{encode_query(query)}" if query else "")
        return self.http.build_request(method, httpx.URL(url), headers=sent, content=body)

    async def _send(self, request: httpx.Request, what: str) -> httpx.Response:
        try:
            response = await self.http.send(request)
        except httpx.HTTPError as exc:
            raise S3Error(f"{what}: {exc.__class__.__name__}: {exc}") from None
        if response.status_code >= 300:
            raise _error(response, what)
        return response

    async def get(self, bucket: str, key: str, sink: BinaryIO, budget: int) -> int:
        """Write the object to ``sink``, checked; its size. At most ``budget`` bytes."""
        what = f"s3://{bucket}/{key}"
        request = self._request("GET", bucket, key, headers={"x-amz-checksum-mode": "ENABLED"})
        try:
            response = await self.http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise S3Error(f"{what}: {exc.__class__.__name__}: {exc}") from None
        try:
            if response.status_code != 200:
                await response.aread()
                raise _error(response, what)
            etag = PLAIN_ETAG.fullmatch(response.headers.get("etag", ""))
            stored = response.headers.get("x-amz-checksum-sha256", "")
            stored = "" if "-" in stored else stored  # a checksum of checksums: not checkable
            md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
            digests = [d for d, wanted in ((md5, etag), (sha, stored)) if wanted]
            size = 0
            writing: asyncio.Future[None] | None = None  # hashed and written while the next comes
            try:
                # raw: the object's bytes as stored (never decoded, even if it was stored
                # with a Content-Encoding), gathered into chunks of about CHUNK bytes
                pieces: list[bytes] = []
                held = 0
                async for piece in response.aiter_raw():
                    size += len(piece)
                    if size > budget:
                        raise S3Error(f"{what}: larger than {budget} bytes (tes_fetch_max_bytes)")
                    pieces.append(piece)
                    held += len(piece)
                    if held < CHUNK:
                        continue
                    if writing is not None:
                        await writing
                    chunk, pieces, held = b"".join(pieces), [], 0
                    writing = asyncio.ensure_future(asyncio.to_thread(_take, chunk, sink, digests))
                if writing is not None:
                    await writing
                writing = asyncio.ensure_future(
                    asyncio.to_thread(_take, b"".join(pieces), sink, digests)
                )
            finally:
                if writing is not None:
                    await writing
        except httpx.HTTPError as exc:
            raise S3Error(f"{what}: {exc.__class__.__name__}: {exc}") from None
        finally:
            await response.aclose()
        if etag and etag.group(1) != md5.hexdigest():
            raise S3Error(f"{what}: what arrived does not match its MD5 (ETag)")
        if stored and stored != base64.b64encode(sha.digest()).decode():
            raise S3Error(f"{what}: what arrived does not match its SHA-256")
        return size

    async def list(self, bucket: str, prefix: str) -> list[tuple[str, int]]:
        """Every object below ``prefix/`` (key, size), in key order."""
        found: list[tuple[str, int]] = []
        query = {"list-type": "2", "prefix": f"{prefix}/" if prefix else ""}
        while True:
            response = await self._send(self._request("GET", bucket, "", query),
                                        f"listing s3://{bucket}/{prefix}")  # fmt: skip
            root = _xml(response.content)
            for item in root.iter(f"{NS}Contents"):
                found.append(
                    (item.findtext(f"{NS}Key") or "", int(item.findtext(f"{NS}Size") or 0))
                )
            token = root.findtext(f"{NS}NextContinuationToken")
            if root.findtext(f"{NS}IsTruncated") != "true" or not token:
                return found
            query = {**query, "continuation-token": token}

    async def probe(self, bucket: str, prefix: str) -> None:
        """S3Error unless these keys may list ``bucket`` below ``prefix`` (one object at most)."""
        query = {"list-type": "2", "max-keys": "1", "prefix": f"{prefix}/" if prefix else ""}
        await self._send(self._request("GET", bucket, "", query), f"listing s3://{bucket}/{prefix}")

    async def put(self, bucket: str, key: str, source: BinaryIO, size: int) -> None:
        """Send ``size`` bytes of ``source`` as the object: in one request, or in parts."""
        what = f"s3://{bucket}/{key}"
        if size <= self.site.part_bytes:
            body, md5, sha = await asyncio.to_thread(_read, source, size)
            request = self._request("PUT", bucket, key, body=body, headers={"Content-MD5": md5},
                                    payload=sha)  # fmt: skip
            await self._send(request, what)
            return
        made = await self._send(self._request("POST", bucket, key, {"uploads": ""}),
                                f"{what}: starting a multipart upload")  # fmt: skip
        upload = _xml(made.content).findtext(f"{NS}UploadId") or ""
        try:
            etags = [etag async for etag in self._parts(bucket, key, upload, source, what)]
            parts = "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>"
                            for n, e in enumerate(etags, 1))  # fmt: skip
            done = f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode()
            answer = await self._send(
                self._request("POST", bucket, key, {"uploadId": upload}, body=done), what
            )
            if b"<Error>" in answer.content:  # S3 may fail a completion after a 200
                raise _error(answer, what)
        except BaseException:
            abort = self._request("DELETE", bucket, key, {"uploadId": upload})
            await asyncio.shield(self.http.send(abort))
            raise

    async def _parts(self, bucket: str, key: str, upload: str, source: BinaryIO,
                     what: str) -> AsyncIterator[str]:  # fmt: skip
        def read() -> asyncio.Future[tuple[bytes, str, str]]:
            return asyncio.ensure_future(asyncio.to_thread(_read, source, self.site.part_bytes))

        number = 0
        reading = read()  # the next part is read and hashed while this one is sent
        try:
            while True:
                body, md5, sha = await reading
                if not body:
                    return
                reading = read()
                number += 1
                query = {"partNumber": str(number), "uploadId": upload}
                request = self._request("PUT", bucket, key, query, body=body,
                                        headers={"Content-MD5": md5}, payload=sha)  # fmt: skip
                answer = await self._send(request, f"{what}: part {number}")
                etag = answer.headers.get("etag", "")
                hex_md5 = base64.b64decode(md5).hex()
                if PLAIN_ETAG.fullmatch(etag) and etag.strip('"') != hex_md5:
                    raise S3Error(f"{what}: part {number} arrived altered (ETag)")
                yield etag or f'"{hex_md5}"'
        finally:
            if not reading.done():
                await asyncio.wait([reading])  # its thread cannot be stopped: let it end
            if not reading.cancelled():
                reading.exception()  # a failed read after a failed send is not left unseen
