"""The previous system's service files in the bundle, unchanged: its own example project
(``slivka init``'s template: a Python script, a selector module, test data under
``${SLIVKA_HOME}``) and a file of its form for a real tool (Clustal Omega), each in a
folder beside a Dockerfile, and one without a Dockerfile, which runs on the bundle's
local worker pool. A bundle of their own is started with ``scripts/up`` (the folder given
as APPLIANCE_SERVICES, the pool turned on by APPLIANCE_WORKER_SLOTS alone), and jobs run
through the proxy with the previous system's client."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from slivka_client import SlivkaClient

from tests.bundle.compose import PROTEINS, assert_alignment_of_the_input, compose, read_clustal
from tests.bundle.previous import PROJECT, digest, previous_template


def wait(job: Any) -> None:
    deadline = time.monotonic() + 300
    while job.status not in ("COMPLETED", "FAILED", "ERROR") and time.monotonic() < deadline:
        time.sleep(0.5)
        job.reload()


def output(bundle: str, service: str, source: Path, data: dict[str, Any], path: str) -> str:
    """Upload ``source`` as the service's ``input``, run the job, and read its file ``path``."""
    client = SlivkaClient(bundle + "/")
    job = client[service].submit_job(
        data={"input": client.upload_file(str(source), source.name), **data}
    )
    wait(job)
    assert job.status == "COMPLETED", job.status
    [found] = [f for f in job.files if f.path == path]
    return httpx.get(found.content_url, timeout=30).text


def test_the_previous_systems_own_example_runs_unchanged(
    previous_bundle: str, previous_services: Path, tmp_path: Path
) -> None:
    client = SlivkaClient(previous_bundle + "/")
    service = client["example"]
    source = tmp_path / "in.txt"
    source.write_text("first line\nsecond line\n")
    job = service.submit_job(data={
        "input-file": client.upload_file(str(source), "in.txt"), "opt": "hello",
        "rep": ["0", "1", "2"], "letter": "bravo", "flag": "true", "arg": "foobar",
    })  # fmt: skip
    wait(job)
    assert job.status == "COMPLETED", job.status
    files = {f.path: f for f in job.files}
    assert set(files) >= {"stdout", "stderr", "output.txt", "rep.0.txt", "rep.1.txt", "rep.2.txt"}

    def text(path: str) -> str:
        return httpx.get(files[path].content_url, timeout=30).text

    assert text("output.txt") == "first line\n"  # through the symlink input.txt
    assert [text(f"rep.{i}.txt") for i in range(3)] == ["0\n", "1\n", "2\n"]  # join: ","
    out = text("stdout")
    for line in ("reading from file input.txt", "opt is hello", "rep is repeated 3 times.",
                 "letter is B", "flag is present", "last argument is foobar"):  # fmt: skip
        assert line in out, out
    # the selector in the folder (scripts/selectors.py) chose local-queue, whose constant
    # cpucount is 1: the argument "--threads 1" came from it
    assert "Pretending to run using 1 threads" in text("stderr")
    template = previous_template()
    assert digest(previous_services / "example" / "example.service.yaml") == digest(
        template / "services" / "example.service.yaml"
    )  # not a byte changed


def test_a_previous_form_file_for_a_real_tool(previous_bundle: str) -> None:
    text = output(previous_bundle, "clustalo", PROTEINS, {"iterations": "1"}, "alignment.out")
    assert_alignment_of_the_input(read_clustal(text))


def test_their_own_tests_run_with_their_own_test_data(previous_bundle: str) -> None:
    """The example's test names ``${SLIVKA_HOME}/testdata/example-input.txt``: the file
    beside it in its folder. Both services test themselves and are OK."""
    deadline = time.monotonic() + 300
    statuses: dict[str, str] = {}
    while time.monotonic() < deadline:
        listed = httpx.get(f"{previous_bundle}/api/services", timeout=30).json()["services"]
        statuses = {s["id"]: s["status"]["status"] for s in listed}
        tested = {statuses.get(s) for s in ("example", "clustalo", "wrapper")}
        if tested <= {"OK", "DOWN", "WARNING"}:
            break
        time.sleep(2)
    assert statuses == {
        "example": "OK",
        "clustalo": "OK",
        "wrapper": "OK",  # its test file under ${SLIVKA_HOME}/testdata, ${HOME}/bin found
        "sort": "UNKNOWN",
        "fake": "UNKNOWN",
        "options": "UNKNOWN",
        "lists": "UNKNOWN",
    }  # the others: no tests


