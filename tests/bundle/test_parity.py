"""Drop-in parity with the previous system's REST API, black-box, on both systems.

What the previous system's own API tests (slivka 0.8.5b7, ``test/server/test_api_views.py``)
assert, rewritten as HTTP requests against a running server: the appliance's bundle
through its proxy (``previous_bundle``), and the previous system itself, started here on
the same MongoDB-protocol server (``previous_system``). Both load the same service file
(tests/data/previous/parity/fake.service.yaml, the old tests' "fake" service).

Where the appliance differs on purpose, the test is marked with the reason (docs/api.md,
"Differences from the previous system"); the marks are strict, so a difference that goes
away shows up. The end of the run prints both columns (``parity_report`` in conftest).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from slivka_client import SlivkaClient

from tests.bundle.previous import previous_system_running

APPLIANCE, PREVIOUS = "appliance", "previous"
LIPSUM = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit.\n"
ISO_WITH_ZONE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d|Z)$")

NO_MEDIA = "its server does not serve /media (a site puts a web server in front for that)"
# Where the appliance answers otherwise on purpose: (test, system) -> why (docs/api.md).
DIFFERENCES = {
    ("test_an_invalid_value_has_the_old_message", APPLIANCE): (
        "validation messages say what was sent and what would do; the errorCode is the same"
    ),
    ("test_an_unexpected_input_has_the_old_message", APPLIANCE): (
        "validation messages say what was sent and what would do; the errorCode is the same"
    ),
    ("test_a_file_part_without_a_file_name_has_the_old_message", APPLIANCE): (
        "validation messages say what was sent and what would do; the errorCode is the same"
    ),
    ("test_a_new_job_is_pending", APPLIANCE): (
        "a job is validated and planned as it is submitted: it is ACCEPTED at once"
    ),
    ("test_a_jobs_times_are_iso_with_their_offset", APPLIANCE): (
        "times are UTC without an offset, as the previous system's own client parses them"
    ),
    ("test_the_job_list_filters_by_service_and_status", APPLIANCE): (
        "job lists need the operator's token unless public_job_lists: they list everyone's jobs"
    ),
    # Where the previous system (0.8.5b7, as released) fails its own tests' assertions:
    ("test_an_unexpected_input_is_422_with_its_code", PREVIOUS): "it answers 500",
    ("test_an_unexpected_input_has_the_old_message", PREVIOUS): "it answers 500",
    ("test_a_file_part_without_a_file_name_is_an_invalid_file_id", PREVIOUS): "it answers 500",
    ("test_a_file_part_without_a_file_name_has_the_old_message", PREVIOUS): "it answers 500",
    ("test_a_job_as_both_paths_give_it", PREVIOUS): "it echoes the unset file parameter as null",
    ("test_an_accepted_job_echoes_its_parameters", PREVIOUS): NO_MEDIA,
    ("test_a_jobs_file_with_its_location_and_content", PREVIOUS): NO_MEDIA,
    ("test_an_uploads_content_is_what_was_sent", PREVIOUS): NO_MEDIA,
    ("test_the_previous_client_reads_a_jobs_times", PREVIOUS): (
        "its times carry microseconds and an offset, which its own client cannot parse"
    ),
}


@pytest.fixture(scope="module", params=[APPLIANCE, PREVIOUS])
def system(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def api(system: str, request: pytest.FixtureRequest) -> str:
    name = "previous_bundle" if system == APPLIANCE else "previous_system"
    return str(request.getfixturevalue(name))


@pytest.fixture(scope="package")
def previous_system(
    tmp_path_factory: pytest.TempPathFactory, mongodb_uri: str, database_name: str
) -> Iterator[str]:
    """The previous system (slivka 0.8.5b7: server, scheduler, local queue), serving the
    same service file: its base URL."""
    home = tmp_path_factory.mktemp("slivka")
    with previous_system_running(home, mongodb_uri, f"{database_name}_slivka") as url:
        yield url


def submit(api: str, data: dict[str, Any], files: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.post(f"{api}/api/services/fake/jobs", data=data, files=files, timeout=30)


def finished(api: str, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job: dict[str, Any] = httpx.get(f"{api}/api/jobs/{job_id}", timeout=30).json()
        if job["finished"]:
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish: {job}")


@pytest.fixture(scope="module")
def created(api: str) -> httpx.Response:
    return submit(api, {"text-param": "Hello world", "number-param": "12.3",
                        "choice-param": "bravo"},
                  files={"file-param": ("input file", b"Content", "text/plain")})  # fmt: skip


@pytest.fixture(scope="module")
def completed(api: str) -> dict[str, Any]:
    reply = submit(api, {"text-param": "foobar", "number-param": "3.1415",
                         "choice-param": "charlie"})  # fmt: skip
    assert reply.status_code == 202, reply.text
    return finished(api, reply.json()["id"])


# -- the version and the services ----------------------------------------------------------


def test_the_version(api: str) -> None:
    reply = httpx.get(f"{api}/api/version", timeout=30)
    assert reply.status_code == 200
    assert reply.json()["APIVersion"] == "1.1"
    assert isinstance(reply.json()["slivkaVersion"], str)


def test_the_service_list(api: str) -> None:
    reply = httpx.get(f"{api}/api/services", timeout=30)
    assert reply.status_code == 200
    assert "fake" in [s["id"] for s in reply.json()["services"]]


def test_a_services_description(api: str) -> None:
    info = httpx.get(f"{api}/api/services/fake", timeout=30).json()
    keys = ("@url", "id", "name", "description", "author", "version", "license", "classifiers")
    expected = {
        "@url": "/api/services/fake", "id": "fake", "name": "Fake service",
        "description": "Description of fake service", "author": "John Smith",
        "version": "0.6.7", "license": "Dummy License",
        "classifiers": ["Class::Test", "Group::Dummy"],
    }  # fmt: skip
    assert {k: info[k] for k in keys} == expected


def test_a_service_never_tested_is_unknown_since_the_epoch(api: str) -> None:
    info = httpx.get(f"{api}/api/services/fake", timeout=30).json()
    assert info["status"] == {
        "status": "UNKNOWN", "errorMessage": "", "timestamp": "1970-01-01T00:00:00",
    }  # fmt: skip


def test_a_services_parameters(api: str) -> None:
    info = httpx.get(f"{api}/api/services/fake", timeout=30).json()
    common = {"required": False, "array": False, "default": None}
    assert info["parameters"] == [
        {**common, "type": "file", "id": "file-param", "name": "File parameter",
         "description": "Input file"},
        {**common, "type": "text", "id": "text-param", "name": "Text parameter",
         "description": "Description of text parameter", "required": True},
        {**common, "type": "decimal", "id": "number-param", "name": "Number parameter",
         "description": "Description of number parameter", "default": 0.1},
        {**common, "type": "choice", "id": "choice-param", "name": "Choice parameter",
         "description": "Description of choice parameter",
         "choices": ["alpha", "bravo", "charlie"]},
    ]  # fmt: skip


def test_a_service_has_its_location(api: str) -> None:
    reply = httpx.get(f"{api}/api/services/fake", timeout=30)
    assert reply.headers["Location"] == "/api/services/fake"


def test_a_missing_service_is_404(api: str) -> None:
    assert httpx.get(f"{api}/api/services/nonexistent", timeout=30).status_code == 404


# -- submitting a job ------------------------------------------------------------------------


def test_a_job_is_accepted_with_202(created: httpx.Response) -> None:
    assert created.status_code == 202, created.text


def test_an_accepted_job_has_its_url_and_location(created: httpx.Response) -> None:
    job = created.json()
    assert job["@url"] == f"/api/jobs/{job['id']}"
    assert created.headers["Location"] == f"/api/jobs/{job['id']}"


def test_an_accepted_job_names_its_service(created: httpx.Response) -> None:
    assert created.json()["service"] == "fake"


def test_a_new_job_is_pending(created: httpx.Response) -> None:
    assert created.json()["status"] == "PENDING"


def test_an_accepted_job_echoes_its_parameters(api: str, created: httpx.Response) -> None:
    parameters = created.json()["parameters"]
    file_id = parameters["file-param"]
    assert parameters == {"text-param": "Hello world", "number-param": "12.3",
                          "file-param": file_id, "choice-param": "bravo"}  # fmt: skip
    upload = httpx.get(f"{api}/api/files/{file_id}", timeout=30)
    assert upload.status_code == 200
    assert httpx.get(api + upload.json()["@content"], timeout=30).content == b"Content"


def test_an_invalid_value_is_422_with_its_code(api: str) -> None:
    reply = submit(api, {"text-param": "Hello world", "number-param": "not-a-number"})
    assert reply.status_code == 422
    [error] = reply.json()["errors"]
    assert (error["parameter"], error["errorCode"]) == ("number-param", "invalid")


def test_an_invalid_value_has_the_old_message(api: str) -> None:
    reply = submit(api, {"text-param": "Hello world", "number-param": "not-a-number"})
    assert reply.json()["errors"][0]["message"] == "Invalid decimal number"


def test_an_unexpected_input_is_422_with_its_code(api: str) -> None:
    reply = submit(api, {"text-param": "hello", "i-do-not-exist": "val"})
    assert reply.status_code == 422
    [error] = reply.json()["errors"]
    assert (error["parameter"], error["errorCode"]) == ("i-do-not-exist", "unexpected")


def test_an_unexpected_input_has_the_old_message(api: str) -> None:
    reply = submit(api, {"text-param": "hello", "i-do-not-exist": "val"})
    assert reply.json()["errors"][0]["message"] == "Unexpected input name: 'i-do-not-exist'"


@pytest.mark.parametrize(("content_type", "label", "media_type"), [
    ("application/x-lorem", "Title", "application/x-lorem"),
    ("text/plain; charset=UTF-8", "Other Title", "text/plain"),
])  # fmt: skip
def test_a_file_part_keeps_its_name_and_media_type(
    api: str, content_type: str, label: str, media_type: str
) -> None:
    reply = submit(api, {"text-param": "some text"},
                   files={"file-param": (label, b"Lorem Ipsum", content_type)})  # fmt: skip
    file_id = reply.json()["parameters"]["file-param"]
    upload = httpx.get(f"{api}/api/files/{file_id}", timeout=30).json()
    assert (upload["label"], upload["mediaType"]) == (label, media_type)


def without_file_name(api: str) -> httpx.Response:
    """A file part without a file name: the old server takes its text as a file id."""
    body = (b'--b\r\nContent-Disposition: form-data; name="text-param"\r\n\r\nsome text\r\n'
            b'--b\r\nContent-Disposition: form-data; name="file-param"\r\n\r\nlipsum\r\n--b--\r\n')  # fmt: skip
    return httpx.post(f"{api}/api/services/fake/jobs", content=body, timeout=30,
                      headers={"Content-Type": "multipart/form-data; boundary=b"})  # fmt: skip


def test_a_file_part_without_a_file_name_is_an_invalid_file_id(api: str) -> None:
    reply = without_file_name(api)
    assert reply.status_code == 422
    [error] = reply.json()["errors"]
    assert (error["parameter"], error["errorCode"]) == ("file-param", "file_id")


def test_a_file_part_without_a_file_name_has_the_old_message(api: str) -> None:
    assert without_file_name(api).json()["errors"][0]["message"] == "Invalid file id: 'lipsum'"


# -- a job ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/jobs/{}", "/api/services/fake/jobs/{}"])
def test_a_job_as_both_paths_give_it(api: str, completed: dict[str, Any], path: str) -> None:
    job_id = completed["id"]
    reply = httpx.get(api + path.format(job_id), timeout=30)
    assert reply.status_code == 200
    job = reply.json()
    assert reply.headers["Location"] == f"/api/jobs/{job_id}"
    assert (job["@url"], job["id"], job["service"]) == (f"/api/jobs/{job_id}", job_id, "fake")
    assert job["parameters"] == {"text-param": "foobar", "number-param": "3.1415",
                                 "choice-param": "charlie"}  # fmt: skip


def test_a_finished_job_is_completed(completed: dict[str, Any]) -> None:
    assert (completed["status"], completed["finished"]) == ("COMPLETED", True)


def test_a_jobs_times_are_iso_with_their_offset(completed: dict[str, Any]) -> None:
    for key in ("submissionTime", "completionTime"):
        assert ISO_WITH_ZONE.match(completed[key]), (key, completed[key])


def test_the_previous_client_reads_a_jobs_times(api: str, completed: dict[str, Any]) -> None:
    """The previous system's own Python client parses both with ``%Y-%m-%dT%H:%M:%S``."""
    job = SlivkaClient(api + "/").get_job(completed["id"])
    assert job.submission_time <= job.completion_time


