"""Boundary: people's browsers. A page from another origin on this machine (same site:
cookies are sent) makes a logged-in checker's or researcher's Chromium post to the review
pages, the review API, the hub and the workspace; none of it acts (controls: tornado's
`xsrf_cookies` in the review service, `tre.review.web.app.make_app`; JupyterHub's and
jupyter_server's XSRF checks on cookie-authenticated requests).

The positive control posts the same decision from the review page itself, which works.
"""

from __future__ import annotations

import contextlib
import html
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import Browser, BrowserContext

from tests.e2e.browser import chromium, close_page, log_in
from tests.e2e.sites import PROJECT
from tests.security.support import REVIEW, SUITE_MARKS, Parties

pytestmark = [*SUITE_MARKS, pytest.mark.browser]


class Attacker:
    """An HTTP server on 127.0.0.1 (another port: another origin, the same site) that serves
    pages posting to the TRE as soon as they load."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        pages = self.pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = pages.get(self.path, "").encode()
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def form(self, name: str, action: str, fields: dict[str, str], enctype: str = "") -> str:
        inputs = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in fields.items()
        )
        kind = f' enctype="{enctype}"' if enctype else ""
        self.pages[f"/{name}"] = (
            f'<html><body><form id="f" method="POST" action="{html.escape(action)}"{kind}>'
            f"{inputs}</form><script>document.getElementById('f').submit()</script></body></html>"
        )
        return f"{self.url}/{name}"

    def fetch(self, name: str, action: str, body: str) -> str:
        self.pages[f"/{name}"] = (
            "<html><body><script>"
            f"fetch({action!r}, {{method: 'POST', credentials: 'include', mode: 'no-cors', "
            f"headers: {{'Content-Type': 'text/plain'}}, body: {body!r}}})"
            ".then(() => document.title = 'sent', () => document.title = 'sent');"
            "</script></body></html>"
        )
        return f"{self.url}/{name}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Browsers:
    olivia: BrowserContext
    alice: BrowserContext
    attacker: Attacker


@pytest.fixture(scope="module")
def browsers(parties: Parties) -> Iterator[Browsers]:
    site = parties.site
    attacker = Attacker()
    with contextlib.ExitStack() as stack:
        stack.callback(attacker.close)
        browser: Browser = stack.enter_context(chromium())
        contexts = {}
        for who in ("olivia", "alice"):
            context = log_in(browser, site.url, who)
            stack.callback(context.close)
            # Open the review pages once: the HubOAuth login of the service, as people do.
            page = context.new_page()
            page.goto(f"{site.url}{REVIEW}/mine")
            if who == "alice":  # and her server's, so that her browser is logged in there
                page.goto(f"{site.url}/user/alice/{PROJECT}/api/status")
                page.goto(f"{site.url}/user/alice/{PROJECT}/tree", wait_until="commit")
            close_page(page)
            contexts[who] = context
        yield Browsers(contexts["olivia"], contexts["alice"], attacker)


def visit(context: BrowserContext, url: str) -> list[int]:
    """Open `url` in the victim's browser; return the status codes of the posts it caused."""
    statuses: list[int] = []
    page = context.new_page()
    page.on(
        "response",
        lambda r: statuses.append(r.status) if r.request.method == "POST" else None,
    )
    page.goto(url)
    with contextlib.suppress(Exception):
        page.wait_for_load_state("networkidle", timeout=10_000)
    page.wait_for_timeout(500)
    close_page(page)
    return statuses


def test_the_checker_decides_from_the_review_page(parties: Parties, browsers: Browsers) -> None:
    """Control: olivia's browser is logged in and the decision form works from its own page."""
    rid = parties.new_request("csrf: control")
    page = browsers.olivia.new_page()
    page.goto(f"{parties.site.url}{REVIEW}/requests/{rid}")
    page.locator("#decision-form input[name=decision][value=approve]").check()
    page.get_by_role("button", name="Record decision").click()
    page.wait_for_load_state()
    close_page(page)
    assert parties.state(rid)["files"][0]["approvers"] == ["olivia"]


def test_a_forged_approval_form_is_refused(parties: Parties, browsers: Browsers) -> None:
    rid = parties.new_request("csrf: forged approval")
    url = browsers.attacker.form(
        "approve", f"{parties.site.url}{REVIEW}/requests/{rid}/decide", {"decision": "approve"}
    )
    statuses = visit(browsers.olivia, url)
    assert statuses == [403], statuses
    assert parties.state(rid)["files"][0]["approvers"] == []


def test_a_forged_json_approval_is_refused(parties: Parties, browsers: Browsers) -> None:
    rid = parties.new_request("csrf: forged api approval")
    url = browsers.attacker.fetch(
        "approve-api", f"{parties.site.url}{REVIEW}/api/requests/{rid}/approve", "{}"
    )
    visit(browsers.olivia, url)
    assert parties.state(rid)["files"][0]["approvers"] == []


def test_a_forged_release_form_is_refused(parties: Parties, browsers: Browsers) -> None:
    rid = parties.new_request("csrf: forged release")
    parties.approve(rid, "olivia")
    parties.approve(rid, "oscar")
    url = browsers.attacker.form(
        "release", f"{parties.site.url}{REVIEW}/requests/{rid}/release", {}
    )
    statuses = visit(browsers.alice, url)
    assert statuses == [403], statuses
    assert parties.state(rid)["state"] == "approved"


def test_a_forged_spawn_form_is_refused(parties: Parties, browsers: Browsers) -> None:
    url = browsers.attacker.form(
        "spawn", f"{parties.site.url}/hub/spawn/alice/csrf", {"project": PROJECT}
    )
    statuses = visit(browsers.alice, url)
    assert statuses and statuses[0] == 403, statuses
    assert parties["alice"].server("csrf") is None


def test_a_forged_workspace_request_is_refused(parties: Parties, browsers: Browsers) -> None:
    """A cross-origin post to alice's Lab server (a new untitled file) is refused."""
    alice = parties["alice"]

    def names() -> set[str]:
        listing = alice.server_api(PROJECT, "GET", "/contents")
        assert listing.status_code == 200, listing.text
        return {item["name"] for item in listing.json()["content"]}

    before = names()
    url = browsers.attacker.fetch(
        "lab", f"{parties.site.url}/user/alice/{PROJECT}/api/contents", '{"type": "file"}'
    )
    visit(browsers.alice, url)
    assert names() - before == set()
