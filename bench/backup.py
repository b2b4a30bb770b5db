"""How long a backup and a restore of ``--jobs`` stored jobs take, how big they are, and
how long the migration of that many 0.1.0 records takes.

    .venv/bin/python -m bench.backup --mongodb-uri URI [--jobs 10000] [--rounds 3]

Stores ``--jobs`` finished jobs (each a copy of a real clustalo job's record,
bench/data/job-record.json, with its directory as the bundle leaves it: the alignment,
the log, stdout, stderr, the exit record) and as many uploads, then times the parts of
``scripts/backup`` and ``scripts/restore`` on them: ``dump`` (appliance dump-database)
and ``tar`` of the two folders as scripts/backup runs it; ``load`` into an empty
database and ``untar``. Beside each, its floor: reading every record without writing
anything, and ``tar`` without compression. Then stores the same jobs as 0.1.0 did
(format 1) and times the migration the scheduler runs at its start. Medians of
``--rounds``. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bson import json_util
from pymongo import MongoClient

from appliance.store import Store, new_id
from appliance.store.dumps import dump, load
from appliance.units import format_size

TEMPLATE = Path(__file__).resolve().parent / "data" / "job-record.json"
ALIGNMENT = "CLUSTAL O(1.2.4) multiple sequence alignment\n\n" + "".join(
    f"seq{i}      MVLSPADKTNVKAAWGKVGAHAGEYGAEALERMFLSFPTTKTYFPHF-DLSHGSAQVKGHGKKV\n"
    for i in range(16)
)


def _quiet(_: str) -> None:
    return None


def fill(uri: str, database: str, folder: Path, count: int, *, old: bool = False) -> None:
    """``count`` finished jobs and uploads, in the database and in ``folder``."""
    template = json_util.loads(TEMPLATE.read_text())
    db: Any = MongoClient(uri)[database]
    db.jobs.drop()
    db.files.drop()
    jobs, files = [], []
    for _ in range(count):
        job_id, file_id = new_id(), new_id()
        record = {**template, "_id": job_id, "parameters": {"input": file_id, "iterations": "0"}}
        if old:  # as 0.1.0 stored it: no lease fields, no format
            for key in ("lease_owner", "lease_expires", "lease_gen", "claims", "format"):
                record.pop(key, None)
        jobs.append(record)
        files.append({"_id": file_id, "path": file_id, "label": "proteins.fa",
                      "media_type": "application/fasta", "created_at": record["submitted_at"]})  # fmt: skip
        if not old:
            work = folder / "jobs" / job_id
            work.mkdir(parents=True)
            (work / "alignment.aln").write_text(ALIGNMENT)
            (work / "clustalo.log").write_text("Read 16 sequences\n" * 40)
            (work / "stdout").write_text("")
            (work / "stderr").write_text("")
            exits = folder / "jobs" / ".records" / job_id
            exits.mkdir(parents=True)
            (exits / ".exit.json").write_text('{"code": 0, "message": null}\n')
            (folder / "uploads").mkdir(exist_ok=True)
            (folder / "uploads" / file_id).write_text(">a\nMVLSPADKTNVKAAWGKV\n" * 8)
        if len(jobs) == 1000:
            db.jobs.insert_many(jobs)
            db.files.insert_many(files)
            jobs, files = [], []
    if jobs:
        db.jobs.insert_many(jobs)
        db.files.insert_many(files)
    if old:
        db.meta.drop()
        db.active.insert_many([{"_id": "x" + new_id()}])  # a format-1 collection to drop


def timed(action: Callable[[], Any]) -> float:
    began = time.perf_counter()
    action()
    return time.perf_counter() - began


async def _dump(uri: str, database: str, out: io.BytesIO) -> None:
    store = Store(uri, database)
    try:
        await dump(store, out, _quiet)
    finally:
        await store.close()


async def _load(uri: str, database: str, data: bytes) -> None:
    store = Store(uri, database)
    try:
        await load(store, io.BytesIO(data), replace=True, say=_quiet)
    finally:
        await store.close()


async def _migrate(uri: str, database: str) -> None:
    store = Store(uri, database)
    try:
        await store.check_format()
    finally:
        await store.close()


def _read(client: Any, database: str) -> None:
    for name in ("jobs", "files"):
        for _doc in client[database][name].find({}).batch_size(1000):
            pass


def _tar(folder: Path, compress: bool) -> int:
    """Both volumes' archives, as scripts/backup makes them; their size."""
    size = 0
    for volume in ("jobs", "uploads"):
        archive = folder / (f"{volume}.tar.gz" if compress else f"{volume}.tar")
        flags = ["--numeric-owner", "-czf" if compress else "-cf", str(archive)]
        subprocess.run(["tar", "-C", str(folder / "data" / volume), *flags, "."], check=True)
        size += archive.stat().st_size
    return size


