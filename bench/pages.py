"""How fast the app renders the web pages, beside the API's JSON for the same things.

    .venv/bin/python -m bench.pages --mongodb-uri mongodb://127.0.0.1:27017/ [--runs 500]

The app alone, in process (no proxy, no network): each page is requested ``--runs`` times
through httpx's ASGI transport, one after the other, and the time from request to the last
byte of the answer is kept. The shipped services (``services/``) are the catalogue; the job
page is of a job submitted through the Clustal Omega form (no scheduler runs: it stays
ACCEPTED). Baselines: ``/healthz`` (the floor of the app and the transport) and the API's
JSON of the same service and job. The targets (issue 17): a service page under 50 KB,
rendered in under 20 ms. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import httpx

from appliance.web.app import create_app
from bench.measure import median, percentile
from tests.helpers import make_settings

ROOT = Path(__file__).resolve().parent.parent


async def timed(client: httpx.AsyncClient, path: str, runs: int) -> tuple[list[float], int]:
    samples, size = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        answer = await client.get(path)
        samples.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, (path, answer.status_code)
        size = len(answer.content)
    return samples, size


async def main(uri: str, runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = make_settings(Path(tmp), uri, f"bench_pages_{int(time.time())}",
                                 services_dir=str(ROOT / "services"))  # fmt: skip
        (settings.runners_dir / "docker.yaml").write_text("backend: docker\n")
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                example = (ROOT / "examples" / "proteins.fa").read_text()
                sent = await client.post("/services/clustalo", data={"input.text": example})
                assert sent.status_code == 303, sent.text
                job = sent.headers["location"].rsplit("/", 1)[1]
                rows = [
                    ("the floor: /healthz", "/healthz"),
                    ("service page: Clustal Omega form", "/services/clustalo"),
                    ("  API: /api/services/clustalo", "/api/services/clustalo"),
                    ("front page: the service list", "/"),
                    ("  API: /api/services", "/api/services"),
                    ("job page", f"/jobs/{job}"),
                    ("  API: /api/jobs/ID", f"/api/jobs/{job}"),
                ]
                await timed(client, "/services/clustalo", 20)  # templates compiled, caches warm
                print(f"{runs} requests each, one at a time, in process (ms)")
                print(f"{'what':38} {'p50':>7} {'p95':>7} {'max':>7} {'size':>9}")
                for label, path in rows:
                    samples, size = await timed(client, path, runs)
                    print(f"{label:38} {median(samples):7.2f} {percentile(samples, 95):7.2f} "
                          f"{max(samples):7.2f} {size / 1024:7.1f} KB")  # fmt: skip
            await app.state.appliance.store.drop_database()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mongodb-uri", default="mongodb://127.0.0.1:27017/")
    parser.add_argument("--runs", type=int, default=500)
    options = parser.parse_args()
    asyncio.run(main(options.mongodb_uri, options.runs))
