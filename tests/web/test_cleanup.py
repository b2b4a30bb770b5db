"""A refused or failed submission leaves no file and no file record behind, whatever
failed: a refusal, or an error nobody expected (injected here after the files are saved)."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo.database import Database
from starlette.testclient import TestClient

from appliance.settings import Settings
from appliance.web import jobs

FASTA = b">a\nMKV\n"


def submit(client: TestClient) -> Any:
    return client.post("/api/services/echo/jobs", data={"words": "hi"},
                       files={"seqs": ("s.fa", FASTA, "application/fasta")})  # fmt: skip


def boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("/secret/path went wrong")


@pytest.mark.parametrize("where", ["sniff_all", "validate", "record_job"])
def test_an_unexpected_error_after_the_files_are_saved_leaves_nothing(
    client: TestClient, web_settings: Settings, db: Database[dict[str, object]],
    monkeypatch: pytest.MonkeyPatch, where: str,
) -> None:  # fmt: skip
    assert submit(client).status_code == 202  # the path works before it is broken
    kept = set(web_settings.uploads_dir.iterdir())
    records = db["files"].count_documents({})
    monkeypatch.setattr(jobs, where, boom)
    response = submit(client)
    assert response.status_code == 500
    assert response.json()["status"] == 500
    assert "RuntimeError" not in response.text and "/secret" not in response.text
    assert set(web_settings.uploads_dir.iterdir()) == kept
    assert db["files"].count_documents({}) == records
