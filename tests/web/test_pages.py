"""The web pages, in process: every parameter type's field, conditions, errors beside
their fields with the API's messages, submission from a page (file, pasted text, flags,
lists), the job page (state, outputs, previews, snippets, tail), and the rules the API
keeps (cross-site writes refused, everything escaped, nothing left behind)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from pymongo.database import Database
from starlette.testclient import TestClient

from appliance.conditions import Condition
from appliance.settings import Settings
from appliance.web.app import create_app
from tests.conftest import ROOT

ALL_TYPES = """\
appliance-version: 1
name: Every type
description: "A form with <b>every</b> kind of field & a <script>alert(1)</script>."
image: x
runner: local
parameters:
  seqs: {name: Sequences, type: file, media-type: application/fasta, max-size: 1K,
         description: Your sequences., example: ">ex\\nACGT\\n"}
  more: {name: More files, type: "file[]", required: false}
  title: {name: Title, type: text, min-length: 2, max-length: 20, required: false}
  count: {name: Count, type: integer, min: 1, max: 10, default: 3, description: How many.}
  ratio: {name: Ratio, type: decimal, min: 0, max: 1, min-exclusive: true, required: false}
  loud: {name: Loud, type: flag, default: true}
  mode: {name: Mode, type: choice, choices: {Fast: f, Slow: s}}
  kinds: {name: Kinds, type: "choice[]", choices: {A: a, B: b, C: c}, required: false}
  sizes: {name: Sizes, type: "integer[]", required: false, max: 100}
  depth: {name: Depth, type: integer, required: false, condition: "count > 2 and mode == \\"Slow\\""}
command: echo
args:
  seqs: {arg: "$(value)"}
  more: {arg: "$(value)"}
  title: {arg: "$(value)"}
  count: {arg: "$(value)"}
  ratio: {arg: "$(value)"}
  loud: {arg: --loud}
  mode: {arg: "$(value)"}
  kinds: {arg: "$(value)"}
  sizes: {arg: "$(value)"}
  depth: {arg: "$(value)"}
outputs:
  out: {path: "*.txt", media-type: text/plain}
presets:
  big: {name: Big, description: Many and slow., values: {count: 9, loud: false, mode: Slow}}
"""
FASTA = b">one\nACGT\n>two\nAC-T\n"


class Tree(HTMLParser):
    """The elements of a page, each as (tag, attributes), and its text."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def find(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        wanted = {k.rstrip("_").replace("_", "-"): v for k, v in attrs.items()}
        return [a for t, a in self.elements if t == tag
                and all(a.get(k) == v for k, v in wanted.items())]  # fmt: skip

    def one(self, tag: str, **attrs: str) -> dict[str, str]:
        found = self.find(tag, **attrs)
        assert len(found) == 1, (tag, attrs, found)
        return found[0]


def parse(html: str) -> Tree:
    tree = Tree()
    tree.feed(html)
    return tree


@pytest.fixture
def pages(web_settings: Settings, db: Database[dict[str, object]]) -> Any:
    (web_settings.services_dir / "every.service.yaml").write_text(ALL_TYPES)
    with TestClient(create_app(web_settings), raise_server_exceptions=False) as client:
        yield client


def test_the_service_list_names_every_service_and_filters(pages: TestClient) -> None:
    page = pages.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    tree = parse(page.text)
    assert tree.one("a", href="/services/echo") and tree.one("a", href="/services/every")
    assert "<script>alert(1)</script>" not in page.text  # a description is text, escaped
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    filtered = pages.get("/", params={"q": "says"})
    assert (
        'href="/services/echo"' in filtered.text and 'href="/services/every"' not in filtered.text
    )
    none = pages.get("/", params={"q": "<nothing>"})
    assert "No service matches" in none.text and "&lt;nothing&gt;" in none.text


