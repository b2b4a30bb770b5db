"""The kubernetes backend and the scheduler against the real single-node cluster that
scripts/test starts, and a real MongoDB: what a job pod is allowed, how jobs end (memory,
time limit, an image that is not there), restarts and leftovers."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance import jobdirs
from appliance.catalogue import Catalogue, load_catalogue
from appliance.plan import Plan
from appliance.runners.base import RunState, StepRun
from appliance.runners.config import create_backend
from appliance.scheduler.core import Scheduler
from appliance.settings import Settings
from appliance.store import Store
from tests import kube
from tests.helpers import (
    TEST_IMAGE,
    build_test_image,
    make_settings,
    settings_env,
    wait_final,
    wait_for,
    wait_state,
)
from tests.test_docker_backend import SERVICES as DOCKER_SERVICES
from tests.test_docker_backend import input_file, submit

pytestmark = pytest.mark.anyio

SERVICES = {
    "inspect": f"""\
appliance-version: 1
name: Inspectable
image: {TEST_IMAGE}
resources: {{memory: 64M, cpus: 0.5, time-limit: 1h}}
parameters:
  input: {{name: Input, type: file}}
  seconds: {{name: Seconds, type: integer, default: 0}}
command: sh -c 'cat inputs/input > copy.txt; id -u > uid.txt; echo more >> inputs/input; sleep "$0"'
args:
  seconds: {{arg: "$(value)"}}
outputs:
  copy: {{path: copy.txt, media-type: text/plain}}
""",
    "slow": f"""\
appliance-version: 1
name: Too slow
image: {TEST_IMAGE}
resources: {{time-limit: 3s}}
command: sleep 60
""",
    "huge": f"""\
appliance-version: 1
name: Needs more than any node has
image: {TEST_IMAGE}
runner: kubernetes
resources: {{cpus: 64}}
command: "true"
""",
    "huge-strict": f"""\
