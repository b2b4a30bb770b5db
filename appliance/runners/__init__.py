"""Runner backends. ``BACKENDS`` is the one place that lists them.

A backend module is imported only when a runner configuration names it, so the web
process (which never runs jobs) never imports ``docker`` or opens a Docker socket.
"""

from __future__ import annotations

BACKENDS: dict[str, str] = {
    "docker": "appliance.runners.docker",
    "local": "appliance.runners.local",
    "memory": "appliance.runners.memory",
}
