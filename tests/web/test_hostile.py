"""Hostile input through the proxy and the real web process, table-driven.

Each case states the status it must get. After each: nothing was written outside the
upload and job folders, and an earlier job (its record and its files) is untouched.
Values full of shell syntax must reach the tool as the literal argv items they are.
"""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import TEST_IMAGE
from tests.web.stack import FASTA, Stack, running_stack

ARGV = f"""\
appliance-version: 1
name: Shows its arguments
image: {TEST_IMAGE}
runner: docker
parameters:
  text: {{name: Text, type: "text[]", max-length: 200}}
  alone: {{name: Alone, type: text, required: false}}
  number: {{name: Number, type: integer, min: 0, max: 100, required: false}}
  ratio: {{name: Ratio, type: decimal, required: false}}
  flag: {{name: Flag, type: flag, default: false}}
  pick: {{name: Pick, type: choice, choices: {{a: A, b: B}}, required: false}}
command: sh -c 'for a; do printf "%s\\0" "$$a"; done > args.bin' sh
args:
  text: {{arg: "--text=$(value)"}}
  alone: {{arg: "$(value)"}}
  number: {{arg: "--number=$(value)"}}
outputs:
  args: {{path: args.bin, media-type: application/octet-stream}}
"""

SHELL_VALUES = [
    "; rm -rf /", "$(id)", "${HOME}", "$HOME", "`id`", "a\nb\r\nc", "|| true &&", "> /etc/passwd",
    "' \" \\", "*", "~root", "-rf", "--help", "\u202eevil\u200b", "名前", "x" * 200,
]  # fmt: skip


@dataclass
class Case:
    name: str
    method: str
    path: str
    status: int | tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict)
    raw: bytes | None = None  # sent as is over a socket, for what clients refuse to send


def multipart(*parts: bytes, boundary: bytes = b"b") -> dict[str, Any]:
    body = (
        b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts)
        + b"--"
        + boundary
        + b"--\r\n"
    )
    return {
        "content": body,
        "headers": {"content-type": "multipart/form-data; boundary=" + boundary.decode()},
    }


def file_part(name: bytes, filename: bytes, content: bytes = FASTA.encode()) -> bytes:
    return (
        b'Content-Disposition: form-data; name="'
        + name
        + b'"; filename="'
        + filename
        + b'"\r\n\r\n'
        + content
    )


def field_part(name: bytes, value: bytes) -> bytes:
    return b'Content-Disposition: form-data; name="' + name + b'"\r\n\r\n' + value


def endless() -> Iterator[bytes]:
    yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="x"\r\n\r\n'
    for _ in range(100_000):
        yield b"A" * 4096


JOBS = "/api/services/argv/jobs"
UPPER = "/api/services/upper/jobs"


