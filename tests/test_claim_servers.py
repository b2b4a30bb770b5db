"""Which database servers can serve claims (appliance.store.claims.protocol_for), from
what each says of itself in buildInfo: no service needed."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.errors import ConfigError
from appliance.store.claims import protocol_for


@pytest.mark.parametrize(
    ("info", "words"),
    [({"version": "7.0.14"}, "MongoDB 7.0.14"),
     ({"version": "7.0.42", "ferretdbVersion": "v1.24.2", "applianceAtomicUpdates": 1},
      "the appliance's build"),
     ({"version": "7.0.77", "ferretdbVersion": "v2.7.0"}, "FerretDB v2.7.0")],
)  # fmt: skip
def test_servers_that_update_atomically_serve_claims(info: dict[str, Any], words: str) -> None:
    assert words in protocol_for(info)


def test_ferretdb_1_without_atomic_updates_is_refused_naming_what_to_use() -> None:
    info = {"version": "7.0.42", "ferretdbVersion": "v1.24.2", "appliancePushdown": 1}
    with pytest.raises(ConfigError, match=r"not atomic.*tools/ferretdb-server") as caught:
        protocol_for(info)
    assert caught.value.key == "mongodb_uri"
