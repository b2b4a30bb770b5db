"""A client of the appliance's public API (what `appliance submit`, `jobs`, `watch` and `cancel`
use): uploads, submissions, job states, output files. It speaks HTTP to the proxy only, as any
user's program would; errors become ``ClientError`` with the server's own message."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import httpx

from appliance.errors import ApplianceError

FINAL = ("COMPLETED", "FAILED", "ERROR", "INTERRUPTED", "DELETED", "REJECTED")


class ClientError(ApplianceError):
    """The appliance refused a request, or could not be reached."""


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    if isinstance(body, dict) and isinstance(body.get("errors"), list):  # a form's errors
        return "; ".join(f"{e.get('parameter')}: {e.get('message')}" for e in body["errors"]
                         if isinstance(e, dict))  # fmt: skip
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return response.text.strip()[:300]


class Client:
    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0,
                 where: str = "") -> None:  # fmt: skip
        """``where``: how ``url`` was chosen, said when nothing answers there (a user who
        gave no ``--url`` learns which address was tried)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.where = where
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            where = f" ({self.where})" if self.where else ""
            raise ClientError(f"cannot reach the appliance at {self.url}{where}: {exc}") from None
        if response.status_code >= 400:
            raise ClientError(f"{method} {path}: {response.status_code} {_message(response)}")
        return response

    def upload(self, path: Path) -> str:
        with path.open("rb") as source:
            answer = self._call("POST", "/api/files", files={"file": (path.name, source)})
        return str(answer.json()["id"])

    def submit(
        self, service: str, values: Sequence[tuple[str, str]], files: Sequence[tuple[str, Path]]
    ) -> str:
        data: dict[str, list[str]] = {}
        for name, value in [*values, *((name, self.upload(path)) for name, path in files)]:
            data.setdefault(name, []).append(value)  # repeated names: an array parameter
        answer = self._call("POST", f"/api/services/{service}/jobs", data=data)
        return str(answer.json()["id"])

    def services(self) -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = self._call("GET", "/api/services").json()["services"]
        return listed

    def service(self, service_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self._call("GET", f"/api/services/{service_id}").json()
        return found

    def job(self, job_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self._call("GET", f"/api/jobs/{job_id}").json()
        return found

    def jobs(self, **filters: Any) -> list[dict[str, Any]]:
        params = {k: v for k, v in filters.items() if v is not None}
        listed: list[dict[str, Any]] = self._call("GET", "/api/jobs", params=params).json()["jobs"]
        return listed

    def cancel(self, job_id: str) -> None:
        self._call("DELETE", f"/api/jobs/{job_id}")

    def wait(self, job_id: str, progress: Callable[[dict[str, Any], float], None] | None = None,
             interval: float = 0.5, timeout: float | None = None) -> dict[str, Any]:  # fmt: skip
        """Poll the job until it ends (``progress`` is told of each poll)."""
        started = time.monotonic()
        while True:
            job = self.job(job_id)
            waited = time.monotonic() - started
            if progress is not None:
                progress(job, waited)
            if job.get("finished") or job.get("status") in FINAL:
                return job
            if timeout is not None and waited > timeout:
                raise ClientError(
                    f"job {job_id} did not end in {timeout:g} s (it is {job.get('status')})"
                )
            time.sleep(interval)

    def tail(self, job_id: str, path: str, lines: int = 10) -> list[str]:
        """The last lines of one of the job's files (none if it has no such file)."""
        for file in self._call("GET", f"/api/jobs/{job_id}/files").json()["files"]:
            if file.get("path") == path:
                text = self._call("GET", file["@content"]).text
                return text.splitlines()[-lines:]
        return []

    def download(self, job_id: str, folder: Path) -> list[Path]:
        """Every output file of the job into ``folder`` (at its path; nothing outside it)."""
        written = []
        for file in self._call("GET", f"/api/jobs/{job_id}/files").json()["files"]:
            relative = PurePosixPath(str(file.get("path") or ""))
            if not relative.parts or relative.is_absolute() or ".." in relative.parts:
                raise ClientError(f"the appliance named an output path outside the job: {relative}")
            target = folder.joinpath(*relative.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with self.http.stream("GET", file["@content"]) as response:
                if response.status_code >= 400:
                    raise ClientError(f"downloading {relative}: {response.status_code}")
                with target.open("wb") as sink:
                    for chunk in response.iter_bytes():
                        sink.write(chunk)
            written.append(target)
        return written