def cases(earlier: str) -> list[Case]:
    def form(**data: Any) -> dict[str, Any]:
        return {"data": data}

    return [
        # Path traversal in file ids, job file paths and served URLs.
        Case("id ../../etc/passwd", "POST", UPPER, 422, form(input="../../etc/passwd")),
        Case("id absolute", "POST", UPPER, 422, form(input="/etc/passwd")),
        Case("id encoded", "POST", UPPER, 422, form(input="%2e%2e%2f%2e%2e%2fetc%2fpasswd")),
        Case("id job/../..", "POST", UPPER, 422, form(input=f"{earlier}/../../../etc/hostname")),
        Case("id job/../job", "POST", UPPER, 422, form(input=f"{earlier}/../{earlier}/result.txt")),
        Case("id job/stdout not fasta", "POST", UPPER, 422, form(input=f"{earlier}/stdout")),
        Case("id job/unrecorded", "POST", UPPER, 422, form(input=f"{earlier}/.exit.json")),
        Case("id NUL", "POST", UPPER, 422, form(input="abc\x00def")),
        Case("file id traversal", "GET", "/api/files/..%2F..%2Fetc%2Fpasswd", 404),
        Case(
            "job file traversal",
            "GET",
            f"/api/jobs/{earlier}/files/..%2F..%2F..%2Fetc%2Fpasswd",
            404,
        ),
        Case("job file dotdot", "GET", f"/api/jobs/{earlier}/files/../../etc/passwd", 404),
        Case("served upload traversal", "GET", "/media/uploads/..%2F..%2Fetc%2Fpasswd", (400, 404)),
        Case("served job traversal", "GET", "/media/jobs/%2e%2e/%2e%2e/etc/passwd", (400, 404)),
        Case("served hidden file", "GET", f"/media/jobs/{earlier}/.exit.json", 404),
        # Upload names: any name is only a label.
        Case(
            "upload name ../../",
            "POST",
            "/api/files",
            201,
            multipart(file_part(b"file", b"../../etc/evil")),
        ),
        Case(
            "upload name absolute",
            "POST",
            "/api/files",
            201,
            multipart(file_part(b"file", b"/etc/passwd")),
        ),
        Case(
            "upload name not UTF-8",
            "POST",
            "/api/files",
            201,
            multipart(file_part(b"file", b"\xff\xfe.fa")),
        ),
        Case(
            "upload name odd unicode",
            "POST",
            "/api/files",
            201,
            multipart(
                file_part(
                    b"file", "\u202e\U0001d523\U0001d526\U0001d529\U0001d522\u200b.fa".encode()
                )
            ),
        ),
        Case(
            "upload name long",
            "POST",
            "/api/files",
            201,
            multipart(file_part(b"file", b"n" * 1000)),
        ),
        Case(
            "upload name too long",
            "POST",
            "/api/files",
            400,
            multipart(file_part(b"file", b"n" * 10_000)),
        ),
        Case(
            "upload name backslashes",
            "POST",
            "/api/files",
            201,
            multipart(file_part(b"file", b"..\\..\\x")),
        ),
        # Oversized, endless and lying uploads.
        Case(
            "oversized upload",
            "POST",
            "/api/files",
            413,
            {"files": {"file": ("big", b"A" * 200_000)}},
        ),
        Case(
            "oversized job file",
            "POST",
            UPPER,
            413,
            {"files": {"input": ("big", b">a\n" + b"A" * 200_000)}},
        ),
        Case(
            "endless upload",
            "POST",
            "/api/files",
            413,
            {"content": endless(), "headers": {"content-type": "multipart/form-data; boundary=b"}},
        ),
        Case(
            "huge content-length",
            "POST",
            "/api/files",
            413,
            raw=(
                b"POST /api/files HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                b"Content-Length: 999999999\r\nConnection: close\r\n\r\n--b\r\n"
            ),
        ),
        # Malformed and truncated bodies.
        Case(
            "no boundary",
            "POST",
            "/api/files",
            400,
            {"content": b"x", "headers": {"content-type": "multipart/form-data"}},
        ),
        Case(
            "truncated multipart",
            "POST",
            "/api/files",
            400,
            {
                "content": b'--b\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nabc',
                "headers": {"content-type": "multipart/form-data; boundary=b"},
            },
        ),
        Case(
            "garbage multipart",
            "POST",
            JOBS,
            400,
            {
                "content": b"\x00\x01garbage",
                "headers": {"content-type": "multipart/form-data; boundary=b"},
            },
        ),
        Case("part without disposition", "POST", JOBS, 400, multipart(b"X-Other: 1\r\n\r\nabc")),
        Case("part name not UTF-8", "POST", JOBS, 400, multipart(field_part(b"\xff", b"1"))),
        Case("value not UTF-8", "POST", JOBS, 400, multipart(field_part(b"text", b"\xff\xfe"))),
        Case("too many parts", "POST", JOBS, 413, multipart(*[field_part(b"text", b"x")] * 1001)),
        Case(
            "hundreds of files",
            "POST",
            UPPER,
            413,
            multipart(*[file_part(b"input", b"s.fa")] * 300),
        ),
        Case(
            "a file under an unknown name",
            "POST",
            UPPER,
            400,
            multipart(file_part(b"input", b"s.fa"), file_part(b"other", b"o.fa")),
        ),
        Case(
            "a file for a service without files",
            "POST",
            JOBS,
            400,
            multipart(field_part(b"text", b"x"), file_part(b"text2", b"o.fa")),
        ),
        Case("form fields too large", "POST", JOBS, 413, form(text="x" * 2_000_000)),
        Case("JSON body", "POST", JOBS, 415, {"json": {"text": "x"}}),
        Case(
            "text/plain body",
            "POST",
            JOBS,
            415,
            {"content": b"text=x", "headers": {"content-type": "text/plain"}},
        ),
        Case(
            "urlencoded not UTF-8",
            "POST",
            JOBS,
            400,
            {
                "content": b"text=%ff",
                "headers": {"content-type": "application/x-www-form-urlencoded"},
            },
        ),
        # Wrong types and values out of range, for every parameter type.
        Case("integer not a number", "POST", JOBS, 422, form(text="x", number="abc")),
        Case("integer with a fraction", "POST", JOBS, 422, form(text="x", number="1.5")),
        Case("integer too large", "POST", JOBS, 422, form(text="x", number="9" * 40)),
        Case("integer of 5,000 digits", "POST", JOBS, 422, form(text="x", number="9" * 5000)),
        Case(
            "integer of 5,000 digits beside a file",
            "POST",
            UPPER,
            422,
            multipart(file_part(b"input", b"s.fa"), field_part(b"delay", b"7" * 5000)),
        ),
        Case(
            "integer beyond 64 bits within bounds",
            "POST",
            UPPER,
            422,
            multipart(file_part(b"input", b"s.fa"), field_part(b"delay", b"-" + b"9" * 19)),
        ),
        Case("integer below minimum", "POST", JOBS, 422, form(text="x", number="-5")),
        Case("decimal nan", "POST", JOBS, 422, form(text="x", ratio="nan")),
        Case("decimal infinite", "POST", JOBS, 422, form(text="x", ratio="1e999")),
        Case("decimal not a number", "POST", JOBS, 422, form(text="x", ratio="one")),
        Case("flag not a flag", "POST", JOBS, 422, form(text="x", flag="maybe")),
        Case("choice unknown", "POST", JOBS, 422, form(text="x", pick="c")),
        Case("choice by value", "POST", JOBS, 422, form(text="x", pick="A")),
        Case("text too long", "POST", JOBS, 422, form(text="x" * 201)),
        Case("text with NUL", "POST", JOBS, 422, form(text="a\x00b")),
        Case("required missing", "POST", JOBS, 422, form(number="1")),
        Case("file for a text parameter", "POST", JOBS, 422, {"files": {"text": ("a", b"x")}}),
        Case("file not FASTA", "POST", UPPER, 422, {"files": {"input": ("a.fa", b"<html>")}}),
        Case("option-like value alone", "POST", JOBS, 422, form(text="x", alone="-rf")),
        Case(
            "option-like value alone, long",
            "POST",
            JOBS,
            422,
            form(text="x", alone="--output=/etc/passwd"),
        ),
        # Unknown services, parameters, endpoints, methods.
        Case("unknown service submit", "POST", "/api/services/nope/jobs", 404, form(text="x")),
        Case("unknown service", "GET", "/api/services/..%2F..%2Fetc", 404),
        Case("unknown parameter", "POST", JOBS, 422, form(text="x", shell="1")),
        Case("unknown list filter", "GET", "/api/jobs?where=1", 400),
        Case("negative limit", "GET", "/api/jobs?limit=-1", 400),
        Case("skip beyond 8-byte numbers", "GET", "/api/jobs?skip=" + "9" * 25, 400),
        Case("limit beyond 8-byte numbers", "GET", "/api/jobs?limit=" + "9" * 25, 400),
        Case("non-ASCII digits in skip", "GET", "/api/jobs?skip=%D9%A3", 400),
        Case(
            "submitted after the year 9999",
            "GET",
            "/api/jobs?submissionTime=%3E9999-12-31T23:59:59",
            200,
        ),
        Case(
            "submitted by the end of 9999",
            "GET",
            "/api/jobs?submissionTime=%3C%3D9999-12-31T23:59:59",
            200,
        ),
        Case(
            "submitted in the last second of 9999",
            "GET",
            "/api/jobs?submissionTime=9999-12-31T23:59:59",
            200,
        ),
        Case(
            "submitted in year 10000", "GET", "/api/jobs?submissionTime=10000-01-01T00:00:00", 400
        ),
        Case("unknown status filter", "GET", "/api/jobs?status=$ne", 400),
        Case("operator injection in id filter", "GET", "/api/jobs?id[$ne]=x", 400),
        Case("unknown job", "GET", "/api/jobs/" + "z" * 16, 404),
        Case("very long job id", "GET", "/api/jobs/" + "a" * 10_000, (404, 414)),
        Case("cancel unknown job", "DELETE", "/api/jobs/zzzzzzzzzzzzzzzz", 404),
        Case(
            "relabel with markup", "PUT", "/api/files/zzzzzzzzzzzzzzzz", 404, form(mediaType="<b>")
        ),
        Case("method not allowed", "PATCH", "/api/jobs", 405),
        Case("unknown path", "GET", "/api/../../etc/passwd", (400, 404)),
        # Shell syntax in values is accepted: it stays literal (checked by running, below).
        *[
            Case(f"shell value {i}", "POST", JOBS, 202, form(text=value))
            for i, value in enumerate(SHELL_VALUES[:8])
        ],
    ]


