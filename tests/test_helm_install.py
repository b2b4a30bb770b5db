"""The Helm chart installed on the real single-node cluster that scripts/test starts: every
pod Ready under the restricted Pod Security profile, `helm test`, the previous system's
client through the proxy Service running the three aligners as Kubernetes Jobs (the same
alignments as the docker runner's), the scheduler's pod deleted while 20 jobs run, an
upgrade while jobs run, and an uninstall that leaves only the claims."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from slivka_client import SlivkaClient

from appliance import __version__
from tests import kube
from tests.bundle.compose import PROTEINS
from tests.bundle.test_bundle import run_job
from tests.helpers import TEST_IMAGE, build_test_image

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "appliance"
NAMESPACE = "appliance-helm"
RELEASE = "rel"
PREFIX = "rel-appliance"
IMAGES = [f"appliance/appliance:{__version__}", f"appliance/proxy:{__version__}",
          f"appliance/ferretdb:{__version__}",
          "appliance/clustalo:1.2.4", "appliance/mafft:7.505", "appliance/muscle:5.1.0", TEST_IMAGE]  # fmt: skip
SLEEPER = f"""\
appliance-version: 1
name: Sleeper
image: {TEST_IMAGE}
runner: docker
resources: {{cpus: 0.05, memory: 16M, time-limit: 5m}}
parameters:
  seconds: {{name: Seconds, type: integer, default: 1}}
command: sh -c 'echo run >> runs.txt; sleep "$0"'
args:
  seconds: {{arg: "$(value)"}}
outputs:
  runs: {{path: runs.txt, media-type: text/plain}}
"""
VALUES = [
    "image.pullPolicy=Never", "proxyImage.pullPolicy=Never", "runner.imagePullPolicy=Never",
    "mongodb.image.repository=appliance/ferretdb", f"mongodb.image.tag={__version__}",
    "mongodb.image.pullPolicy=Never", "mongodb.flavour=ferretdb", "mongodb.persistence.enabled=false",
    "persistence.storageClass=-", "persistence.accessModes={ReadWriteMany}",
    "proxy.service.type=NodePort", "web.replicas=1",
    "mongodb.resources.requests.cpu=50m", "web.resources.requests.cpu=50m",
    "scheduler.resources.requests.cpu=50m", "proxy.resources.requests.cpu=50m",
]  # fmt: skip


def helm(*args: str, timeout: float = 600) -> str:
    done = subprocess.run(["helm", *args], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"helm {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def install_args() -> list[str]:
    args = [item for value in VALUES for item in ("--set", value)]
    for folder in ("clustalo", "mafft", "muscle"):
        args += [
            "--set-file",
            f"services.files.{folder}\\.service\\.yaml={ROOT}/services/{folder}/{folder}.service.yaml",
        ]
    args += ["--set-file", f"services.files.sleeper\\.service\\.yaml={write_sleeper()}"]
    return args


def write_sleeper() -> Path:
    path = Path("/tmp/appliance-helm-sleeper.service.yaml")
    path.write_text(SLEEPER)
    return path


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The chart installed; yields the proxy's address (its NodePort on the node)."""
    kube.cluster()
    subprocess.run([str(ROOT / "scripts" / "build-images")], check=True, cwd=ROOT,
                   capture_output=True, timeout=1800)  # fmt: skip
    build_test_image(tmp_path_factory.mktemp("busybox"))
    for image in IMAGES:
        kube.import_image(image)
    kube.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--timeout=120s")
    kube.ensure_namespace(NAMESPACE)
    data = tmp_path_factory.mktemp("helm-volumes")
    folders = {}
    for volume in ("uploads", "jobs"):
        folders[volume] = data / volume
        folders[volume].mkdir()
        os.chown(folders[volume], 1000, 1000)  # hostPath volumes: fsGroup does not apply
    # static volumes bound to the claims the chart makes (this cluster has no provisioner)
    kube.apply([{"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"{NAMESPACE}-{v}"},
                 "spec": {"capacity": {"storage": "100Gi"}, "accessModes": ["ReadWriteMany"],
                          "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
                          "hostPath": {"path": str(folder), "type": "Directory"},
                          "claimRef": {"namespace": NAMESPACE, "name": f"{PREFIX}-{v}"}}}
                for v, folder in folders.items()])  # fmt: skip
    started = time.monotonic()
    helm(
        "install",
        RELEASE,
        str(CHART),
        "-n",
        NAMESPACE,
        "--wait",
        "--timeout",
        "8m",
        *install_args(),
    )
    print(f"helm install --wait: {time.monotonic() - started:.1f} s", file=sys.stderr)
    port = kube.kubectl("-n", NAMESPACE, "get", "svc", f"{PREFIX}-proxy", "-o",
                        "jsonpath={.spec.ports[0].nodePort}")  # fmt: skip
    try:
        yield f"http://10.87.255.1:{port}"
    finally:
        subprocess.run(
            ["helm", "uninstall", RELEASE, "-n", NAMESPACE, "--wait"],
            capture_output=True,
            timeout=300,
        )
        kube.kubectl(
            "delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false", check=False
        )
        for volume in folders:
            kube.kubectl(
                "delete",
                "pv",
                f"{NAMESPACE}-{volume}",
                "--wait=false",
                "--ignore-not-found",
                check=False,
            )


