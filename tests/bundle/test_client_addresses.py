"""Per-client limits through the compose bundle itself: clients on other machines (here,
network namespaces routed through this host, as a LAN is) reach the proxy with their own
addresses; a front proxy on this host (its connections come from the front network's
gateway) is trusted by ``trusted_proxies`` and names each client in X-Forwarded-For.

The bundle is started with a settings file and a compose override of the test's own
(``APPLIANCE_ENV_FILE``, ``APPLIANCE_COMPOSE_OVERRIDE``), as a site keeps them."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from appliance.web.quotas import COUNT_AGE
from tests.bundle.compose import compose, start_bundle
from tests.conftest import ROOT

PROJECT = "appliance-addrs"
HOLD = """
import socket, sys, time
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
head = ("POST /api/files HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 100000\\r\\n"
        "Content-Type: multipart/form-data; boundary=b\\r\\n\\r\\n"
        '--b\\r\\nContent-Disposition: form-data; name="file"; filename="a"\\r\\n\\r\\n')
held = [socket.create_connection((host, port)) for _ in range(count)]
for s in held:
    s.sendall(head.encode())
print("held", flush=True)
for _ in range(60):  # a byte a second: a slow upload, never a timed-out one
    for s in held:
        s.sendall(b"x")
    time.sleep(1)
