"""What a reuse hit costs, beside a job GET and a submission that runs (issue 39).

    .venv/bin/python -m bench.reuse_hit --mongodb-uri mongodb://127.0.0.1:27017/ [--runs 30]

Starts the real pieces (nginx, ``appliance web``, ``appliance scheduler`` with the docker
runner) with the tests' UPPER service plus ``reuse: true``, runs one job to its end, then,
on one kept connection through the proxy: GETs of a job, a burst of submissions of the
same input (hits), hits 1.1 s apart (each reads what the images are again),
submissions that refuse reuse 1.1 s apart (``_reuse=false``: the same form, jobs that
run; each waited for, so that no container starts beside a POST), and GETs 1.1 s apart. Prints medians (and 90th
percentiles) of each, the cost a hit adds to a submission, how many hits the first GET
after their POST already found COMPLETED, and how long until a hit's outputs were its
own (copied). Idle time changes every figure on a shared machine, so each is taken both
in a burst and 1.1 s apart. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from tests.web.stack import FASTA, UPPER, running_stack

SERVICE = UPPER + "reuse: true\n"


def post(client: httpx.Client, data: dict[str, str]) -> tuple[float, dict[str, object]]:
    started = time.perf_counter()
    answer = client.post("/api/services/upper-again/jobs", data=data,
                         files={"input": ("seqs.fa", FASTA.encode())})  # fmt: skip
    took = time.perf_counter() - started
    assert answer.status_code == 202, answer.text
    return took, dict(answer.json())


def wait_done(client: httpx.Client, job_id: str) -> dict[str, object]:
    while True:
        job = dict(client.get(f"/api/jobs/{job_id}").json())
        if job["finished"]:
            return job
        time.sleep(0.05)


def own_files(client: httpx.Client, job_id: str) -> bool:
    """Whether the job's files are served from its own directory (copied)."""
    files = client.get(f"/api/jobs/{job_id}/files").json()["files"]
    return bool(files) and all(f"/{job_id}/" in f["@content"] for f in files)


def quantiles(values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    return f"{statistics.median(ms):7.2f} ms median, {ms[int(len(ms) * 0.9) - 1]:7.2f} p90"


def measure(proxy: str, runs: int) -> None:
    hits, spaced, plain, gets, spaced_gets, copied_after = [], [], [], [], [], []
    done_at_first_get = 0
    with httpx.Client(base_url=proxy, timeout=60) as client:
        _, first = post(client, {})
        assert wait_done(client, str(first["id"]))["status"] == "COMPLETED"
        time.sleep(6)  # one image check round: the scheduler's publication is fresh
        for _ in range(runs * 5):
            started = time.perf_counter()
            client.get(f"/api/jobs/{first['id']}").raise_for_status()
            gets.append(time.perf_counter() - started)
        for _ in range(runs):  # a burst of hits
            took, hit = post(client, {})
            hits.append(took)
            seen = dict(client.get(f"/api/jobs/{hit['id']}").json())
            done_at_first_get += seen.get("status") == "COMPLETED" and "reusedFrom" in seen
        for _ in range(runs):  # hits far apart (what the images are is read again)
            time.sleep(1.1)
            took, hit = post(client, {})
            posted = time.perf_counter()
            spaced.append(took)
            while not own_files(client, str(hit["id"])):
                time.sleep(0.01)
            copied_after.append(time.perf_counter() - posted)
        for _ in range(runs):  # as far apart, each after the last one's end
            time.sleep(1.1)
            took, ran = post(client, {"_reuse": "false"})
            plain.append(took)
            wait_done(client, str(ran["id"]))  # one at a time: no container runs beside a POST
        for _ in range(runs):
            time.sleep(1.1)
            started = time.perf_counter()
            client.get(f"/api/jobs/{first['id']}").raise_for_status()
            spaced_gets.append(time.perf_counter() - started)
    print(f"runs: {runs}, through the proxy, one kept connection")
    print(f"job GET, in a burst                {quantiles(gets)}")
    print(f"job GET, 1.1 s after the last      {quantiles(spaced_gets)}")
    print(f"hit, in a burst                    {quantiles(hits)}")
    print(f"hit, 1.1 s after the last          {quantiles(spaced)}")
    print(f"submission that runs, 1.1 s after  {quantiles(plain)}")
    extra = statistics.median(spaced) - statistics.median(plain)
    print(f"a hit's cost over a submission, both 1.1 s apart: {extra * 1000:+.2f} ms "
          f"({extra / statistics.median(spaced_gets):+.2f} job GETs as far apart)")  # fmt: skip
    print(f"hits COMPLETED at the first GET after their POST: {done_at_first_get}/{runs}")
    print(f"a hit's outputs its own (copied) after: {quantiles(copied_after)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mongodb-uri", required=True)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root, running_stack(
        Path(root), args.mongodb_uri, f"bench_reuse_{int(time.time())}",
        services={"upper-again": SERVICE},
    ) as stack:  # fmt: skip
        measure(stack.proxy, args.runs)


if __name__ == "__main__":
    main()