def test_every_page_has_a_title_a_heading_and_a_strict_policy(pages: TestClient) -> None:
    for path in ("/", "/services/every", "/my-jobs", "/jobs/nosuchjob00000"):
        page = pages.get(path)
        assert re.search(r"<title>[^<]+ · appliance</title>", page.text), path
        assert page.text.count("<h1") == 1, path
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "<script>" not in page.text  # no inline script: the policy would block it
        assert page.headers["x-content-type-options"] == "nosniff"


def test_the_form_has_a_field_for_every_parameter_type(pages: TestClient) -> None:
    page = pages.get("/services/every")
    assert page.status_code == 200
    tree = parse(page.text)
    form = tree.one("form", action="/services/every")
    assert form["enctype"] == "multipart/form-data" and form["method"] == "post"
    assert "novalidate" in form  # the server's messages, the same as the API's, are shown
    # a file: an upload, or pasted text, with the example behind a button
    assert tree.one("input", id="p-seqs", type="file", name="seqs")
    assert tree.one("textarea", id="p-seqs-text", name="seqs.text")
    assert tree.one("button", data_example="p-seqs-text")
    assert tree.one("template", id="p-seqs-text-example") is not None
    assert "&gt;ex\nACGT\n" in page.text
    assert "multiple" in tree.one("input", id="p-more", type="file")
    # numbers keep their defaults and say their bounds
    assert tree.one("input", id="p-count")["value"] == "3"
    assert "a whole number; at least 1; at most 10" in page.text
    assert "a number; greater than 0; at most 1" in page.text
    assert "at least 2 characters; at most 20 characters" in page.text
    # a flag that defaults to true is checked, and says it was shown (unchecked sends nothing)
    assert "checked" in tree.one("input", id="p-loud", type="checkbox")
    assert tree.one("input", type="hidden", name="loud.shown")
    # a required choice without a default asks for a choice; a list of choices is boxes
    options = [a for t, a in tree.elements if t == "option"]
    assert [o["value"] for o in options] == ["", "Fast", "Slow"]
    assert len(tree.find("input", type="checkbox", name="kinds")) == 3
    assert tree.one("textarea", id="p-sizes", name="sizes")  # numbers, one per line
    # every field has its label, and its help text is tied to it
    for param in ("seqs", "more", "title", "count", "ratio", "mode", "sizes", "depth"):
        assert tree.one("label", for_=f"p-{param}")
    assert tree.one("input", id="p-count")["aria-describedby"] == "p-count-hint"
    assert "How many." in page.text and "Your sequences." in page.text
    # a condition travels as the parsed tree, for the page's script to evaluate
    depth = tree.one("div", id="p-depth-field")
    condition = Condition.parse('count > 2 and mode == "Slow"')
    assert json.loads(depth["data-condition"]) == condition.as_json()
    assert json.loads(tree.one("div", id="p-count-field")["data-default"]) == 3
    # required is marked (a condition can make a field not apply: not marked there)
    assert tree.one("label", for_="p-seqs") and "(required)" in page.text


def test_the_service_page_is_small(pages: TestClient, web_settings: Settings) -> None:
    for path in ("/services/every", "/services/echo"):
        assert len(pages.get(path).content) < 50 * 1024


def test_a_wrong_value_is_shown_beside_its_field_with_the_apis_message(
    pages: TestClient, web_settings: Settings
) -> None:
    sent = {"count": "99", "mode": "Fast", "title": "x", "loud.shown": "1", "seqs.text": ">a\nAC\n"}
    api = pages.post("/api/services/every/jobs", data={k: v for k, v in sent.items()
                                                       if "." not in k})  # fmt: skip
    assert api.status_code == 422
    page = pages.post("/services/every", data=sent)
    assert page.status_code == 422
    tree = parse(page.text)
    messages = {
        e["parameter"]: e["message"] for e in api.json()["errors"] if e["parameter"] != "seqs"
    }
    assert set(messages) == {"count", "title"}
    for param, message in messages.items():
        assert f'<p class="error" id="p-{param}-error">{message}</p>' in page.text
        assert tree.one("input", id=f"p-{param}")["aria-invalid"] == "true"
        assert f"p-{param}-error" in tree.one("input", id=f"p-{param}")["aria-describedby"]
    # what was sent stays in the form, the pasted text too; nothing was kept
    assert tree.one("input", id="p-count")["value"] == "99"
    assert "checked" not in tree.one("input", id="p-loud")  # sent unchecked
    assert "&gt;a\nAC\n" in page.text
    assert list(web_settings.uploads_dir.iterdir()) == []
    assert pages.get("/api/jobs", headers={"Authorization": "Bearer operator-token-for-tests"}
                     ).json()["totalCount"] == 0  # fmt: skip


