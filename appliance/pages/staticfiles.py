"""Where the pages' static files are, and the URL the proxy serves them under."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

STATIC_URL = "/static"
# Where the proxy image keeps a copy of them (images/proxy/Dockerfile).
IMAGE_STATIC_DIR = "/usr/share/appliance/static"


def static_dir() -> Path:
    """The folder of the pages' static files in this installation."""
    return Path(str(resources.files("appliance.pages") / "static"))
