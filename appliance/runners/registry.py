"""Every backend, what it can do and which options it takes: the one list of backends.

This module imports no backend (so the web process and ``appliance check`` can read it
without ``docker`` or a socket). A backend's declaration says:

- ``needs_image``: its steps run in a container image, so a service must name one;
- ``runs_steps``: it runs a whole multi-step plan itself (else the scheduler submits the
  plan's steps one at a time, the next when one ends well);
- ``enforces``: which limits of ``Resources`` it enforces (a service or runner that sets
  another one is refused by the catalogue check, with file and key); the time limit is
  always enforced, by the scheduler;
- ``poll_seconds``: how often the scheduler asks it for the status of its jobs (backends
  that send change notices are also asked at once when something changes);
- ``options``: the keys of its runner configuration's ``options``, each with a type, a
  range and a default; anything else is refused, with file and key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from appliance.errors import ConfigError, ConfigErrors
from appliance.model import Resources
from appliance.plan import VOLUMES

LIMITS = ("cpus", "memory", "time_limit", "pids", "network", "user", "read_only_root",
          "capabilities")  # fmt: skip
# What a service writes for each limit (the file's key) and when setting it asks for
# enforcement (a value that only loosens, like network: true, asks for nothing).
LIMIT_KEYS = {"cpus": "cpus", "memory": "memory", "time_limit": "time-limit", "pids": "pids",
              "network": "network", "user": "user", "read_only_root": "read-only-root",
              "capabilities": "capabilities"}  # fmt: skip


def restrictive(resources: Resources) -> list[str]:
    """The limits these resources ask a backend to enforce."""
    asked = []
    for name in LIMITS:
        value = getattr(resources, name)
        if value is None or (name == "network" and value is True):
            continue
        if name == "read_only_root" and value is False:
            continue
        asked.append(name)
    return asked


@dataclass(frozen=True)
class Option:
    kind: str  # str, int, float, bool, mapping, list, path, volumes (volume name -> absolute path),
    # choice (one of ``choices``), options (a list of command-line options, --name[=value])
    default: Any = None
    doc: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    reserved: tuple[str, ...] = ()  # kind options: names the backend sets itself


@dataclass(frozen=True)
class Abilities:
    needs_image: bool = False
    runs_steps: bool = False
    enforces: frozenset[str] = frozenset({"time_limit"})
    poll_seconds: float = 1.0


@dataclass(frozen=True)
class BackendInfo:
    module: str
    abilities: Abilities
    options: dict[str, Option] = field(default_factory=dict)
    doc: str = ""


SBATCH_RESERVED = ("parsable", "job-name", "chdir", "output", "error", "export", "mem",
                   "cpus-per-task", "time", "wrap", "array", "dependency", "input",
                   "partition", "account", "qos")  # fmt: skip
OPTION = re.compile(r"^--([a-z][a-z0-9-]*)(=[^\x00-\x1f]*)?$")

# Pids are limited per node on Kubernetes (the kubelet's podPidsLimit), not per pod.
KUBERNETES_LIMITS = tuple(name for name in LIMITS if name != "pids")

VOLUME_ROOTS = Option("volumes", None, "where this backend sees each volume: {jobs: PATH, "
                      "uploads: PATH} (default: the settings' jobs_dir and uploads_dir)")  # fmt: skip

BACKENDS: dict[str, BackendInfo] = {
    "docker": BackendInfo(
        "appliance.runners.docker",
        Abilities(needs_image=True, enforces=frozenset(LIMITS), poll_seconds=0.2),
        {
            "base_url": Option(
                "str",
                None,
                "the engine's address, unix:///PATH or tcp://HOST:PORT "
                "(default DOCKER_HOST or unix:///var/run/docker.sock)",
            ),
            "stop_grace": Option("float", 10.0, "seconds between SIGTERM and SIGKILL", 0, 3600),
            "tmp_size": Option("str", "64m", "size of each container's /tmp"),
            "log_max": Option(
                "str",
                "64m",
                "most of a container's stdout (and of its stderr) kept: the last that much",
            ),
            "slots": Option("int", 0, "containers running at once (0: no limit)", 0, 10000),
            "live_output": Option(
                "float",
                2.0,
                "seconds between copies of a running container's stdout and "
                "stderr into its job's directory (0: only when it ends)",
                0,
                3600,
            ),
            "live_output_max": Option(
                "str",
                "1m",
                "most of each stream copied while the container runs (all of "
                "it, up to log_max, when it ends)",
            ),
            "host_paths": VOLUME_ROOTS,
        },
        "one locked-down container per step",
    ),
    "local": BackendInfo(
        "appliance.runners.local",
        Abilities(poll_seconds=0.2),
        {
            "address": Option(
                "str", None, "the pool's ZeroMQ address (default: the worker_address setting)"
            ),
            "server_key": Option("str", None, "the pool's CURVE public key (network addresses)"),
            "client_keys": Option("path", None, "this end's CURVE key file"),
            "timeout": Option("float", 5.0, "seconds to wait for the pool's answer", 0.1, 600),
            "roots": VOLUME_ROOTS,
        },
        "subprocesses in an `appliance worker` pool",
    ),
    "slurm": BackendInfo(
        "appliance.runners.slurm",
        Abilities(enforces=frozenset({"cpus", "memory", "time_limit"}), poll_seconds=0.5),
        {
            "mode": Option(
                "choice",
                "none",
                "how the tool runs on the node: none (directly) "
                "or docker (in the service's image, isolated)",
                choices=("none", "docker"),
            ),
            "partition": Option("str", None, "sbatch --partition"),
            "account": Option("str", None, "sbatch --account"),
            "qos": Option("str", None, "sbatch --qos"),
            "sbatch_options": Option(
                "options", [], "more sbatch options, each --name[=value]", reserved=SBATCH_RESERVED
            ),
            "roots": VOLUME_ROOTS,
            "tmp_size": Option("str", "64m", "size of each container's /tmp (docker mode)"),
            "timeout": Option("float", 30.0, "seconds to wait for a SLURM command", 1, 600),
            "status_interval": Option(
                "float",
                15.0,
                "seconds between two questions to slurmctld about the "
                "appliance's jobs (ends are read from the jobs' exit records meanwhile)",
                1,
                3600,
            ),
            "script_dir": Option(
                "path", None, "where the batch script is kept (default ~/.cache/appliance/slurm)"
            ),
        },
        "a SLURM batch job per step",
    ),
    "kubernetes": BackendInfo(
        "appliance.runners.kubernetes",
        Abilities(needs_image=True, enforces=frozenset(KUBERNETES_LIMITS), poll_seconds=1.0),
        {
            "namespace": Option(
                "str",
                None,
                "where the Jobs go (default: the scheduler's own namespace in a "
                "cluster, else the kubeconfig's)",
            ),
            "kubeconfig": Option(
                "path",
                None,
                "a kubeconfig file (default: the pod's service account in a "
                "cluster, else KUBECONFIG or ~/.kube/config)",
            ),
            "claims": Option(
                "mapping",
                {"jobs": "appliance-jobs", "uploads": "appliance-uploads"},
                "the PersistentVolumeClaim of each volume: {jobs: NAME, uploads: NAME}",
            ),
            "node_selector": Option("mapping", {}, "the job pods' nodeSelector"),
            "tolerations": Option("list", [], "the job pods' tolerations"),
            "image_pull_policy": Option(
                "choice",
                "IfNotPresent",
                "the job containers' imagePullPolicy",
                choices=("IfNotPresent", "Always", "Never"),
            ),
            "service_account": Option(
                "str", None, "the job pods' service account (its token is never mounted)"
            ),
            "stop_grace": Option("float", 10.0, "seconds between SIGTERM and SIGKILL", 0, 3600),
            "tmp_size": Option("str", "64Mi", "size of each job's /tmp (an emptyDir)"),
            "finished_ttl": Option(
                "int",
                3600,
                "seconds a finished Job stays in the cluster (ttlSecondsAfterFinished)",
                0,
                7 * 86400,
            ),
            "unschedulable_grace": Option(
                "float",
                300.0,
                "seconds a pod may stay unschedulable before its job ends in ERROR",
                0,
                86400,
            ),
            "owner_config_map": Option(
                "str",
                None,
                "a ConfigMap that owns the Jobs (deleting it deletes them: the "
                "chart's runners ConfigMap, so that `helm uninstall` leaves no Job behind)",
            ),
            "node_pids_limit": Option(
                "int",
                0,
                "the podPidsLimit the cluster's kubelets set; when set, services with a "
                "pids limit are accepted (each job gets the node's limit)",
                0,
                10**7,
            ),
        },
        "a Kubernetes batch/v1 Job per step",
    ),
    "memory": BackendInfo(
        "appliance.runners.memory",
        Abilities(poll_seconds=0.2),
        {
            "start_delay": Option("float", 0.0, "seconds before each step starts", 0, 3600),
            "runs_steps": Option("bool", False, "run a whole plan in one submission"),
        },
        "simulated programs, for tests",
    ),
}


def backend_info(name: str) -> BackendInfo:
    return BACKENDS[name]


def abilities_of(backend: str, options: Mapping[str, Any] | None = None) -> Abilities:
    """A backend's declaration (some options change it: the memory backend's runs_steps,
    the slurm backend's mode)."""
    abilities = BACKENDS[backend].abilities
    options = options or {}
    if backend == "memory" and options.get("runs_steps"):
        abilities = replace(abilities, runs_steps=True)
    if backend == "kubernetes" and options.get("node_pids_limit"):
        abilities = replace(abilities, enforces=abilities.enforces | {"pids"})
    if backend == "slurm" and options.get("mode") == "docker":
        abilities = replace(abilities, needs_image=True, enforces=frozenset(LIMITS))
    return abilities


