"""Who is calling the TES API: bearer tokens, known by their SHA-256 hashes only.

The setting ``tes_tokens_file`` names a file of clients, a line each: ``name hash`` (the
hex SHA-256 of the client's token; ``#`` starts a comment). A request's token is hashed
and compared with each in constant time; its name owns the tasks it creates, and a
client sees only its own. With ``tes_anonymous`` a request without a token is the client
``anonymous``; a wrong token is refused either way.
"""

from __future__ import annotations

from pathlib import Path

from appliance.errors import ConfigError
from appliance.tokens import bearer, is_hash, known, token_hash

__all__ = ["ANONYMOUS", "AuthError", "Clients", "load_clients", "token_hash"]

ANONYMOUS = "anonymous"


class AuthError(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)


def load_clients(path: Path | None) -> dict[str, str]:
    """hash -> client name; ConfigError (file and line) for a malformed file."""
    if path is None:
        return {}
    clients: dict[str, str] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read the TES clients: {exc}", source=str(path)) from None
    for number, line in enumerate(lines, start=1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) != 2 or not is_hash(words[1]):
            raise ConfigError("expected 'name sha256-hex'", source=str(path), key=f"line {number}")
        clients[words[1]] = words[0]
    return clients


class Clients:
    def __init__(self, hashes: dict[str, str], anonymous: bool) -> None:
        self.hashes = hashes
        self.anonymous = anonymous

    def who(self, authorization: str | None) -> str:
        """The client's name, or AuthError(401) for a missing or wrong token."""
        if not authorization:
            if self.anonymous:
                return ANONYMOUS
            raise AuthError(401, "a bearer token is needed (Authorization: Bearer ...)")
        token = bearer(authorization)
        if token is None:
            raise AuthError(401, "expected 'Authorization: Bearer <token>'")
        found = known(token, self.hashes)
        if found is None:
            raise AuthError(401, "this token is not known here")
        return self.hashes[found]
