"""The docker backend: each step of a job is one container from the step's image.

    backend     the backend itself: submit, status, cancel, checks
    containers  what a step's container is (create options, labels)
    events      the engine's event stream, read by a thread
    waiting     steps waiting for a slot, kept across restarts

The only package that imports ``docker``.
"""

from appliance.runners.docker.backend import DockerBackend, create

__all__ = ["DockerBackend", "create"]
