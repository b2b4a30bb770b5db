"""S3 staging (appliance.tes.transfer: what the scheduler does for a task's s3:// inputs
and outputs) beside a plain copy of the same bytes to the same S3 server by boto3, one
request per object (put_object/get_object) and boto3's managed transfer (multipart, 10
threads). Medians of --runs each, in MB/s, alternating the methods.

    python -m bench.s3_staging --endpoint http://127.0.0.1:PORT --keys FILE [--runs 5]

FILE holds the access key id and the secret on two lines (scripts/test's SeaweedFS:
APPLIANCE_TEST_S3 holds "endpoint key secret"). A measurement, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3

from appliance.plan import JOBS, Location, Plan, Step, Transfer
from appliance.settings import Settings
from appliance.tes.transfer import stage_in, stage_out

BUCKET = "bench-staging"
MB = 1024 * 1024


def shapes() -> dict[str, list[tuple[str, int]]]:
    """What is moved: one large file, and many small ones (name, size)."""
    return {"1 file of 256 MiB": [("big.bin", 256 * MB)],
            "500 files of 64 KiB": [(f"many/{i:03}.bin", 64 * 1024) for i in range(500)]}  # fmt: skip


def plan(files: list[tuple[str, int]], prefix: str, *, out: bool) -> Plan:
    transfers = tuple(Transfer(path=f"fs/data/{name}", url=f"s3://{BUCKET}/{prefix}/{name}",
                               container_path=f"/data/{name}") for name, _ in files)  # fmt: skip
    kind = "stage_out" if out else "stage_in"
    return Plan(Location(JOBS, "bench"), (Step(("true",), "img", {}),), **{kind: transfers})


def methods_for(files: list[tuple[str, int]], work: Path, down: Path, settings: Settings,
                boto: Any) -> dict[str, tuple[Callable[[], Any], Callable[[], Any]]]:  # fmt: skip
    """Each method: (send every file up, fetch every file down to ``down``)."""

    def write(name: str, data: bytes) -> None:
        (down / name).parent.mkdir(parents=True, exist_ok=True)
        (down / name).write_bytes(data)

    return {
        "appliance staging (stage_out/in)": (
            lambda: asyncio.run(stage_out(plan(files, "ours", out=True), work, settings, "b")),
            lambda: asyncio.run(stage_in(plan(files, "ours", out=False), down, settings, "b")),
        ),
        "boto3 put_object/get_object": (
            lambda: [boto.put_object(Bucket=BUCKET, Key=f"plain/{n}",
                                     Body=(work / "fs/data" / n).read_bytes()) for n, _ in files],
            lambda: [write(n, boto.get_object(Bucket=BUCKET, Key=f"plain/{n}")["Body"].read())
                     for n, _ in files],
        ),
        "boto3 managed transfer (10 threads)": (
            lambda: [boto.upload_file(str(work / "fs/data" / n), BUCKET, f"managed/{n}")
                     for n, _ in files],
            lambda: [(down / n).parent.mkdir(parents=True, exist_ok=True)
                     or boto.download_file(BUCKET, f"managed/{n}", str(down / n)) for n, _ in files],
        ),
    }  # fmt: skip


def timed(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--keys", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    key, secret = args.keys.read_text().split()[:2]
    settings = Settings(tes_s3_endpoint=args.endpoint, tes_s3_roots=(BUCKET,),
                        tes_s3_credentials_file=args.keys, tes_fetch_max_bytes=1024**3)  # fmt: skip
    boto = boto3.client("s3", endpoint_url=args.endpoint, aws_access_key_id=key,
                        aws_secret_access_key=secret, region_name="us-east-1")  # fmt: skip
    if BUCKET not in {b["Name"] for b in boto.list_buckets()["Buckets"]}:
        boto.create_bucket(Bucket=BUCKET)
    print(f"{'what':<22} {'method':<34} {'up MB/s':>8} {'down MB/s':>10}")
    for label, files in shapes().items():
        total = sum(size for _, size in files) / MB
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            for name, size in files:
                (work / "fs/data" / name).parent.mkdir(parents=True, exist_ok=True)
                (work / "fs/data" / name).write_bytes(os.urandom(size))
            down = Path(tmp + "-down")
            methods = methods_for(files, work, down, settings, boto)
            samples: dict[str, tuple[list[float], list[float]]] = {m: ([], []) for m in methods}
            for _ in range(args.runs):
                for method, (up, get) in methods.items():
                    samples[method][0].append(timed(up))
                    if down.exists():
                        for path in sorted(down.rglob("*"), reverse=True):
                            path.rmdir() if path.is_dir() else path.unlink()
                    down.mkdir(exist_ok=True)
                    samples[method][1].append(timed(get))
            for method, (ups, gets) in samples.items():
                print(f"{label:<22} {method:<34} {total / statistics.median(ups):>8.0f} "
                      f"{total / statistics.median(gets):>10.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
