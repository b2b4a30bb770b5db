"""Parsing of human-friendly sizes ("100M") and durations ("10m")."""

from __future__ import annotations

import re

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_SIZE_FACTORS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_FACTORS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_size(value: object) -> int:
    """Bytes from an int or a string like ``512M``, ``1g``, ``64KiB`` (powers of 1024)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size like 100M, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size cannot be negative, got {value}")
        return value
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match:
            number, unit, _ = match.groups()
            return int(float(number) * _SIZE_FACTORS[unit.lower()])
    raise ValueError(f"expected a size like 100M or a number of bytes, got {value!r}")


def format_size(size: int) -> str:
    """A size for people: ``762 bytes``, ``4.2 KiB``, ``20 MiB``."""
    if size < 1024:
        return f"{size} byte" + ("" if size == 1 else "s")
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}".replace(".0 ", " ")


def parse_duration(value: object) -> float:
    """Seconds from a number or a string like ``90s``, ``10m``, ``2h``."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 10m, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {value}")
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            number, unit = match.groups()
            return float(number) * _DURATION_FACTORS[unit]
    raise ValueError(f"expected a duration like 90s, 10m or 2h, got {value!r}")
