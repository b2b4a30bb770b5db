from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymongo import MongoClient
from pymongo.database import Database
from starlette.testclient import TestClient

from appliance.messaging import WakeReceiver
from appliance.settings import Settings
from appliance.tokens import token_hash
from appliance.web.app import create_app
from tests.helpers import make_settings

OPERATOR = "operator-token-for-tests"
AS_OPERATOR = {"Authorization": f"Bearer {OPERATOR}"}

ECHO = """\
appliance-version: 1
name: Echo
description: Says things.
author: Tester
version: "1.0"
license: MIT
classifiers: ["Topic : Testing"]
image: x
runner: local
parameters:
  words: {name: Words, type: "text[]", required: false, max-length: 50}
  count: {name: Count, type: integer, min: 1, max: 10, default: 1}
  ratio: {name: Ratio, type: decimal, min: 0, max: 1, max-exclusive: true, required: false}
  loud: {name: Loud, type: flag, default: false}
  style: {name: Style, type: choice, choices: {Plain: plain, Fancy: fancy}, default: Plain}
  seqs: {name: Sequences, type: file, media-type: application/fasta, required: false, max-size: 1K}
  extra: {name: Extra, type: text, required: false, condition: "loud"}
command: echo
args:
  words: {arg: "$(value)"}
outputs:
  out: {path: "*.txt", media-type: text/plain}
presets:
  quiet: {name: Quiet, values: {loud: false, count: 1}}
"""


@pytest.fixture
def web_settings(tmp_path: Path, mongodb_uri: str, database_name: str) -> Settings:
    settings = make_settings(tmp_path, mongodb_uri, database_name, upload_max_bytes=2000,
                             operator_token_sha256=token_hash(OPERATOR))  # fmt: skip
    (settings.runners_dir / "local.yaml").write_text("backend: local\n")
    (settings.services_dir / "echo.service.yaml").write_text(ECHO)
    return settings


@pytest.fixture
def db(mongodb_uri: str, database_name: str) -> Iterator[Database[dict[str, object]]]:
    client: MongoClient[dict[str, object]] = MongoClient(mongodb_uri)
    database = client[database_name]
    for name in ("jobs", "files", "cancels", "services", "usage", "stats"):
        database[name].delete_many({})
    yield database
    client.close()


@pytest.fixture
def client(web_settings: Settings, db: Database[dict[str, object]]) -> Iterator[TestClient]:
    with TestClient(create_app(web_settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def wakeups(web_settings: Settings, client: TestClient) -> Iterator[WakeReceiver]:
    """A scheduler's end of the wake-ups, once the web process reaches it (what is sent
    before is dropped: a wake-up is a hint)."""
    receiver = WakeReceiver(web_settings.scheduler_address[0])
    for _ in range(200):
        receiver.attend()  # a scheduler waits in receive(): this one does not
        if set(client.get("/readyz").json()["wakeups"].values()) == {"connected"}:
            break
        time.sleep(0.02)
    for _ in range(5):  # the subscription follows the connection
        receiver.attend()
        time.sleep(0.02)
    yield receiver
    receiver.close()
