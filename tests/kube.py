"""The single-node Kubernetes cluster that scripts/test starts (scripts/lib/k8s.sh), as the
tests use it: kubectl, images copied in from the Docker engine, and claims bound to a
test's own folders (static hostPath volumes: the node is this machine)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

NAMESPACE = "appliance-tests"
_imported: set[str] = set()


def cluster() -> dict[str, str]:
    """The cluster's environment; fails (never skips) when scripts/test did not start one."""
    kubeconfig = os.environ.get("KUBECONFIG", "")
    ctr = os.environ.get("APPLIANCE_TEST_K8S_CTR", "")
    if not kubeconfig or not ctr or shutil.which("kubectl") is None:
        pytest.fail("no Kubernetes cluster: run the tests with scripts/test (it starts one), or "
                    "start one with scripts/k8s-up and export what it prints")  # fmt: skip
    return {"kubeconfig": kubeconfig, "ctr": ctr}


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> str:
    done = subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True,
                          timeout=180)  # fmt: skip
    if check and done.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def kubectl_json(*args: str) -> Any:
    return json.loads(kubectl(*args, "-o", "json"))


def apply(manifest: dict[str, Any] | list[dict[str, Any]]) -> None:
    items = manifest if isinstance(manifest, list) else [manifest]
    kubectl(
        "apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    )


def import_image(image: str) -> None:
    """Copy an image from the Docker engine into the cluster's containerd (no registry)."""
    if image in _imported:
        return
    ctr = cluster()["ctr"].split()
    listed = subprocess.run([*ctr, "-n", "k8s.io", "images", "ls", "-q"], capture_output=True,
                            text=True, check=True).stdout.split()  # fmt: skip
    if not any(name.endswith(image) for name in listed):
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        subprocess.run([*ctr, "-n", "k8s.io", "images", "import", "-"], stdin=save.stdout,
                       check=True, capture_output=True)  # fmt: skip
        assert save.wait() == 0
    _imported.add(image)


def ensure_namespace(name: str = NAMESPACE) -> str:
    apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": name, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})  # fmt: skip
    return name


def bind_claims(
    prefix: str, folders: dict[str, Path], namespace: str = NAMESPACE
) -> dict[str, str]:
    """A PersistentVolume (hostPath) and a claim bound to it for each folder; the claims'
    names by volume."""
    items: list[dict[str, Any]] = []
    claims = {}
    for volume, folder in folders.items():
        name = f"{prefix}-{volume}"
        claims[volume] = name
        items.append({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
                      "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"],
                               "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
                               "hostPath": {"path": str(folder), "type": "Directory"},
                               "claimRef": {"namespace": namespace, "name": name}}})  # fmt: skip
        items.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                      "metadata": {"name": name, "namespace": namespace},
                      "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "",
                               "volumeName": name, "resources": {"requests": {"storage": "1Gi"}}}})  # fmt: skip
    apply(items)
    for name in claims.values():
        kubectl("-n", namespace, "wait", "--for=jsonpath={.status.phase}=Bound", f"pvc/{name}",
                "--timeout=60s")  # fmt: skip
    return claims


def release_claims(claims: dict[str, str], namespace: str = NAMESPACE) -> None:
    for name in claims.values():
        kubectl(
            "-n",
            namespace,
            "delete",
            "pvc",
            name,
            "--wait=false",
            "--ignore-not-found",
            check=False,
        )
        kubectl("delete", "pv", name, "--wait=false", "--ignore-not-found", check=False)