def test_a_file_without_a_dockerfile_runs_on_the_worker_pool(
    previous_bundle: str, tmp_path: Path
) -> None:
    """One setting (APPLIANCE_WORKER_SLOTS) starts the pool and sends such files to it;
    its jobs reach the scheduler only: not the database, not the internet."""
    source = tmp_path / "lines.txt"
    source.write_text("banana\napple\ncherry\n")
    text = output(previous_bundle, "sort", source, {"reverse": "true"}, "sorted.txt")
    assert text == "cherry\nbanana\napple\n"
    probe = compose("exec", "-T", "worker", "python3", "-c",
                    "import socket; socket.create_connection(('mongo', 27017), timeout=3)",
                    project=PROJECT)  # fmt: skip
    assert probe.returncode == 1 and "socket.gaierror" in probe.stderr, probe  # no such name


def lines(bundle: str, service: str, data: dict[str, Any], path: str) -> list[str]:
    """Run a job of ``service`` with ``data`` (no file), and read its file ``path``."""
    client = SlivkaClient(bundle + "/")
    job = client[service].submit_job(data=data)
    wait(job)
    assert job.status == "COMPLETED", job.status
    [found] = [f for f in job.files if f.path == path]
    return httpx.get(found.content_url, timeout=30).text.splitlines()


OPTIONS_DEFAULT = ["-quiet", "--auto", "skipPDB=on", "-log", "stat.log", "-in", "input.txt",
                   "-anchors", "--sure", "-maxiters", "16", "-gapopen", "-12", "-center", "0",
                   "-hydrofactor", "1.2", "--tiny=1e-5", "-matrix",
                   "/srv/slivka/matrices/BLOSUM62", "-out", "output.fasta"]  # fmt: skip


def test_slivka_bios_idioms_run_unchanged_with_defaults_and_without(
    previous_bundle: str, tmp_path: Path
) -> None:
    """Files in the idioms of the previous system's public deployment (a choice mapped to
    null, decimals with whole defaults, unused args entries, constants, ``$(value)``
    inside arguments, ``$SLIVKA_HOME`` and ``${HOME}``, symlinked inputs, joined and
    repeated lists, a wrapper script) through the bundle with the previous client: each
    completes, and its command line is the previous system's (tests/test_previous_
    command_lines.py compares the same files with its own code)."""
    source = tmp_path / "in.fa"
    source.write_text(">a\nMKV\n")
    assert output(previous_bundle, "options", source, {}, "output.fasta").splitlines() == (
        OPTIONS_DEFAULT
    )
    changed = output(previous_bundle, "options", source, {
        "profile-scoring": "sp", "pairwise": "none", "gap-open": "-3.5", "dimer": "true",
        "title": "two words", "matrix": "pam250"}, "output.fasta").splitlines()  # fmt: skip
    assert changed[changed.index("-gapopen") + 1] == "-3.5" and "-sp" in changed
    assert "-dimer" in changed and "--title=two words" in changed
    assert "/srv/slivka/matrices/PAM250" in changed
    assert not [item for item in changed if "None" in item]
    assert lines(previous_bundle, "lists", {}, "stdout") == ["-w", "1", "-w", "2.5", "--"]
    listed = lines(previous_bundle, "lists", {"method": ["none", "shannon", "kabat"],
                   "rep": ["a", "b c"], "counts": ["1", "2"]}, "stdout")  # fmt: skip
    assert listed == ["-m=SHANNON_ENTROPY,KABAT_SCORE", "--rep", "a,b c", "--count=1",
                      "--count=2", "-w", "1", "-w", "2.5", "--"]  # fmt: skip
    wrapped = output(previous_bundle, "wrapper", source, {"window": "12"}, "output.txt")
    assert wrapped.splitlines() == [
        "input.fasta", "--window=12", "FASTA_4_MAFFT=/home/appliance/bin/fasta36",
        "TOOL_DATA=/srv/slivka/bin/tool/", "TEMP=/tmp/", ">a"]  # fmt: skip
