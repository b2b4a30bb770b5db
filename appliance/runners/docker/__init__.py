"""The docker backend: each step of a job is one container from the step's image.

backend     the backend itself: submit, status, cancel, checks
containers  what a step's container is (create options, labels)
engine      the engine's HTTP API over its socket (no docker-py: it cost the CPU)
engineapi   containers as the backend sees them; create requests from options
events      the engine's event stream, read by a thread
liveoutput  a running container's output copied into its job's directory
waiting     steps waiting for a slot, kept across restarts
"""

from appliance.runners.docker.backend import DockerBackend, create

__all__ = ["DockerBackend", "create"]
