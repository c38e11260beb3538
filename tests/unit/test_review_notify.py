"""Who hears of what in a request's life, and what a message may say: never a file, its
name or its checks; a title only as much of it as fits one line."""

from __future__ import annotations

import logging
import smtplib
import ssl
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from tre.policy import Policy
from tre.review import Action, Controls, ReleaseFile, ReleaseRequest, RequestState, Verdict
from tre.review.notify import (
    Notification,
    NotificationEvent,
    NullNotifier,
    SmtpNotifier,
    is_transient,
    notifications_for,
    notifier_from_settings,
    review_pages,
)
from tre.review.states import Step
from tre.settings import HubSettings, ReviewSettings, Settings, SettingsError

AT = datetime(2026, 11, 23, 9, tzinfo=UTC)
PAGES = "https://tre.example/services/tre-review"
REQUEST_ID = "0123456789abcdef0123456789abcdef"
SECRET = "ZX-UNIQUE-CELL-4711"  # a value that lives only in the file and its checks


def request(
    *, title: str = "Survival by MGMT status", state: RequestState = RequestState.submitted
) -> ReleaseRequest:
    file = ReleaseFile(
        name=f"table-{SECRET}.csv",
        version=1,
        workspace_path=f"out/table-{SECRET}.csv",
        sha256="0" * 64,
        size=42,
        kind="table",
        description=f"counts {SECRET}",
        context=f"Table 2 {SECRET}",
        controls=Controls(population=f"cohort {SECRET}", suppression="none"),
        stored_path=Path("/nowhere") / SECRET,
        checks={"verdict": "fail", "findings": [{"message": f"cell {SECRET} below 10"}]},
        verdict=Verdict.fail,
        added_by="alice",
        added_at=AT,
    )
    return ReleaseRequest(
        id=REQUEST_ID,
        project="gbm-linkage",
        permit="gbm-linkage-2026",
        author="alice",
        title=title,
        description=f"for the paper {SECRET}",
        state=state,
        created=AT,
        updated=AT,
        reviews_required=2,
        files=(file,),
    )


def step(action: Action, to: RequestState, reason: str | None = None) -> Step:
    return Step(
        action=action,
        actor="olivia",
        from_state=RequestState.under_review,
        to_state=to,
        at=AT,
        reason=reason,
    )


def without_email(policy: Policy, username: str) -> Policy:
    people = tuple(
        p.model_copy(update={"email": None}) if p.username == username else p for p in policy.people
    )
    return policy.model_copy(update={"people": people})


def test_submission_goes_to_each_eligible_checker_never_the_author_or_a_member(
    demo_policy: Policy,
) -> None:
    req = request()
    found = notifications_for(
        demo_policy, req, step(Action.submit, RequestState.submitted), pages=PAGES
    )
    assert [(n.username, n.to) for n in found] == [
        ("olivia", "olivia@demo-hospital.invalid"),
        ("oscar", "oscar@demo-hospital.invalid"),
    ]
    n = found[0]
    assert (n.event, n.request_id) == (NotificationEvent.submitted, REQUEST_ID)
    assert n.subject == "[jupyter-tre] Release request to review: gbm-linkage (01234567)"
    assert f"Open it: {PAGES}/requests/{REQUEST_ID}\n" in n.body
    assert "Title:    Survival by MGMT status\n" in n.body
    assert "Files:    1\n" in n.body
    assert "Reviews:  2 needed\n" in n.body


@pytest.mark.parametrize(
    ("action", "to", "reason", "event", "says"),
    [
        (Action.return_, RequestState.returned, "round to 5", "returned", "returned to you"),
        (Action.reject, RequestState.rejected, "identifiable", "rejected", "was rejected"),
        (Action.approve, RequestState.approved, None, "approved", "ready to release"),
        (Action.release, RequestState.released, None, "released", "is released"),
    ],
)
def test_decisions_go_to_the_author_alone(
    demo_policy: Policy,
    action: Action,
    to: RequestState,
    reason: str | None,
    event: str,
    says: str,
) -> None:
    found = notifications_for(demo_policy, request(state=to), step(action, to, reason), pages=PAGES)
    assert [(n.username, n.to, n.event) for n in found] == [
        ("alice", "alice@demo-hospital.invalid", event)
    ]
    assert says in found[0].body
    assert f"State:    {to}\n" in found[0].body
    if reason is not None:
        assert f"Reason:   {reason}\n" in found[0].body
    else:
        assert "Reason:" not in found[0].body


@pytest.mark.parametrize(
    "action", [Action.create, Action.add_file, Action.start_review, Action.review, Action.comment]
)
def test_other_steps_tell_nobody(demo_policy: Policy, action: Action) -> None:
    # A single checker's approval (Action.review) is not news: the request's approval is.
    assert (
        notifications_for(
            demo_policy, request(), step(action, RequestState.under_review), pages=PAGES
        )
        == []
    )


def test_a_withdrawal_tells_nobody(demo_policy: Policy) -> None:
    assert (
        notifications_for(
            demo_policy, request(), step(Action.withdraw, RequestState.withdrawn), pages=PAGES
        )
        == []
    )


def test_no_file_its_name_or_its_checks_in_any_message(demo_policy: Policy) -> None:
    req = request()
    steps = [
        step(Action.submit, RequestState.submitted),
        step(Action.return_, RequestState.returned, "round the counts"),
        step(Action.reject, RequestState.rejected, "identifiable"),
        step(Action.approve, RequestState.approved),
        step(Action.release, RequestState.released),
    ]
    messages = [n for s in steps for n in notifications_for(demo_policy, req, s, pages=PAGES)]
    assert len(messages) == 6
    for n in messages:
        assert SECRET not in n.model_dump_json()
        assert "table-" not in n.body
        assert "for the paper" not in n.body  # the description is not sent either


