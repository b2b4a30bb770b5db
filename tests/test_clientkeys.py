"""Who one client is: an address, an IPv6 /64, in the app and in the proxy's map alike."""

from __future__ import annotations

import ipaddress
import random
import re

import pytest

from appliance.clientkeys import client_key, nginx_client_map, nginx_client_patterns


def nginx_key(text: str) -> str | None:
    """What the proxy's map gives for ``text`` (first regex that matches, as nginx)."""
    for regex, key in nginx_client_patterns():
        match = re.match(regex, text)
        if match:
            for number, group in enumerate(match.groups(), 1):
                key = key.replace(f"${number}", group)
            return key
    return None


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2::5", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2::5", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),  # an IPv4 client on a dual-stack socket
        ("unix:", "unix:"),
    ],
)
def test_the_app_keys_a_client_by_address_and_ipv6_by_its_64(address: str, key: str) -> None:
    assert client_key(address) == key


def test_the_proxys_map_gives_one_key_per_64_whatever_the_compression() -> None:
    generator = random.Random(7)
    seen = 0
    for _ in range(20000):
        groups = [generator.choice([0, 0, 0, generator.randrange(1, 65536)]) for _ in range(8)]
        if groups[:5] == [0] * 5:
            continue  # nginx writes these with a dotted IPv4 tail: the whole address is the key
        address = ipaddress.IPv6Address(b"".join(g.to_bytes(2, "big") for g in groups))
        want = ":".join(format(g, "x") for g in groups[:4]) + "/64"
        assert nginx_key(address.compressed) == want, address.compressed
        seen += 1
    assert seen > 15000


@pytest.mark.parametrize(
    ("one", "other", "same"),
    [
        ("2001:db8:1:2::a", "2001:db8:1:2:ffff::b", True),
        ("2001:db8::1", "2001:db8:0:0:1::1", True),  # "::" in the /64 and out of it
        ("2001:db8:1:2::a", "2001:db8:1:3::a", False),
        ("2001:db8::1", "2001:db8:0:1::1", False),
    ],
)
def test_the_proxy_and_the_app_agree_on_who_is_one_client(one: str, other: str, same: bool) -> None:
    a, b = (ipaddress.IPv6Address(x).compressed for x in (one, other))
    assert (nginx_key(a) == nginx_key(b)) is same
    assert (client_key(one) == client_key(other)) is same


def test_ipv4_and_dotted_forms_fall_back_to_the_whole_address() -> None:
    assert nginx_key("192.0.2.7") is None
    assert nginx_key("::ffff:192.0.2.7") is None
    assert "default $binary_remote_addr;" in nginx_client_map()
