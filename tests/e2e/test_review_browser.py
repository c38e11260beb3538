"""The airlock in a real browser: Debian's Chromium through Playwright, a real workspace.

alice asks for the release of two tables from JupyterLab (right-click in the file browser,
"Request release…", the form, the side panel); the workspace's server extension hands the
request to the hub-side review service, which copies the files from the project folder
itself. olivia, an output checker, logs in through the OIDC provider, finds the request in
the queue, sees the cell that fails the threshold rule highlighted and returns the request
with a reason. alice then asks for the passing table alone; olivia and oscar approve it (the
permit asks for two reviews: one approval releases nothing); alice releases it and downloads
it from the review pages, outside the workspace; olivia cannot download it. Every step is
in the audit log. Screenshots go to tests/e2e/artifacts/review-*.png.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect

from tests.e2e.browser import chromium, log_in, screenshot
from tests.e2e.sites import PROJECT, Site, running_site
from tre.audit import EventKind, open_store

pytestmark = [
    pytest.mark.docker,
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.timeout(1500),
]

FAILING = "grade,mgmt_methylated,mgmt_unmethylated\nII,25,3\nIII,40,31\nIV,120,98\n"
"""3 patients in one cell: below the threshold of 10."""
PASSING = "grade,patients\nII,28\nIII,71\nIV,218\n"


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, demo_silos: Path, workspace_image: str
) -> Iterator[Site]:
    with running_site(tmp_path_factory.mktemp("review-browser"), demo_silos, workspace_image) as s:
        work = s.settings.workspaces_dir / PROJECT
        work.mkdir(parents=True, exist_ok=True)
        for name, text in (("mgmt_by_grade.csv", FAILING), ("patients_by_grade.csv", PASSING)):
            (work / name).write_text(text, encoding="utf-8")
            os.chown(work / name, 1000, 100)
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


def logged_in(site: Site, browser: Browser, user: str) -> BrowserContext:
    return log_in(browser, site.url, user)


@pytest.fixture(scope="module")
def lab(site: Site, browser: Browser) -> Iterator[Page]:
    """alice's JupyterLab, started from the spawn form."""
    context = logged_in(site, browser, "alice")
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(f"{site.url}/hub/spawn/alice/{PROJECT}")
    page.select_option("#tre-project", PROJECT)
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_url(re.compile(rf".*/user/alice/{PROJECT}/lab.*"), timeout=180_000)
    page.wait_for_selector(".jp-Launcher", timeout=120_000)
    try:
        yield page
    finally:
        context.close()


@pytest.fixture(scope="module")
def checkers(site: Site, browser: Browser) -> Iterator[dict[str, Page]]:
    """olivia's and oscar's browsers, each on the review service's pages."""
    pages: dict[str, Page] = {}
    for user in ("olivia", "oscar"):
        page = logged_in(site, browser, user).new_page()
        page.set_default_timeout(60_000)
        pages[user] = page
    try:
        yield pages
    finally:
        for page in pages.values():
            page.context.close()


def request_release(lab: Page, names: list[str], title: str, shot: str) -> None:
    """Select `names` in the file browser, right-click, fill the form and submit it."""
    lab.locator("#jp-main-dock-panel").click()
    first = lab.locator(".jp-DirListing-item", has_text=names[0]).first
    first.click()
    for name in names[1:]:
        lab.locator(".jp-DirListing-item", has_text=name).first.click(modifiers=["Control"])
    first.click(button="right")
    lab.locator(".lm-Menu-item", has_text="Request release…").click()
    dialog = lab.locator(".jp-Dialog")
    expect(dialog.locator(".tre-release-form")).to_be_visible()
    dialog.locator(".tre-release-title").fill(title)
    dialog.locator(".tre-release-description").fill("Tables for the MGMT paper, section 3.2")
    for name in names:
        section = dialog.locator(f"fieldset[data-path='{name}']")
        section.locator(".tre-release-file-description").fill(f"{name}: patients by WHO grade")
        section.locator(".tre-release-file-context").fill("Table 2 of the MGMT paper")
        section.locator(".tre-release-file-population").fill("GBM cohort 2015-2024, all sites")
        section.locator(".tre-release-file-suppression").fill("none: raw counts")
    screenshot(lab, shot)
    dialog.locator(".jp-mod-accept").click()
    done = lab.locator(".jp-Dialog", has_text="Release requested")
    expect(done).to_be_visible(timeout=60_000)
    done.locator(".jp-mod-accept").click()
    expect(lab.locator(".jp-Dialog")).to_have_count(0)


def panel_request(lab: Page, title: str) -> Locator:
    lab.locator("#tre-release-refresh").click()
    return lab.locator("#tre-release-panel .tre-release-request", has_text=title)


