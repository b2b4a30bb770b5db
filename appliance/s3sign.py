"""AWS Signature Version 4 for S3 requests: pure, no I/O.

A request is signed over its method, path, query, the headers named in ``SignedHeaders``
(always ``host``, ``x-amz-content-sha256`` and ``x-amz-date``) and the SHA-256 of its
body. Path segments and query words are percent-encoded once, keeping only RFC 3986's
unreserved characters, and the same encoded text is what is sent: what the server
checks is what was signed.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from urllib.parse import quote

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
ALGORITHM = "AWS4-HMAC-SHA256"


def encode_path(key_path: str) -> str:
    """``/bucket/some key`` as S3 wants it in a request line: each segment encoded, ``/`` kept."""
    return quote(key_path, safe="/~")


def encode_query(query: dict[str, str]) -> str:
    """The canonical query string, also the one sent: sorted, every reserved byte encoded."""
    pairs = sorted((quote(k, safe="~"), quote(v, safe="~")) for k, v in query.items())
    return "&".join(f"{k}={v}" for k, v in pairs)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signing_key(secret_key: str, day: str, region: str) -> bytes:
    key = _hmac(f"AWS4{secret_key}".encode(), day)
    for word in (region, "s3", "aws4_request"):
        key = _hmac(key, word)
    return key


def sign(
    method: str,
    host: str,
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
    payload_sha256: str,
    *,
    access_key: str,
    secret_key: str,
    region: str,
    now: datetime,
) -> dict[str, str]:
    """The headers to send (``headers`` with the date, payload hash and Authorization
    added); ``path`` is already encoded (``encode_path``), ``now`` is in UTC."""
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    day = stamp[:8]
    sent = {**headers, "x-amz-date": stamp, "x-amz-content-sha256": payload_sha256}
    canonical = {k.lower(): " ".join(v.strip().split()) for k, v in sent.items()}
    canonical["host"] = host
    names = sorted(canonical)
    request = "\n".join([
        method,
        path,
        encode_query(query),
        "".join(f"{name}:{canonical[name]}\n" for name in names),
        ";".join(names),
        payload_sha256,
    ])  # fmt: skip
    scope = f"{day}/{region}/s3/aws4_request"
    text = "\n".join([ALGORITHM, stamp, scope, hashlib.sha256(request.encode()).hexdigest()])
    signature = hmac.new(signing_key(secret_key, day, region), text.encode(), hashlib.sha256)
    sent["Authorization"] = (
        f"{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={';'.join(names)}, "
        f"Signature={signature.hexdigest()}"
    )
    return sent
