"""A person with only a browser: Debian's chromium, driven by Playwright, against the
running bundle through its proxy. Each page is screenshotted (build/screenshots/) and
checked with axe-core for serious or critical accessibility violations."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from appliance.conditions import Condition
from tests.bundle.compose import INPUT, PROTEINS, assert_alignment_of_the_input, read_clustal
from tests.conftest import ROOT

SCREENSHOTS = ROOT / "build" / "screenshots"
JOB_TIMEOUT_MS = 240_000


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value or not Path(value).exists():
        pytest.fail(f"{name} is not set or missing: run the tests with scripts/test")
    return value


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = _required("APPLIANCE_TEST_CHROMIUM")
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where chromium's own sandbox cannot start
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    axe = _required("APPLIANCE_TEST_AXE")
    context = browser.new_context(viewport={"width": 1200, "height": 900}, accept_downloads=True)
    context.add_init_script(path=axe)  # before the page's own scripts; not subject to its CSP
    errors: list[str] = []
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # The page's own status (a 422 form, a 404 page) is logged too: that one is meant.
    page.on("console", lambda m: errors.append(m.text)
            if m.type == "error" and m.location.get("url") != page.url else None)  # fmt: skip
    page.set_default_timeout(30_000)
    yield page
    context.close()
    assert errors == [], errors  # no script error, no CSP violation on any page


def check(page: Page, name: str) -> None:
    """A screenshot of the page, and no serious or critical axe-core violation on it."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    result: dict[str, Any] = page.evaluate("() => axe.run(document)")
    bad = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
           for v in result["violations"] if v["impact"] in ("serious", "critical")]  # fmt: skip
    assert bad == [], f"{name}: {bad}"
    assert result["passes"], "axe-core checked nothing"


def wait_for_end(page: Page) -> str:
    expect(page.locator("#job[data-finished=true]")).to_have_count(1, timeout=JOB_TIMEOUT_MS)
    return page.locator("#job-status").inner_text()