"""


@dataclass(frozen=True)
class Machine:
    """A client with an address of its own: a network namespace behind a veth pair."""

    name: str
    address: str  # its own
    gateway: str  # this host's end, where it reaches the published port

    def run(self, *argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], input=stdin,
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    def status(self, url: str, *curl: str) -> int:
        done = self.run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "20",
                        *curl, url)  # fmt: skip
        return int(done.stdout or 0)


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True, text=True)


def _machine(number: int) -> Machine:
    name, host_end = f"appl-cli{number}", f"vappl{number}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    subprocess.run(["ip", "link", "del", host_end], capture_output=True)
    _ip("netns", "add", name)
    _ip("link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", name)
    gateway, address = f"10.231.{number}.1", f"10.231.{number}.2"
    _ip("addr", "add", f"{gateway}/24", "dev", host_end)
    _ip("link", "set", host_end, "up")
    for argv in (["addr", "add", f"{address}/24", "dev", "eth0"], ["link", "set", "eth0", "up"],
                 ["link", "set", "lo", "up"], ["route", "add", "default", "via", gateway]):  # fmt: skip
        _ip("-n", name, *argv)
    return Machine(name, address, gateway)


@pytest.fixture(scope="module")
def machines() -> Iterator[tuple[Machine, Machine]]:
    if os.geteuid() != 0:
        pytest.fail("these tests make network namespaces: run them as root (CI does)")
    made = (_machine(1), _machine(2))
    yield made
    for number, machine in enumerate(made, 1):
        subprocess.run(["ip", "netns", "del", machine.name], capture_output=True)
        subprocess.run(["ip", "link", "del", f"vappl{number}"], capture_output=True)


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 for the front network that no Docker network or route of this host uses."""
    used = []
    names = subprocess.run(["docker", "network", "ls", "-q"], capture_output=True, text=True)
    for network in names.stdout.split():
        info = subprocess.run(["docker", "network", "inspect", network], capture_output=True,
                              text=True).stdout  # fmt: skip
        for config in json.loads(info)[0]["IPAM"]["Config"] or []:
            if "Subnet" in config:
                used.append(ipaddress.ip_network(config["Subnet"]))
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    used += [ipaddress.ip_network(line.split()[0]) for line in routes.splitlines()
             if "/" in line.split()[0]]  # fmt: skip
    for third in range(240, 256):
        candidate = ipaddress.IPv4Network(f"10.232.{third}.0/24")
        if not any(candidate.overlaps(u) for u in used if u.version == 4):
            return candidate
    raise AssertionError("no free /24 in 10.232.240.0/20 for the front network")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The bundle published on every address, its front network pinned so that its
    gateway can be named a trusted proxy: (port, gateway)."""
    site = tmp_path_factory.mktemp("site")
    subnet = _free_subnet()
    gateway = str(subnet.network_address + 1)
    (site / "override.yaml").write_text(
        f"networks:\n  front:\n    ipam:\n      config: [{{subnet: {subnet}, gateway: {gateway}}}]\n"
    )
    settings = (ROOT / "compose" / "appliance.env").read_text() + "\n".join([
        f"APPLIANCE_TRUSTED_PROXIES={gateway}",
        "APPLIANCE_PUBLIC_HOSTS=*",
        "APPLIANCE_PROXY_CLIENT_CONNECTIONS=4",
        "APPLIANCE_CLIENT_UPLOAD_BYTES=1000",
        "APPLIANCE_PROXY_CLIENT_RATE=0", ""])  # fmt: skip
    (site / "appliance.env").write_text(settings)
    for url in start_bundle(PROJECT, APPLIANCE_BIND="0.0.0.0",
                            APPLIANCE_ENV_FILE=str(site / "appliance.env"),
                            APPLIANCE_COMPOSE_OVERRIDE=str(site / "override.yaml")):  # fmt: skip
        yield url.rpartition(":")[2], gateway


def _upload(machine: Machine | None, port: str, *headers: str) -> int:
    args = ["-F", "file=@-;filename=a.txt"]
    for header in headers:
        args += ["-H", header]
    if machine is None:  # from this host, through the published port
        done = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", *args,
                               f"http://127.0.0.1:{port}/api/files"], input="x" * 600,
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        return int(done.stdout or 0)
    done = machine.run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", *args,
                       f"http://{machine.gateway}:{port}/api/files", stdin="x" * 600)  # fmt: skip
    return int(done.stdout or 0)


def test_other_machines_reach_the_proxy_with_their_own_addresses(
    bundle: tuple[str, str], machines: tuple[Machine, Machine]
) -> None:
    port, _ = bundle
    one, two = machines
    hold = subprocess.Popen(
        ["ip", "netns", "exec", one.name, sys.executable, "-c", HOLD, one.gateway, port, "4"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert hold.stdout is not None and hold.stdout.readline().strip() == "held"
        time.sleep(1)
        # four slow uploads are all one client may hold: its fifth request waits for them...
        assert one.status(f"http://{one.gateway}:{port}/api/version") == 429
        # ...and nobody else's does
        assert two.status(f"http://{two.gateway}:{port}/api/version") == 200
        assert _upload(two, port) == 201
    finally:
        hold.kill()
        hold.wait()
    logs = compose("logs", "--no-log-prefix", "proxy", project=PROJECT).stdout
    assert one.address in logs and two.address in logs  # the proxy saw each one's address


def test_a_trusted_front_proxy_names_each_client_and_no_one_else_can(
    bundle: tuple[str, str], machines: tuple[Machine, Machine]
) -> None:
    port, gateway = bundle
    _, two = machines
    # From this host (the gateway, trusted): X-Forwarded-For names the client.
    for _ in range(2):  # 1000 bytes per client and period: two uploads of 600, no third
        assert _upload(None, port, "X-Forwarded-For: 198.51.100.7") == 201
    time.sleep(COUNT_AGE + 0.2)  # each web worker reads the counts at most once a second
    assert _upload(None, port, "X-Forwarded-For: 198.51.100.7") == 429
    assert _upload(None, port, "X-Forwarded-For: 198.51.100.8") == 201  # another client
    assert _upload(None, port) == 201  # the host itself: the gateway, a client of its own
    # From another machine, the header is not believed: it is its own address, whatever
    # it says (it uploaded once above).
    assert _upload(two, port, "X-Forwarded-For: 198.51.100.9") == 201
    time.sleep(COUNT_AGE + 0.2)
    assert _upload(two, port, "X-Forwarded-For: 198.51.100.10") == 429
    logs = compose("logs", "--no-log-prefix", "proxy", project=PROJECT).stdout
    assert "198.51.100.8" in logs and "198.51.100.10" not in logs
    assert gateway in logs  # the host's own upload


def test_an_over_quota_upload_is_answered_429_never_503(bundle: tuple[str, str]) -> None:
    """Refused before its body is read, an upload's body is still read and dropped: if the
    web process closed at once, the proxy's write failed and it answered 502 (a 503 page)
    to about one in six of these."""
    port, _ = bundle
    client = {"X-Forwarded-For": "198.51.100.20"}
    url = f"http://127.0.0.1:{port}/api/files"
    for _ in range(2):
        assert httpx.post(url, files={"file": ("a", b"x" * 600)}, headers=client).status_code == 201
    time.sleep(COUNT_AGE + 0.2)
    statuses = [
        httpx.post(url, files={"file": ("a", b"x" * size)}, headers=client, timeout=60).status_code
        for size in (100_000, 1_000_000, 5_000_000, 20_000_000) * 5
    ]
    assert statuses == [429] * 20, statuses
