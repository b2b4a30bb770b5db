"""The benchmark: this appliance against the previous system (slivka 0.8.5b7), side by side.

Run it with ``bench/run`` (which installs and starts what it needs); this module is the
part that drives both systems. Each round runs every measurement on one system and then
on the other (the order swaps every round), against the same MongoDB server, so the two
see the same machine at nearly the same time. Results: a table of medians and ratios on
stdout, every raw number in ``bench/results/latest.json``, the table in
``bench/results/latest.md`` and the latency distributions in ``bench/results/latency.png``.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pymongo import MongoClient

from bench import measure, report
from bench.systems import BENCH, ROOT, Config, System, make

TRIVIAL_IMAGE = "appliance-bench/busybox:local"
CLUSTALO_IMAGE = "appliance/clustalo:1.2.4"
SYSTEMS = ("appliance", "slivka")


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.config = Config(args.mongodb_uri, http_workers=args.http_workers, slots=args.slots)
        self.work = Path(tempfile.mkdtemp(prefix="appliance-bench."))
        self.mongo: MongoClient[dict[str, Any]] = MongoClient(args.mongodb_uri)
        self.samples: dict[str, dict[str, list[float]]] = {}
        self.notes: list[str] = []  # what the numbers alone do not say (errors seen)
        self.fasta = measure.fasta_1k()
        self.proteins = (ROOT / "examples" / "proteins.fa").read_bytes()
        self.floor_dir = self.work / "floor"
        self.floor_dir.mkdir()
        (self.floor_dir / "input.fa").write_bytes(self.fasta)
        (self.floor_dir / "proteins.fa").write_bytes(self.proteins)
        self.floor_dir.chmod(0o777)

    def add(self, metric: str, system: str, values: float | list[float]) -> None:
        values = values if isinstance(values, list) else [values]
        self.samples.setdefault(metric, {}).setdefault(system, []).extend(values)

    def say(self, text: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    def system(self, name: str, phase: str, database: str) -> System:
        home = self.work / f"{name}-{phase}"
        shutil.rmtree(home, ignore_errors=True)
        return make(name, self.config, home, database)

    def drop(self, database: str) -> None:
        self.mongo.drop_database(database)

    def explain_errors(self, name: str, what: str, result: dict[str, Any]) -> None:
        """Keep wrk's own words about errors (a timeout or a refused request?)."""
        if result["errors"]:
            lines = [line.strip() for line in str(result["raw"]).splitlines()
                     if "errors" in line.lower() or "non-2xx" in line.lower()]  # fmt: skip
            self.notes.append(f"{name} {what}: {'; '.join(lines)}")
            self.say(f"{name}: {what} errors: {'; '.join(lines)}")

    # -- phases ----------------------------------------------------------------------------

    def web_phase(self, name: str, round_: int) -> None:
        """The web tier alone (no scheduler: jobs stay waiting): submissions and polls."""
        database = f"bench_r{round_}_{name}_web"
        system = self.system(name, f"r{round_}-web", database)
        system.start(("web",))
        try:
            time.sleep(3)
            self.add("rss_web_idle_mib", name, system.rss("web"))
            peak = [0.0]

            def sample() -> None:
                peak[0] = max(peak[0], system.rss("web"))

            result = measure.submissions_per_s(system, "trivial", connections=self.args.clients,
                                               seconds=self.args.seconds, sample=sample)  # fmt: skip
            self.add("submissions_per_s", name, result["requests_per_s"])
            self.add("submission_errors", name, result["errors"])
            self.explain_errors(name, "submissions", result)
            self.add("rss_web_load_mib", name, peak[0])
            self.say(
                f"{name}: {result['requests_per_s']:.0f} submissions/s, {result['errors']} errors"
            )
            with measure.httpx.Client(timeout=30) as client:
                jobs = [
                    measure.submit(client, system, "trivial", {"input": self.fasta})
                    for _ in range(100)
                ]
            paths = [str(job["@url"]) for job in jobs]
            result = measure.polls_per_s(system, paths, connections=self.args.clients,
                                         seconds=self.args.seconds)  # fmt: skip
            self.add("polls_per_s", name, result["requests_per_s"])
            self.add("poll_errors", name, result["errors"])
            self.explain_errors(name, "polls", result)
            self.say(f"{name}: {result['requests_per_s']:.0f} polls/s, {result['errors']} errors")
        finally:
            system.stop()
            self.drop(database)

    def jobs_phase(self, name: str, round_: int) -> None:
        """The whole system: job latency, a batch of docker jobs, cancellation."""
        database = f"bench_r{round_}_{name}"
        system = self.system(name, f"r{round_}-jobs", database)
        system.start()
        try:
            time.sleep(3)
            self.add("rss_scheduler_idle_mib", name, system.rss("scheduler"))
            self.add("rss_runner_idle_mib", name, system.rss("runner"))
            runs = self.args.runs
            for service, metric, files in (
                ("trivial", "latency_trivial_local_s", {"input": self.fasta}),
                ("trivial-docker", "latency_trivial_docker_s", {"input": self.fasta}),
                ("clustalo", "latency_clustalo_local_s", {"input": self.proteins}),
                ("clustalo-docker", "latency_clustalo_docker_s", {"input": self.proteins}),
            ):
                count = runs if service.startswith("trivial") else max(3, runs // 2)
                values = measure.job_latencies(system, service, count, files=files)
                self.add(metric, name, values)
                self.say(f"{name}: {service} p50 {measure.median(values) * 1000:.0f} ms")
            peak = {"scheduler": 0.0, "runner": 0.0}

            def sample() -> None:
                for role in peak:
                    peak[role] = max(peak[role], system.rss(role))

            result = measure.batch(system, "trivial-docker", self.args.batch, sample=sample)
            self.add("batch_docker_s", name, result["seconds"])
            self.add("rss_scheduler_load_mib", name, peak["scheduler"])
            self.add("rss_runner_load_mib", name, peak["runner"])
            self.say(f"{name}: {self.args.batch} docker jobs in {result['seconds']:.1f} s")
            for service, metric in (("sleep", "cancel_local"), ("sleep-docker", "cancel_docker")):
                values, stuck = measure.cancel_times(system, service, self.args.cancels, seconds=30)
                self.add(f"{metric}_s", name, values)
                self.add(f"{metric}_stuck", name, float(len(stuck)))
                self.say(
                    f"{name}: cancel ({service}) p50 {measure.median(values) * 1000:.0f} ms; "
                    f"{len(stuck)} not final after 10 s ({', '.join(sorted(set(stuck))) or '-'})"
                )
        finally:
            system.stop()
            self.drop(database)

    def stored_phase(self, name: str, round_: int) -> None:
        """GET of one job and a filtered list with many jobs stored."""
        database = f"bench_stored_{name}"
        system = self.system(name, f"r{round_}-stored", database)
        self.fill(system, database)
        system.start(("web",))
        try:
            rng = random.Random(round_)
            picks = [system.url_of_record(system.job_record(rng.randrange(self.args.stored), "trivial"))
                     for _ in range(50)]  # fmt: skip
            measure.request_times(picks[:5], 5)  # warm up
            values = measure.request_times(picks, self.args.gets)
            self.add("stored_get_s", name, values)
            filtered = f"{system.url}/api/services/trivial/jobs?status=COMPLETED&limit=10&skip=100"
            lists = measure.request_times([filtered], self.args.lists)
            self.add("stored_list_s", name, lists)
            self.say(f"{name}: with {self.args.stored} jobs GET p99 "
                     f"{measure.percentile(values, 99) * 1000:.1f} ms, list p50 {measure.median(lists):.2f} s")  # fmt: skip
        finally:
            system.stop()

    def fill(self, system: System, database: str) -> None:
        jobs = self.mongo[database]["jobs" if system.name == "appliance" else "requests"]
        if jobs.estimated_document_count() >= self.args.stored:
            return
        jobs.drop()
        self.say(f"{system.name}: storing {self.args.stored} finished jobs")
        chunk = 5000
        for start in range(0, self.args.stored, chunk):
            jobs.insert_many([system.job_record(i, "trivial")
                              for i in range(start, min(start + chunk, self.args.stored))])  # fmt: skip

    def floor_phase(self) -> None:
        """The runtimes themselves: bare ``docker run --rm`` and bare processes."""
        runs = self.args.runs
        self.add("latency_trivial_docker_s", "floor",
                 measure.bare_docker_run(TRIVIAL_IMAGE, ["cat", "input.fa"], runs, self.floor_dir))  # fmt: skip
        self.add("latency_trivial_docker_s", "floor_isolated",
                 measure.bare_docker_run(TRIVIAL_IMAGE, ["cat", "input.fa"], runs, self.floor_dir,
                                         isolated=True))  # fmt: skip
        self.add("latency_clustalo_docker_s", "floor", measure.bare_docker_run(
            CLUSTALO_IMAGE, ["clustalo", "--infile=proteins.fa", "--outfmt=clustal"], max(3, runs // 2),
            self.floor_dir))  # fmt: skip
        self.add("latency_trivial_local_s", "floor",
                 measure.bare_process(["cat", "input.fa"], runs, self.floor_dir))  # fmt: skip
        self.add(
            "latency_clustalo_local_s",
            "floor",
            measure.bare_process(
                ["clustalo", "--infile=proteins.fa", "--outfmt=clustal"],
                max(3, runs // 2),
                self.floor_dir,
            ),
        )
        seconds = measure.bare_batch(TRIVIAL_IMAGE, ["cat", "input.fa"], self.args.batch,
                                     self.args.slots, self.floor_dir)  # fmt: skip
        self.add("batch_docker_s", "floor", seconds)
        self.add("batch_docker_s", "floor_isolated", measure.bare_batch(
            TRIVIAL_IMAGE, ["cat", "input.fa"], self.args.batch, self.args.slots, self.floor_dir,
            isolated=True))  # fmt: skip
        self.say(
            f"floor: {self.args.batch} bare docker runs, {self.args.slots} at a time, in {seconds:.1f} s"
        )

    # -- the whole run ---------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        started = datetime.now(UTC)
        phases = [p for p in ("web", "jobs", "stored") if p in self.args.phases]
        for round_ in range(self.args.rounds):
            chosen = tuple(n for n in SYSTEMS if n in self.args.systems)
            order = chosen if round_ % 2 == 0 else chosen[::-1]
            self.say(f"round {round_ + 1} of {self.args.rounds}: {' then '.join(order)}")
            for phase in phases:
                for name in order:
                    getattr(self, f"{phase}_phase")(name, round_)
            if "jobs" in phases:
                self.floor_phase()
        return {
            "started": started.isoformat(),
            "finished": datetime.now(UTC).isoformat(),
            "machine": machine(self.args.mongodb_uri),
            "settings": {k: v for k, v in vars(self.args).items() if k != "out"},
            "samples": self.samples,
            "notes": self.notes,
        }

    def close(self, *, keep: bool = False) -> None:
        for name in SYSTEMS:
            self.drop(f"bench_stored_{name}")
        self.mongo.close()
        if keep:
            self.say(f"kept {self.work} (each system's logs are in its logs/ folder)")
        else:
            shutil.rmtree(self.work, ignore_errors=True)


def machine(mongodb_uri: str) -> dict[str, str]:
    def out(*argv: str) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
        except OSError:
            return "?"

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?")  # fmt: skip
    memory = next(line.split(":", 1)[1].strip() for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))  # fmt: skip
    server = MongoClient(mongodb_uri).admin.command("buildInfo")
    slivka = out(str(BENCH / ".venv-slivka" / "bin" / "python"), "-c",
                 "import importlib.metadata as m; print(m.version('slivka'))")  # fmt: skip
    return {
        "cpus": out("nproc"), "cpu": cpu, "memory": memory, "kernel": platform.release(),
        "os": out("sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"),
        "docker": out("docker", "version", "--format", "{{.Server.Version}}"),
        "python": platform.python_version(), "mongodb_server": f"{server.get('version')}"
        + (" (FerretDB)" if "ferretdb" in json.dumps(server).lower() else ""),
        "slivka": slivka, "wrk": out("sh", "-c", "wrk -v 2>&1 | head -1"),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark the appliance against slivka 0.8.5b7.")
    parser.add_argument("--mongodb-uri", required=True)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--phases", default="web,jobs,stored", help="any of web,jobs,stored")
    parser.add_argument("--systems", default="appliance,slivka", help="for a partial look (both)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent HTTP clients (32)")
    parser.add_argument("--seconds", type=int, default=10, help="length of each load run (10)")
    parser.add_argument("--runs", type=int, default=20, help="trivial jobs timed per round (20)")
    parser.add_argument(
        "--batch", type=int, default=200, help="docker jobs submitted at once (200)"
    )
    parser.add_argument("--cancels", type=int, default=5, help="cancellations timed per round (5)")
    parser.add_argument(
        "--stored", type=int, default=100_000, help="jobs stored for GET/list (100,000)"
    )
    parser.add_argument("--gets", type=int, default=300, help="job GETs timed per round (300)")
    parser.add_argument("--lists", type=int, default=5, help="filtered lists timed per round (5)")
    parser.add_argument(
        "--http-workers", type=int, default=2, help="web workers of each system (2)"
    )
    parser.add_argument("--slots", type=int, default=4, help="execution slots of each system (4)")
    parser.add_argument("--out", type=Path, help=(
        "where the results go (default: bench/results for the full run with every option at "
        "its default, which the README quotes; a new folder under /tmp for any other run)"))  # fmt: skip
    args = parser.parse_args(argv)
    if args.out is None:
        defaults = vars(parser.parse_args(["--mongodb-uri", args.mongodb_uri]))
        full = vars(args) == defaults
        args.out = (BENCH / "results" if full else
                    Path(tempfile.mkdtemp(prefix=f"appliance-bench-{time.strftime('%Y%m%d-%H%M%S')}-")))  # fmt: skip
    args.phases = args.phases.split(",")
    args.systems = args.systems.split(",")
    run = Run(args)
    try:
        results = run.run()
    except BaseException:
        run.close(keep=True)
        raise
    run.close()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(results, indent=1) + "\n")
    table = report.table(results)
    print(table)
    (args.out / "latest.md").write_text(report.markdown(results) + "\n")
    report.plot(results, args.out / "latency.png")
    print(f"\nraw numbers: {args.out / 'latest.json'}; plot: {args.out / 'latency.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