def test_a_form_submits_a_job_with_a_file_pasted_text_flags_and_lists(
    pages: TestClient, db: Database[dict[str, object]], web_settings: Settings
) -> None:
    answer = pages.post(
        "/services/every",
        data={"mode": "Slow", "count": "4", "depth": "2", "loud.shown": "1", "kinds": ["A", "C"],
              "sizes": "5\n\n7\n", "seqs.text": "", "more.text": ">p\nAAA"},
        files=[("seqs", ("mine.fa", FASTA, "application/octet-stream")),
               ("more", ("", b"", "application/octet-stream"))],
        follow_redirects=False,
    )  # fmt: skip
    assert answer.status_code == 303, answer.text
    job_id = answer.headers["location"].removeprefix("/jobs/")
    job = pages.get(f"/api/jobs/{job_id}").json()
    params = job["parameters"]
    assert params["mode"] == "Slow" and params["count"] == "4" and params["depth"] == "2"
    assert "loud" not in params  # unchecked (false), though its default is true
    assert params["kinds"] == ["A", "C"] and params["sizes"] == ["5", "7"]
    labels = {f["_id"]: f["label"] for f in db["files"].find()}
    assert labels[params["seqs"]] == "mine.fa"
    assert [labels[f] for f in params["more"]] == ["pasted.txt"]
    stored = sorted(p.read_bytes() for p in web_settings.uploads_dir.iterdir())
    assert stored == sorted([FASTA, b">p\nAAA\n"])  # the empty file part left nothing
    page = pages.get(f"/jobs/{job_id}")
    assert page.status_code == 200 and job["status"] in page.text


def test_a_condition_that_fails_refuses_its_value_as_the_api_does(pages: TestClient) -> None:
    page = pages.post(
        "/services/every", data={"mode": "Fast", "depth": "2", "seqs.text": ">a\nAC\n"}
    )
    assert page.status_code == 422
    assert (
        'id="p-depth-error">not allowed here: needs count &gt; 2 and mode == &#34;Slow&#34;'
        in page.text
    )


def test_pasted_text_over_the_limit_is_refused_and_leaves_nothing(
    pages: TestClient, web_settings: Settings
) -> None:
    page = pages.post("/services/every", data={"mode": "Fast", "seqs.text": ">a\n" + "A" * 3000})
    assert page.status_code == 413
    assert "larger than the limit" in page.text and 'role="alert"' in page.text
    assert list(web_settings.uploads_dir.iterdir()) == []


def test_a_page_of_another_site_cannot_submit(pages: TestClient, web_settings: Settings) -> None:
    answer = pages.post("/services/every", data={"mode": "Fast", "seqs.text": ">a\nAC\n"},
                        headers={"Origin": "https://evil.example"})  # fmt: skip
    assert answer.status_code == 403
    assert list(web_settings.uploads_dir.iterdir()) == []
    same = pages.post("/services/every", data={"mode": "Fast", "seqs.text": ">a\nAC\n"},
                      headers={"Origin": "http://testserver"}, follow_redirects=False)  # fmt: skip
    assert same.status_code == 303