appliance-version: 1
name: Needs more than any node has, on a runner that waits 3 s
image: {TEST_IMAGE}
runner: strict
resources: {{cpus: 64}}
command: "true"
""",
    # the same as the docker backend's tests
    **{name: DOCKER_SERVICES[name] for name in ("once", "hungry", "noimage")},
}


@pytest.fixture
def settings(tmp_path: Path, mongodb_uri: str, database_name: str) -> Iterator[Settings]:
    kube.cluster()
    build_test_image(tmp_path)
    kube.import_image(TEST_IMAGE)
    settings = make_settings(tmp_path, mongodb_uri, database_name)
    kube.ensure_namespace()
    claims = kube.bind_claims(settings.instance, {"jobs": settings.jobs_dir,
                                                  "uploads": settings.uploads_dir})  # fmt: skip
    (settings.runners_dir / "kubernetes.yaml").write_text(
        "backend: kubernetes\nlimits: {user: '1000:1000', network: false}\n"
        f"options: {{namespace: {kube.NAMESPACE}, image_pull_policy: Never, stop_grace: 3,\n"
        f"  claims: {{jobs: {claims['jobs']}, uploads: {claims['uploads']}}}}}\n"
    )
    (settings.runners_dir / "strict.yaml").write_text(
        (settings.runners_dir / "kubernetes.yaml")
        .read_text()
        .replace("stop_grace: 3,", "stop_grace: 3, unschedulable_grace: 3,")
    )
    for name, text in SERVICES.items():
        if "runner:" not in text:
            text = text.replace("name:", "runner: kubernetes\nname:", 1)
        (settings.services_dir / f"{name}.service.yaml").write_text(text)
    yield settings
    kube.kubectl("-n", kube.NAMESPACE, "delete", "jobs", "-l",
                 f"appliance.instance={settings.instance}", "--wait=false", check=False)  # fmt: skip
    kube.release_claims(claims)


@pytest.fixture
async def catalogue(settings: Settings) -> Catalogue:
    catalogue = load_catalogue(settings)
    assert catalogue.errors == []
    return catalogue


@pytest.fixture
async def scheduler(
    settings: Settings, store: Store, catalogue: Catalogue
) -> AsyncIterator[Scheduler]:
    backends = {
        rid: create_backend(catalogue.runners[rid], settings) for rid in ("kubernetes", "strict")
    }
    scheduler = Scheduler(settings, store, catalogue, dict(backends))
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    yield scheduler
    stop.set()
    await asyncio.wait_for(task, 60)
    for backend in backends.values():
        await backend.close()


def pods_of(instance: str) -> list[dict[str, Any]]:
    listed = kube.kubectl_json(
        "-n", kube.NAMESPACE, "get", "pods", "-l", f"appliance.instance={instance}"
    )
    return list(listed["items"])


async def test_the_job_pod_is_locked_down(settings: Settings, catalogue: Catalogue, store: Store,
                                          scheduler: Scheduler) -> None:  # fmt: skip
    job_id = await submit(
        store, catalogue, "inspect", {"input": [input_file(settings)], "seconds": ["5"]}
    )
    # Read while it runs: once the job is over, housekeeping may delete its Job at any time.
    await wait_state(store, job_id, "RUNNING", timeout=90)
    (pod,) = pods_of(settings.instance)
    (kjob,) = kube.kubectl_json("-n", kube.NAMESPACE, "get", "jobs", "-l",
                                f"appliance.job={job_id}")["items"]  # fmt: skip
    job = await wait_final(store, job_id, timeout=90)
    work = settings.jobs_dir / job_id
    assert job["state"] == "COMPLETED", (job, (work / "stderr").read_text())
    assert (work / "copy.txt").read_text() == "the input\n"
    assert (work / "uid.txt").read_text() == "1000\n"
    assert "can't create inputs/input" in (work / "stderr").read_text()  # the input is read-only
    assert (settings.uploads_dir / "upload1").read_text() == "the input\n"
    spec = pod["spec"]
    assert spec["automountServiceAccountToken"] is False and spec["enableServiceLinks"] is False
    assert spec["restartPolicy"] == "Never"
    assert spec["securityContext"] == {"runAsUser": 1000, "runAsGroup": 1000, "runAsNonRoot": True,
                                       "seccompProfile": {"type": "RuntimeDefault"}}  # fmt: skip
    (container,) = spec["containers"]
    assert container["securityContext"] == {"allowPrivilegeEscalation": False,
                                             "readOnlyRootFilesystem": True,
                                             "capabilities": {"drop": ["ALL"]}}  # fmt: skip
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "64Mi"},
                                      "limits": {"cpu": "500m", "memory": "64Mi"}}  # fmt: skip
    assert not any("serviceaccount" in m["mountPath"] for m in container["volumeMounts"])
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["USER"] == "appliance" and env["HOME"] == "/tmp"  # a name for uid 1000
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/job"]["subPath"] == job_id and not mounts["/job"].get("readOnly")
    assert mounts["/job/inputs/input"]["readOnly"] is True
    assert (
        pod["metadata"]["labels"]["appliance.network"] == "none"
    )  # what the chart's policy denies
    assert kjob["spec"]["backoffLimit"] == 0 and kjob["spec"]["activeDeadlineSeconds"] == 3600
    assert kjob["spec"]["ttlSecondsAfterFinished"] == 3600


async def test_out_of_memory_fails_with_a_reason(catalogue: Catalogue, store: Store,
                                                 scheduler: Scheduler) -> None:  # fmt: skip
    job = await wait_final(store, await submit(store, catalogue, "hungry", {}), timeout=90)
    assert job["state"] == "FAILED", job
    assert "memory" in str(job["error"])


async def test_the_time_limit_stops_the_job(catalogue: Catalogue, store: Store,
                                            scheduler: Scheduler) -> None:  # fmt: skip
    job = await wait_final(store, await submit(store, catalogue, "slow", {}), timeout=90)
    assert job["state"] == "FAILED", job
    assert "time limit" in str(job["error"])


async def test_a_missing_image_is_an_error_with_a_reason(catalogue: Catalogue, store: Store,
                                                         scheduler: Scheduler) -> None:  # fmt: skip
    job = await wait_final(store, await submit(store, catalogue, "noimage", {}), timeout=90)
    assert job["state"] == "ERROR", job
    assert "appliance-test/does-not-exist:0" in str(job["error"]), job
    assert "ErrImageNeverPull" in str(job["error"]), job


async def test_a_pod_no_node_can_take_waits_queued_and_can_be_cancelled(
    catalogue: Catalogue, store: Store, scheduler: Scheduler
) -> None:
    job_id = await submit(store, catalogue, "huge", {})
    await wait_state(store, job_id, "QUEUED", timeout=60)
    await asyncio.sleep(2)
    assert (await store.get_job(job_id) or {})["state"] == "QUEUED"
    await store.request_cancel(job_id)
    scheduler.poke.set()
    job = await wait_final(store, job_id, timeout=30)
    assert job["state"] == "INTERRUPTED", job


async def test_a_pod_no_node_can_take_ends_in_error_after_the_grace(
    catalogue: Catalogue, store: Store, scheduler: Scheduler
) -> None:
    job = await wait_final(store, await submit(store, catalogue, "huge-strict", {}), timeout=60)
    assert job["state"] == "ERROR", job
    assert "no node can run it" in str(job["error"]) and "cpu" in str(job["error"]), job


def scheduler_process(settings: Settings) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "appliance", "scheduler"], env=settings_env(settings)
    )


async def test_deleted_pod_never_reruns(
    settings: Settings, store: Store, catalogue: Catalogue, scheduler: Scheduler
) -> None:
    """A pod deleted behind the scheduler's back. (Short names: the test's folder name
    makes the instance and its volumes' names.) The Job must not make a second pod (the step may have done its work): it fails,
    and the job ends within lost_after with the reason."""
    job_id = await submit(store, catalogue, "once", {"seconds": ["60"]})
    await wait_state(store, job_id, "RUNNING", timeout=90)
    [pod] = pods_of(settings.instance)
    kube.kubectl("-n", kube.NAMESPACE, "delete", "pod", pod["metadata"]["name"], "--wait=false")
    deleted = time.monotonic()
    job = await wait_final(store, job_id, timeout=settings.lost_after)
    assert time.monotonic() - deleted < settings.lost_after
    assert job["state"] in ("FAILED", "ERROR") and job["error"], job
    assert (settings.jobs_dir / job_id / "runs.txt").read_text() == "run\n"  # one pod ran
    assert (
        len({p["metadata"]["uid"] for p in pods_of(settings.instance)} - {pod["metadata"]["uid"]})
        == 0
    )


async def test_deleted_job_ends_with_reason(
    settings: Settings, store: Store, catalogue: Catalogue, scheduler: Scheduler
) -> None:
    """A Kubernetes Job deleted behind the scheduler's back, soon after it was made: the
    watch reports the deletion, and a Job once seen gets no grace for "just made" (which
    once held its end back to a minute after it was made)."""
    job_id = await submit(store, catalogue, "once", {"seconds": ["60"]})
    job = await wait_state(store, job_id, "RUNNING", timeout=90)
    name = str(job["handle"]).split(":")[0]
    kube.kubectl("-n", kube.NAMESPACE, "delete", "job", name, "--wait=false")
    deleted = time.monotonic()
    job = await wait_final(store, job_id, timeout=settings.lost_after)
    assert time.monotonic() - deleted < 20  # the watch's word, not the job's own end
    assert job["state"] == "ERROR" and "Kubernetes has no Job" in str(job["error"]), job
    assert (settings.jobs_dir / job_id / "runs.txt").read_text() == "run\n"


async def test_kill_9_and_restart_every_job_runs_exactly_once(
    settings: Settings, catalogue: Catalogue, store: Store
) -> None:
    ids = [await submit(store, catalogue, "once", {"seconds": ["4"]}) for _ in range(8)]
    process = scheduler_process(settings)
    try:
        for job_id in ids:
            await wait_state(store, job_id, "RUNNING", timeout=90)
        process.kill()  # SIGKILL while every job runs
        process.wait(10)
        process = scheduler_process(settings)
        jobs = [await wait_final(store, job_id, timeout=120) for job_id in ids]
    finally:
        process.terminate()
        process.wait(30)
    assert [j["state"] for j in jobs] == ["COMPLETED"] * len(ids)
    for job_id in ids:
        assert (settings.jobs_dir / job_id / "runs.txt").read_text() == "run\n"
    per_job: dict[str, int] = {}
    for pod in pods_of(settings.instance):
        job = pod["metadata"]["labels"]["appliance.job"]
        per_job[job] = per_job.get(job, 0) + 1
    assert per_job == dict.fromkeys(ids, 1)


async def test_leftover_jobs_are_removed(settings: Settings, catalogue: Catalogue, store: Store,
                                         scheduler: Scheduler) -> None:  # fmt: skip
    job_id = await submit(store, catalogue, "once", {"seconds": ["0"]})
    assert (await wait_final(store, job_id, timeout=90))["state"] == "COMPLETED"
    kube.apply({"apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": f"{settings.instance}-stray", "namespace": kube.NAMESPACE,
                             "labels": {"appliance.instance": settings.instance,
                                        "appliance.job": "nojobatall0000"}},
                "spec": {"backoffLimit": 0, "template": {"spec": {
                    "restartPolicy": "Never", "automountServiceAccountToken": False,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 1000,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{"name": "c", "image": TEST_IMAGE, "imagePullPolicy": "Never",
                                    "command": ["sleep", "60"], "securityContext": {
                                        "allowPrivilegeEscalation": False,
                                        "capabilities": {"drop": ["ALL"]}}}]}}}})  # fmt: skip

    async def gone() -> bool:
        listed = await asyncio.to_thread(kube.kubectl_json, "-n", kube.NAMESPACE, "get", "jobs",
                                         "-l", "appliance.job=nojobatall0000")  # fmt: skip
        return not listed["items"]

    await wait_for(gone, timeout=60)


async def test_a_repeated_submit_takes_the_job_already_there(
    settings: Settings, catalogue: Catalogue, store: Store
) -> None:
    """What a scheduler restarted between creating a Job and recording its handle does."""
    job_id = await submit(store, catalogue, "once", {"seconds": ["2"]})
    job = await store.get_job(job_id)
    assert job is not None
    run = StepRun(job_id, Plan.from_json(job["plan"]), service_id="once")
    (settings.jobs_dir / job_id).mkdir(exist_ok=True)
    jobdirs.prepare_step(settings.jobs_dir / job_id, run.plan, 0)
    first = create_backend(catalogue.runners["kubernetes"], settings)
    second = create_backend(catalogue.runners["kubernetes"], settings)
    try:
        handles = [await first.submit(run), await second.submit(run)]
        assert handles[0] == handles[1]

        async def ended() -> bool:
            status = (await second.status(handles[:1]))[handles[0]]
            return status.state is RunState.FINISHED

        await wait_for(ended, timeout=60)
    finally:
        await first.close()
        await second.close()
    assert (settings.jobs_dir / job_id / "runs.txt").read_text() == "run\n"
    assert (
        len(
            kube.kubectl_json("-n", kube.NAMESPACE, "get", "jobs", "-l", f"appliance.job={job_id}")[
                "items"
            ]
        )
        == 1
    )
