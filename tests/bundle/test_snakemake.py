"""A Snakemake workflow through the bundle's TES, its data in S3: snakemake 9.27.1 with
the published TES executor and S3 storage plugins (APPLIANCE_TEST_SNAKEMAKE, installed
unpatched by scripts/test), run as docs/tes.md says, examples/snakemake/Snakefile's three
rules each a task in the appliance/snakemake image (Clustal Omega, MAFFT)."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from tests.bundle.compose import assert_alignment_of_the_input, read_clustal, read_fasta
from tests.bundle.site import BUCKET, SNAKEMAKE_IMAGE, TES_TOKEN, Site
from tests.conftest import ROOT

PROTEINS = ROOT / "examples" / "proteins.fa"


def snakemake_command() -> str:
    command = os.environ.get("APPLIANCE_TEST_SNAKEMAKE", "")
    if not command:
        pytest.fail("APPLIANCE_TEST_SNAKEMAKE is not set: run the tests with scripts/test")
    return command


def run_workflow(
    bundle: str, site: Site, workdir: Path, prefix: str
) -> subprocess.CompletedProcess[str]:
    """``snakemake`` in ``workdir`` with exactly docs/tes.md's flags and workaround."""
    (workdir / "Snakefile").write_text((ROOT / "examples" / "snakemake" / "Snakefile").read_text())
    # docs/tes.md: the TES plugin 0.1.3 reads $GITHUB_WORKSPACE/funnel.log when a task
    # fails (debugging code left in); without it a failure crashes Snakemake instead.
    workspace = workdir / "workspace"
    workspace.mkdir()
    (workspace / "funnel.log").write_text("")
    env = {**os.environ, "GITHUB_WORKSPACE": str(workspace)}
    return subprocess.run(
        [snakemake_command(), "--executor", "tes", "--tes-url", f"{bundle}/ga4gh/tes",
         "--tes-token", TES_TOKEN, "--container-image", SNAKEMAKE_IMAGE,
         "--default-storage-provider", "s3", "--default-storage-prefix", prefix,
         "--storage-s3-endpoint-url", site.s3_endpoint, "--storage-s3-access-key", site.s3_key,
         "--storage-s3-secret-key", site.s3_secret, "--jobs", "2",
         "--seconds-between-status-checks", "2"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip


def test_a_snakemake_workflow_runs_through_tes_with_its_data_in_s3(
    bundle: str, site: Site, tmp_path: Path
) -> None:
    run = f"run-{uuid.uuid4().hex[:8]}"
    s3 = site.boto()
    s3.put_object(Bucket=BUCKET, Key=f"{run}/proteins.fa", Body=PROTEINS.read_bytes())
    done = run_workflow(bundle, site, tmp_path, f"s3://{BUCKET}/{run}")
    assert done.returncode == 0, done.stderr[-4000:]
    assert "4 of 4 steps (100%) done" in done.stderr

    def read(key: str) -> str:
        body = s3.get_object(Bucket=BUCKET, Key=f"{run}/{key}")["Body"]
        return str(body.read().decode())

    clustal = read("aligned/clustalo.aln")
    assert clustal.startswith("CLUSTAL O(1.2.4) multiple sequence alignment")
    assert_alignment_of_the_input(read_clustal(clustal))
    assert_alignment_of_the_input(read_fasta(read("aligned/mafft.fa")))
    assert read("report.txt") == "clustalo 155\nmafft 155\n"
    # each rule was a task of this client's, run in the Snakemake image, and completed
    answer = httpx.get(f"{bundle}/ga4gh/tes/v1/tasks", params={"view": "FULL", "page_size": 100},
                       headers={"Authorization": f"Bearer {TES_TOKEN}"}, timeout=30)  # fmt: skip
    ours = [t for t in answer.json()["tasks"]
            if any(run in (i.get("content") or "") for i in t.get("inputs", []))]  # fmt: skip
    assert len(ours) == 3, [t.get("name") for t in ours]
    assert {t["state"] for t in ours} == {"COMPLETE"}
    assert {t["executors"][0]["image"] for t in ours} == {SNAKEMAKE_IMAGE}


def test_a_failing_rule_fails_the_workflow_and_says_so(
    bundle: str, site: Site, tmp_path: Path
) -> None:
    """No input in S3: Snakemake stops before any task; a rule whose tool fails ends its
    task in EXECUTOR_ERROR, and Snakemake (with docs/tes.md's workaround) reports it."""
    run = f"broken-{uuid.uuid4().hex[:8]}"
    s3 = site.boto()
    s3.put_object(Bucket=BUCKET, Key=f"{run}/proteins.fa", Body=b"this is not FASTA\n")
    done = run_workflow(bundle, site, tmp_path, f"s3://{BUCKET}/{run}")
    assert done.returncode != 0
    assert "Error in rule" in done.stderr, done.stderr[-4000:]
    assert "KeyError: 'GITHUB_WORKSPACE'" not in done.stderr
