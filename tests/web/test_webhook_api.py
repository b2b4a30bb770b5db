"""A job names a webhook in the form (the API and the pages alike): checked at once,
recorded with its notice, shown back without its URL; and the reuse field."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pymongo.database import Database
from starlette.testclient import TestClient

from appliance.settings import Settings
from appliance.web.app import create_app

DB = Database[dict[str, Any]]
HOOK = "https://hooks.example.org/appliance?token=receiver-secret"


@pytest.fixture
def hooked(web_settings: Settings, db: DB, tmp_path: Path) -> Iterator[TestClient]:
    secret = tmp_path / "webhook.secret"
    secret.write_text("0123456789abcdef0123456789abcdef\n")
    db["notices"].delete_many({})
    settings = replace(web_settings, webhook_secret_file=secret)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def test_a_job_names_its_webhook_and_the_api_shows_how_it_goes(hooked: TestClient, db: DB) -> None:
    response = hooked.post("/api/services/echo/jobs", data={"words": "hi", "_webhook": HOOK})
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["webhook"] == {"status": "pending", "attempts": 0}
    assert "receiver-secret" not in response.text  # the URL is never shown back
    shown = hooked.get(f"/api/jobs/{job['id']}").json()
    assert shown["webhook"] == {"status": "pending", "attempts": 0}
    assert "_webhook" not in shown["parameters"]
    notice = db["notices"].find_one({"_id": job["id"]})
    assert notice is not None and notice["url"] == HOOK and notice["attempts"] == 0
    stored = db["jobs"].find_one({"_id": job["id"]})
    assert stored is not None and stored["notify"] == {"url": HOOK, "state": "pending"}
    # a job without one shows no key, and gets no notice
    plain = hooked.post("/api/services/echo/jobs", data={"words": "hi"}).json()
    assert "webhook" not in plain and db["notices"].count_documents({}) == 1


@pytest.mark.parametrize(("hook", "words"), [
    ("http://127.0.0.1:9/hook", "not a public address"),
    ("http://169.254.169.254/latest", "not a public address"),
    ("file:///etc/passwd", "http:// or https://"),
])  # fmt: skip
def test_a_webhook_that_is_not_taken_is_a_form_error(
    hooked: TestClient, db: DB, hook: str, words: str
) -> None:
    response = hooked.post("/api/services/echo/jobs", data={"words": "hi", "_webhook": hook})
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert [e["parameter"] for e in errors] == ["_webhook"] and words in errors[0]["message"]
    assert db["jobs"].count_documents({}) == 0 and db["notices"].count_documents({}) == 0


def test_a_site_without_a_secret_takes_no_webhooks(client: TestClient, db: DB) -> None:
    response = client.post("/api/services/echo/jobs", data={"words": "hi", "_webhook": HOOK})
    assert response.status_code == 422
    assert "no webhook_secret_file" in response.json()["errors"][0]["message"]
    assert db["jobs"].count_documents({}) == 0


def test_the_pages_form_takes_a_webhook_too(hooked: TestClient, db: DB) -> None:
    page = hooked.get("/services/echo")
    assert 'name="_webhook"' in page.text
    response = hooked.post("/services/echo", data={"words": "hi", "_webhook": HOOK},
                           follow_redirects=False)  # fmt: skip
    assert response.status_code in (302, 303), response.text
    job_id = response.headers["location"].rstrip("/").rsplit("/", 1)[-1]
    stored = db["jobs"].find_one({"_id": job_id})
    assert stored is not None and stored["notify"]["url"] == HOOK


def test_the_pages_say_what_is_wrong_with_a_webhook_beside_its_field(hooked: TestClient) -> None:
    response = hooked.post("/services/echo", data={"words": "hi", "_webhook": "http://10.0.0.1/"})
    assert response.status_code == 422
    assert 'id="webhook-error"' in response.text and "not a public address" in response.text
    assert 'value="http://10.0.0.1/"' in response.text  # kept, to be corrected


def test_the_pages_form_has_no_webhook_field_where_the_site_sends_none(client: TestClient) -> None:
    assert 'name="_webhook"' not in client.get("/services/echo").text


def test_the_reuse_field_takes_true_or_false_only(client: TestClient, db: DB) -> None:
    bad = client.post("/api/services/echo/jobs", data={"words": "hi", "_reuse": "maybe"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["parameter"] == "_reuse"
    ok = client.post("/api/services/echo/jobs", data={"words": "hi", "_reuse": "false"})
    assert ok.status_code == 202 and "_reuse" not in ok.json()["parameters"]
    assert db["jobs"].count_documents({}) == 1  # the refused one left nothing


@pytest.fixture
def mailing(web_settings: Settings, db: DB) -> Iterator[TestClient]:
    db["notices"].delete_many({})
    settings = replace(web_settings, smtp_host="smtp.example.org")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def test_a_job_names_an_address_kept_in_its_notice_only(mailing: TestClient, db: DB) -> None:
    response = mailing.post(
        "/api/services/echo/jobs", data={"words": "hi", "_email": "ada@example.org"}
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["email"] == {"status": "pending", "attempts": 0} and "webhook" not in job
    assert "ada@example.org" not in response.text + mailing.get(f"/api/jobs/{job['id']}").text
    stored = db["jobs"].find_one({"_id": job["id"]})
    assert stored is not None and stored["notify_email"] == {"state": "pending"}
    assert "ada@example.org" not in str(stored)
    notice = db["notices"].find_one({"job": job["id"]})
    assert notice is not None and (notice["to"], notice["channel"]) == ("ada@example.org", "email")
    page = mailing.get("/services/echo")
    assert 'name="_email"' in page.text
    bad = mailing.post("/api/services/echo/jobs", data={"words": "hi", "_email": "ada@@x"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["parameter"] == "_email"


def test_a_site_without_smtp_takes_no_address(client: TestClient, db: DB) -> None:
    response = client.post(
        "/api/services/echo/jobs", data={"words": "hi", "_email": "ada@example.org"}
    )
    assert response.status_code == 422
    assert "no smtp_host" in response.json()["errors"][0]["message"]
    assert 'name="_email"' not in client.get("/services/echo").text
    assert db["jobs"].count_documents({}) == 0