def _untar(folder: Path, restored: Path) -> None:
    for volume in ("jobs", "uploads"):
        (restored / volume).mkdir(parents=True)
        subprocess.run(["tar", "-C", str(restored / volume), "--numeric-owner", "-xzpf",
                        str(folder / f"{volume}.tar.gz")], check=True)  # fmt: skip


DUMP, READ = "dump (appliance dump-database)", "  floor: reading every record"
TAR, TAR_FLOOR = "tar -czf of both volumes (scripts/backup)", "  floor: tar -cf, no compression"
LOAD, UNTAR = "load (appliance load-database)", "untar -xzf of both volumes (scripts/restore)"
MIGRATE = "migration of format 1 (0.1.0) to 2"


def run(args: argparse.Namespace) -> None:
    uri, n = args.mongodb_uri, args.jobs
    source, target, old = "bench_backup_src", "bench_backup_dst", "bench_backup_fmt1"
    client: Any = MongoClient(uri)
    rows: dict[str, list[float]] = {name: [] for name in
                                    (DUMP, READ, TAR, TAR_FLOOR, LOAD, UNTAR, MIGRATE)}  # fmt: skip
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        print(f"storing {n} finished jobs with their files and {n} uploads ...", flush=True)
        fill(uri, source, folder / "data", n)
        for _ in range(args.rounds):
            dumped = io.BytesIO()
            rows[DUMP].append(timed(lambda d=dumped: asyncio.run(_dump(uri, source, d))))  # type: ignore[misc]
            sizes[DUMP] = len(dumped.getvalue())
            rows[READ].append(timed(lambda: _read(client, source)))
            began = time.perf_counter()
            sizes[TAR] = _tar(folder, compress=True)
            rows[TAR].append(time.perf_counter() - began)
            began = time.perf_counter()
            sizes[TAR_FLOOR] = _tar(folder, compress=False)
            rows[TAR_FLOOR].append(time.perf_counter() - began)
            data = dumped.getvalue()
            rows[LOAD].append(timed(lambda d=data: asyncio.run(_load(uri, target, d))))  # type: ignore[misc]
            assert client[target].jobs.count_documents({}) == n
            rows[UNTAR].append(timed(lambda: _untar(folder, folder / "restored")))
            shutil.rmtree(folder / "restored")
            fill(uri, old, folder / "none", n, old=True)
            rows[MIGRATE].append(timed(lambda: asyncio.run(_migrate(uri, old))))
            assert client[old].jobs.count_documents({"format": 2}) == n
        du = sum(p.stat().st_size for p in (folder / "data").rglob("*") if p.is_file())
    for name in (source, target, old):
        client.drop_database(name)
    print(f"\n{n} finished jobs and {n} uploads: {du / 1024**2:.1f} MiB of files; "
          f"medians of {args.rounds} rounds\n")  # fmt: skip
    print(f"| {'part':46} | {'time':>8} | {'size':>9} |")
    print(f"|{'-' * 48}|{'-' * 10}|{'-' * 11}|")
    for name, times in rows.items():
        size = format_size(sizes[name]) if name in sizes else ""
        print(f"| {name:46} | {statistics.median(times):6.2f} s | {size:>9} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mongodb-uri", required=True)
    parser.add_argument("--jobs", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3)
    run(parser.parse_args())


if __name__ == "__main__":
    main()