def tree(root: Path, skip: set[str], logs: frozenset[str] = frozenset()) -> dict[str, str]:
    """Every file below ``root`` outside the folders in ``skip`` (and but the ``logs``),
    with a hash of its content."""
    result = {}
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if (relative.parts and relative.parts[0] in skip) or str(relative) in logs:
            continue
        if path.is_file() and not path.is_symlink():
            result[str(relative)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return result


def send(stack: Stack, case: Case) -> int:
    if case.raw is not None:
        host, port = stack.proxy.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as connection:
            connection.sendall(case.raw)
            head = connection.recv(4096).decode(errors="replace")
        return int(head.split()[1])
    try:
        response = httpx.request(case.method, stack.proxy + case.path, timeout=60, **case.options)
    except httpx.HTTPError as exc:  # the server may close while an endless body is sent
        if "endless" in case.name:
            return 413
        raise AssertionError(f"{case.name}: {exc}") from None
    assert response.headers.get("content-type", "").startswith("application/json"), (
        case.name,
        response.text[:200],
    )
    assert "Traceback" not in response.text and "/home" not in response.text
    return response.status_code


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, mongodb_uri: str, database_name: str
) -> Iterator[Stack]:
    # The list filters are hostile input too: this site opens its job lists to reach them.
    with running_stack(
        tmp_path_factory.mktemp("hostile"), mongodb_uri, database_name, {"argv": ARGV},
        public_job_lists=True,
    ) as stack:  # fmt: skip
        yield stack


