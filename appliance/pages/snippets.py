"""A job as the commands that make it again: curl, and the previous system's Python client
(``slivka-client``), so a person can move from the page to scripts."""

from __future__ import annotations

import shlex
from typing import Any

FIELD_INDENT = " " * 8


def _items(parameters: dict[str, Any]) -> list[tuple[str, Any]]:
    items = []
    for key, value in parameters.items():
        for one in value if isinstance(value, list) else [value]:
            if one is not None:
                items.append((key, one))
    return items


def _file_name(value: Any) -> str | None:
    if isinstance(value, dict) and isinstance(value.get("file"), dict):
        return str(value["file"].get("label") or value["file"].get("id") or "input")
    return None


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def curl_command(base: str, service: str, parameters: dict[str, Any]) -> str:
    lines = ["curl"]
    for key, value in _items(parameters):
        name = _file_name(value)
        part = f"{key}=@{name}" if name is not None else f"{key}={_text(value)}"
        option = "-F" if name is not None else "--form-string"
        lines.append(f"{option} {shlex.quote(part)}")
    lines.append(shlex.quote(f"{base}/api/services/{service}/jobs"))
    return " \\\n  ".join(lines)


def python_snippet(base: str, service: str, parameters: dict[str, Any]) -> str:
    data: dict[str, list[str]] = {}
    files: list[tuple[str, str]] = []
    for key, value in _items(parameters):
        name = _file_name(value)
        if name is None:
            data.setdefault(key, []).append(_text(value))
        else:
            files.append((key, name))
    data_lines = "".join(
        f"{FIELD_INDENT}{key!r}: {values[0]!r},\n" if len(values) == 1
        else f"{FIELD_INDENT}{key!r}: {values!r},\n"
        for key, values in data.items()
    )  # fmt: skip
    file_lines = "".join(f"{FIELD_INDENT}({key!r}, open({name!r}, 'rb')),\n" for key, name in files)
    return (
        "# pip install slivka-client\n"
        "import time\n"
        "from slivka_client import SlivkaClient\n\n"
        "FINISHED = ('COMPLETED', 'FAILED', 'ERROR', 'INTERRUPTED', 'DELETED', 'REJECTED')\n"
        f"client = SlivkaClient({base + '/'!r})\n"
        f"job = client[{service!r}].submit_job(\n"
        f"    data={{\n{data_lines}    }},\n"
        f"    files=[\n{file_lines}    ],\n"
        ")\n"
        "while job.status not in FINISHED:\n"
        "    time.sleep(2)\n"
        "    job.reload()\n"
        "for file in job.files:\n"
        "    file.dump(file.path)\n"
    )
