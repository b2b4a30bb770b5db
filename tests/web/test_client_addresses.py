"""Who one client is, through the real proxy: its own address, or the one a trusted front
proxy names in X-Forwarded-For (nobody else's header is believed), an IPv6 client as its /64;
the proxy's limits and the app's quotas alike."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.web.stack import Stack, running_stack

FRONT = "127.0.0.9"  # the trusted front proxy (a TLS proxy on the host, an Ingress)
OTHER = "127.0.0.10"  # anyone else, sending the header too


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, mongodb_uri: str,
          database_name: str) -> Iterator[Stack]:  # fmt: skip
    root = tmp_path_factory.mktemp("addresses")
    with running_stack(root, mongodb_uri, f"{database_name}_addresses", trusted_proxies=[FRONT],
                       client_upload_bytes=1000, proxy_client_rate=1) as stack:  # fmt: skip
        yield stack


def client(address: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=30)


def upload(stack: Stack, sender: httpx.Client, forwarded: str) -> int:
    answer = sender.post(f"{stack.proxy}/api/files", files={"file": ("a.txt", b"x" * 600)},
                         headers={"X-Forwarded-For": forwarded})  # fmt: skip
    return answer.status_code


def test_a_trusted_front_proxy_names_each_client_and_ipv6_is_keyed_by_its_64(
    stack: Stack,
) -> None:
    with client(FRONT) as front:
        # 1000 bytes per client and period: after two uploads of 600, no third
        assert upload(stack, front, "198.51.100.1, 2001:db8:1:2::a") == 201
        assert upload(stack, front, "2001:db8:1:2::a") == 201
        assert upload(stack, front, "2001:db8:1:2:ffff::b") == 429  # the same /64
        assert upload(stack, front, "2001:db8:1:3::a") == 201  # the next /64: its own
        for _ in range(2):
            assert upload(stack, front, "203.0.113.5") == 201
        assert upload(stack, front, "203.0.113.6") == 201  # another address, another client
        assert upload(stack, front, "203.0.113.5") == 429


def test_anyone_elses_forwarded_for_is_not_believed(stack: Stack) -> None:
    with client(OTHER) as other:
        assert upload(stack, other, "192.0.2.1") == 201
        assert upload(stack, other, "192.0.2.2") == 201
        assert upload(stack, other, "192.0.2.3") == 429  # all OTHER's, whatever it says


def test_the_proxys_own_limits_count_the_named_client(stack: Stack) -> None:
    url = f"{stack.proxy}/api/version"
    with client(FRONT) as front:  # 1 request/s, bursts of 10: then 429 for that client only
        statuses = [front.get(url, headers={"X-Forwarded-For": f"2001:db8:9:9::{n}"}).status_code
                    for n in range(1, 16)]  # fmt: skip
        assert statuses.count(429) >= 4, statuses
        assert statuses[:10] == [200] * 10, statuses
        for n in range(1, 4):  # other clients behind the same front proxy are not held back
            other = front.get(url, headers={"X-Forwarded-For": f"2001:db8:9:{n}0::1"})
            assert other.status_code == 200, other.text
