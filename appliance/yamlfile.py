"""Reading YAML configuration files, with errors that name the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from appliance.errors import ConfigError


def read_yaml(path: Path) -> Any:
    """The parsed content of ``path``; a missing or malformed file is a ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", source=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the file: {exc}", source=str(path)) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{line}not valid YAML: {problem}", source=str(path)) from None


def read_mapping(path: Path) -> dict[str, Any]:
    """Like read_yaml, but the top level must be a mapping (an empty file is ``{}``)."""
    data = read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"the top level must be a mapping of keys, not {type(data).__name__}",
            source=str(path),
        )
    return data
