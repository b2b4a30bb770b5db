"""A service file written for the previous system, unchanged, beside a Dockerfile: it runs
on the docker runner in that folder's image, its runner classes mapped by one setting,
through the real proxy, with the previous system's own client."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from slivka_client import SlivkaClient

from tests.helpers import TEST_IMAGE
from tests.web.stack import Stack, running_stack

PREVIOUS = """\
# Written for the previous system; not a word changed.
slivka-version: 0.8.3
name: Sort lines
description: Sorts the lines of a text file.
parameters:
  input: {name: Text, type: file, media-type: text/plain}
  reverse: {name: Reverse, type: flag, default: false}
command: sort
args:
  outfile: {arg: -o sorted.txt, default: present}
  reverse: {arg: -r}
  input: {arg: "$(value)", symlink: input.txt}
outputs:
  sorted: {path: sorted.txt, name: Sorted, media-type: text/plain}
execution:
  runners:
    default: {type: SlivkaQueueRunner}
    cluster: {type: GridEngineRunner, parameters: {qargs: -q debug}}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, mongodb_uri: str,
          database_name: str) -> Iterator[Stack]:  # fmt: skip
    root = tmp_path_factory.mktemp("previous")
    files = {
        "sort/Dockerfile": f"FROM {TEST_IMAGE}\n",
        "sort/image": f"{TEST_IMAGE}  # built here\n",
    }
    with running_stack(root, mongodb_uri, f"{database_name}_previous",
                       services={"sort/sort": PREVIOUS}, files=files,
                       previous_runners=["*=docker"]) as stack:  # fmt: skip
        yield stack


def test_a_previous_system_file_runs_unchanged_in_its_folders_image(
    stack: Stack, tmp_path: Path
) -> None:
    client = SlivkaClient(stack.proxy + "/")
    service = client["sort"]
    source = tmp_path / "lines.txt"
    source.write_text("banana\napple\ncherry\n")
    job = service.submit_job(data={"input": client.upload_file(str(source), "lines.txt"),
                                   "reverse": True})  # fmt: skip
    deadline = time.monotonic() + 60
    while job.status not in ("COMPLETED", "FAILED", "ERROR") and time.monotonic() < deadline:
        time.sleep(0.2)
        job.reload()
    assert job.status == "COMPLETED", job.status
    [sorted_file] = [f for f in job.files if f.path == "sorted.txt"]
    target = tmp_path / "sorted.txt"
    sorted_file.dump(str(target))
    assert target.read_text() == "cherry\nbanana\napple\n"
