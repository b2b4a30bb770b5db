"""Which addresses a task's http(s) inputs and outputs may reach (appliance.tes.fetch),
with IP literals only: no service, no name lookups."""

from __future__ import annotations

import pytest

from appliance.settings import Settings
from appliance.tes.fetch import FetchError, _check_host

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
     "100.100.100.200", "0.0.0.0", "[::1]", "[fe80::1]", "[fc00::1]", "[::ffff:10.0.0.1]",
     "[::ffff:169.254.169.254]", "224.0.0.1"],
)  # fmt: skip
async def test_no_address_that_is_not_public(host: str) -> None:
    with pytest.raises(FetchError, match="not a public address"):
        await _check_host(f"http://{host}/x", Settings())


@pytest.mark.parametrize("host", ["93.184.216.34", "[2606:2800:220:1:248:1893:25c8:1946]"])
async def test_public_addresses_pass(host: str) -> None:
    await _check_host(f"https://{host}/x", Settings())


async def test_a_site_may_allow_private_addresses() -> None:
    await _check_host("http://10.1.2.3/x", Settings(tes_fetch_private=True))
