"""Webhooks: what is posted when a job ends, how it is signed, and which URLs are taken.

A job may name a webhook (the form field ``_webhook``, the pages' field of that name, a
TES task's tag ``appliance-webhook``). When it reaches a final state a scheduler posts
``payload(job)`` to it, signed with the site's secret (the setting
``webhook_secret_file``), and tries again with back-off for ``webhook_retry_for``
(``appliance.scheduler.notifying``). The receiver checks the signature as ``verify``
does (docs/api.md, "Webhooks", shows it in a few lines of Python).

The signature header is ``Appliance-Signature: t=<unix time>,v1=<hex>``, the hex being
HMAC-SHA256 of ``<unix time>.<body>`` under the secret: the time is signed with the
body, so a receiver can refuse an old delivery replayed. This module is pure: it reads
no settings and sends nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

FIELD = "_webhook"  # the form field a submission names its webhook in
TAG = "appliance-webhook"  # the TES tag
SIGNATURE_HEADER = "Appliance-Signature"
EVENT = "job.finished"
MAX_URL = 2048
FIRST_DELAY = 10.0  # seconds before the second attempt; doubled each time, at most
MAX_DELAY = 3600.0  # an hour apart
MIN_SECRET = 16  # bytes


class WebhookError(ValueError):
    """A webhook URL that is not taken, or a signature that does not check."""


def check_url(url: str, *, private: bool) -> str:
    """``url`` if a webhook may be sent to it; WebhookError saying why not. A host given
    as an address is checked here (loopback, private, link-local unless ``private``);
    a name is checked each time it is resolved, before every post."""
    if len(url) > MAX_URL:
        raise WebhookError(f"a webhook URL has at most {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port out of range
    except ValueError as exc:
        raise WebhookError(f"not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookError("a webhook is an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise WebhookError("a webhook URL carries no user name or password (the post is signed)")
    if private:
        return url
    if parts.hostname.lower() == "localhost" or parts.hostname.lower().endswith(".localhost"):
        raise WebhookError(f"{parts.hostname} is not a public address")
    try:
        address = ipaddress.ip_address(parts.hostname)
    except ValueError:
        return url  # a name: checked when resolved
    if not public_address(address):
        raise WebhookError(f"{address} is not a public address")
    return url


def check_submitted(url: str, *, enabled: bool, private: bool) -> str:
    """``check_url`` for a submission, on a site that sends webhooks only when
    ``enabled`` (a secret is set); WebhookError saying why not."""
    if not enabled:
        raise WebhookError("this site sends no webhooks (no webhook_secret_file is set)")
    return check_url(url, private=private)


def public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Global and not multicast (``::ffff:10.0.0.1`` is 10.0.0.1): neither loopback,
    private, link-local, reserved nor the shared space 100.64.0.0/10."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def payload(job: Mapping[str, Any], *, job_url: str) -> bytes:
    """The body posted for a job that has ended: what a receiver needs to act, no more
    (its outputs are listed at ``job_url`` + ``/files``)."""

    def when(value: Any) -> str | None:
        return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None

    body = {
        "event": EVENT,
        "id": str(job["_id"]),
        "service": str(job.get("service", "")),
        "status": str(job["state"]),
        "submissionTime": when(job.get("submitted_at")),
        "completionTime": when(job.get("completed_at")),
        "error": job.get("error"),
        "url": job_url,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The value of the signature header for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(secret: bytes, header: str, body: bytes, *, now: float, tolerance: float = 300) -> int:
    """What a receiver does: the signed time, if ``header`` signs ``body`` under
    ``secret`` and is at most ``tolerance`` seconds old; WebhookError otherwise."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
        given = fields["v1"]
    except (KeyError, ValueError):
        raise WebhookError("the signature header is not t=<time>,v1=<hex>") from None
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    if not hmac.compare_digest(expected, given):
        raise WebhookError("the signature does not match the body")
    if abs(now - timestamp) > tolerance:
        raise WebhookError(f"the signature is {abs(now - timestamp):.0f} s old")
    return timestamp


def delay(attempts: int, first: float = FIRST_DELAY) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: ``first``,
    doubled each time, at most MAX_DELAY."""
    return float(min(first * 2 ** max(attempts - 1, 0), MAX_DELAY))


def read_secret(text: bytes, source: str) -> bytes:
    """The secret in a secret file's bytes (surrounding white space dropped)."""
    secret = text.strip()
    if len(secret) < MIN_SECRET:
        raise WebhookError(f"{source}: a webhook secret has at least {MIN_SECRET} bytes "
                           "(openssl rand -hex 32 makes one)")  # fmt: skip
    return secret