def test_unknown_pages_are_pages_not_tracebacks(pages: TestClient) -> None:
    for path in ("/services/nope", "/jobs/aaaaaaaaaaaaaaaa", "/jobs/..%2F..%2Fetc%2Fpasswd"):
        page = pages.get(path)
        assert page.status_code == 404, path
        assert "Traceback" not in page.text
    assert pages.post("/jobs/aaaaaaaaaaaaaaaa/cancel").status_code == 404


def _finish(db: Database[dict[str, object]], settings: Settings, job_id: str,
            files: dict[str, tuple[bytes, str]]) -> None:  # fmt: skip
    workdir = settings.jobs_dir / job_id
    workdir.mkdir(parents=True, exist_ok=True)
    for path, (data, _) in files.items():
        (workdir / path).write_bytes(data)
    outputs = [
        {"id": "out", "path": p, "media_type": t, "name": p.upper()} for p, (_, t) in files.items()
    ]
    db["jobs"].update_one({"_id": job_id}, {"$set": {
        "state": "COMPLETED", "outputs": outputs, "exit_code": 0,
        "started_at": datetime.now(UTC), "completed_at": datetime.now(UTC)}})  # fmt: skip


def _submit(pages: TestClient) -> str:
    answer = pages.post("/services/every", data={"mode": "Fast", "title": "hello"},
                        files={"seqs": ("in.fa", FASTA)}, follow_redirects=False)  # fmt: skip
    assert answer.status_code == 303, answer.text
    return str(answer.headers["location"]).removeprefix("/jobs/")


def test_the_job_page_shows_results_previews_and_downloads(
    pages: TestClient, db: Database[dict[str, object]], web_settings: Settings
) -> None:
    job_id = _submit(pages)
    running = pages.get(f"/jobs/{job_id}")
    tree = parse(running.text)
    assert tree.one("form", action=f"/jobs/{job_id}/cancel")
    assert '<meta http-equiv="refresh"' in running.text  # without script, it reloads itself
    long_text = b"".join(b"line %d\n" % i for i in range(10000))
    _finish(db, web_settings, job_id, {
        "a.txt": (b"<script>alert('x')</script>\nCLUSTAL\n", "text/plain"),
        "long.txt": (long_text, "text/plain"),
        "blob.bin": (b"\0\1\2" * 100, "application/octet-stream"),
    })  # fmt: skip
    page = pages.get(f"/jobs/{job_id}")
    tree = parse(page.text)
    assert "COMPLETED" in page.text and not tree.find("form", action=f"/jobs/{job_id}/cancel")
    assert "<script>alert" not in page.text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page.text
    for path in ("a.txt", "long.txt", "blob.bin"):
        link = tree.one("a", href=f"{web_settings.jobs_url}/{job_id}/{path}", class_="download")
        assert link["download"] == path
    assert "line 0\n" in page.text and "line 9999" not in page.text  # truncated, and said so
    assert "The file is longer" in page.text
    assert "2.9 KiB" not in page.text and "300 bytes" in page.text  # sizes, from the files
    assert page.text.count('<pre class="mono"') == 2  # no preview of the binary output
    # the fragment the page's script puts in when the job ends is the same section
    fragment = pages.get(f"/jobs/{job_id}/outputs")
    assert fragment.status_code == 200 and '<section id="outputs"' in fragment.text
    assert f"{web_settings.jobs_url}/{job_id}/long.txt" in fragment.text


