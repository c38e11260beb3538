"""A crash between "approved" and "released": the service's process dies in the middle of
the release (after the audit record is written, before the database commits). After a
restart the request is still approved and intact; the release then completes exactly once
and a second attempt is refused; the author downloads the file; nothing was lost."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support import DEMO_POLICY, DEMO_TODAY
from tests.unit.test_review_service import GBM, FakeChecker, Site, make_request
from tre.audit import EventKind, open_store
from tre.policy import Policy, load_policy
from tre.review import ReviewService, TransitionRefused
from tre.review.states import RequestState
from tre.settings import Settings

pytestmark = [pytest.mark.slow]

CRASHING_RELEASE = """
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from tre.policy import load_policy
from tre.review import ReviewService
from tre.settings import Settings

var, policy_dir, today, request_id = sys.argv[1:5]
day = datetime.fromisoformat(today).date()
settings = Settings(policy_dir=Path(policy_dir), var_dir=Path(var))
service = ReviewService(
    settings,
    lambda: load_policy(Path(policy_dir), day),
    clock=lambda: datetime(day.year, day.month, day.day, 10, tzinfo=UTC),
)
real_append = service.audit.append


def append_then_die(event):
    record = real_append(event)
    if event.kind == "review_released":
        os._exit(9)  # killed mid-transaction: the release is recorded, not committed
    return record


service.audit.append = append_then_die
service.release(request_id, "alice")
print("the release finished; the crash did not happen")
"""


@pytest.fixture
def site(tmp_path: Path, demo_policy: Policy) -> Iterator[Site]:
    settings = Settings(policy_dir=tmp_path / "unused", var_dir=tmp_path / "var")
    clock = lambda: datetime(DEMO_TODAY.year, DEMO_TODAY.month, DEMO_TODAY.day, 9, tzinfo=UTC)  # noqa: E731
    service = ReviewService(settings, lambda: demo_policy, FakeChecker(), clock)
    yield Site(settings, service, FakeChecker(), clock)  # type: ignore[arg-type]
    service.close()


def test_a_crash_mid_release_then_exactly_one_release(site: Site, tmp_path: Path) -> None:
    req = make_request(site, state=RequestState.approved)
    site.service.close()
    script = tmp_path / "crash.py"
    script.write_text(textwrap.dedent(CRASHING_RELEASE))
    crashed = subprocess.run(
        [
            sys.executable,
            str(script),
            str(site.settings.var_dir),
            str(DEMO_POLICY),
            DEMO_TODAY.isoformat(),
            req.id,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert crashed.returncode == 9, (crashed.stdout, crashed.stderr)

    # The restart: a new service on the same database and file store.
    day = DEMO_TODAY
    restarted = ReviewService(
        site.settings,
        lambda: load_policy(DEMO_POLICY, day),
        FakeChecker(),
        lambda: datetime(day.year, day.month, day.day, 11, tzinfo=UTC),
    )
    try:
        after_crash = restarted.get(req.id, "alice")
        assert after_crash.state is RequestState.approved
        assert after_crash.history == req.history  # nothing half-written
        with pytest.raises(Exception, match="not released"):
            restarted.download(req.id, "table.csv", "alice")

        released = restarted.release(req.id, "alice")
        assert released.state is RequestState.released
        with pytest.raises(TransitionRefused):
            restarted.release(req.id, "alice")  # a second click: refused, nothing changes
        assert restarted.get(req.id, "alice").history == released.history
        releases = [h for h in released.history if h.step.to_state is RequestState.released]
        assert len(releases) == 1
        assert restarted.download(req.id, "table.csv", "alice") == b"a,b\n12,15\n"
    finally:
        restarted.close()

    # The audit was written ahead: the attempt that died is there, and so is the release
    # that happened; both name the same step of the request, and the chain is intact.
    store = open_store(site.settings)
    records = [r for r in store.show(project=GBM) if r.kind is EventKind.review_released]
    assert len(records) == 2
    assert {r.detail["step"] for r in records} == {releases[0].seq}
    assert store.verify().ok