def wait_finished(stack: Stack, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job: dict[str, Any] = httpx.get(f"{stack.proxy}/api/jobs/{job_id}").json()
        if job["finished"]:
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish")


def test_hostile_requests(stack: Stack) -> None:
    earlier = httpx.post(f"{stack.proxy}{UPPER}", files={"input": ("s.fa", FASTA.encode())}).json()[
        "id"
    ]
    assert wait_finished(stack, earlier)["status"] == "COMPLETED"
    earlier_record = httpx.get(f"{stack.proxy}/api/jobs/{earlier}").json()
    earlier_files = tree(stack.settings.jobs_dir / earlier, set())
    root = stack.settings.jobs_dir.parent
    outside = tree(root, {"jobs", "uploads"}, frozenset({"nginx/access.log"}))  # a log: it grows
    passwd = hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest()
    table = cases(earlier)
    assert len(table) >= 50
    failures = []
    for case in table:
        uploads = set(stack.settings.uploads_dir.iterdir())
        status = send(stack, case)
        expected = case.status if isinstance(case.status, tuple) else (case.status,)
        if status not in expected:
            failures.append(f"{case.name}: {status}, expected {case.status}")
        if status not in (201, 202):  # a refused request's files are all gone
            assert set(stack.settings.uploads_dir.iterdir()) <= uploads, case.name
        assert tree(root, {"jobs", "uploads"}, frozenset({"nginx/access.log"})) == outside, (
            case.name
        )
        assert not list(stack.settings.uploads_dir.glob("*/*")), case.name  # uploads stay flat
    assert failures == [], failures
    assert hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest() == passwd
    assert not Path("/etc/evil").exists()
    assert httpx.get(f"{stack.proxy}/api/jobs/{earlier}").json() == earlier_record
    assert tree(stack.settings.jobs_dir / earlier, set()) == earlier_files
    assert not any(p.name.startswith(".incoming") for p in stack.settings.uploads_dir.iterdir())


def test_shell_syntax_reaches_the_tool_literally(stack: Stack) -> None:
    response = httpx.post(
        f"{stack.proxy}{JOBS}", data={"text": SHELL_VALUES, "number": "7", "alone": "plain"}
    )
    assert response.status_code == 202, response.text
    job = wait_finished(stack, response.json()["id"])
    assert job["status"] == "COMPLETED"
    argv = (stack.settings.jobs_dir / job["id"] / "args.bin").read_bytes().split(b"\0")[:-1]
    expected = [f"--text={v}".encode() for v in SHELL_VALUES] + [b"plain", b"--number=7"]
    assert argv == expected
