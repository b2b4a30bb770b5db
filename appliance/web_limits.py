"""Size limits shared by the web app and the proxy configuration, so that they agree."""

from __future__ import annotations

MAX_FIELD_BYTES = 1024 * 1024  # all non-file form fields of one request together
MULTIPART_OVERHEAD = 64 * 1024  # part headers and boundaries


def request_limit(upload_max_bytes: int) -> int:
    """The largest request body accepted: one full-size upload plus the form around it."""
    return upload_max_bytes + MAX_FIELD_BYTES + MULTIPART_OVERHEAD
