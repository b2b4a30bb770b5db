"""The floor under the submissions target: the web stack alone, doing almost nothing.

    .venv/bin/python -m bench.webfloor --mongodb-uri mongodb://127.0.0.1:27017/ [--seconds 10]

The appliance's web tier is Starlette on hypercorn (a decision of the product, on uvloop,
2 worker processes). This serves the same submission as ``bench/run`` posts (a 1 KB FASTA
in a multipart form, from wrk's 32 connections) with the least such a server can do: parse
the form, write the file into a folder, answer 202 with a small JSON body; and again with
one insert of a small document per submission (what any job service must store), alone
and gathered with the concurrent requests' into one command as the appliance does. Then it
measures the appliance and the previous system the same way (``bench.where``) and prints
the CPU each costs per submission beside these floors: ``--seconds`` of load each.

If the stack's floor alone costs more CPU per submission than a third of the previous
system's whole web tier, no appliance on this stack can reach 3x its rate on the same
cores, however little it does.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pymongo import AsyncMongoClient, MongoClient
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from appliance.store.coalesce import Coalescer
from bench import measure
from bench.systems import ROOT, free_port
from bench.where import observe, report_submissions, submissions

FOLDER = Path(os.environ.get("FLOOR_FOLDER", "/tmp"))
DATABASE = os.environ.get("FLOOR_MONGODB_URI", "")
TOGETHER = os.environ.get("FLOOR_TOGETHER") == "1"
_jobs: Any = None
_inserts: Coalescer[dict[str, Any], None] | None = None


async def _insert_many(documents: list[dict[str, Any]]) -> list[None]:
    await _jobs.insert_many(documents, ordered=False)
    return [None] * len(documents)


async def version(request: Request) -> JSONResponse:
    return JSONResponse({"version": "floor"})


async def submit(request: Request) -> JSONResponse:
    global _jobs
    form = await request.form()
    job_id = os.urandom(8).hex()
    for index, (_, value) in enumerate(form.multi_items()):
        if isinstance(value, UploadFile):
            (FOLDER / f"{job_id}-{index}").write_bytes(await value.read())
    if DATABASE:
        global _inserts
        if _jobs is None:
            _jobs = AsyncMongoClient(DATABASE)["bench_floor"]["jobs"]
            _inserts = Coalescer(_insert_many)
        job = {"_id": job_id, "service": request.path_params["service"], "state": "ACCEPTED",
               "submitted_at": time.time()}  # fmt: skip
        if TOGETHER and _inserts is not None:  # gathered as the appliance gathers its own
            await _inserts.submit(job)
        else:
            await _jobs.insert_one(job)
    return JSONResponse({"id": job_id, "@url": f"/api/jobs/{job_id}"}, status_code=202)


app = Starlette(routes=[Route("/api/version", version),
                        Route("/api/services/{service}/jobs", submit, methods=["POST"])])  # fmt: skip


def serve(port: int) -> None:
    """One worker process (the appliance's web runs one per worker, on SO_REUSEPORT)."""
    import uvloop
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config as HypercornConfig

    config = HypercornConfig()
    config.bind = [f"127.0.0.1:{port}"]
    config.workers = 2  # only turns SO_REUSEPORT on
    config.accesslog = None
    uvloop.run(hypercorn_serve(app, config))  # type: ignore[arg-type]


@dataclass
class Floor:
    """The floor server, two worker processes; ``url`` as a bench system has it."""

    database: str
    together: bool = False
    port: int = 0

    def __post_init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def run(self, seconds: float) -> tuple[dict[str, Any], dict[str, Any]]:
        folder = tempfile.mkdtemp(prefix="appliance-floor.")
        env = dict(os.environ, FLOOR_FOLDER=folder, FLOOR_MONGODB_URI=self.database,
                   FLOOR_TOGETHER="1" if self.together else "", PYTHONPATH=str(ROOT))  # fmt: skip
        argv = [str(ROOT / ".venv" / "bin" / "python"), "-m", "bench.webfloor", "serve",
                "--port", str(self.port)]  # fmt: skip
        workers = [subprocess.Popen(argv, env=env) for _ in range(2)]
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{self.url}/api/version", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            time.sleep(2)
            result: dict[str, Any] = {}

            def load() -> None:
                result.update(measure.submissions_per_s(
                    self, "trivial", connections=32, seconds=seconds, sample=lambda: None))  # type: ignore[arg-type]  # fmt: skip

            seen = observe(load)
        finally:
            for worker in workers:
                worker.terminate()
                worker.wait(10)
        return result, seen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("command", nargs="?", choices=["serve"])
    parser.add_argument("--port", type=int)
    parser.add_argument("--mongodb-uri")
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.port)
        return 0
    if not args.mongodb_uri:
        parser.error("--mongodb-uri is needed")
    floors = (("floor: form, file, 202", "", False),
              ("floor + one insert", args.mongodb_uri, False),
              ("floor + one insert, gathered", args.mongodb_uri, True))  # fmt: skip
    for label, database, together in floors:
        MongoClient(args.mongodb_uri).drop_database("bench_floor")
        result, seen = Floor(database, together).run(args.seconds)
        MongoClient(args.mongodb_uri).drop_database("bench_floor")
        report_submissions(label, result, seen, args.seconds)
    submissions(args.mongodb_uri, args.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
