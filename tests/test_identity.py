"""A name and a home for a job's user where its image has none (the pure part; the
containers themselves: tests/test_docker_backend.py)."""

from __future__ import annotations

from pathlib import Path

from appliance.runners.docker.identity import HOME, NAME, Accounts, named_user

DEBIAN = (
    "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin"
)


def test_an_image_without_the_uid_gets_a_line_for_it_and_keeps_its_own() -> None:
    accounts = Accounts(DEBIAN, "root:x:0:\nnogroup:x:65534:\n")
    assert not accounts.knows(1000) and accounts.knows(65534)
    passwd, group = accounts.with_user(1000, 1000)
    assert passwd.splitlines() == [*DEBIAN.splitlines(),
                                   f"{NAME}:x:1000:1000:appliance job:{HOME}:/bin/sh"]  # fmt: skip
    assert group.splitlines() == ["root:x:0:", "nogroup:x:65534:", f"{NAME}:x:1000:"]
    _, group = accounts.with_user(1000, 0)  # a group the image has: no new line
    assert group == "root:x:0:\nnogroup:x:65534:\n"


def test_an_image_with_no_files_at_all_gets_root_and_the_user() -> None:
    passwd, group = Accounts("", "").with_user(1000, 1000)
    assert (
        passwd
        == f"root:x:0:0:root:/root:/bin/sh\n{NAME}:x:1000:1000:appliance job:{HOME}:/bin/sh\n"
    )
    assert group == f"root:x:0:\n{NAME}:x:1000:\n"


def test_files_go_beside_the_job_and_the_environment_is_the_steps_first(tmp_path: Path) -> None:
    workdir = tmp_path / "jobs" / "abc"
    workdir.mkdir(parents=True)
    mounts, env = named_user(Accounts("", ""), (1000, 1000), workdir, "/host/jobs/abc",
                             {"HOME": "/work"})  # fmt: skip
    assert env == {"USER": NAME}  # the step's own HOME stays
    assert [(m["Target"], m["Source"], m["ReadOnly"]) for m in mounts] == [
        ("/etc/passwd", "/host/jobs/.records/abc/passwd", True),
        ("/etc/group", "/host/jobs/.records/abc/group", True),
    ]
    assert f"{NAME}:x:1000:" in (tmp_path / "jobs" / ".records" / "abc" / "passwd").read_text()
    assert not (workdir / "passwd").exists()  # not where the job could change it
    known = Accounts("worker:x:1000:1000::/home/worker:/bin/sh\n", "")
    assert named_user(known, (1000, 1000), workdir, "/host/jobs/abc", {}) == ([], {})
    assert named_user(Accounts("", ""), None, workdir, "/host/jobs/abc", {}) == ([], {})
