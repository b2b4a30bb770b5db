"""How a setting's text (from the YAML file or an ``APPLIANCE_*`` variable) becomes its
value, and the bounds that refuse a value that would undo a safety net
(``appliance.settings`` declares each setting with one of these)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance.tokens import is_hash
from appliance.units import parse_duration, parse_size


def as_path(value: object) -> Path:
    if not isinstance(value, str | Path) or not str(value):
        raise ValueError(f"expected a path, got {value!r}")
    return Path(value)


def as_str(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value


def url_prefix(value: object) -> str:
    text = as_str(value)
    if not text.startswith("/") and "://" not in text:
        raise ValueError(f"expected a URL path starting with / or an absolute URL, got {text!r}")
    return text.rstrip("/")


def positive_int(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected a whole number, got {value!r}")
    try:
        number = int(str(value)) if isinstance(value, str) else value
    except ValueError:
        raise ValueError(f"expected a whole number, got {value!r}") from None
    if not isinstance(number, int) or number < 1:
        raise ValueError(f"expected a whole number of at least 1, got {value!r}")
    return number


def whole(value: object) -> int:
    """A whole number of at least 0 (0 often meaning "no limit")."""
    return 0 if value in (0, "0") else positive_int(value)


def bind_or_off(value: object) -> str:
    """HOST:PORT, or empty (off)."""
    text = "" if value is None else str(value).strip()
    if text and not text.rpartition(":")[2].isdigit():
        raise ValueError(f"expected HOST:PORT or nothing, got {value!r}")
    return text


def one_of(*choices: str) -> Callable[[object], str]:
    def parse(value: object) -> str:
        text = as_str(value).lower()
        if text not in choices:
            raise ValueError(f"expected {' or '.join(choices)}, got {value!r}")
        return text

    return parse


def log_level(value: object) -> str:
    text = as_str(value).upper()
    if text not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError(f"expected DEBUG, INFO, WARNING or ERROR, got {value!r}")
    return text


def byte_size(value: object) -> int:
    return parse_size(value.strip() if isinstance(value, str) else value)


def optional_path(value: object) -> Path | None:
    return None if value in (None, "") else as_path(value)


def token_hash(value: object) -> str:
    text = "" if value is None else str(value).strip().lower()
    if text and not is_hash(text):
        raise ValueError("expected the hex SHA-256 of a token (appliance operator-token makes one)")
    return text


def as_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def words(value: object) -> tuple[str, ...]:
    """A list, in YAML or as comma-separated text (for environment variables)."""
    items = value if isinstance(value, list | tuple) else str(value or "").split(",")
    return tuple(str(item).strip() for item in items if str(item).strip())


def networks(value: object) -> tuple[str, ...]:
    """Addresses or CIDR blocks (``10.0.0.0/8``, ``2001:db8::/32``), as nginx writes them."""
    networks = []
    for word in words(value):
        try:
            networks.append(str(ipaddress.ip_network(word, strict=False)))
        except ValueError:
            raise ValueError(f"expected addresses or CIDR blocks, got {word!r}") from None
    return tuple(networks)


FILE_ROOT_CLIENT = "{client}"


def check_file_root(root: str) -> str:
    """``root`` if it is a usable TES file root (absolute, no '.' or '..'; ``{client}``
    only as a whole folder name and at most once), else ValueError saying why."""
    if not root.startswith("/"):
        raise ValueError(f"expected absolute paths, got {root!r}")
    parts = root.split("/")
    client = FILE_ROOT_CLIENT
    if root.count(client) > 1 or any(client in p and p != client for p in parts):
        raise ValueError(f"{client} must be a whole folder name, at most once: {root!r}")
    if any(p in (".", "..") for p in parts):
        raise ValueError(f"a root holds no '.' or '..': {root!r}")
    return root.rstrip("/") or "/"


def nonempty_words(value: object) -> tuple[str, ...]:
    found = words(value)
    if not found:
        raise ValueError("expected at least one value")
    return found


def file_roots(value: object) -> tuple[str, ...]:
    return tuple(check_file_root(path) for path in words(value))


def host_name(value: object) -> str:
    """A host name or address, or empty (off)."""
    text = str(value or "").strip()
    if text and not re.fullmatch(r"[A-Za-z0-9.:\[\]_-]+", text):
        raise ValueError(f"expected a host name or address, got {text!r}")
    return text


def site_url(value: object) -> str:
    """An http(s) address, perhaps with a path (no query), or empty."""
    text = str(value or "").strip().rstrip("/")
    if text and not re.fullmatch(r"https?://[^/?#@\s]+(/[^?#\s]*)?", text):
        raise ValueError(f"expected http(s)://host[:port][/path], got {text!r}")
    return text


S3_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def s3_roots(value: object) -> tuple[str, ...]:
    """``bucket`` or ``bucket/prefix`` each, ``{client}`` a whole name after the bucket."""
    roots = []
    for root in words(value):
        bucket, _, rest = root.strip("/").partition("/")
        parts = [p for p in rest.split("/") if p]
        if not S3_BUCKET.fullmatch(bucket):
            raise ValueError(f"expected bucket or bucket/prefix, {bucket!r} is no bucket name")
        if rest.count(FILE_ROOT_CLIENT) > 1 or any(
            FILE_ROOT_CLIENT in p and p != FILE_ROOT_CLIENT for p in parts
        ):
            raise ValueError(f"{FILE_ROOT_CLIENT} must be a whole name, at most once: {root!r}")
        if any(p in (".", "..") for p in parts) or "//" in rest:
            raise ValueError(f"an S3 root holds no '.', '..' or '//': {root!r}")
        roots.append("/".join([bucket, *parts]))
    return tuple(roots)


def http_endpoint(value: object) -> str:
    """An http(s) address with no path, or empty (off)."""
    text = str(value or "").strip().rstrip("/")
    if text and not re.fullmatch(r"https?://[^/?#@\s]+", text):
        raise ValueError(f"expected http(s)://host[:port] with no path, got {text!r}")
    return text


def within(
    parse: Callable[[object], Any], low: float, high: float, *, off: str = ""
) -> Callable[[object], Any]:
    """``parse``, then refused outside [``low``, ``high``]; with ``off``, 0 is allowed
    too and means that (e.g. "no limit"). A value that would undo a safety net (a
    database call without a time limit, a lease or sweep of 0 s) is an error naming its
    key, at start and in ``appliance check``."""

    def parsed(value: object) -> Any:
        number = parse(value)
        if off and number == 0:
            return number
        if not low <= number <= high:
            zero = f", or 0 ({off})" if off else ""
            raise ValueError(f"expected from {_show(low, parse)} to {_show(high, parse)}"
                             f"{zero}, got {value!r}")  # fmt: skip
        return number

    return parsed


def _show(bound: float, parse: Callable[[object], Any]) -> str:
    if parse is parse_duration:
        return f"{bound:g} s"
    if parse is byte_size:
        return f"{int(bound)} bytes"
    return f"{bound:g}"


DAY = 86400.0
GIB = 1024**3


def number(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    try:
        number = float(str(value))
    except ValueError:
        raise ValueError(f"expected a number, got {value!r}") from None
    if number < 0:
        raise ValueError(f"expected a number of at least 0, got {value!r}")
    return number