@pytest.mark.parametrize("job_id", ["AADSHA1yHug3LAWY", "invalid"])
@pytest.mark.parametrize("path", ["/api/jobs/{}", "/api/services/fake/jobs/{}"])
def test_a_missing_job_is_404(api: str, path: str, job_id: str) -> None:
    assert httpx.get(api + path.format(job_id), timeout=30).status_code == 404


def test_the_job_list_filters_by_service_and_status(api: str, completed: dict[str, Any]) -> None:
    """The old tests ask with a trailing slash; a redirect, if any, keeps the port."""
    reply = httpx.get(f"{api}/api/jobs/", params={"service": "fake", "status": "COMPLETED"},
                      timeout=30, follow_redirects=True)  # fmt: skip
    assert reply.status_code == 200
    listed = reply.json()
    assert completed["id"] in [j["id"] for j in listed["jobs"]]
    assert listed["totalCount"] == len(listed["jobs"])
    assert {j["status"] for j in listed["jobs"]} == {"COMPLETED"}


def test_a_redirect_keeps_the_host_and_port(api: str) -> None:
    reply = httpx.get(f"{api}/api/jobs/", params={"service": "fake"}, timeout=30)
    if reply.is_redirect:
        location = reply.headers["Location"]
        assert not location.startswith("http") or location.startswith(api.replace(
            "127.0.0.1", "localhost")) or location.startswith(api), location  # fmt: skip


