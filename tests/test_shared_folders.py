"""The shared folders' walk (appliance.tes.shared), without any service: symlinks are
followed only beneath their root, outputs replace what was there, and a name swapped for
a symlink while the scheduler works never leads it out of the root."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.settingvalues import check_file_root
from appliance.tes import shared
from appliance.tes.shared import Root, SharedError, locate, roots_for


@pytest.fixture
def place(tmp_path: Path) -> tuple[Path, Path]:
    """A shared root, and beside it a folder no task may reach (an uploads volume)."""
    root, private = tmp_path / "shared", tmp_path / "uploads"
    root.mkdir()
    private.mkdir()
    (private / "secret").write_text("another user's upload")
    return root, private


def read(root: Path, relative: str) -> str:
    with shared.read_file(Root(str(root)), relative.split("/")) as source:
        return source.read().decode()


def write(root: Path, relative: str, text: str) -> int:
    return shared.write_file(Root(str(root)), relative.split("/"), io.BytesIO(text.encode()))


def test_symlinks_beneath_the_root_are_followed(place: tuple[Path, Path]) -> None:
    root, _ = place
    (root / "data" / "run1").mkdir(parents=True)
    (root / "data" / "run1" / "in.fa").write_text(">a\nMKV\n")
    (root / "data" / "latest").symlink_to("run1")  # relative
    (root / "work").mkdir()
    (root / "work" / "staged.fa").symlink_to(root / "data" / "latest" / "in.fa")  # absolute
    (root / "work" / "up.fa").symlink_to("../data/run1/in.fa")
    for name in ("data/latest/in.fa", "work/staged.fa", "work/up.fa"):
        assert read(root, name) == ">a\nMKV\n", name


@pytest.mark.parametrize(
    "target",
    ["{private}/secret", "../uploads/secret", "../../{root_name}/../uploads/secret",
     "{root}/../uploads/secret", "/etc/passwd"],
)  # fmt: skip
def test_symlinks_out_of_the_root_are_refused(place: tuple[Path, Path], target: str) -> None:
    root, private = place
    link = target.format(private=private, root=root, root_name=root.name)
    (root / "link").symlink_to(link)
    (root / "dir").mkdir()
    (root / "dir" / "link").symlink_to(link if link.startswith("/") else f"../{link}")
    for name in ("link", "dir/link"):
        with pytest.raises(SharedError):
            read(root, name)


def test_a_folder_link_out_of_the_root_is_refused_for_outputs(place: tuple[Path, Path]) -> None:
    root, private = place
    (root / "out").symlink_to(private)
    with pytest.raises(SharedError, match="out of the folders"):
        write(root, "out/secret", "overwritten")
    assert (private / "secret").read_text() == "another user's upload"


def test_an_output_replaces_a_symlink_instead_of_writing_through_it(
    place: tuple[Path, Path],
) -> None:
    root, private = place
    (root / "result.txt").symlink_to(private / "secret")
    assert write(root, "result.txt", "the task's result") == len("the task's result")
    assert not (root / "result.txt").is_symlink()
    assert (root / "result.txt").read_text() == "the task's result"
    assert (private / "secret").read_text() == "another user's upload"
    assert [p.name for p in root.iterdir()] == ["result.txt"]  # no temporary file left


def test_an_output_makes_its_folders_and_refuses_to_replace_one(place: tuple[Path, Path]) -> None:
    root, _ = place
    write(root, "a/b/c.txt", "x")
    assert (root / "a" / "b" / "c.txt").read_text() == "x"
    with pytest.raises(SharedError, match="is a folder"):
        write(root, "a/b", "y")
    assert sorted(p.name for p in (root / "a").iterdir()) == ["b"]


def test_a_directory_is_read_without_links_fifos_or_blocking(place: tuple[Path, Path]) -> None:
    root, private = place
    tree = root / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("a")
    (tree / "sub" / "b.txt").write_text("b")
    (tree / "leak").symlink_to(private / "secret")
    (tree / "leakdir").symlink_to(private)
    os.mkfifo(tree / "fifo")  # opening it for reading would block for ever
    with shared.read_tree(Root(str(root)), ["tree"]) as files:
        found = {}
        for relative, source in files:
            with source:
                found[relative] = source.read().decode()
    assert found == {"a.txt": "a", "sub/b.txt": "b"}


def test_client_roots_are_apart(place: tuple[Path, Path]) -> None:
    root, private = place
    templates = (f"{root}/{{client}}", "/scratch")
    assert [r.path for r in roots_for(templates, "alice")] == [f"{root}/alice", "/scratch"]
    assert [r.path for r in roots_for(templates, "../x")] == ["/scratch"]  # not a folder name
    alice_root, parts = locate(f"{root}/alice/in/x.fa", templates, "alice")
    assert alice_root.private == ("alice",) and parts == ["in", "x.fa"]
    with pytest.raises(SharedError, match="outside"):
        locate(f"{root}/bob/x.fa", templates, "alice")
    shared.write_file(alice_root, ["out.txt"], io.BytesIO(b"mine"))  # made on first output
    assert (root / "alice" / "out.txt").read_text() == "mine"
    (root / "mallory").symlink_to(private)  # a client's folder that is a symlink
    mallory, parts = locate(f"{root}/mallory/secret", templates, "mallory")
    with pytest.raises(SharedError, match="client's folder"):
        shared.read_file(mallory, parts)


@pytest.mark.parametrize(
    ("root", "why"),
    [("relative/x", "absolute"), ("/a/{client}x", "whole folder"),
     ("/a/{client}/{client}", "at most once"), ("/a/../b", "'..'")],
)  # fmt: skip
def test_roots_that_cannot_work_are_refused(root: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        check_file_root(root)


@pytest.fixture
def swapping(place: tuple[Path, Path]) -> Iterator[Path]:
    """``root/race`` swapped as fast as it goes between a folder of the root and a
    symlink to the private folder, as a local user racing the scheduler would."""
    root, private = place
    decoy = root / "decoy"
    decoy.mkdir()
    (decoy / "secret").write_text("harmless")
    stop = threading.Event()
    race, spare = root / "race", root / "race.new"
    race.symlink_to(decoy)

    def swap() -> None:
        while not stop.is_set():
            for target in (private, decoy):
                spare.symlink_to(target)
                os.replace(spare, race)

    thread = threading.Thread(target=swap, daemon=True)
    thread.start()
    yield root
    stop.set()
    thread.join()


def test_a_name_swapped_while_files_are_read_and_written_never_leads_out(
    swapping: Path, place: tuple[Path, Path]
) -> None:
    root, private = place
    refused = 0
    for attempt in range(3000):
        try:
            assert "another user's" not in read(root, "race/secret")
        except SharedError:
            refused += 1
        try:
            write(root, "race/secret", f"attempt {attempt}")
        except SharedError:
            refused += 1
    assert (private / "secret").read_text() == "another user's upload"
    assert refused > 0  # the race was really run: the link out was met, and refused