def open_request(page: Page, site: Site, title: str) -> str:
    """Find `title` in the queue (filtered to the project), open it, return its id."""
    page.goto(f"{site.url}/services/tre-review/queue")
    page.select_option("#f-project", PROJECT)
    page.get_by_role("button", name="Apply filters").click()
    link = page.locator("#queue a", has_text=title)
    expect(link).to_be_visible()
    link.click()
    page.wait_for_url(re.compile(r".*/services/tre-review/requests/[0-9a-f]{32}$"))
    return page.url.rsplit("/", 1)[1]


def decide(page: Page, decision: str, reason: str = "") -> None:
    """Record a decision with the keyboard: the radio, the reason, Enter on the button."""
    page.locator(f"#decision-form input[name=decision][value={decision}]").check()
    if reason:
        page.locator("#reason").fill(reason)
    page.get_by_role("button", name="Record decision").focus()
    page.keyboard.press("Enter")
    page.wait_for_load_state()


def test_a_failing_table_is_flagged_and_returned(
    site: Site, lab: Page, checkers: dict[str, Page]
) -> None:
    title = "MGMT status by grade"
    request_release(lab, ["mgmt_by_grade.csv", "patients_by_grade.csv"], title, "review-01-form")
    item = panel_request(lab, title)
    expect(item).to_have_attribute("data-state", "submitted")
    expect(item.locator(".tre-release-file[data-name='mgmt_by_grade.csv']")).to_contain_text("fail")
    expect(item.locator(".tre-release-file[data-name='patients_by_grade.csv']")).to_contain_text(
        "pass"
    )
    screenshot(lab, "review-02-panel-submitted")

    olivia = checkers["olivia"]
    open_request(olivia, site, title)
    flagged = olivia.locator("td.flagged mark")
    expect(flagged).to_have_count(1)
    expect(flagged).to_have_text("3")
    failing = olivia.locator("section.file", has_text="mgmt_by_grade.csv")
    expect(failing.locator(".findings li.verdict-fail")).to_contain_text("minimum-threshold")
    passing = olivia.locator("section.file", has_text="patients_by_grade.csv")
    expect(passing.locator(".findings li.verdict-fail")).to_have_count(0)
    screenshot(olivia, "review-03-checker-sees-failing-cell")
    decide(olivia, "return", "mgmt_by_grade.csv: the cell II x unmethylated has 3 patients")
    expect(olivia.locator("#state")).to_have_text("returned")
    screenshot(olivia, "review-04-returned")

    expect(panel_request(lab, title)).to_have_attribute("data-state", "returned")
    screenshot(lab, "review-05-panel-returned")


def test_two_approvals_release_to_the_author_alone(
    site: Site, lab: Page, checkers: dict[str, Page]
) -> None:
    title = "Patients by grade"
    request_release(lab, ["patients_by_grade.csv"], title, "review-06-form")
    expect(panel_request(lab, title)).to_have_attribute("data-state", "submitted")

    olivia, oscar = checkers["olivia"], checkers["oscar"]
    request_id = open_request(olivia, site, title)
    decide(olivia, "approve")
    # gbm-linkage's permit asks for two independent reviews: one approval releases nothing.
    expect(olivia.locator("#state")).to_have_text("under_review")
    released_url = f"{site.url}/services/tre-review/released/{request_id}/patients_by_grade.csv"
    assert olivia.request.get(released_url).status == 403
    screenshot(olivia, "review-07-one-approval")

    assert open_request(oscar, site, title) == request_id
    decide(oscar, "approve")
    expect(oscar.locator("#state")).to_have_text("approved")
    screenshot(oscar, "review-08-approved")
    expect(panel_request(lab, title)).to_have_attribute("data-state", "approved")

    # The author releases and downloads from the review pages, outside the workspace.
    author = lab.context.new_page()
    author.goto(f"{site.url}/services/tre-review/requests/{request_id}")
    author.get_by_role("button", name="Release the approved files").click()
    expect(author.locator("#state")).to_have_text("released")
    with author.expect_download() as info:
        author.get_by_role("link", name="Download patients_by_grade.csv").click()
    download = info.value
    assert Path(download.path()).read_text(encoding="utf-8") == PASSING
    screenshot(author, "review-09-released")
    author.close()

    # Nobody else downloads it, not even a checker who approved it.
    assert olivia.request.get(released_url).status == 403

    kinds = [
        (r.kind, r.actor, r.detail.get("request"))
        for r in open_store(site.settings).show(project=PROJECT)
        if r.kind.startswith("review_") and r.detail.get("request") == request_id
    ]
    assert [k for k, _, _ in kinds] == [
        EventKind.review_created,
        EventKind.review_file_added,
        EventKind.review_submitted,
        EventKind.review_started,
        EventKind.review_approval,
        EventKind.review_approval,
        EventKind.review_approved,
        EventKind.review_released,
        EventKind.review_downloaded,
    ], kinds
    actors = [a for _, a, _ in kinds]
    assert actors[:3] == ["alice"] * 3 and actors[-2:] == ["alice", "alice"], actors
    assert {"olivia", "oscar"} <= set(actors[3:7]), actors
