"""HTTPS in the bundle, as a site turns it on in its settings file: first a self-signed
certificate (a workstation), then the site's own (signed by a test CA here), put in by a
second ``scripts/up`` as a renewal would be. The clients users run work over it: the
previous system's client, py-tes, the appliance's CLI, a browser; plain HTTP redirects;
old protocols are refused."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import tes
from playwright.sync_api import sync_playwright
from slivka_client import SlivkaClient

from tests.bundle.compose import assert_alignment_of_the_input, free_port, read_clustal
from tests.bundle.test_bundle import run_job
from tests.conftest import ROOT

PROJECT = "appliance-tls"
STATE = ROOT / "compose" / ".state"


@dataclass
class TlsBundle:
    http: str  # http://localhost:PORT
    https: str  # https://localhost:PORT
    settings: Path  # the site's settings file
    env: dict[str, str]  # scripts/up's environment
    printed: str  # what the first scripts/up printed


def _up(env: dict[str, str]) -> str:
    up = subprocess.run([str(ROOT / "scripts" / "up")], env=env, capture_output=True,
                        text=True, timeout=1800)  # fmt: skip
    assert up.returncode == 0, up.stderr[-3000:]
    return up.stdout


@pytest.fixture(scope="module")
def tls_bundle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBundle]:
    folder = tmp_path_factory.mktemp("tls")
    settings = folder / "appliance.env"
    https_port = free_port()
    settings.write_text((ROOT / "compose" / "appliance.env").read_text() + "\n"
                        "APPLIANCE_TLS_SELF_SIGNED=true\n"
                        f"APPLIANCE_HTTPS_PORT={https_port}\n"
                        "APPLIANCE_TES_ENABLED=true\nAPPLIANCE_TES_ANONYMOUS=true\n")  # fmt: skip
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")} | {
        "APPLIANCE_PROJECT": PROJECT, "APPLIANCE_PORT": str(port),
        "APPLIANCE_BUILD": "--airgapped", "APPLIANCE_ENV_FILE": str(settings),
    }  # fmt: skip
    try:
        printed = _up(env)
        yield TlsBundle(f"http://localhost:{port}", f"https://localhost:{https_port}",
                        settings, env, printed)  # fmt: skip
    finally:
        down = subprocess.run([str(ROOT / "scripts" / "down"), "--volumes"], env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert down.returncode == 0, down.stderr
        volumes = subprocess.run(["docker", "volume", "ls", "-q"], capture_output=True,
                                 text=True).stdout  # fmt: skip
        assert f"{PROJECT}-tls" not in volumes


def _self_signed() -> Path:
    return STATE / f"{PROJECT}-tls.crt"


def test_scripts_up_says_the_https_address_and_what_to_trust(tls_bundle: TlsBundle) -> None:
    assert f"Open {tls_bundle.https}/ in a browser" in tls_bundle.printed
    trust = f"SSL_CERT_FILE=compose/.state/{PROJECT}-tls.crt scripts/example clustalo"
    assert trust in tls_bundle.printed
    assert f"curl -s --cacert compose/.state/{PROJECT}-tls.crt" in tls_bundle.printed


def test_plain_http_is_redirected_but_probes_answer(tls_bundle: TlsBundle) -> None:
    answer = httpx.get(f"{tls_bundle.http}/api/services?x=1")
    assert answer.status_code == 308
    assert answer.headers["location"] == f"{tls_bundle.https}/api/services?x=1"
    posted = httpx.post(f"{tls_bundle.http}/api/services/clustalo/jobs", data={"a": "b"})
    assert posted.status_code == 308  # a POST stays a POST where it is sent again
    assert httpx.get(f"{tls_bundle.http}/healthz").json() == {"status": "alive"}


def test_the_certificate_is_verified_and_only_modern_protocols_are_spoken(
    tls_bundle: TlsBundle,
) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{tls_bundle.https}/api/version")  # not trusted unless one says so
    trusted = ssl.create_default_context(cafile=str(_self_signed()))
    answer = httpx.get(f"{tls_bundle.https}/api/version", verify=trusted)
    assert answer.status_code == 200 and answer.json()["APIVersion"] == "1.1"
    assert "strict-transport-security" not in answer.headers  # not for a self-signed one
    port = int(tls_bundle.https.rsplit(":", 1)[1])
    for version, works in ((ssl.TLSVersion.TLSv1_3, True), (ssl.TLSVersion.TLSv1_2, True),
                           (ssl.TLSVersion.TLSv1_1, False)):  # fmt: skip
        context = ssl.create_default_context(cafile=str(_self_signed()))
        context.set_ciphers("ALL:@SECLEVEL=0")  # this side would speak it: the proxy decides
        with warnings.catch_warnings():  # TLS 1.1 is deprecated: that is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = context.maximum_version = version
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                context.wrap_socket(raw, server_hostname="localhost") as secure,
            ):
                assert secure.version() == version.name.replace("_", ".")
            assert works, version
        except ssl.SSLError:
            assert not works, version


def test_the_previous_systems_client_runs_a_job_over_https(
    tls_bundle: TlsBundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(_self_signed()))
    outputs = run_job(SlivkaClient(tls_bundle.https + "/"), "clustalo", {"iterations": "1"})
    assert_alignment_of_the_input(read_clustal(outputs["alignment.aln"]))


def test_py_tes_and_the_command_line_over_https(
    tls_bundle: TlsBundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(_self_signed()))
    client = tes.HTTPClient(f"{tls_bundle.https}/ga4gh/tes", timeout=30)
    info = client.get_service_info()
    assert info.name and client.list_tasks().tasks in (None, [])
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    listed = subprocess.run(
        [sys.executable, "-m", "appliance", "services", "--url", tls_bundle.https],
        env={**env, "SSL_CERT_FILE": str(_self_signed())}, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert "clustalo" in listed.stdout


def test_the_pages_over_https(tls_bundle: TlsBundle) -> None:
    chromium = os.environ.get("APPLIANCE_TEST_CHROMIUM")
    if not chromium:
        pytest.fail("APPLIANCE_TEST_CHROMIUM is not set: run the tests with scripts/test")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        context = browser.new_context(ignore_https_errors=True)  # a person who said "trust it"
        page = context.new_page()
        page.goto(f"{tls_bundle.http}/")  # typed without https: redirected
        assert page.url == f"{tls_bundle.https}/"
        assert page.locator("a[href*='/services/clustalo']").count() >= 1
        browser.close()


def test_a_sites_own_certificate_replaces_it_on_the_next_up(
    tls_bundle: TlsBundle, tmp_path: Path
) -> None:
    """Last: the site's certificate (a renewal looks the same), put in by scripts/up."""
    ca_key, ca, key, request, cert = (tmp_path / n for n in
                                      ("ca.key", "ca.pem", "site.key", "site.csr", "site.pem"))  # fmt: skip

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Test CA",
            "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
            "-keyout", str(key), "-out", str(request))  # fmt: skip
    extensions = tmp_path / "ext.cnf"
    extensions.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", "2", "-extfile", str(extensions), "-out", str(cert))  # fmt: skip
    old = tmp_path / "self-signed.pem"
    old.write_bytes(_self_signed().read_bytes())
    original = tls_bundle.settings.read_text()
    wrong = original + f"APPLIANCE_TLS_CERTIFICATE={cert}\nAPPLIANCE_TLS_KEY={ca_key}\n"
    tls_bundle.settings.write_text(wrong)
    refused = subprocess.run([str(ROOT / "scripts" / "up")], env=tls_bundle.env,
                             capture_output=True, text=True, timeout=1800)  # fmt: skip
    assert refused.returncode != 0
    assert "the key does not belong to the certificate" in refused.stderr
    tls_bundle.settings.write_text(
        original + f"APPLIANCE_TLS_CERTIFICATE={cert}\nAPPLIANCE_TLS_KEY={key}\n"
    )
    _up(tls_bundle.env)
    answer = httpx.get(f"{tls_bundle.https}/api/version",
                       verify=ssl.create_default_context(cafile=str(ca)))  # fmt: skip
    assert answer.status_code == 200
    assert answer.headers["strict-transport-security"] == "max-age=31536000"
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(
            f"{tls_bundle.https}/api/version", verify=ssl.create_default_context(cafile=str(old))
        )  # the old one is gone
