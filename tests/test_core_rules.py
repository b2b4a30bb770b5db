"""The pure core's rules, in seconds and without any service: where a plan may name a
place, what the appliance does with a symlink or a FIFO it meets in a job's folder, and
when planning refuses a job. Each rule is also what a mutation of the code would break:
a '..' let through, a symlink followed, a refusal removed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from appliance import safefs
from appliance.forms import FileRef, validate
from appliance.jobdirs import collect_outputs, prepare_step
from appliance.plan import (
    JOBS,
    UPLOADS,
    Input,
    Location,
    Mount,
    OutputPattern,
    Plan,
    PlanError,
    Step,
    clean_absolute,
    clean_relative,
    job_location,
)
from appliance.planning import Planned, Refused, plan_job
from appliance.runners.config import parse_runner_config
from appliance.servicefile import parse_service
from appliance.states import JobState
from appliance.volumes import Volumes

pytestmark = pytest.mark.anyio

ESCAPES = ["..", "../x", "a/../../b", "a/..", "./a", "a/./b", "/etc/passwd", "a//b", "",
           "a\x00b", "a\\..\\b"]  # fmt: skip


# -- places ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ESCAPES)
def test_no_relative_path_leaves_its_base(path: str) -> None:
    with pytest.raises(PlanError):
        clean_relative(path)
    with pytest.raises(PlanError):
        Location(JOBS, path)
    with pytest.raises(PlanError):
        Input(Location(UPLOADS, "f1"), path)


@pytest.mark.parametrize("path", ["a", "a/b.txt", "fs/data/x", ".hidden", "a/b/"])
def test_plain_relative_paths_are_kept(path: str) -> None:
    assert clean_relative(path) == path.rstrip("/")


def test_a_location_names_a_known_volume_and_stays_under_it() -> None:
    with pytest.raises(PlanError, match="unknown volume"):
        Location("etc", "passwd")
    base = Location(JOBS, "job1")
    assert base.child("out/a.txt") == Location(JOBS, "job1/out/a.txt")
    for path in ESCAPES:
        with pytest.raises(PlanError):
            base.child(path)
    assert Location(JOBS, "job1/x").within(base) and not Location(JOBS, "job10").within(base)
    assert not Location(UPLOADS, "job1/x").within(base)
    volumes = Volumes({JOBS: Path("/srv/jobs"), UPLOADS: Path("/srv/up")})
    assert volumes.path(Location(JOBS, "job1/out")) == Path("/srv/jobs/job1/out")


@pytest.mark.parametrize("path", ["relative", "/a/../b", "/../etc", "/a\x00", ""])
def test_container_paths_are_absolute_without_dot_dot(path: str) -> None:
    with pytest.raises(PlanError):
        clean_absolute(path)
    assert clean_absolute("/a/./b//c/") == "/a/b/c"


def _stored(**changes: Any) -> dict[str, Any]:
    plan = Plan(job_location("job1"), (Step(("true",), "img", {}),),
                (Input(Location(UPLOADS, "up1"), "inputs/a"),),
                (OutputPattern("o", "out.txt", "Out"),))  # fmt: skip
    data = plan.to_json()
    data.update(changes)
    return data


@pytest.mark.parametrize(
    "changes",
    [{"work": {"volume": "jobs", "path": "../other"}},
     {"work": {"volume": "jobs", "path": "/etc"}},
     {"inputs": [{"source": {"volume": "uploads", "path": "../../etc/passwd"}, "path": "a"}]},
     {"inputs": [{"source": {"volume": "uploads", "path": "up1"}, "path": "../../x"}]},
     {"work": {"volume": "host", "path": "etc"}},
     {"mounts": [{"target": "/data", "source": "../.."}]}],
)  # fmt: skip
def test_a_stored_plan_cannot_name_a_place_outside_the_volumes(changes: dict[str, Any]) -> None:
    """A plan read back from the database is checked as strictly as one made now."""
    Plan.from_json(_stored())  # the plain one is fine
    with pytest.raises(PlanError):
        Plan.from_json(_stored(**changes))


# -- symlinks and FIFOs in a job's folder ------------------------------------------------


@pytest.fixture
def job(tmp_path: Path) -> tuple[Path, Path]:
    """A job's folder, and beside it a victim: what a job's symlink would point at."""
    workdir, victim = tmp_path / "job", tmp_path / "victim"
    workdir.mkdir()
    victim.mkdir()
    (victim / "secret").write_text("not the job's")
    return workdir, victim


def test_writing_replaces_a_symlink_and_never_writes_through_it(job: tuple[Path, Path]) -> None:
    workdir, victim = job
    (workdir / "stdout").symlink_to(victim / "secret")
    with safefs.create(workdir, "stdout") as sink:
        sink.write(b"the job's output")
    assert (victim / "secret").read_text() == "not the job's"
    assert not (workdir / "stdout").is_symlink()
    assert (workdir / "stdout").read_text() == "the job's output"


def test_a_symlinked_folder_on_the_way_is_refused(job: tuple[Path, Path]) -> None:
    workdir, victim = job
    (workdir / "out").symlink_to(victim)
    with pytest.raises(safefs.UnsafePathError), safefs.create(workdir, "out/secret") as sink:
        sink.write(b"x")
    with pytest.raises(safefs.UnsafePathError):
        safefs.make_dirs(workdir, "out/deeper")
    assert (victim / "secret").read_text() == "not the job's"
    assert not (victim / "deeper").exists()


def test_reading_never_follows_a_symlink_or_blocks_on_a_fifo(job: tuple[Path, Path]) -> None:
    workdir, victim = job
    (workdir / "link").symlink_to(victim / "secret")
    (workdir / "dir").symlink_to(victim)
    os.mkfifo(workdir / "fifo")  # opening it for reading would wait for a writer for ever
    (workdir / "real.txt").write_text("mine")
    for name in ("link", "dir/secret", "fifo", "missing", "../victim/secret"):
        assert safefs.open_regular(workdir, name) is None, name
        assert not safefs.is_plain(workdir, name), name
    source = safefs.open_regular(workdir, "real.txt")
    assert source is not None and source.read() == b"mine"
    source.close()
    found = {}
    with safefs.tree(workdir.parent, workdir.name) as files:  # a folder's files, by descriptor
        for name, each in files:
            with each:
                found[name] = each.read()
    assert found == {"real.txt": b"mine"}
    with pytest.raises(safefs.UnsafePathError), safefs.tree(workdir, "dir"):
        pass


def test_outputs_are_regular_files_of_the_job_reached_without_links(
    job: tuple[Path, Path],
) -> None:
    workdir, victim = job
    plan = Plan(job_location("job"), (Step(("true",), "img", {}),), (),
                (OutputPattern("all", "*", "All"), OutputPattern("deep", "d/*", "Deep")))  # fmt: skip
    (workdir / "result.txt").write_text("ok")
    (workdir / "leak").symlink_to(victim / "secret")
    (workdir / "d").symlink_to(victim)
    os.mkfifo(workdir / "pipe")
    (workdir / ".hidden").write_text("kept out")
    found = {o.path for o in collect_outputs(plan, workdir)}
    assert found == {"result.txt"}


def test_a_step_gets_fresh_output_files_in_place_of_what_an_earlier_one_left(
    job: tuple[Path, Path],
) -> None:
    workdir, victim = job
    plan = Plan(job_location("job"),
                (Step(("a",), "img", {}), Step(("b",), "img", {}, stdout="logs/b.out")), (), (),
                mounts=(Mount("/data", "fs/data"),))  # fmt: skip
    (workdir / "logs").symlink_to(victim)  # left by step 1 to catch step 2's stdout
    with pytest.raises(safefs.UnsafePathError):
        prepare_step(workdir, plan, 1)
    assert sorted(p.name for p in victim.iterdir()) == ["secret"]


# -- planning's refusals -----------------------------------------------------------------

RUNNERS = {"docker": parse_runner_config("docker", {"backend": "docker"})}


def service(**changes: Any) -> Any:
    data = {"appliance-version": 1, "name": "S", "image": "img", "command": "tool",
            "parameters": {"n": {"name": "N", "type": "integer", "default": 1}},
            "args": {"n": {"arg": "-n $(value)"}}, **changes}  # fmt: skip
    return parse_service("s", data)


async def test_a_job_is_planned_when_everything_holds() -> None:
    svc = service()
    planned = plan_job("job1", svc, await validate(svc, {}), {}, RUNNERS)
    assert isinstance(planned, Planned) and planned.runner == "docker"
    assert planned.plan.steps[0].argv == ("tool", "-n", "1")


async def test_planning_refuses_what_cannot_run_and_says_why() -> None:
    unset = service(command="tool ${NOT_SET_ANYWHERE}")
    refused = plan_job("job1", unset, await validate(unset, {}), {}, RUNNERS)
    assert isinstance(refused, Refused) and refused.state is JobState.ERROR
    assert "NOT_SET_ANYWHERE" in refused.reason
    plain = service()
    none = plan_job("job1", plain, await validate(plain, {}), {}, {})  # no runner configured
    assert isinstance(none, Refused) and none.state is JobState.ERROR
    assert "is not configured" in none.reason

    def no_runner(values: dict[str, Any]) -> None:
        return None

    def broken(values: dict[str, Any]) -> str:
        raise RuntimeError("the selector's own bug")

    svc = service()
    values = await validate(svc, {})
    rejected = plan_job("job1", svc, values, {}, RUNNERS, no_runner)
    assert isinstance(rejected, Refused) and rejected.state is JobState.REJECTED
    failed = plan_job("job1", svc, values, {}, RUNNERS, broken)
    assert isinstance(failed, Refused) and failed.state is JobState.ERROR
    assert "selector failed" in failed.reason


async def test_a_file_value_not_on_a_volume_is_refused(tmp_path: Path) -> None:
    svc = service(parameters={"f": {"name": "F", "type": "file"}}, args={"f": {"arg": "$(value)"}})
    loose = tmp_path / "loose.fa"
    loose.write_text(">a\nMK\n")
    values = await validate(svc, {"f": [FileRef("x", loose, "loose.fa")]})  # no location
    refused = plan_job("job1", svc, values, {}, RUNNERS)
    assert isinstance(refused, Refused) and "is not on a volume" in refused.reason