def _check_value(option: Option, value: Any, key: str) -> Any:
    kind = option.kind
    if kind in ("str", "path"):
        if not isinstance(value, str) or not value:
            raise ConfigError(f"expected a non-empty string, got {value!r}", key=key)
        return value
    if kind == "choice":
        if value not in option.choices:
            raise ConfigError(
                f"expected one of {', '.join(option.choices)}, got {value!r}", key=key
            )
        return value
    if kind == "options":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"expected a list of options like --name=value, got {value!r}",
                              key=key)  # fmt: skip
        for item in value:
            match = OPTION.match(item)
            if match is None:
                raise ConfigError(f"{item!r} is not an option like --name=value", key=key)
            if match.group(1) in option.reserved:
                raise ConfigError(f"{item!r}: --{match.group(1)} is set by the backend itself",
                                  key=key)  # fmt: skip
        return value
    if kind == "list":
        if not isinstance(value, list):
            raise ConfigError(f"expected a list, got {value!r}", key=key)
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"expected true or false, got {value!r}", key=key)
        return value
    if kind in ("mapping", "volumes"):
        if not isinstance(value, dict):
            raise ConfigError(f"expected a mapping, got {value!r}", key=key)
        if kind == "volumes":
            for name, root in value.items():
                if name not in VOLUMES:
                    raise ConfigError(f"unknown volume {name!r} (known: {', '.join(VOLUMES)})",
                                      key=f"{key}.{name}")  # fmt: skip
                if not isinstance(root, str) or not root.startswith("/"):
                    raise ConfigError(f"expected an absolute path, got {root!r}",
                                      key=f"{key}.{name}")  # fmt: skip
        return value
    wanted = "a whole number" if kind == "int" else "a number"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"expected {wanted}, got {value!r}", key=key)
    if kind == "int" and not isinstance(value, int):
        raise ConfigError(f"expected {wanted}, got {value!r}", key=key)
    if option.minimum is not None and value < option.minimum:
        raise ConfigError(f"must be at least {option.minimum:g}, got {value!r}", key=key)
    if option.maximum is not None and value > option.maximum:
        raise ConfigError(f"must be at most {option.maximum:g}, got {value!r}", key=key)
    return value


def check_options(backend: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options with defaults filled in; ConfigError (key ``options.<name>``) for an
    unknown key, a wrong type or a number out of range."""
    known = BACKENDS[backend].options
    errors = []
    checked: dict[str, Any] = {}
    for name, value in options.items():
        option = known.get(str(name))
        if option is None:
            listed = ", ".join(sorted(known)) or "none"
            errors.append(ConfigError(f"unknown option for the {backend} backend "
                                      f"(known: {listed})", key=f"options.{name}"))  # fmt: skip
            continue
        if value is None:
            continue
        try:
            checked[str(name)] = _check_value(option, value, f"options.{name}")
        except ConfigError as exc:
            errors.append(exc)
    if errors:
        raise errors[0] if len(errors) == 1 else ConfigErrors(errors)
    for name, option in known.items():
        checked.setdefault(name, option.default)
    return checked