def test_people_without_an_address_are_skipped_and_logged(
    demo_policy: Policy, caplog: pytest.LogCaptureFixture
) -> None:
    policy = without_email(without_email(demo_policy, "oscar"), "alice")
    with caplog.at_level(logging.INFO, logger="tre.review.notify"):
        to_checkers = notifications_for(
            policy, request(), step(Action.submit, RequestState.submitted), pages=PAGES
        )
        to_author = notifications_for(
            policy, request(), step(Action.release, RequestState.released), pages=PAGES
        )
    assert [n.username for n in to_checkers] == ["olivia"]
    assert to_author == []
    told = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any(m.startswith("oscar has no e-mail address") for m in told)
    assert any(m.startswith("alice has no e-mail address") for m in told)


def test_an_address_that_would_add_recipients_or_headers_is_not_used(
    demo_policy: Policy, caplog: pytest.LogCaptureFixture
) -> None:
    people = tuple(
        p.model_copy(update={"email": "olivia@x.invalid\nBcc: eve@evil.invalid"})
        if p.username == "olivia"
        else p
        for p in demo_policy.people
    )
    policy = demo_policy.model_copy(update={"people": people})
    found = notifications_for(
        policy, request(), step(Action.submit, RequestState.submitted), pages=PAGES
    )
    assert [n.username for n in found] == ["oscar"]
    assert "olivia's e-mail address in the policy is not a plain address" in caplog.text


@pytest.mark.parametrize(
    "to", ["a@b.invalid, eve@evil.invalid", "a@b.invalid\r\nBcc: eve@x", "Eve <e@x>", "nobody"]
)
def test_a_notification_takes_one_bare_address(to: str) -> None:
    with pytest.raises(ValidationError):
        Notification(to=to, username="u", subject="s", body="b", request_id="r", event="submitted")


def test_a_notification_subject_is_one_line() -> None:
    with pytest.raises(ValidationError):
        Notification(
            to="a@b.invalid",
            username="u",
            subject="s\nBcc: eve@x",
            body="b",
            request_id="r",
            event="submitted",
        )


def test_a_long_or_multiline_title_is_one_bounded_line(demo_policy: Policy) -> None:
    title = "Table 2\nwith\tspaces " + "x" * 500
    (n, _) = notifications_for(
        demo_policy, request(title=title), step(Action.submit, RequestState.submitted), pages=PAGES
    )
    line = next(x for x in n.body.splitlines() if x.startswith("Title:"))
    assert line.startswith("Title:    Table 2 with spaces xxx")
    assert line.endswith("…")
    assert len(line.removeprefix("Title:    ")) == 120


def test_a_multiline_reason_is_kept_and_indented(demo_policy: Policy) -> None:
    (n,) = notifications_for(
        demo_policy,
        request(),
        step(Action.return_, RequestState.returned, "round to 5\nand drop row 3"),
        pages=PAGES,
    )
    assert "Reason:   round to 5\n          and drop row 3\n" in n.body


def test_links_default_to_the_hub_public_url() -> None:
    hub = HubSettings(public_url="https://tre.example/")
    assert review_pages(Settings(hub=hub)) == "https://tre.example/services/tre-review"
    own = ReviewSettings(public_url="https://review.example/r/")
    assert review_pages(Settings(hub=hub, review=own)) == "https://review.example/r"


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (ConnectionRefusedError(111, "Connection refused"), True),
        (TimeoutError("timed out"), True),
        (smtplib.SMTPServerDisconnected("gone"), True),
        (smtplib.SMTPConnectError(421, b"busy"), True),
        (smtplib.SMTPDataError(451, b"try later"), True),
        (smtplib.SMTPSenderRefused(452, b"full", "tre@x"), True),
        (smtplib.SMTPRecipientsRefused({"a@x": (450, b"greylisted")}), True),
        (smtplib.SMTPRecipientsRefused({"a@x": (550, b"no such user")}), False),
        (smtplib.SMTPDataError(554, b"rejected"), False),
        (smtplib.SMTPAuthenticationError(535, b"bad credentials"), False),
        (smtplib.SMTPNotSupportedError("STARTTLS extension not supported"), False),
        (ssl.SSLCertVerificationError("certificate verify failed"), False),
        (ValueError("a bug"), False),
    ],
)
def test_which_failures_are_worth_another_try(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient


def test_no_mail_server_no_mail() -> None:
    assert isinstance(notifier_from_settings(ReviewSettings()), NullNotifier)


def test_the_password_comes_from_its_file(tmp_path: Path) -> None:
    secret = tmp_path / "smtp-password"
    secret.write_text("s3cret\n", encoding="utf-8")
    notifier = notifier_from_settings(
        ReviewSettings(smtp_host="mail.invalid", smtp_username="tre", smtp_password_file=secret)
    )
    try:
        assert isinstance(notifier, SmtpNotifier)
        assert notifier._login == ("tre", "s3cret")
    finally:
        notifier.close()


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"smtp_username": "tre"}, "go together"),
        ({"smtp_password_file": Path("/nonexistent/smtp-password")}, "go together"),
        (
            {"smtp_username": "tre", "smtp_password_file": Path("/nonexistent/smtp-password")},
            "review.smtp_password_file: cannot read /nonexistent/smtp-password",
        ),
    ],
)
def test_bad_mail_settings_stop_the_start(fields: dict[str, object], says: str) -> None:
    with pytest.raises(SettingsError, match=says):
        notifier_from_settings(
            ReviewSettings.model_validate({"smtp_host": "mail.invalid", **fields})
        )


def test_settings_refuse_a_sender_with_a_line_break() -> None:
    with pytest.raises(ValidationError):
        ReviewSettings(mail_from="tre@x.invalid\nBcc: eve@x")
