"""examples/snakemake/Snakefile through the appliance's TES (Snakemake's TES executor,
each rule a task) beside the same workflow run locally (`snakemake --cores 2` in the same
image, in one container), both with their data in the same S3 server. Medians of --runs,
alternating, each run on a fresh prefix.

    python -m bench.snakemake_tes --tes-url http://127.0.0.1:8080/ga4gh/tes --token TOKEN \\
        --s3-endpoint http://172.17.0.1:PORT --keys FILE --snakemake PATH [--runs 3]

The appliance must have TES on, allow appliance/snakemake (with network) and the bucket
``workflows`` in tes_s3_roots (docs/tes.md); the endpoint must be one containers reach.
A measurement, not a test. Snakemake's TES plugin waits 40 s before it first asks for a
task's state (its init_seconds_before_status_checks): that wait is in every TES run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "appliance/snakemake:9.27.1"
BUCKET = "workflows"


def storage(args: argparse.Namespace, key: str, secret: str, prefix: str) -> list[str]:
    return ["--default-storage-provider", "s3", "--default-storage-prefix", prefix,
            "--storage-s3-endpoint-url", args.s3_endpoint, "--storage-s3-access-key", key,
            "--storage-s3-secret-key", secret]  # fmt: skip


def through_tes(args: argparse.Namespace, key: str, secret: str, prefix: str) -> float:
    with tempfile.TemporaryDirectory() as work:
        (Path(work) / "Snakefile").write_bytes((ROOT / "examples/snakemake/Snakefile").read_bytes())
        (Path(work) / "funnel.log").write_text("")  # docs/tes.md: the plugin's workaround
        started = time.perf_counter()
        subprocess.run([args.snakemake, "--executor", "tes", "--tes-url", args.tes_url,
                        "--tes-token", args.token, "--container-image", IMAGE, "--jobs", "2",
                        "--seconds-between-status-checks", "2",
                        *storage(args, key, secret, prefix)], cwd=work, check=True,
                       capture_output=True, env={**os.environ, "GITHUB_WORKSPACE": work})  # fmt: skip
        return time.perf_counter() - started


def locally(args: argparse.Namespace, key: str, secret: str, prefix: str) -> float:
    snakefile = ROOT / "examples/snakemake/Snakefile"
    started = time.perf_counter()
    subprocess.run(["docker", "run", "--rm", "-v", f"{snakefile}:/work/Snakefile:ro", "-w",
                    "/tmp", IMAGE, "snakemake", "--snakefile", "/work/Snakefile", "--cores", "2",
                    *storage(args, key, secret, prefix)], check=True, capture_output=True)  # fmt: skip
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tes-url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--s3-endpoint", required=True)
    parser.add_argument("--keys", type=Path, required=True)
    parser.add_argument(
        "--snakemake", required=True, help="the snakemake command (with the TES plugin)"
    )
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    key, secret = args.keys.read_text().split()[:2]
    s3 = boto3.client("s3", endpoint_url=args.s3_endpoint, aws_access_key_id=key,
                      aws_secret_access_key=secret, region_name="us-east-1")  # fmt: skip
    times: dict[str, list[float]] = {
        "through the appliance's TES": [],
        "locally, one container": [],
    }
    for _ in range(args.runs):
        for label, run in (
            ("through the appliance's TES", through_tes),
            ("locally, one container", locally),
        ):
            prefix = f"bench-{uuid.uuid4().hex[:8]}"
            s3.put_object(Bucket=BUCKET, Key=f"{prefix}/proteins.fa",
                          Body=(ROOT / "examples/proteins.fa").read_bytes())  # fmt: skip
            times[label].append(run(args, key, secret, f"s3://{BUCKET}/{prefix}"))
    for label, samples in times.items():
        print(f"{label:<30} median {statistics.median(samples):6.1f} s   "
              f"({', '.join(f'{t:.1f}' for t in samples)})")  # fmt: skip


if __name__ == "__main__":
    main()
