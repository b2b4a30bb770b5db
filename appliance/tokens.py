"""Bearer tokens, known by their SHA-256 hashes only and compared in constant time.

The appliance never keeps a token itself: settings and files hold the hex SHA-256 of
each, and a request's token is hashed and compared with every known hash (all of them,
so the time taken says nothing about which came close).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None if it has none."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def known(token: str, hashes: Iterable[str]) -> str | None:
    """The hash among ``hashes`` that ``token`` has, or None; every one is compared."""
    digest = token_hash(token)
    found = None
    for candidate in hashes:
        if hmac.compare_digest(candidate, digest):
            found = candidate
    return found


def is_hash(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)
