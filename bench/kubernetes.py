"""Trivial jobs on the kubernetes runner against bare Jobs, on the same cluster.

    eval "$(scripts/k8s-up)"
    .venv/bin/python -m bench.kubernetes --mongodb-uri URI [--runs 10] [--batch 20]

The floor: a batch/v1 Job of the same image and command (``true``), created through the API
and followed with a watch on its pod until its container has terminated, the earliest any
client can know the job ended (``kubectl wait --for=condition=Complete`` is later still: the
Job's condition follows the pod, and kubectl polls). The appliance: its scheduler with the
kubernetes backend, a job submitted to the database with a wake-up, the database polled every
50 ms until COMPLETED. ``--runs`` one after the other (submit -> ended), then ``--batch`` at
once (until all ended). A measurement, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from lightkube import AsyncClient
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Pod
from lightkube.types import CascadeType

from appliance.catalogue import load_catalogue
from appliance.forms import validate
from appliance.messaging import WakeSender
from appliance.planning import Planner
from appliance.runners.config import create_backend
from appliance.scheduler.core import Scheduler
from appliance.store import Store
from appliance.submission import record_job
from bench.slurm import FINAL, line
from tests import kube
from tests.helpers import TEST_IMAGE, build_test_image, make_settings

SERVICE = f"""\
appliance-version: 1
name: Trivial
image: {TEST_IMAGE}
runner: kubernetes
resources: {{time-limit: 10m}}
command: "true"
"""


def bare_job(name: str) -> Job:
    security = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]}}  # fmt: skip
    job = Job.from_dict({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "labels": {"bench": "floor"}},
        "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": 60, "template": {
            "metadata": {"labels": {"bench": "floor"}},
            "spec": {"restartPolicy": "Never", "automountServiceAccountToken": False,
                     "securityContext": {"runAsNonRoot": True, "runAsUser": 1000,
                                         "seccompProfile": {"type": "RuntimeDefault"}},
                     "containers": [{"name": "step", "image": TEST_IMAGE, "command": ["true"],
                                     "imagePullPolicy": "Never", "securityContext": security}]}}},
    })  # fmt: skip
    assert isinstance(job, Job)
    return job


async def floor(runs: int, batch: int) -> tuple[list[float], float]:
    client = AsyncClient(namespace=kube.NAMESPACE)
    ended: dict[str, float] = {}

    async def watch() -> None:
        async for _, pod in client.watch(Pod, namespace=kube.NAMESPACE, labels={"bench": "floor"}):
            statuses = (pod.status.containerStatuses if pod.status else None) or []
            job = (pod.metadata.labels or {}).get("job-name", "") if pod.metadata else ""
            if statuses and statuses[0].state and statuses[0].state.terminated and job not in ended:
                ended[job] = time.time()

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(1)
    stamp = int(time.time())
    times = []
    try:
        for index in range(runs):
            name = f"floor-{stamp}-{index}"
            began = time.time()
            await client.create(bare_job(name))
            while name not in ended:
                await asyncio.sleep(0.01)
            times.append(ended[name] - began)
        names = [f"floor-{stamp}-b{index}" for index in range(batch)]
        began = time.time()
        for name in names:
            await client.create(bare_job(name))
        while not all(name in ended for name in names):
            await asyncio.sleep(0.01)
        throughput = max(ended[n] for n in names) - began
    finally:
        watcher.cancel()
        for name in list(ended):
            await client.delete(Job, name, cascade=CascadeType.BACKGROUND)
        await client.close()
    return times, throughput


async def appliance(uri: str, runs: int, batch: int) -> tuple[list[float], float]:
    work = Path(tempfile.mkdtemp(prefix="bench-k8s."))
    settings = make_settings(work, uri, f"bench_k8s_{int(time.time())}", sweep_seconds=60)
    claims = kube.bind_claims(settings.instance, {"jobs": settings.jobs_dir,
                                                  "uploads": settings.uploads_dir})  # fmt: skip
    (settings.runners_dir / "kubernetes.yaml").write_text(
        f"backend: kubernetes\noptions: {{namespace: {kube.NAMESPACE}, image_pull_policy: Never, "
        f"claims: {{jobs: {claims['jobs']}, uploads: {claims['uploads']}}}}}\n"
    )
    (settings.services_dir / "trivial.service.yaml").write_text(SERVICE)
    catalogue = load_catalogue(settings)
    assert catalogue.errors == [], catalogue.errors
    store = Store(uri, settings.mongodb_database)
    backend = create_backend(catalogue.runners["kubernetes"], settings)
    scheduler = Scheduler(settings, store, catalogue, {"kubernetes": backend})
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    sender = WakeSender(settings.scheduler_address)
    planner = Planner(catalogue.runners, {})
    service = catalogue.services["trivial"]

    async def submit() -> str:
        job = await record_job(store, planner, service, await validate(service, {}))
        await sender.notify("submitted", job["_id"], runner="kubernetes")
        return str(job["_id"])

    async def ended(job_id: str) -> None:
        while (await store.get_job(job_id) or {}).get("state") not in FINAL:
            await asyncio.sleep(0.05)

    times = []
    try:
        await asyncio.sleep(1)
        for _ in range(runs):
            began = time.time()
            await ended(await submit())
            times.append(time.time() - began)
        began = time.time()
        ids = [await submit() for _ in range(batch)]
        for job_id in ids:
            await ended(job_id)
        throughput = time.time() - began
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
        await backend.close()
        sender.close()
        await store.drop_database()
        await store.close()
        kube.kubectl("-n", kube.NAMESPACE, "delete", "jobs", "-l",
                     f"appliance.instance={settings.instance}", "--wait=false", check=False)  # fmt: skip
        kube.release_claims(claims)
    return times, throughput


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mongodb-uri", default="mongodb://127.0.0.1:27017/")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--batch", type=int, default=20)
    args = parser.parse_args()
    kube.cluster()
    build_test_image(Path(tempfile.mkdtemp()))
    kube.import_image(TEST_IMAGE)
    kube.ensure_namespace()
    bare, bare_batch = await floor(args.runs, args.batch)
    ours, our_batch = await appliance(args.mongodb_uri, args.runs, args.batch)
    print(f"{args.runs} trivial jobs one after the other, then {args.batch} at once:")
    print(line("bare Job: create -> ended", bare))
    print(line("appliance: submit -> COMPLETED", ours))
    print(f"{args.batch} at once: bare Jobs {bare_batch:.1f} s; appliance {our_batch:.1f} s "
          f"({bare_batch / our_batch:.0%} of the floor's speed)")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