def pods(selector: str) -> list[dict[str, Any]]:
    return list(kube.kubectl_json("-n", NAMESPACE, "get", "pods", "-l", selector)["items"])


def submit_sleepers(base: str, count: int, seconds: int) -> list[str]:
    ids = []
    for _ in range(count):
        answer = httpx.post(
            f"{base}/api/services/sleeper/jobs", data={"seconds": str(seconds)}, timeout=30
        )
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["id"])
    return ids


def wait_finished(base: str, ids: list[str], timeout: float = 300) -> list[dict[str, Any]]:
    """Each job's final view. A rollout (helm upgrade) replaces the proxy and web pods, so a
    poll may meet a refused connection or a 502 meanwhile: those are retried."""
    deadline = time.monotonic() + timeout
    jobs = []
    for job_id in ids:
        while True:
            assert time.monotonic() < deadline, f"job {job_id} did not finish"
            try:
                answer = httpx.get(f"{base}/api/jobs/{job_id}", timeout=30)
            except httpx.HTTPError:
                answer = None
            if answer is not None and answer.status_code == 200 and answer.json()["finished"]:
                jobs.append(answer.json())
                break
            time.sleep(0.5)
    return jobs


def assert_each_ran_once(base: str, ids: list[str]) -> None:
    """Each job's folder has one line per run (the Jobs and pods of finished jobs are removed
    as leftovers, so the folder, not the cluster, is what counts)."""
    for job_id in ids:
        files = httpx.get(f"{base}/api/jobs/{job_id}/files", timeout=30).json()["files"]
        (runs,) = [f for f in files if f["label"] == "runs"]
        assert httpx.get(base + runs["@content"], timeout=30).text == "run\n", job_id


