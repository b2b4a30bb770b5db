"""The kubernetes backend: one batch/v1 Job per step (``backend``), its manifest
(``manifests``), how it ended (``ends``) and the watches that follow it (``informer``)."""

from appliance.runners.kubernetes.backend import KubernetesBackend, create

__all__ = ["KubernetesBackend", "create"]