# -- a job's files ---------------------------------------------------------------------------


def entry(api: str, job_id: str, path: str, label: str) -> dict[str, str]:
    return {"@url": f"/api/jobs/{job_id}/files/{path}", "id": f"{job_id}/{path}",
            "jobId": job_id, "path": path, "label": label, "mediaType": "text/plain"}  # fmt: skip


def test_a_completed_jobs_files(api: str, completed: dict[str, Any]) -> None:
    job_id = completed["id"]
    reply = httpx.get(f"{api}/api/jobs/{job_id}/files", timeout=30)
    assert reply.status_code == 200
    files = {f["path"]: f for f in reply.json()["files"]}
    assert {k: v for k, v in files["stdout"].items() if k != "@content"} == entry(
        api, job_id, "stdout", "Standard output"
    )
    assert files["stdout"]["@content"].startswith("/media/jobs/")
    assert files["stdout"]["@content"].endswith("/stdout")


def test_a_jobs_file_with_its_location_and_content(api: str, completed: dict[str, Any]) -> None:
    job_id = completed["id"]
    reply = httpx.get(f"{api}/api/jobs/{job_id}/files/stdout", timeout=30)
    assert reply.status_code == 200
    assert reply.headers["Location"] == f"/api/jobs/{job_id}/files/stdout"
    info = reply.json()
    assert {k: v for k, v in info.items() if k != "@content"} == entry(
        api, job_id, "stdout", "Standard output"
    )
    assert httpx.get(api + info["@content"], timeout=30).text == "foobar 3.1415 C\n"