def test_clustal_omega_from_the_front_page_to_the_downloaded_alignment(
    page: Page, bundle: str, tmp_path: Path
) -> None:
    page.goto(bundle + "/")
    expect(page).to_have_title("Services · appliance")
    expect(page.get_by_role("heading", level=1)).to_have_text("Services")
    for name in ("Clustal Omega", "MAFFT", "MUSCLE"):
        expect(page.get_by_role("link", name=name, exact=True)).to_be_visible()
    check(page, "01-services")
    # the filter works as one types
    page.get_by_label("Filter services").fill("progressive")
    expect(page.get_by_role("link", name="Clustal Omega", exact=True)).to_be_hidden()
    expect(page.get_by_role("link", name="MAFFT", exact=True)).to_be_visible()
    page.get_by_label("Filter services").fill("")

    page.get_by_role("link", name="Clustal Omega", exact=True).click()
    expect(page).to_have_url(bundle + "/services/clustalo")
    expect(page.get_by_role("heading", level=1)).to_have_text("Clustal Omega")
    # a field whose condition does not hold is hidden, and appears when it does
    guide = page.get_by_label("Guide-tree iterations")
    expect(guide).to_be_hidden()
    page.get_by_label("Combined iterations").fill("2")
    expect(guide).to_be_visible()
    page.get_by_label(re.compile(r"^Sequences")).set_input_files(str(PROTEINS))
    page.get_by_label("Dealign input").check()
    page.get_by_label("Output the guide tree").check()
    check(page, "02-clustalo-form")
    page.get_by_role("button", name="Submit the job").click()

    expect(page).to_have_url(re.compile(re.escape(bundle) + r"/jobs/[a-z0-9]{16}$"))
    job_id = page.url.rsplit("/", 1)[1]
    page.evaluate("() => { window.stayed = 'yes'; }")
    assert wait_for_end(page) == "COMPLETED"
    assert page.evaluate("() => window.stayed") == "yes"  # followed live, never reloaded
    expect(page).to_have_title(f"[COMPLETED] Job {job_id} · appliance")  # seen from another tab
    params = httpx.get(f"{bundle}/api/jobs/{job_id}").json()["parameters"]
    assert params["iterations"] == "2" and params["dealign"] == "true"

    preview = page.locator("details.preview").first
    expect(preview.locator("pre")).to_contain_text("CLUSTAL")
    # the alignment drawn, with its tracks, and the guide tree as a tree
    assert_drawn_alignment(page, "Alignment")
    tree = page.locator("figure.tree-view svg")
    expect(tree).to_be_visible()
    leaves = sorted(tree.locator("text").all_text_contents())
    assert leaves == sorted(INPUT), leaves
    expect(tree.locator("line")).to_have_count(3 * len(INPUT) - 3)  # a binary tree's
    check(page, "03-job-completed")
    page.locator("figure.alignment-view").screenshot(
        path=str(SCREENSHOTS / "09-clustalo-alignment.png")
    )
    tree.screenshot(path=str(SCREENSHOTS / "10-clustalo-guide-tree.png"))
    files = httpx.get(f"{bundle}/api/jobs/{job_id}/files").json()["files"]
    alignment = next(f for f in files if f["path"] == "alignment.aln")
    expected = httpx.get(bundle + alignment["@content"]).content
    with page.expect_download() as download:
        page.get_by_role("link", name="Download Alignment").first.click()
    saved = tmp_path / "alignment.aln"
    download.value.save_as(saved)
    assert saved.read_bytes() == expected
    assert_alignment_of_the_input(read_clustal(saved.read_text()))

    # the page's snippets make the same job again, as written
    snippets = page.locator("pre.snippet code").all_inner_texts()
    curl, python = snippets[0], snippets[1]
    assert "-F input=@proteins.fa" in curl
    (tmp_path / "proteins.fa").write_bytes(PROTEINS.read_bytes())
    made = subprocess.run(
        ["bash", "-c", curl], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert made.returncode == 0 and '"status"' in made.stdout, made.stderr
    run = subprocess.run([sys.executable, "-c", python], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert read_clustal((tmp_path / "alignment.aln").read_text()).keys() == INPUT.keys()

    # "My jobs" lists it, from this browser's own storage
    page.get_by_role("link", name="My jobs").click()
    row = page.locator("#my-jobs tbody tr", has_text=job_id)
    expect(row).to_contain_text("COMPLETED")
    expect(row).to_contain_text("Clustal Omega")
    check(page, "05-my-jobs")


def test_a_wrong_value_is_shown_beside_its_field(page: Page, bundle: str) -> None:
    page.goto(bundle + "/services/clustalo")
    page.get_by_role("button", name="Fill in the example").click()
    expect(page.get_by_label("or paste its text")).to_have_value(re.compile("^>sp"))
    page.get_by_label("Combined iterations").fill("1000")
    page.get_by_role("button", name="Submit the job").click()
    error = page.locator("#p-iterations-error")
    expect(error).to_have_text("must be at most 100")
    api = httpx.post(f"{bundle}/api/services/clustalo/jobs", data={"iterations": "1000"},
                     files={"input": PROTEINS.read_bytes()})  # fmt: skip
    assert api.status_code == 422
    messages = {e["parameter"]: e["message"] for e in api.json()["errors"]}
    assert error.inner_text() == messages["iterations"]
    expect(page.get_by_label("Combined iterations")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Combined iterations")).to_be_focused()  # taken straight there
    expect(page.get_by_label("or paste its text")).to_have_value(re.compile("^>sp"))
    check(page, "04-form-error")


@pytest.mark.parametrize(
    "service", ["mafft", "muscle", "clustalw", "kalign", "probcons", "tcoffee"]
)
def test_the_other_tools_run_from_their_example(page: Page, bundle: str, service: str) -> None:
    page.goto(f"{bundle}/services/{service}")
    page.get_by_role("button", name="Fill in the example").click()
    page.get_by_role("button", name="Submit the job").click()
    assert wait_for_end(page) == "COMPLETED"
    expect(page.locator("details.preview pre").first).to_contain_text("sp|P69905|HBA_HUMAN")
    assert_drawn_alignment(page, "Alignment")
    check(page, f"06-{service}-job")
    page.locator("figure.alignment-view").screenshot(
        path=str(SCREENSHOTS / f"09-{service}-alignment.png")
    )


def assert_drawn_alignment(page: Page, label: str) -> None:
    """The job page draws the output ``label`` as an alignment of the example's
    sequences, with its conservation and consensus tracks, scrolled sideways."""
    view = page.locator("figure.alignment-view").first
    expect(view).to_be_visible()
    names = view.locator("tbody tr:not(.ruler):not(.track) th").all_text_contents()
    assert sorted(n.split("|")[-1] for n in names) == sorted(k.split("|")[-1] for k in INPUT), names
    expect(view.locator("tr.track th")).to_have_text(["Conservation", "Consensus"])
    expect(view.locator("span.r-hyd").first).to_be_visible()  # coloured residues
    region = page.get_by_role("region", name=f"{label}, drawn")
    width = region.evaluate("e => [e.scrollWidth, e.clientWidth]")
    assert width[0] >= width[1]


def _slow_input(path: Path) -> None:
    rng = random.Random(7)
    with path.open("w") as out:
        for i in range(300):
            out.write(f">s{i}\n{''.join(rng.choice('ACDEFGHIKLMNPQRSTVWY') for _ in range(400))}\n")


def test_a_long_job_is_cancelled_from_its_page(page: Page, bundle: str, tmp_path: Path) -> None:
    _start_slow_job(page, bundle, tmp_path)
    page.get_by_role("button", name="Cancel the job").click()
    assert wait_for_end(page) in ("INTERRUPTED", "DELETED")
    expect(page.get_by_role("button", name="Cancel the job")).to_have_count(0)


def test_tell_me_when_it_ends_notifies_and_titles_the_tab(
    page: Page, bundle: str, tmp_path: Path
) -> None:
    page.context.grant_permissions(["notifications"], origin=bundle)
    job_id = _start_slow_job(page, bundle, tmp_path)
    # the page's Notification, watched (permission was granted before the page opened)
    page.evaluate("""() => { window.told = []; const Real = window.Notification;
        window.Notification = function (title, options) { window.told.push(title); };
        window.Notification.permission = "granted";
        window.Notification.requestPermission = () => Real.requestPermission(); }""")
    expect(page).to_have_title(f"[RUNNING] Job {job_id} · appliance")
    page.get_by_role("button", name="Tell me when it ends").click()
    expect(page.locator("#tell-me-note")).to_contain_text("You will be told when it ends")
    assert httpx.delete(f"{bundle}/api/jobs/{job_id}").status_code == 204  # from elsewhere
    ended = wait_for_end(page)  # the page, never reloaded, sees the end
    assert page.evaluate("() => window.told") == [f"Job {job_id}: {ended}"]
    expect(page).to_have_title(f"[{ended}] Job {job_id} · appliance")


def _start_slow_job(page: Page, bundle: str, tmp_path: Path) -> str:
    """A MAFFT job that runs for minutes, submitted from its form; its id once RUNNING."""
    slow = tmp_path / "many.fa"
    _slow_input(slow)
    page.goto(f"{bundle}/services/mafft")
    page.get_by_label("Strategy").select_option("G-INS-i")
    page.get_by_label("Maximum iterations").fill("1000")
    page.get_by_label(re.compile(r"^Sequences")).set_input_files(str(slow))
    page.get_by_role("button", name="Submit the job").click()
    expect(page.locator("#job-status")).to_have_text("RUNNING", timeout=120_000)
    return page.url.rsplit("/", 1)[1]


def test_fits_a_phone_and_works_from_the_keyboard(page: Page, bundle: str) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{bundle}/services/clustalo")
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width} px wide on a 390 px screen"
    check(page, "07-phone-form")
    page.keyboard.press("Tab")
    focused = page.evaluate("() => document.activeElement.textContent")
    assert focused == "Skip to the content"
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", ""), "the focused link shows no focus"
    page.keyboard.press("Enter")
    # the form's first field is a few presses away, each stop with its focus shown
    for _ in range(5):
        page.keyboard.press("Tab")
        shown = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
        assert shown not in ("none", ""), page.evaluate("() => document.activeElement.outerHTML")
        if page.evaluate("() => document.activeElement.id") == "p-input":
            break
    else:
        raise AssertionError("the first field is not reached from the keyboard")


CONDITIONS: list[tuple[str, dict[str, Any]]] = [
    ("iterations > 0", {"iterations": 0}), ("iterations > 0", {"iterations": 3}),
    ("a and not b", {"a": True, "b": False}), ("a xor b", {"a": 1, "b": 0}),
    ('mode == "Slow"', {"mode": "Slow"}), ('mode != "Slow"', {"mode": None}),
    ("#words >= 2", {"words": ["x", "y"]}), ("#words >= 2", {"words": None}),
    ("x + 1 > 2", {"x": None}), ("x / 0 == null", {"x": 4}), ("-x < 0", {"x": 2.5}),
    ("x < y", {"x": "a", "y": 2}), ("(a or b) and c", {"a": 0, "b": 1, "c": "t"}),
    ("self > min", {"self": 5, "min": 4}), ("x == 1", {"x": 1.0}), ("x * 2 >= 7", {"x": 3.5}),
]  # fmt: skip


def test_the_pages_script_evaluates_conditions_as_the_server_does(page: Page, bundle: str) -> None:
    page.goto(f"{bundle}/services/clustalo")
    for text, values in CONDITIONS:
        condition = Condition.parse(text)
        own = values.get("self")
        expected = condition.evaluate(own, {k: v for k, v in values.items() if k != "self"})
        got = page.evaluate(
            "([tree, vars]) => window.appliance.truthy(window.appliance.evaluate(tree, vars))",
            [condition.as_json(), values],
        )
        assert got == expected, (text, values)


def test_uploaded_html_never_renders_in_the_appliances_origin(page: Page, bundle: str) -> None:
    html = b"<script>document.title='owned'</script>"
    upload = httpx.post(f"{bundle}/api/files", files={"file": ("x.html", html, "text/html")})
    assert upload.status_code in (200, 201), upload.text
    url = bundle + upload.json()["@content"]
    served = httpx.get(url)
    assert served.content == html
    assert "sandbox" in served.headers["content-security-policy"]
    assert not served.headers["content-type"].startswith("text/html")
    page.goto(bundle + "/")
    with pytest.raises(PlaywrightError, match="Download is starting"):
        page.goto(url)  # the browser saves it; it never runs as a page of this origin
    assert page.title() != "owned"
