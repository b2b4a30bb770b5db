"""Each measurement, against one running system (or against the bare runtime, as a floor).

HTTP load comes from wrk (C, so the load generator is not what is measured); single-job
timings from httpx. Nothing here decides pass or fail: it returns numbers.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench.systems import System

FINAL = {"COMPLETED", "FAILED", "ERROR", "INTERRUPTED", "DELETED", "REJECTED"}
BOUNDARY = "benchboundary7d1f"


def fasta_1k() -> bytes:
    """About 1 KB of protein FASTA (four sequences), the same every run."""
    residues = "MKVLAAGIVGLLLAQSTRGHEDPWYCFN"
    records = []
    for n in range(4):
        sequence = "".join(residues[(i * 7 + n * 3) % len(residues)] for i in range(230))
        records.append(f">seq{n} benchmark\n{sequence}\n")
    return "".join(records).encode()


def multipart(fields: dict[str, bytes], filename: str = "input.fa") -> tuple[bytes, str]:
    parts = []
    for name, value in fields.items():
        disposition = f'form-data; name="{name}"; filename="{filename}"'
        parts.append(f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n"
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + value + b"\r\n")  # fmt: skip
    body = b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()
    return body, f"multipart/form-data; boundary={BOUNDARY}"


def lua_string(data: bytes) -> str:
    out = []
    for byte in data:
        char = chr(byte)
        if char in '"\\' or not (32 <= byte < 127):
            out.append(f"\\{byte:03d}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


# -- HTTP load with wrk ----------------------------------------------------------------


def wrk(
    url: str, script: str, *, connections: int, seconds: float, threads: int = 2
) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{round(seconds)}s",
        "--latency",
        "-s",
        handle.name,
        url,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    out = done.stdout + done.stderr
    Path(handle.name).unlink()
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    return {
        "requests_per_s": float(rate.group(1)) if rate else 0.0,
        "requests": int(total.group(1)) if total else 0,
        "errors": (int(bad.group(1)) if bad else 0)
        + (sum(int(g) for g in sockets.groups()) if sockets else 0),
        "p99_ms": float(p99.group(1)) * scale[p99.group(2)] if p99 else None,
        "raw": out,
    }


def submissions_per_s(system: System, service: str, *, connections: int, seconds: float,
                      sample: Callable[[], None]) -> dict[str, Any]:  # fmt: skip
    body, content_type = multipart({"input": fasta_1k()})
    script = (f'wrk.method = "POST"\nwrk.body = {lua_string(body)}\n'
              f'wrk.headers["Content-Type"] = "{content_type}"\n')  # fmt: skip
    result: dict[str, Any] = while_sampling(
        sample, lambda: wrk(f"{system.url}/api/services/{service}/jobs", script,
                            connections=connections, seconds=seconds))  # fmt: skip
    return result


def polls_per_s(
    system: System, job_paths: list[str], *, connections: int, seconds: float
) -> dict[str, Any]:
    paths = ", ".join(f'"{p}"' for p in job_paths)
    script = (f"local paths = {{{paths}}}\nlocal i = 0\n"
              "request = function()\n  i = i % #paths + 1\n"
              '  return wrk.format("GET", paths[i])\nend\n')  # fmt: skip
    return wrk(system.url + job_paths[0], script, connections=connections, seconds=seconds)


def while_sampling(sample: Callable[[], None], work: Callable[[], Any], every: float = 0.25) -> Any:
    """Run ``work`` while calling ``sample`` every ``every`` seconds."""
    done = threading.Event()

    def loop() -> None:
        while not done.wait(every):
            sample()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        return work()
    finally:
        done.set()
        thread.join()


# -- single jobs ------------------------------------------------------------------------


def submit(client: httpx.Client, system: System, service: str, files: dict[str, bytes] | None = None,
           data: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    response = client.post(
        f"{system.url}/api/services/{service}/jobs",
        files={k: ("input.fa", v, "application/octet-stream") for k, v in (files or {}).items()},
        data=data or {},
    )
    if response.status_code != 202:
        raise RuntimeError(
            f"{system.name}: submitting to {service}: {response.status_code} {response.text}"
        )
    job: dict[str, Any] = response.json()
    return job


def wait_final(client: httpx.Client, system: System, job: dict[str, Any], *, poll: float,
               timeout: float = 300) -> dict[str, Any]:  # fmt: skip
    deadline = time.monotonic() + timeout
    url = system.job_url(job)
    while time.monotonic() < deadline:
        current: dict[str, Any] = client.get(url).json()
        if current.get("finished"):
            return current
        time.sleep(poll)
    raise RuntimeError(f"{system.name}: job {job['id']} did not finish in {timeout} s")


def job_latencies(system: System, service: str, runs: int, *, poll: float = 0.005,
                  files: dict[str, bytes] | None = None) -> list[float]:  # fmt: skip
    """Seconds from submission to COMPLETED as a client polling every ``poll`` s sees it."""
    results = []
    with httpx.Client(timeout=30) as client:
        for _ in range(runs):
            started = time.perf_counter()
            job = submit(client, system, service, files)
            final = wait_final(client, system, job, poll=poll)
            elapsed = time.perf_counter() - started
            if final["status"] != "COMPLETED":
                raise RuntimeError(f"{system.name}: {service} job ended {final['status']}")
            results.append(elapsed)
    return results


# What the docker runner adds to each container (runners/docker.yaml's limits): the same
# isolation given to a bare ``docker run``, to show what the isolation itself costs.
ISOLATION = ["--init", "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true",
             "--read-only", "--tmpfs", "/tmp:rw,size=64m,mode=1777", "--user", "1000:1000",
             "--memory", "1g", "--memory-swap", "1g", "--cpus", "1", "--pids-limit", "256"]  # fmt: skip


def docker_run_argv(image: str, argv: list[str], workdir: Path, isolated: bool) -> list[str]:
    return ["docker", "run", "--rm", "--network", "none", *(ISOLATION if isolated else []),
            "-v", f"{workdir}:/job", "-w", "/job", image, *argv]  # fmt: skip


def bare_docker_run(image: str, argv: list[str], runs: int, workdir: Path,
                    isolated: bool = False) -> list[float]:  # fmt: skip
    """The floor: ``docker run --rm`` of the same image and command, timed from outside."""
    results = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(
            docker_run_argv(image, argv, workdir, isolated), check=True, capture_output=True
        )
        results.append(time.perf_counter() - started)
    return results


def bare_process(argv: list[str], runs: int, workdir: Path) -> list[float]:
    """The local runner's floor: starting the command as a subprocess."""
    results = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, cwd=workdir, check=True, capture_output=True)
        results.append(time.perf_counter() - started)
    return results


