"""Messages for clients: no path of the server's machines, everything else as it was."""

from __future__ import annotations

import pytest

from appliance.publictext import public_text


@pytest.mark.parametrize(("text", "shown"), [
    ("[Errno 28] No space left on device: '/var/lib/appliance/jobs/abc/stdout'",
     "[Errno 28] No space left on device: 'stdout'"),
    ("cannot make /srv/data/jobs/x: denied", "cannot make x: denied"),
    ("the file /job/in.fa is bad", "the file in.fa is bad"),
    ("image foo/bar:1 is not available", "image foo/bar:1 is not available"),
    ("fetching http://files.example/a/b.txt failed", "fetching http://files.example/a/b.txt failed"),
    ("a ratio of 1/2", "a ratio of 1/2"),
    ("", ""),
    (None, None),
])  # fmt: skip
def test_paths_are_cut_to_their_last_name(text: str | None, shown: str | None) -> None:
    assert public_text(text) == shown