def test_the_job_page_draws_alignments_and_trees_and_says_what_it_does_not(
    pages: TestClient, db: Database[dict[str, object]], web_settings: Settings
) -> None:
    outputs = ROOT / "tests" / "data" / "outputs"
    job_id = _submit(pages)
    _finish(db, web_settings, job_id, {
        "alignment.aln": ((outputs / "clustalo-example.aln").read_bytes(), "application/clustal"),
        "guide_tree.dnd": ((outputs / "clustalo-example.dnd").read_bytes(), "text/x-nh"),
        "muscle.afa": ((outputs / "muscle-example.afa").read_bytes(), "application/fasta"),
        "broken.dnd": (b"(A,B", "text/x-nh"),
        "seqs.fa": (b">a\nMKV\n>b\nMKVLA\n", "application/fasta"),  # sequences, unaligned
    })  # fmt: skip
    page = pages.get(f"/jobs/{job_id}")
    tree = parse(page.text)
    assert len(tree.find("figure", class_="alignment-view")) == 2
    assert len(tree.find("figure", class_="tree-view")) == 1
    assert tree.one("svg", class_="tree")["role"] == "img"
    assert sorted(re.findall(r"<text [^>]*>([^<]*)</text>", page.text)) == [
        "sp|P02042|HBD_HUMAN", "sp|P02144|MYG_HUMAN", "sp|P68871|HBB_HUMAN", "sp|P69905|HBA_HUMAN"]  # fmt: skip
    assert "Not drawn: a Newick tree ends with &#39;;&#39;." in page.text
    assert page.text.count("Not drawn") == 1  # the unaligned sequences are just text
    # the drawn outputs' text stays, closed: the first preview is not open any more
    assert 'class="preview" open' not in page.text


def test_the_job_page_gives_the_job_as_curl_and_python(pages: TestClient) -> None:
    job_id = _submit(pages)
    page = pages.get(f"/jobs/{job_id}")
    assert "curl \\\n  -F seqs=@in.fa \\\n" in page.text
    assert "--form-string mode=Fast" in page.text
    assert "file “in.fa”" in page.text  # the parameters table names the file by its label
    assert "--form-string loud=true" in page.text and "--form-string count=3" in page.text
    assert "http://testserver/api/services/every/jobs" in page.text
    assert "SlivkaClient(&#39;http://testserver/&#39;)" in page.text
    assert "(&#39;seqs&#39;, open(&#39;in.fa&#39;, &#39;rb&#39;))" in page.text


def test_cancel_from_the_page(pages: TestClient, db: Database[dict[str, object]]) -> None:
    job_id = _submit(pages)
    answer = pages.post(f"/jobs/{job_id}/cancel", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == f"/jobs/{job_id}"
    job = db["jobs"].find_one({"_id": job_id})  # no scheduler held it: it ended at once
    assert job is not None and job["state"] == "INTERRUPTED"
    again = pages.post(f"/jobs/{job_id}/cancel", follow_redirects=False)
    assert again.status_code == 303
    assert (db["jobs"].find_one({"_id": job_id}) or {})["state"] == "INTERRUPTED"


def test_the_tail_is_bounded_and_never_follows_a_link(
    pages: TestClient, web_settings: Settings, tmp_path: Path
) -> None:
    job_id = _submit(pages)
    workdir = web_settings.jobs_dir / job_id
    workdir.mkdir(parents=True)
    (workdir / "stdout").write_bytes(b"x" * 10000 + b"\nlast line\n")
    secret = tmp_path / "secret"
    secret.write_text("not yours")
    (workdir / "stderr").symlink_to(secret)
    tail = pages.get(f"/jobs/{job_id}/tail").json()
    assert tail["stdout"].endswith("last line\n") and len(tail["stdout"]) == 4096
    assert tail["stderr"] == ""
    assert "last line" in pages.get(f"/jobs/{job_id}").text


def test_a_preset_fills_the_form_with_its_values(pages: TestClient) -> None:
    plain = parse(pages.get("/services/every").text)
    assert plain.one("a", href="/services/every?preset=big")
    assert plain.one("input", id="p-count")["value"] == "3"
    chosen = pages.get("/services/every", params={"preset": "big"})
    tree = parse(chosen.text)
    assert tree.one("a", href="/services/every?preset=big")["aria-current"] == "true"
    assert tree.one("input", id="p-count")["value"] == "9"
    assert "checked" not in tree.one("input", id="p-loud")
    assert "selected" in tree.one("option", value="Slow")
    assert pages.get("/services/every", params={"preset": "nope"}).status_code == 404
