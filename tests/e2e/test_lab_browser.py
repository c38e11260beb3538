"""A researcher in a real browser: Debian's Chromium through Playwright.

Logs in through the bundled OIDC provider's form, starts the project workspace
from the spawn form, opens a notebook in JupyterLab, and checks what a person
sees: the banner with project, purpose and expiry; no download, export,
open-in-new-tab, share, open-from-URL, terminal or extension-manager entry in
any menu, submenu, context menu or the command palette; a cell that runs and
is found, once, in the audit log with alice's identity. Screenshots of every
step go to tests/e2e/artifacts/.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.browser import chromium, screenshot
from tests.e2e.sites import PROJECT, Site, running_site
from tre.audit import open_store
from tre.policy import load_policy

pytestmark = [
    pytest.mark.docker,
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.timeout(1200),
]

FORBIDDEN = re.compile(
    r"download|export|new browser tab|shareable link|open from url|terminal|"
    r"extension manager|plugin manager",
    re.IGNORECASE,
)
"""Menu entries that would move data out of the workspace (or hand out a shell)."""

BENIGN = re.compile(r"Export Workspace…$")
"""Matches FORBIDDEN but stays in: it saves the layout as a file in the project folder,
through the (audited) contents API, not to the browser."""

CELL = "print(6 * 7, 'from the browser')"


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, demo_silos: Path, workspace_image: str
) -> Iterator[Site]:
    with running_site(tmp_path_factory.mktemp("lab-browser"), demo_silos, workspace_image) as s:
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def lab(site: Site, browser: Browser) -> Iterator[Page]:
    """alice's JupyterLab, reached as a person reaches it: login form, spawn form.
    The project folder holds one results table, so the file browser has an entry."""
    work = site.settings.workspaces_dir / PROJECT
    work.mkdir(parents=True, exist_ok=True)
    table = work / "results.csv"
    table.write_text("group,n\na,12\nb,15\n", encoding="utf-8")
    os.chown(table, 1000, 100)
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(f"{site.url}/hub/oauth_login")
    page.fill("#username", "alice")
    page.fill("#password", "alice-demo")
    screenshot(page, "01-login")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/hub/home.*"))
    page.goto(f"{site.url}/hub/spawn/alice/{PROJECT}")
    page.select_option("#tre-project", PROJECT)
    screenshot(page, "02-spawn-form")
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_url(re.compile(rf".*/user/alice/{PROJECT}/lab.*"), timeout=180_000)
    page.wait_for_selector(".jp-Launcher", timeout=120_000)
    try:
        yield page
    finally:
        context.close()


def test_the_banner_shows_project_purpose_and_expiry(site: Site, lab: Page) -> None:
    permit = next(p for p in load_policy(site.policy_dir).permits if p.project == PROJECT and p.id)
    banner = lab.locator("#tre-banner")
    expect(banner).to_be_visible()
    expect(lab.locator("#tre-banner-project")).to_contain_text(PROJECT)
    expect(lab.locator("#tre-banner-purpose")).to_contain_text(permit.purpose.label)
    expect(lab.locator("#tre-banner-expiry")).to_contain_text(permit.expiry.isoformat())
    expect(banner).to_contain_text("released")
    screenshot(lab, "03-lab-with-banner")


def menu_labels(page: Page, depth: int = 0) -> list[str]:
    """Every label of the innermost open menu (at `depth`) and, recursively, of its
    submenus: each submenu is opened by clicking its item and closed with ArrowLeft."""
    open_menus = page.locator(".lm-Menu")
    expect(open_menus).to_have_count(depth + 1)
    menu = open_menus.nth(depth)
    items = menu.locator(":scope > .lm-Menu-content > .lm-Menu-item")
    labels: list[str] = []
    for i in range(items.count()):
        item = items.nth(i)
        label = item.locator(".lm-Menu-itemLabel").inner_text().strip()
        labels.append(label)
        if item.get_attribute("data-type") == "submenu" and depth < 3:
            item.click()
            expect(open_menus).to_have_count(depth + 2)
            labels += [f"{label} > {x}" for x in menu_labels(page, depth + 1)]
            page.keyboard.press("ArrowLeft")
            expect(open_menus).to_have_count(depth + 1)
    return labels


def offending(labels: list[str]) -> list[str]:
    return [x for x in labels if FORBIDDEN.search(x.split(" > ")[-1]) and not BENIGN.search(x)]


def test_no_menu_offers_a_way_out(lab: Page) -> None:
    top = lab.locator("#jp-MainMenu .lm-MenuBar-item")
    names = [top.nth(i).inner_text().strip() for i in range(top.count())]
    assert "File" in names and "Kernel" in names, names
    everything: dict[str, list[str]] = {}
    for i, name in enumerate(names):
        top.nth(i).click()
        everything[name] = menu_labels(lab)
        if name == "File":
            screenshot(lab, "04-file-menu")
        lab.keyboard.press("Escape")
        lab.keyboard.press("Escape")
    assert sum(len(v) for v in everything.values()) > 30, everything  # the menus were read
    assert any(" > " in x for x in everything["File"]), everything["File"]  # submenus read
    found = {k: offending(v) for k, v in everything.items()}
    assert not any(found.values()), found


def test_no_context_menu_or_command_offers_a_way_out(lab: Page) -> None:
    lab.locator(".jp-DirListing-item", has_text="results.csv").click(button="right")
    labels = menu_labels(lab)
    screenshot(lab, "05-file-context-menu")
    lab.keyboard.press("Escape")
    assert "Rename" in labels, labels  # the context menu of a file was read
    assert not offending(labels), labels

    lab.locator("#jp-main-dock-panel").click()
    lab.keyboard.press("Control+Shift+C")
    palette = lab.locator(".lm-CommandPalette-input")
    palette.wait_for(state="visible", timeout=10_000)
    for word in ("download", "export", "browser tab", "terminal", "share", "url"):
        palette.fill(word)
        found = lab.locator(".lm-CommandPalette-item .lm-CommandPalette-itemLabel")
        texts = [found.nth(i).inner_text() for i in range(found.count())]
        assert not offending(texts), (word, texts)
    palette.fill("")
    lab.keyboard.press("Escape")


def test_a_cell_runs_and_is_in_the_audit_log(site: Site, lab: Page) -> None:
    lab.locator(".jp-LauncherCard[data-category='Notebook']").filter(has_text="Python 3").click()
    editor = lab.locator(".jp-NotebookPanel .jp-Cell .cm-content").first
    editor.wait_for(state="visible")
    expect(lab.locator(".jp-StatusBar-Widget", has_text="| Idle")).to_be_visible(timeout=120_000)
    editor.click()
    editor.press_sequentially(CELL)
    expect(editor).to_have_text(CELL)
    editor.press("Shift+Enter")
    expect(lab.locator(".jp-OutputArea-output").first).to_contain_text(
        "42 from the browser", timeout=120_000
    )
    screenshot(lab, "06-cell-ran")

    notebook_menu = lab.locator(".jp-OutputArea-output").first
    notebook_menu.click(button="right")
    labels = menu_labels(lab)
    screenshot(lab, "07-output-context-menu")
    lab.keyboard.press("Escape")
    assert labels and not offending(labels), labels

    records = [
        r
        for r in sorted(open_store(site.settings).show(project=PROJECT), key=lambda r: r.seq)
        if r.kind == "execute" and r.detail.get("code") == CELL
    ]
    assert len(records) == 1, records
    record = records[0]
    assert (record.actor, record.project, record.server) == ("alice", PROJECT, PROJECT)
    assert record.permit
