"""The test bundle's site files, made as docs/tes.md tells a site to: a settings file of
its own outside the checkout (a copy of compose/appliance.env with TES and S3 lines) and
the files it names beside it (/etc/appliance/site/NAME), which scripts/up copies in. No
tracked file is edited and no compose override is needed."""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.conftest import ROOT

TES_TOKEN = "workflow-token-0123456789abcdef"
SNAKEMAKE_IMAGE = "appliance/snakemake:9.27.1"
BUCKET = "workflows"


@dataclass(frozen=True)
class Site:
    env_file: Path
    s3_endpoint: str  # as the bundle's containers (and this host) reach it
    s3_key: str
    s3_secret: str

    def boto(self) -> Any:  # boto3 has no types
        return boto3.client("s3", endpoint_url=self.s3_endpoint, aws_access_key_id=self.s3_key,
                            aws_secret_access_key=self.s3_secret, region_name="us-east-1")  # fmt: skip


def bridge_gateway() -> str:
    """This host's address on Docker's default bridge: containers on any of the engine's
    bridges reach the host there."""
    return subprocess.run(
        ["docker", "network", "inspect", "bridge", "-f", "{{(index .IPAM.Config 0).Gateway}}"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


def make_site(folder: Path) -> Site:
    given = os.environ.get("APPLIANCE_TEST_S3", "").split()
    if len(given) != 3:
        pytest.fail("APPLIANCE_TEST_S3 is not set: run the tests with scripts/test")
    local, key, secret = given
    endpoint = f"http://{bridge_gateway()}:{local.rsplit(':', 1)[1]}"
    token_hash = hashlib.sha256(TES_TOKEN.encode()).hexdigest()
    (folder / "tes-clients").write_text(f"snake {token_hash}\n")
    keys = folder / "s3-keys"
    keys.write_text(f"{key}\n{secret}\n")
    keys.chmod(0o600)
    env = folder / "appliance.env"
    env.write_text((ROOT / "compose" / "appliance.env").read_text() + "\n".join([
        "APPLIANCE_TES_ENABLED=true",
        "APPLIANCE_TES_TOKENS_FILE=/etc/appliance/site/tes-clients",
        f"APPLIANCE_TES_IMAGES={SNAKEMAKE_IMAGE},alpine:",
        f"APPLIANCE_TES_NETWORK_IMAGES={SNAKEMAKE_IMAGE}",
        f"APPLIANCE_TES_S3_ENDPOINT={endpoint}",
        "APPLIANCE_TES_S3_CREDENTIALS_FILE=/etc/appliance/site/s3-keys",
        f"APPLIANCE_TES_S3_ROOTS={BUCKET}",
        "",
    ]))  # fmt: skip
    site = Site(env, endpoint, key, secret)
    client = site.boto()
    if BUCKET not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket=BUCKET)
    return site