# -- many jobs at once -------------------------------------------------------------------


def batch(
    system: System,
    service: str,
    jobs: int,
    *,
    clients: int = 32,
    sample: Callable[[], None],
    poll: float = 0.05,
) -> dict[str, Any]:
    """Submit ``jobs`` jobs at once; seconds until every one is COMPLETED, as a client
    sees it through the API.

    The client GETs the oldest job not yet seen final every ``poll`` s (jobs end about in
    the order they were submitted, so that is the one to wait for). It does not poll the
    filtered job list: on a database server without secondary indexes (FerretDB) each
    list reads every job, and polling it ten times a second cost the server 7 of the
    batch's 35 CPU-seconds on two cores, slowing the very jobs being timed.
    """
    fasta = fasta_1k()
    with httpx.Client(timeout=60) as client:

        def one(_: int) -> dict[str, Any]:
            return submit(client, system, service, {"input": fasta})

        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            submitted_jobs = list(pool.map(one, range(jobs)))
        submitted = time.perf_counter() - started
        deadline = time.monotonic() + 900
        waiting = list(submitted_jobs)
        while waiting:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{system.name}: {len(waiting)} of {jobs} jobs not final in 900 s"
                )
            sample()
            try:  # an answer that times out (the previous system's workers do) is "not yet"
                current = client.get(system.job_url(waiting[0])).json()
            except (httpx.HTTPError, ValueError):
                time.sleep(poll)
                continue
            if current.get("finished"):
                if current.get("status") != "COMPLETED":
                    raise RuntimeError(
                        f"{system.name}: a {service} job ended {current.get('status')}: "
                        f"{json.dumps(current)[:500]}"
                    )
                waiting.pop(0)
                continue  # the next one may be final already
            time.sleep(poll)
    return {
        "seconds": time.perf_counter() - started,
        "submitted_in": submitted,
        "jobs": len({str(j["id"]) for j in submitted_jobs}),
    }


def bare_batch(image: str, argv: list[str], jobs: int, parallel: int, workdir: Path,
               isolated: bool = False) -> float:  # fmt: skip
    started = time.perf_counter()

    def one(_: int) -> None:
        subprocess.run(
            docker_run_argv(image, argv, workdir, isolated), check=True, capture_output=True
        )

    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(one, range(jobs)))
    return time.perf_counter() - started


def cancel_times(system: System, service: str, runs: int, *, seconds: int, poll: float = 0.02,
                 give_up: float = 10) -> tuple[list[float], list[str]]:  # fmt: skip
    """Seconds from DELETE of a RUNNING job to a final state seen by a polling client;
    and the states of the jobs still not final after ``give_up`` seconds. The jobs sleep
    ``seconds`` if nothing stops them."""
    results, stuck = [], []
    with httpx.Client(timeout=30) as client:
        for _ in range(runs):
            job = submit(client, system, service, data={"seconds": str(seconds)})
            url = system.job_url(job)
            deadline = time.monotonic() + 120
            while client.get(url).json()["status"] != "RUNNING":
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{system.name}: {service} job never ran")
                time.sleep(0.05)
            time.sleep(0.3)  # properly under way
            started = time.perf_counter()
            response = client.delete(url)
            if response.status_code not in (200, 202, 204):
                raise RuntimeError(f"{system.name}: cancel answered {response.status_code}")
            while True:
                current = client.get(url).json()
                if current["status"] in FINAL:
                    results.append(time.perf_counter() - started)
                    break
                if time.perf_counter() - started > give_up:
                    stuck.append(str(current["status"]))
                    break
                time.sleep(poll)
    return results, stuck


def request_times(urls: list[str], runs: int) -> list[float]:
    """Sequential GETs (one client), seconds each; every answer must be 200."""
    results = []
    with httpx.Client(timeout=120) as client:
        for i in range(runs):
            url = urls[i % len(urls)]
            started = time.perf_counter()
            response = client.get(url)
            results.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(f"GET {url}: {response.status_code} {response.text[:200]}")
    return results


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
