"""The review service (`tre-review`) killed with SIGKILL mid-approval and mid-release.

A real JupyterHub runs the site's configuration with the review service as its managed
service (the setup of tests/integration/test_review_web.py: stand-ins only for the spawner
and the authenticator). The points are chosen with the real locks, not with a hook in the
service: the test holds the project's audit chain lock, so an action blocks at its audit
append — inside its database transaction, after its rows were written and every stored copy
checked, before anything is recorded or committed — and is killed there. Nobody restarts
anything by hand: JupyterHub notices its service has exited and starts it again (it polls
every 30 s), and people's browsers get back in through the hub's OAuth on their own.

Afterwards the request is as it was before the killed action, no approval is lost or
counted twice, the release happens exactly once, the download is the submitted bytes, each
committed step has exactly one audit record, and the chain verifies. The other point of a
release, after its audit record and before its commit, is tests/integration/
test_review_crash.py (write-ahead: that record then appears twice).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
import requests

from tests.faults.locks import chain_locked, waiting_for_a_lock
from tests.faults.processes import child_running, kill, wait_until
from tests.integration.test_review_web import (  # the real hub, its service and stand-ins
    GBM,
    PASSING,
    XSRF,
    Site,
    alice,
    site,
    submitted,
    workspace,
)
from tre.audit import EventKind, open_store

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
__all__ = ["alice", "site", "workspace"]  # fixtures, used by name

RESTART_SECONDS = 60  # JupyterHub polls its managed services every 30 s (±10 %)


def review_pid(site: Site) -> int:
    hub = int((site.settings.hub_dir / "jupyterhub.pid").read_text())
    return child_running(hub, "-m tre.review.web")


def restarted(site: Site, killed: int) -> int:
    """Wait for the hub to start its review service again; the new service's pid."""

    def answering() -> int | None:
        try:
            up = requests.get(f"{site.pages}/health", timeout=2).status_code == 200
        except requests.ConnectionError:
            return None
        pid = review_pid(site) if up else None
        return pid if pid != killed else None

    return wait_until(answering, RESTART_SECONDS, "the hub to restart tre-review", every=0.5)


def killed_while_blocked(site: Site, action: Callable[[], Any]) -> Future[Any]:
    """Run `action` (one call to the service) while the GBM chain is locked; once the
    service waits for the lock inside the action's transaction, SIGKILL it."""
    pid = review_pid(site)
    with ThreadPoolExecutor(1) as pool, chain_locked(site.settings, GBM):
        answer = pool.submit(action)
        wait_until(lambda: waiting_for_a_lock(pid), 30, "tre-review to wait for the audit lock")
        kill(pid)
    restarted(site, pid)
    return answer


def decide_later(site: Site, user: str, rid: str) -> Callable[[], requests.Response]:
    """`user`'s approval as their browser would post it, the page (and XSRF) read now."""
    browser = site.browser(user)
    page = browser.get(f"{site.pages}/mine", timeout=30)
    token = XSRF.search(page.text)
    assert token is not None, page.text
    data = {"decision": "approve", "_xsrf": token.group(1)}
    return lambda: browser.post(f"{site.pages}/requests/{rid}/decide", data=data, timeout=90)


def approve(site: Site, user: str, rid: str) -> None:
    answer = site.form(user, f"/requests/{rid}/decide", {"decision": "approve"})
    assert answer.status_code == 200, answer.text


def request_of(site: Site, token: str, rid: str) -> dict[str, Any]:
    answer = site.api(token, "GET", f"/requests/{rid}")
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def audited_steps(site: Site, rid: str) -> list[tuple[int, str, str]]:
    records = open_store(site.settings).show(project=GBM)
    return [
        (r.detail["step"], r.detail["action"], r.actor)
        for r in records
        if r.detail.get("request") == rid and "step" in r.detail
    ]


def committed_steps(req: dict[str, Any]) -> list[tuple[int, str, str]]:
    return [(h["seq"], h["action"], h["actor"]) for h in req["history"]]


def test_killed_between_the_two_approvals_and_during_the_second(site: Site, alice: str) -> None:
    between = submitted(site, alice, "Between approvals", ("out/ok.csv",))["id"]
    during = submitted(site, alice, "During the decision", ("out/ok.csv",))["id"]
    approve(site, "olivia", between)
    approve(site, "olivia", during)
    oscar_approves = decide_later(site, "oscar", during)

    answer = killed_while_blocked(site, oscar_approves)
    assert answer.result().status_code >= 500  # oscar saw no success: the proxy's 503

    for rid in (between, during):
        req = request_of(site, alice, rid)
        assert req["state"] == "under_review", req
        assert req["files"][0]["approvers"] == ["olivia"]  # kept, once; oscar's never happened
        assert req["missing_approvals"] == {"ok.csv": 1}
        assert audited_steps(site, rid) == committed_steps(req)

    # olivia's second click counts once; oscar's approvals (his browser logs in again through
    # the hub by itself: the restarted service has new cookie keys) finish both requests.
    approve(site, "olivia", during)
    for rid in (between, during):
        approve(site, "oscar", rid)
        req = request_of(site, alice, rid)
        assert req["state"] == "approved"
        assert req["files"][0]["approvers"] == ["olivia", "oscar"]
        actions = [h["action"] for h in req["history"]]
        assert actions.count("review") == 2 and actions.count("approve") == 1
        assert audited_steps(site, rid) == committed_steps(req)
    assert open_store(site.settings).verify().ok


def test_killed_mid_release_then_released_exactly_once(site: Site, alice: str) -> None:
    rid = submitted(site, alice, "Release after a crash", ("out/ok.csv",))["id"]
    approve(site, "olivia", rid)
    approve(site, "oscar", rid)
    assert request_of(site, alice, rid)["state"] == "approved"

    def release() -> int:
        try:
            return site.api(alice, "POST", f"/requests/{rid}/release").status_code
        except requests.ConnectionError:
            return 0  # the service died with the connection open

    answer = killed_while_blocked(site, release)
    assert answer.result() == 0

    before = request_of(site, alice, rid)
    assert before["state"] == "approved"
    assert audited_steps(site, rid) == committed_steps(before)
    download = f"{site.pages}/released/{rid}/ok.csv"
    assert site.browser("alice").get(download, timeout=30).status_code == 403

    released = site.api(alice, "POST", f"/requests/{rid}/release")
    assert released.status_code == 200, released.text
    again = site.api(alice, "POST", f"/requests/{rid}/release")
    assert again.status_code == 409, again.text  # a second release is refused
    after = request_of(site, alice, rid)
    assert [h["action"] for h in after["history"]].count("release") == 1
    assert audited_steps(site, rid) == committed_steps(after)

    got = site.browser("alice").get(download, timeout=30)
    assert got.status_code == 200 and got.content == PASSING.encode()
    records = open_store(site.settings).show(project=GBM)
    kinds = [r.kind for r in records if r.detail.get("request") == rid]
    assert kinds.count(EventKind.review_released) == 1
    assert kinds.count(EventKind.review_downloaded) == 1
    assert open_store(site.settings).verify().ok