def test_a_jobs_output_as_the_input_of_another(api: str, completed: dict[str, Any]) -> None:
    reply = submit(api, {"text-param": "Hello world", "file-param": f"{completed['id']}/stdout"})
    assert reply.status_code == 202, reply.text
    assert reply.json()["parameters"]["file-param"] == f"{completed['id']}/stdout"


# -- uploads --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def uploaded(api: str) -> httpx.Response:
    return httpx.post(f"{api}/api/files", timeout=30,
                      files={"file": ("example file", LIPSUM, "application/x-lipsum")})  # fmt: skip


def test_an_upload_is_201_with_its_label_and_media_type(uploaded: httpx.Response) -> None:
    assert uploaded.status_code == 201
    assert (uploaded.json()["label"], uploaded.json()["mediaType"]) == (
        "example file", "application/x-lipsum",
    )  # fmt: skip


def test_an_uploads_content_is_what_was_sent(api: str, uploaded: httpx.Response) -> None:
    assert httpx.get(api + uploaded.json()["@content"], timeout=30).content == LIPSUM


def test_an_upload_has_its_location(api: str, uploaded: httpx.Response) -> None:
    reply = httpx.get(f"{api}/api/files/{uploaded.json()['id']}", timeout=30)
    assert reply.status_code == 200
    assert (
        reply.headers["Location"] == reply.json()["@url"] == f"/api/files/{uploaded.json()['id']}"
    )


def test_an_upload_without_the_file_part_is_400(api: str) -> None:
    reply = httpx.post(f"{api}/api/files", files={"input": ("x", LIPSUM)}, timeout=30)
    assert reply.status_code == 400


@pytest.mark.parametrize(("new", "expected"), [
    ({}, ("initial title", "text/initial-type")),
    ({"label": "new title"}, ("new title", "text/initial-type")),
    ({"mediaType": "text/lorem"}, ("initial title", "text/lorem")),
    ({"label": "another title", "mediaType": "text/lipsum"}, ("another title", "text/lipsum")),
])  # fmt: skip
def test_an_uploads_label_and_media_type_can_be_changed(
    api: str, new: dict[str, str], expected: tuple[str, str]
) -> None:
    made = httpx.post(f"{api}/api/files", timeout=30,
                      files={"file": ("initial title", LIPSUM, "text/initial-type")}).json()  # fmt: skip
    reply = httpx.put(f"{api}/api/files/{made['id']}", data=new, timeout=30)
    assert reply.status_code == 200
    assert (reply.json()["label"], reply.json()["mediaType"]) == expected
    again = httpx.get(f"{api}/api/files/{made['id']}", timeout=30).json()
    assert (again["label"], again["mediaType"]) == expected
