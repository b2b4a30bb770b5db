"""`helm upgrade` from the first release's chart and images (0.1.0, built from its commit)
to this checkout's, on the test cluster, while jobs run and others wait: the database
(on a volume of its own, as a site keeps it) is migrated when the new scheduler starts,
finished jobs are served as before, and every job ends having run once."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from appliance import __version__
from tests import kube
from tests.first_release import VERSION as OLD
from tests.first_release import first_release
from tests.helpers import TEST_IMAGE, build_test_image
from tests.test_helm_install import (
    SLEEPER,
    VALUES,
    assert_each_ran_once,
    helm,
    submit_sleepers,
    wait_finished,
)

ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "appliance-helm-upgrade"
RELEASE = "up"
PREFIX = "up-appliance"


def values(version: str, sleeper: Path) -> list[str]:
    """The install's values for ``version``'s images, with the database kept on a volume
    (an upgrade replaces its pod)."""
    chosen = [v for v in VALUES if not v.startswith(("mongodb.image.tag", "mongodb.persistence"))]
    chosen += [f"mongodb.image.tag={version}", "mongodb.persistence.enabled=true",
               "mongodb.persistence.storageClass=-", "mongodb.persistence.size=1Gi"]  # fmt: skip
    args = [item for value in chosen for item in ("--set", value)]
    return [*args, "--set-file", f"services.files.sleeper\\.service\\.yaml={sleeper}"]


@pytest.fixture(scope="module")
def old_release(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The first release's chart installed with its images; yields its proxy's address and
    the sleeper's service file."""
    kube.cluster()
    folder = tmp_path_factory.mktemp("helm-upgrade")
    old = first_release(folder)
    subprocess.run([str(ROOT / "scripts" / "build-images")], check=True, cwd=ROOT,
                   capture_output=True, timeout=1800)  # fmt: skip
    build_test_image(folder)
    for image in (f"appliance/appliance:{OLD}", f"appliance/proxy:{OLD}",
                  f"appliance/ferretdb:{OLD}", f"appliance/appliance:{__version__}",
                  f"appliance/proxy:{__version__}", f"appliance/ferretdb:{__version__}",
                  TEST_IMAGE):  # fmt: skip
        kube.import_image(image)
    kube.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--timeout=120s")
    kube.ensure_namespace(NAMESPACE)
    volumes = {"uploads": f"{PREFIX}-uploads", "jobs": f"{PREFIX}-jobs",
               "db": f"data-{PREFIX}-mongodb-0"}  # fmt: skip
    for name, claim in volumes.items():
        path = folder / name
        path.mkdir()
        os.chown(path, 1000, 1000)  # hostPath volumes: fsGroup does not apply
        mode = "ReadWriteOnce" if name == "db" else "ReadWriteMany"
        kube.apply({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"{NAMESPACE}-{name}"},
                    "spec": {"capacity": {"storage": "100Gi"}, "accessModes": [mode],
                             "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
                             "hostPath": {"path": str(path), "type": "Directory"},
                             "claimRef": {"namespace": NAMESPACE, "name": claim}}})  # fmt: skip
    sleeper = folder / "sleeper.service.yaml"
    sleeper.write_text(SLEEPER)
    helm("install", RELEASE, str(old / "helm" / "appliance"), "-n", NAMESPACE, "--wait",
         "--timeout", "8m", *values(OLD, sleeper))  # fmt: skip
    port = kube.kubectl("-n", NAMESPACE, "get", "svc", f"{PREFIX}-proxy", "-o",
                        "jsonpath={.spec.ports[0].nodePort}")  # fmt: skip
    try:
        yield f"http://10.87.255.1:{port}", sleeper
    finally:
        subprocess.run(["helm", "uninstall", RELEASE, "-n", NAMESPACE, "--wait"],
                       capture_output=True, timeout=300)  # fmt: skip
        kube.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false",
                     check=False)  # fmt: skip
        for name in volumes:
            kube.kubectl("delete", "pv", f"{NAMESPACE}-{name}", "--wait=false",
                         "--ignore-not-found", check=False)  # fmt: skip


def wait_version(base: str, expected: str, timeout: float = 180) -> None:
    """Until the proxy answers with ``expected``: during a rollout the Service may still
    reach an old pod, or none (a refused connection, a 502)."""
    deadline, last = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(f"{base}/api/version", timeout=10)
            last = f"{answer.status_code} {answer.text[:200]}"
            if answer.status_code == 200 and answer.json().get("applianceVersion") == expected:
                return
        except (httpx.HTTPError, ValueError) as exc:
            last = str(exc)
        time.sleep(1)
    raise AssertionError(f"the proxy never answered version {expected}; last: {last}")


def test_helm_upgrade_from_the_first_release_loses_no_job(
    old_release: tuple[str, Path],
) -> None:
    base, sleeper = old_release
    wait_version(base, OLD)
    finished = submit_sleepers(base, 2, 0)
    before = {job["id"]: job for job in wait_finished(base, finished)}
    assert {job["status"] for job in before.values()} == {"COMPLETED"}
    running = submit_sleepers(base, 3, 20)
    time.sleep(3)  # some have started; the rest wait
    helm("upgrade", RELEASE, str(ROOT / "helm" / "appliance"), "-n", NAMESPACE, "--wait",
         "--timeout", "8m", *values(__version__, sleeper))  # fmt: skip
    wait_version(base, __version__)
    for component in ("scheduler", "web"):  # the old pods gone: the logs are the new ones'
        kube.kubectl("-n", NAMESPACE, "rollout", "status", f"deploy/{PREFIX}-{component}",
                     "--timeout=170s")  # fmt: skip
    # whichever started first migrated: every pod's log (two web pods: `logs deploy/...`
    # reads one of them, and missed the migration when the other had made it)
    logs = kube.kubectl("-n", NAMESPACE, "logs", "--tail=-1", "--max-log-requests=10", "-l",
                        f"app.kubernetes.io/instance={RELEASE},"
                        "app.kubernetes.io/component in (scheduler,web)")  # fmt: skip
    if "stored records: format 2, migrated from format 1" not in logs:
        pytest.fail(f"no migration in the logs:\n{logs}")
    waiting = submit_sleepers(base, 2, 1)
    jobs = wait_finished(base, finished + running + waiting, timeout=420)
    assert [job["status"] for job in jobs] == ["COMPLETED"] * 7
    for job in jobs[:2]:  # finished before: served as they were
        assert job["completionTime"] == before[job["id"]]["completionTime"]
    assert_each_ran_once(base, finished + running + waiting)
