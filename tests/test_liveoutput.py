"""The pieces of the docker backend's live output that need no engine: reading the engine's
timestamped log, and appending only to a plain file of the job's directory."""

from __future__ import annotations

import os
from pathlib import Path

from appliance.runners.docker.liveoutput import appending, new_lines, stamp_ns

LOG = (b"2026-11-30T12:00:00.000000001Z first\n"
       b"2026-11-30T12:00:00.5Z second line\n"
       b"2026-11-30T12:00:01.000000000Z  third, indented\n")  # fmt: skip


def test_stamps_are_read_to_the_nanosecond() -> None:
    assert stamp_ns(b"2026-11-30T12:00:00.000000001Z") - stamp_ns(b"2026-11-30T12:00:00Z") == 1
    assert stamp_ns(b"2026-11-30T12:00:00.5Z") == stamp_ns(b"2026-11-30T12:00:00.500000000Z")


def test_only_lines_after_the_last_one_seen_are_new() -> None:
    data, last = new_lines(LOG, 0)
    assert data == b"first\nsecond line\n third, indented\n"
    assert last == stamp_ns(b"2026-11-30T12:00:01Z")
    again, same = new_lines(LOG, stamp_ns(b"2026-11-30T12:00:00.5Z"))  # asked from before it
    assert again == b" third, indented\n" and same == last
    assert new_lines(LOG, last) == (b"", last)
    assert new_lines(b"garbage\nno-stamp-here line\n", 7) == (b"", 7)


def test_appending_only_to_a_plain_file(tmp_path: Path) -> None:
    (tmp_path / "stdout").write_bytes(b"a\n")
    with appending(tmp_path, "stdout") as sink:
        assert sink is not None
        sink.write(b"b\n")
    assert (tmp_path / "stdout").read_bytes() == b"a\nb\n"
    secret = tmp_path / "secret"
    secret.write_bytes(b"keep\n")
    (tmp_path / "link").symlink_to(secret)
    os.link(secret, tmp_path / "hard")
    for name in ("link", "hard", "missing"):
        with appending(tmp_path, name) as sink:
            assert sink is None, name
    assert secret.read_bytes() == b"keep\n"
