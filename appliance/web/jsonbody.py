"""A JSON request body read with care (TES tasks): what the database could not store, or
a parser could choke on, is a 400 naming what is wrong, never a 500 or an outage.

- a size cap, counted as the body arrives (413);
- parsed off the event loop when large, so one big body never holds up other requests;
- nesting at most ``MAX_DEPTH`` deep (a deeper one made Python's parser recurse to a 500);
- no ``NaN`` or ``Infinity`` and no number too large for a double (``1e400``): the database
  server dropped the connection on a NaN, which the store took for an outage;
- integers in 64 bits, keys without a leading ``$``, a ``.`` or a NUL (the database's rules).
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from starlette.requests import Request

from appliance.web.errors import ApiError

MAX_DEPTH = 32
ON_THE_LOOP = 64 * 1024  # bytes: a smaller body is parsed at once


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text} is too large for a number")
    return number


def _parse(data: bytes) -> Any:
    try:
        return json.loads(data, parse_constant=_constant, parse_float=_finite)
    except RecursionError:
        raise ValueError(f"it is nested more than {MAX_DEPTH} levels deep") from None


def check(value: Any) -> str:
    """What in a parsed JSON value the database could not store ('' if nothing)."""
    pending: list[tuple[Any, int, str]] = [(value, 0, "")]
    while pending:
        item, depth, where = pending.pop()
        if depth > MAX_DEPTH:
            return f"it is nested more than {MAX_DEPTH} levels deep"
        if isinstance(item, bool) or item is None or isinstance(item, str | float):
            continue
        if isinstance(item, int):
            if not -(2**63) <= item < 2**63:
                return f"{where or 'a number'} does not fit in 64 bits"
        elif isinstance(item, dict):
            for key, child in item.items():
                if key.startswith("$") or "." in key or "\x00" in key:
                    return f"{where + '.' if where else ''}{key[:100]!r}: a key may not start " \
                           "with '$' or hold '.' or NUL"  # fmt: skip
                pending.append((child, depth + 1, f"{where}.{key}" if where else key))
        elif isinstance(item, list):
            pending.extend((child, depth + 1, f"{where}[{i}]") for i, child in enumerate(item))
    return ""


async def read_json(request: Request, limit: int, what: str) -> Any:
    """The request's JSON body (``what``: "a task", for the messages)."""
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise ApiError(413, f"{what} is larger than {limit} bytes")
    try:
        if len(data) > ON_THE_LOOP:
            document = await asyncio.to_thread(_parse, bytes(data))
        else:
            document = _parse(bytes(data))
    except ValueError as exc:
        raise ApiError(400, f"the body is not JSON the server takes: {exc}") from None
    problem = check(document)
    if problem:
        raise ApiError(400, f"the body cannot be stored: {problem}")
    return document
