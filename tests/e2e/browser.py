"""Debian's Chromium driven by Playwright, for the tests of what a person clicks.

Playwright's own browsers are never downloaded: the tests run the `chromium`
package (`scripts/install-prereqs browser`, which `make test` runs). Screenshots
go to `tests/e2e/artifacts/` (kept out of git).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",  # the tests run as root in CI; the sandbox refuses root
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",  # no update checks, no safe-browsing lists
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--no-first-run",
    "--no-proxy-server",  # everything the tests open is on loopback
]


def chromium_path() -> str:
    """Debian's chromium, or a loud skip (a failure when CI is set)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    message = "no chromium on PATH (install it with: scripts/install-prereqs browser)"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set: the browser tests are required)", pytrace=False)
    pytest.skip(f"SKIPPED LOUDLY: {message}")


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot as tests/e2e/artifacts/<name>.png."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def close_page(page: Page) -> None:
    """Close `page` once no navigation of it is in flight.

    Chromium acknowledges a close that races a navigation commit and then never
    closes the target, so `page.close()`, which has no timeout, waits forever
    (microsoft/playwright#42068, crbug 536385539). Going to about:blank first
    finishes or cancels whatever the page was loading.
    """
    page.goto("about:blank", wait_until="load", timeout=30_000)
    page.close()


def log_in(browser: Browser, site_url: str, user: str) -> BrowserContext:
    """A browser context in which `user` has logged in through the OIDC provider's form
    (the demo provider's password is `<user>-demo`)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(f"{site_url}/hub/oauth_login")
    page.fill("#username", user)
    page.fill("#password", f"{user}-demo")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(rf"^{re.escape(site_url)}/hub/.*"))
    close_page(page)
    return context