def test_every_pod_is_ready_and_helm_test_passes(release: str) -> None:
    listed = pods(f"app.kubernetes.io/instance={RELEASE}")
    components = sorted(p["metadata"]["labels"]["app.kubernetes.io/component"] for p in listed)
    assert components == ["mongodb", "proxy", "scheduler", "web"]
    for pod in listed:
        ready = [c for c in pod["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True", pod["metadata"]["name"]
    out = helm("test", RELEASE, "-n", NAMESPACE, "--timeout", "5m")
    assert "Phase:          Succeeded" in out, out  # its pod is deleted when it succeeds


@pytest.mark.parametrize(("service", "data", "output"), [
    ("clustalo", {"iterations": "1"}, "alignment.aln"),
    ("mafft", {"strategy": "L-INS-i", "maxiterate": "10"}, "stdout"),
    ("muscle", {"perturb": "3"}, "alignment.afa"),
])  # fmt: skip
def test_the_previous_client_runs_the_aligners_as_kubernetes_jobs(
    release: str, service: str, data: dict[str, object], output: str
) -> None:
    through_kubernetes = run_job(SlivkaClient(release + "/"), service, data)[output]
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    local = subprocess.run(
        [sys.executable, "-m", "appliance", "run", service, f"--file=input={PROTEINS}",
         *(f"--set={k}={v}" for k, v in data.items())],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert local.returncode == 0, local.stderr[-2000:]
    folder = Path(local.stderr.strip().splitlines()[-1].removeprefix("the job's folder: "))
    assert (folder / output).read_text() == through_kubernetes  # the docker runner's result
    jobs = kube.kubectl_json("-n", NAMESPACE, "get", "jobs", "-l", "appliance.role=job")["items"]
    assert any(j["spec"]["template"]["spec"]["containers"][0]["image"].startswith(f"appliance/{service}:")
               for j in jobs)  # fmt: skip


def test_the_web_pages_and_their_static_files_come_through_the_charts_proxy(release: str) -> None:
    front = httpx.get(release + "/", timeout=30)
    assert front.status_code == 200 and 'href="/services/clustalo"' in front.text
    script = next(u for u in front.text.split('"') if u.startswith("/static/app.js?v="))
    served = httpx.get(release + script, timeout=30)  # from the proxy image's own copy
    assert served.status_code == 200 and "immutable" in served.headers["cache-control"]
    assert served.content == (ROOT / "appliance" / "pages" / "static" / "app.js").read_bytes()
    assert httpx.get(release + "/services/mafft", timeout=30).status_code == 200


def test_deleting_the_scheduler_pod_while_20_jobs_run_runs_each_once(release: str) -> None:
    ids = submit_sleepers(release, 20, 6)
    deadline = time.monotonic() + 120
    while sum(1 for p in pods("appliance.role=job") if p["metadata"]["labels"]["appliance.job"] in ids
              and p["status"].get("phase") == "Running") < 10:  # fmt: skip
        assert time.monotonic() < deadline, "the jobs did not start"
        time.sleep(0.5)
    kube.kubectl(
        "-n",
        NAMESPACE,
        "delete",
        "pod",
        "-l",
        "app.kubernetes.io/component=scheduler",
        "--wait=false",
    )
    jobs = wait_finished(release, ids)
    assert [j["status"] for j in jobs] == ["COMPLETED"] * 20
    assert_each_ran_once(release, ids)


def test_an_upgrade_while_jobs_run_loses_none(release: str) -> None:
    ids = submit_sleepers(release, 6, 8)
    helm("upgrade", RELEASE, str(CHART), "-n", NAMESPACE, "--wait", "--timeout", "5m",
         *install_args(), "--set", "settings.log_level=DEBUG")  # fmt: skip
    jobs = wait_finished(release, ids)
    assert [j["status"] for j in jobs] == ["COMPLETED"] * 6
    assert_each_ran_once(release, ids)


def reaches(name: str, labels: dict[str, str], host: str, port: int) -> bool:
    """Whether a pod with these labels can open a TCP connection to host:port."""
    kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
                "spec": {"restartPolicy": "Never", "automountServiceAccountToken": False,
                         "securityContext": {"runAsNonRoot": True, "runAsUser": 1000,
                                             "seccompProfile": {"type": "RuntimeDefault"}},
                         "containers": [{"name": "probe", "image": TEST_IMAGE, "imagePullPolicy": "Never",
                                         "command": ["sh", "-c", 'sleep 3; if nc -w 3 "$0" "$1" </dev/null 2>/dev/null; then echo open; else echo closed; fi',
                                                     host, str(port)],
                                         "securityContext": {"allowPrivilegeEscalation": False,
                                                             "capabilities": {"drop": ["ALL"]}}}]}})  # fmt: skip
    kube.kubectl(
        "-n",
        NAMESPACE,
        "wait",
        "--for=jsonpath={.status.phase}=Succeeded",
        f"pod/{name}",
        "--timeout=60s",
    )
    answer = (
        kube.kubectl("-n", NAMESPACE, "logs", name).strip().splitlines()[-1]
    )  # after nc's own message
    kube.kubectl("-n", NAMESPACE, "delete", "pod", name, "--wait=false")
    assert answer in ("open", "closed"), answer
    return answer == "open"


def test_network_policies_are_enforced_pod_to_pod(release: str) -> None:
    """kube-router enforces the chart's policies: a job pod reaches nothing (one that may
    use the network, nothing in the cluster), the database only its two clients; any pod
    reaches the proxy (the control that the probe works)."""
    proxy, database = (f"{PREFIX}-proxy", 80), (f"{PREFIX}-mongodb", 27017)
    assert reaches("probe-plain", {"probe": "plain"}, *proxy)
    assert not reaches("probe-plain-db", {"probe": "plain"}, *database)
    job = {"appliance.instance": PREFIX, "appliance.role": "job", "appliance.network": "none"}
    assert not reaches("probe-job", job, *proxy)
    # a job that may use the network still reaches no pod of the cluster (only outside it)
    assert not reaches("probe-job-net", {**job, "appliance.network": "allowed"}, *proxy)
    web = {"app.kubernetes.io/name": "appliance", "app.kubernetes.io/instance": RELEASE,
           "app.kubernetes.io/component": "web"}  # fmt: skip
    assert reaches("probe-web-db", {**web, "probe": "web"}, *database)


def test_uninstall_leaves_only_the_claims(release: str) -> None:
    helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "3m")
    deadline = time.monotonic() + 120
    kinds = "deployments,statefulsets,services,configmaps,secrets,serviceaccounts,roles,rolebindings,networkpolicies,poddisruptionbudgets,jobs,pods"
    while True:
        left = [f"{i['kind']}/{i['metadata']['name']}" for i in kube.kubectl_json("-n", NAMESPACE, "get", kinds)["items"]
                if i["metadata"]["name"] not in ("default", "kube-root-ca.crt")]  # fmt: skip
        if not left or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert left == []
    claims = {
        c["metadata"]["name"] for c in kube.kubectl_json("-n", NAMESPACE, "get", "pvc")["items"]
    }
    assert claims == {f"{PREFIX}-uploads", f"{PREFIX}-jobs"}
