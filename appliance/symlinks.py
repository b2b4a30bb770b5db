"""Names under which input files are staged in a job directory.

A service's ``symlink`` template may use ``$(filename)``, ``$(filename.stem)``,
``$(filename.ext)`` (also as ``${...}``) and ``%d`` (the index in an array). The file
name comes from the user's upload, so it is cleaned to one safe path component first;
the whole result must stay inside the job directory.
"""

from __future__ import annotations

import posixpath
import re
import unicodedata

from appliance.errors import CommandError, ConfigError

_UNSAFE = re.compile(r"[^\w.+\-]+")
MAX_NAME = 120


def safe_filename(label: str, fallback: str) -> str:
    """One path component made from a user's file name: no '/', no '..', no control chars."""
    name = label.replace("\\", "/").rsplit("/", 1)[-1]
    name = unicodedata.normalize("NFKC", name)
    name = _UNSAFE.sub("_", name).strip("._")
    if not name or name.startswith("-"):
        name = fallback
    return name[:MAX_NAME]


def _fill(template: str, filename: str, index: int) -> str:
    stem, ext = posixpath.splitext(filename)
    text = template
    for style in ("$({})", "${{{}}}"):
        text = (
            text.replace(style.format("filename.stem"), stem)
            .replace(style.format("filename.ext"), ext)
            .replace(style.format("filename"), filename)
        )
    return text.replace("%d", str(index))


def _inside(path: str) -> bool:
    normal = posixpath.normpath(path)
    return not (
        not path
        or path.startswith("/")
        or normal in (".", "")
        or normal.startswith("../")
        or normal == ".."
        or "\x00" in path
    )


def check_symlink_template(template: str, *, array: bool) -> None:
    """Reject templates that could leave the job directory or clash within an array."""
    sample = _fill(template, "input.txt", 0)
    if not _inside(sample) or ".." in sample.split("/"):
        raise ConfigError(f"{template!r} must name a path inside the job directory")
    if array and "%d" not in template:
        raise ConfigError(f"{template!r} is for an array: it needs %d for the index")


def staged_name(
    template: str | None, parameter: str, label: str, file_id: str, index: int | None
) -> str:
    """The path, relative to the job directory, where an input file is staged."""
    if template is None:
        return f"inputs/{parameter}" if index is None else f"inputs/{parameter}.{index}"
    filename = safe_filename(label, safe_filename(file_id, parameter))
    name = posixpath.normpath(_fill(template, filename, index or 0))
    if not _inside(name) or ".." in name.split("/"):
        raise CommandError(f"staged file name {name!r} would leave the job directory")
    return name
