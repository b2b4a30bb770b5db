"""The compose bundle, as a group would run it: images built air-gapped, ``scripts/up``,
real Clustal Omega, MAFFT and MUSCLE jobs through the proxy with the previous system's
client, a 413 at the proxy, and ``scripts/down --volumes``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from slivka_client import SlivkaClient

from appliance import webhooks
from tests.bundle.compose import (
    PROJECT,
    PROTEINS,
    assert_alignment_of_the_input,
    compose,
    read_clustal,
    read_fasta,
    wait_status,
)  # fmt: skip
from tests.conftest import ROOT
from tests.test_webhooks import receiver


def run_job(client: SlivkaClient, service_id: str, data: dict[str, object]) -> dict[str, str]:
    service = client[service_id]
    uploaded = client.upload_file(str(PROTEINS), "proteins.fa")
    job = service.submit_job(data={"input": uploaded, **data})
    deadline = time.monotonic() + 300
    while job.status not in ("COMPLETED", "FAILED", "ERROR") and time.monotonic() < deadline:
        time.sleep(0.5)
        job.reload()
    assert job.status == "COMPLETED", job.status
    outputs: dict[str, str] = {}
    for file in job.files:
        target = Path(f"/tmp/{job.id}-{file.path}")
        file.dump(str(target))  # through the proxy
        outputs[file.path] = target.read_text()
        target.unlink()
    return outputs


def test_clustal_omega(bundle: str) -> None:
    client = SlivkaClient(bundle + "/")
    params = {p.id for p in client["clustalo"].parameters}
    assert {"input", "iterations", "dealign", "guidetree"} <= params
    outputs = run_job(client, "clustalo", {"iterations": "1", "guidetree": "true"})
    assert_alignment_of_the_input(read_clustal(outputs["alignment.aln"]))
    assert "HBA_HUMAN" in outputs["guide_tree.dnd"]  # the guide tree came too


def test_mafft(bundle: str) -> None:
    outputs = run_job(
        SlivkaClient(bundle + "/"), "mafft", {"strategy": "L-INS-i", "maxiterate": "10"}
    )
    assert_alignment_of_the_input(read_fasta(outputs["stdout"]))


SHIPPED = {path.parent.name for path in (ROOT / "services").glob("*/*.service.yaml")}
JALVIEW_MSA = ("Operation :: Analysis :: Sequence analysis :: Sequence alignment :: "
               "Multiple sequence alignment")  # fmt: skip
JALVIEW_PROTEIN = "Operation :: Analysis :: Sequence analysis :: Protein sequence analysis"


def test_what_jalview_reads_of_every_shipped_service(bundle: str) -> None:
    """Asserted from the API's JSON, as Jalview's Java client reads it: its menu entry (an
    Operation classifier with double colons), the outputs it looks for (an alignment, or
    a predictor's annotations, by media type; logs named log and error-log), presets in
    the old shape, no null where the client casts to a number, and a job whose echoed
    parameters hold only text."""
    services = {s["id"]: s for s in httpx.get(bundle + "/api/services").json()["services"]}
    assert set(services) == SHIPPED  # the test bundle serves every shipped tool
    for service_id, service in services.items():
        aligner = JALVIEW_MSA in service["classifiers"]
        assert aligner or JALVIEW_PROTEIN in service["classifiers"], service_id
        if aligner:
            assert {p["id"] for p in service["presets"]} >= {"fast", "accurate"}
        for preset in service["presets"]:
            assert isinstance(preset["name"], str) and isinstance(preset["description"], str)
            assert set(preset["values"]) <= {p["id"] for p in service["parameters"]}
        for param in service["parameters"]:
            for key in ("min", "max", "minLength", "maxLength"):
                assert key not in param or isinstance(param[key], int | float), (param, key)
            assert not param.get("mediaTypeParameters"), param  # the client misreads any
        # a job with every optional parameter left unset
        upload = httpx.post(bundle + "/api/files",
                            files={"file": ("p.fa", PROTEINS.read_bytes())}).json()  # fmt: skip
        job = httpx.post(f"{bundle}/api/services/{service_id}/jobs",
                         data={"input": upload["id"]}).json()  # fmt: skip
        for value in job["parameters"].values():
            assert isinstance(value, str) or (
                isinstance(value, list) and all(isinstance(v, str) for v in value)), job  # fmt: skip
        job_url = f"{bundle}/api/jobs/{job['id']}"
        deadline = time.monotonic() + 300
        while not (job := httpx.get(job_url).json())["finished"] and time.monotonic() < deadline:
            time.sleep(0.3)
        assert job["status"] == "COMPLETED", job
        files = {f["label"]: f for f in httpx.get(job_url + "/files").json()["files"]}
        kinds = {f["id"].split("/", 1)[1]: f["mediaType"] for f in files.values()}
        assert kinds["stderr"] == "text/plain" and files["error-log"]["path"] == "stderr"
        if not aligner:  # a predictor: its scores as Jalview annotations of each sequence
            annotations = files["jalview-annotations"]
            assert annotations["mediaType"] == "application/jalview-annotations"
            text = httpx.get(bundle + annotations["@content"]).text
            assert text.startswith("JALVIEW_ANNOTATION") and text.count("SEQUENCE_REF") == 4
            continue
        alignment = [f for f in files.values() if f["mediaType"] in
                     ("application/clustal", "application/fasta")]  # fmt: skip
        assert len(alignment) == 1, kinds
        text = httpx.get(bundle + alignment[0]["@content"]).text
        rows = (
            read_clustal(text)
            if alignment[0]["mediaType"] == "application/clustal"
            else read_fasta(text)
        )
        assert_alignment_of_the_input(rows)
        if service_id == "clustalo":
            assert (
                files["log"]["path"] == "clustalo.log" and files["log"]["mediaType"] == "text/plain"
            )
            assert "Read 4 sequences" in httpx.get(bundle + files["log"]["@content"]).text


def test_muscle(bundle: str) -> None:
    outputs = run_job(SlivkaClient(bundle + "/"), "muscle", {"perturb": "3"})
    assert_alignment_of_the_input(read_fasta(outputs["alignment.afa"]))


@pytest.mark.parametrize(("service", "data", "output", "read"), [
    ("clustalw", {}, "alignment.aln", read_clustal),
    ("clustalw", {"type": "Protein", "gapopen": "12.5", "quicktree": "true",
                  "iteration": "Tree", "order": "Input"}, "alignment.aln", read_clustal),
    ("kalign", {}, "alignment.afa", read_fasta),
    ("kalign", {"type": "Divergent protein", "gpo": "5.5"}, "alignment.afa", read_fasta),
    ("probcons", {}, "stdout", read_fasta),
    ("probcons", {"consistency": "1", "refinement": "0"}, "stdout", read_fasta),
    ("tcoffee", {}, "alignment.clustalw_aln", read_clustal),
    ("tcoffee", {"method": "Fast", "type": "Protein", "gapopen": "-60", "gapext": "-4",
                 "order": "Input"}, "alignment.clustalw_aln", read_clustal),
])  # fmt: skip
def test_the_other_aligners_with_default_and_other_values(
    bundle: str, service: str, data: dict[str, object], output: str,
    read: Callable[[str], dict[str, str]],
) -> None:  # fmt: skip
    """ClustalW, Kalign, ProbCons and T-Coffee (served with APPLIANCE_TOOLS=all), through
    the previous system's client."""
    outputs = run_job(SlivkaClient(bundle + "/"), service, data)
    assert_alignment_of_the_input(read(outputs[output]))
    if service == "clustalw":
        assert outputs["input.dnd"].count("HUMAN") == 4  # the guide tree, drawn on its page
    if service == "tcoffee":
        assert outputs["alignment.dnd"].count("HUMAN") == 4


@pytest.mark.parametrize("data", [{}, {"threshold": "0.4"}])
def test_jronn_scores_every_residue_as_numbers_and_annotations(
    bundle: str, data: dict[str, object]
) -> None:
    """JRonn (served with APPLIANCE_TOOLS=all), through the previous system's client: a
    score for each residue of each input sequence, the same scores as Jalview annotations
    (one line graph a sequence, with its 0.5 line)."""
    outputs = run_job(SlivkaClient(bundle + "/"), "jronn", data)
    sequences = read_fasta(PROTEINS.read_text())
    blocks = outputs["jronn.out"].strip().split("\n\n")
    assert len(blocks) == len(sequences)
    for block in blocks:
        name, residues, scores = block.split("\n")
        full = sequences[name[1:].split()[0]]
        assert residues.split() == list(full)
        values = [float(v) for v in scores.split()]
        assert len(values) == len(full) and all(0 <= v <= 1 for v in values)
    annotations = outputs["jronn.jvannot"].split("\n")
    graphs = [row.split("\t") for row in annotations if row.startswith("LINE_GRAPH")]
    assert [g[1] for g in graphs] == ["JRonn"] * len(sequences)
    assert sum(row.startswith("GRAPHLINE\tJRonn\t0.5\t") for row in annotations) == len(sequences)
    if data:
        assert "disorder=0.4" in outputs["jronn.log"]


def test_oversized_upload_gets_413_at_the_proxy(bundle: str) -> None:
    host, port = bundle.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(
            b"POST /api/files HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 500000000\r\n\r\n--b\r\n"
        )
        head = connection.recv(4096).decode()
    assert head.startswith("HTTP/1.1 413"), head
    assert '"status": 413' in head or '"status":413' in head


def test_a_job_that_names_a_webhook_is_posted_signed_when_it_ends(bundle: str) -> None:
    """Through the proxy, a real Clustal Omega job names a receiver on this host; the
    scheduler's container posts its end, signed with the secret scripts/up made."""
    network = f"{PROJECT}_back"
    gateway = subprocess.run(
        ["docker", "network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", network],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    secret = compose("exec", "-T", "scheduler", "cat", "/etc/appliance/wake/webhook.secret")
    assert secret.returncode == 0 and len(secret.stdout.strip()) == 64, secret.stderr
    with receiver(host=gateway, listen="0.0.0.0") as hook:
        answer = httpx.post(f"{bundle}/api/services/clustalo/jobs", timeout=30,
                            data={"_webhook": hook.url},
                            files={"input": ("proteins.fa", PROTEINS.read_bytes())})  # fmt: skip
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["id"]
        assert answer.json()["webhook"] == {"status": "pending", "attempts": 0}
        assert wait_status(bundle, job_id)["status"] == "COMPLETED"
        deadline = time.monotonic() + 30
        while not hook.posts:
            assert time.monotonic() < deadline, "no post within 30 s of the job's end"
            time.sleep(0.2)
    headers, body = hook.posts[0]
    webhooks.verify(secret.stdout.strip().encode(), headers["appliance-signature"], body,
                    now=time.time())  # fmt: skip
    assert json.loads(body)["id"] == job_id
    shown = httpx.get(f"{bundle}/api/jobs/{job_id}").json()["webhook"]
    assert shown["status"] == "delivered" and shown["attempts"] == 1
    refused = httpx.post(f"{bundle}/api/services/clustalo/jobs",
                         data={"_webhook": "file:///etc/passwd"},
                         files={"input": ("proteins.fa", PROTEINS.read_bytes())})  # fmt: skip
    assert refused.status_code == 422 and "_webhook" in refused.text


def test_only_the_scheduler_holds_the_docker_socket(bundle: str) -> None:
    for service, expected in (
        ("web", False),
        ("scheduler", True),
        ("proxy", False),
        ("mongo", False),
    ):
        container = compose("ps", "-q", service).stdout.strip()
        [info] = json.loads(subprocess.run(["docker", "inspect", container], capture_output=True,
                                           text=True, check=True).stdout)  # fmt: skip
        sockets = [m for m in info["Mounts"] if m["Source"].endswith("docker.sock")]
        assert bool(sockets) is expected, service
        if service in ("web", "scheduler"):
            assert info["Config"]["User"] == "1000:1000"


def test_every_containers_log_is_capped_and_rotated(bundle: str) -> None:
    for service in ("web", "scheduler", "proxy", "mongo"):
        container = compose("ps", "-q", service).stdout.strip()
        [info] = json.loads(subprocess.run(["docker", "inspect", container], capture_output=True,
                                           text=True, check=True).stdout)  # fmt: skip
        log = info["HostConfig"]["LogConfig"]
        assert log["Type"] == "json-file", service
        assert log["Config"] == {"max-size": "20m", "max-file": "5"}, service


def test_the_proxy_reaches_the_web_process_only(bundle: str) -> None:
    """From inside the proxy's container: the web process answers; the database and the
    scheduler's ZeroMQ port are on a network the proxy is not on (by name or address)."""
    proxy = compose("ps", "-q", "proxy").stdout.strip()

    def reach(host: str, port: int) -> bool:
        probe = f"timeout 3 bash -c '</dev/tcp/{host}/{port}'"
        return subprocess.run(["docker", "exec", proxy, "bash", "-c", probe],
                              capture_output=True).returncode == 0  # fmt: skip

    def address(service: str) -> str:
        container = compose("ps", "-q", service).stdout.strip()
        [info] = json.loads(subprocess.run(["docker", "inspect", container], capture_output=True,
                                           text=True, check=True).stdout)  # fmt: skip
        return str(next(iter(info["NetworkSettings"]["Networks"].values()))["IPAddress"])

    assert reach("web", 8000)
    for service, port in (("mongo", 27017), ("scheduler", 5570)):
        assert not reach(service, port), service
        assert not reach(address(service), port), service


@pytest.mark.parametrize(("service", "data", "output"), [
    ("clustalo", {"iterations": "1"}, "alignment.aln"),
    ("mafft", {"strategy": "L-INS-i", "maxiterate": "10"}, "stdout"),
    ("muscle", {"perturb": "3"}, "alignment.afa"),
])  # fmt: skip
def test_appliance_run_gives_what_a_job_gives(
    bundle: str, service: str, data: dict[str, object], output: str
) -> None:
    """The author's loop: `appliance run` here, with the same image and command, gives the
    same result as a job through the API."""
    through_api = run_job(SlivkaClient(bundle + "/"), service, data)[output]
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    result = subprocess.run(
        [sys.executable, "-m", "appliance", "run", service, f"--file=input={PROTEINS}",
         *(f"--set={k}={v}" for k, v in data.items())],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--- exit code 0 ---" in result.stdout
    folder = Path(result.stderr.strip().splitlines()[-1].removeprefix("the job's folder: "))
    assert (folder / output).read_text() == through_api


def test_every_shipped_service_tests_itself_and_is_ok(bundle: str) -> None:
    deadline = time.monotonic() + 300
    statuses: dict[str, str] = {}
    while time.monotonic() < deadline:
        services = httpx.get(f"{bundle}/api/services", timeout=30).json()["services"]
        statuses = {s["id"]: s["status"]["status"] for s in services}
        if set(statuses.values()) == {"OK"}:
            break
        time.sleep(2)
    assert statuses == dict.fromkeys(SHIPPED, "OK")
    front = httpx.get(f"{bundle}/", timeout=30).text
    assert front.count('class="status status-ok"') == len(SHIPPED)  # on the pages' list too
