"""E-mail from the review service through a real SMTP server (aiosmtpd on a free port):
who hears of what, and a mail server that is down, refusing or slow never holds up or
fails an action."""

from __future__ import annotations

import asyncio
import email
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.support import DEMO_TODAY
from tests.unit.test_review_service import CONTROLS, GBM, Clock, FakeChecker, Site
from tre.audit import EventKind
from tre.policy import Policy
from tre.review import RequestState, ReviewService
from tre.review.notify import SmtpNotifier
from tre.settings import ReviewSettings, Settings

PAGES = "https://tre.example/services/tre-review"
SECRET = "ZX-PLANTED-9931"
"""A value that lives only in the submitted file: no message may ever carry it."""
SHORT_RETRIES = (0.01, 0.02)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Inbox:
    """An aiosmtpd handler that keeps what arrives. `replies` (popped first) lets a test
    answer DATA with an error; `gate`, when given, holds every delivery until it is set."""

    messages: list[tuple[list[str], bytes]] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)
    gate: threading.Event | None = None
    arrived: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    got: threading.Condition = field(default_factory=threading.Condition)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.arrived.set()
        if self.gate is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.gate.wait, 30)
        if self.replies:
            return self.replies.pop(0)
        with self.got:
            self.messages.append((list(envelope.rcpt_tos), bytes(envelope.content)))
            self.got.notify_all()
        self.finished.set()
        return "250 OK"

    def wait_for(self, count: int, timeout: float = 30) -> list[EmailMessage]:
        with self.got:
            assert self.got.wait_for(lambda: len(self.messages) >= count, timeout), (
                f"{len(self.messages)} of {count} messages arrived"
            )
        return [self.parse(raw) for _, raw in self.messages]

    @staticmethod
    def parse(raw: bytes) -> EmailMessage:
        message = email.message_from_bytes(raw, policy=default_policy)
        assert isinstance(message, EmailMessage)
        return message

    def raw(self) -> bytes:
        return b"".join(raw for _, raw in self.messages)


@dataclass
class MailSite:
    site: Site
    notifier: SmtpNotifier
    inbox: Inbox

    @property
    def service(self) -> ReviewService:
        return self.site.service

    def draft(self, content: str = f"grade,patients\nII,28\nIII,{SECRET}\n") -> str:
        """A draft of alice's in gbm-linkage (two reviews) with one planted CSV."""
        self.site.put(GBM, "out/table.csv", content)
        req = self.service.create_request("alice", GBM, "Survival by grade", "Table 2")
        self.service.add_file(
            req.id,
            "alice",
            "out/table.csv",
            description="counts",
            context="Table 2",
            controls=CONTROLS,
        )
        return req.id

    def recipients(self) -> list[str]:
        return [to for tos, _ in self.inbox.messages for to in tos]


def start_smtp(inbox: Inbox) -> Iterator[Controller]:
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller
    finally:
        if inbox.gate is not None:
            inbox.gate.set()
        controller.stop()


def make_site(tmp_path: Path, policy: Policy, notifier: SmtpNotifier, inbox: Inbox) -> MailSite:
    settings = Settings(
        policy_dir=tmp_path / "unused",
        var_dir=tmp_path / "var",
        review=ReviewSettings(public_url=PAGES),
    )
    clock = Clock(datetime(DEMO_TODAY.year, DEMO_TODAY.month, DEMO_TODAY.day, 9, tzinfo=UTC))
    checker = FakeChecker()
    service = ReviewService(settings, lambda: policy, checker, clock, notifier=notifier)
    return MailSite(Site(settings, service, checker, clock), notifier, inbox)


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
def smtp(inbox: Inbox) -> Iterator[Controller]:
    yield from start_smtp(inbox)


@pytest.fixture
def mail(tmp_path: Path, demo_policy: Policy, inbox: Inbox, smtp: Controller) -> Iterator[MailSite]:
    notifier = SmtpNotifier(
        "127.0.0.1",
        smtp.port,
        mail_from="TRE review <review@tre.invalid>",
        retry_delays=SHORT_RETRIES,
        timeout=10,
    )
    site = make_site(tmp_path, demo_policy, notifier, inbox)
    yield site
    site.service.close()


def test_checkers_hear_of_a_submission_the_author_of_each_decision(mail: MailSite) -> None:
    svc, inbox = mail.service, mail.inbox
    request_id = mail.draft()
    link = f"{PAGES}/requests/{request_id}"

    svc.submit(request_id, "alice")
    to_checkers = inbox.wait_for(2)
    assert sorted(mail.recipients()) == [
        "olivia@demo-hospital.invalid",
        "oscar@demo-hospital.invalid",
    ]  # never alice (the author) nor bob (a member)
    for message in to_checkers:
        assert message["From"] == "TRE review <review@tre.invalid>"
        assert message["X-TRE-Request"] == request_id
        assert message["X-TRE-Event"] == "submitted"
        assert message["Auto-Submitted"] == "auto-generated"
        assert message["Subject"].startswith("[jupyter-tre] Release request to review: gbm-linkage")
        body = message.get_content()
        assert link in body
        assert "Title:    Survival by grade" in body

    svc.return_(request_id, "olivia", "round the counts to 5")
    (returned,) = inbox.wait_for(3)[2:]
    assert mail.recipients()[2:] == ["alice@demo-hospital.invalid"]
    assert returned["X-TRE-Event"] == "returned"
    assert "Reason:   round the counts to 5" in returned.get_content()

    mail.site.put(GBM, "out/table.csv", "grade,patients\nII,30\nIII,70\n")
    svc.add_file(
        request_id, "alice", "out/table.csv", description="rounded", context="T2", controls=CONTROLS
    )
    svc.submit(request_id, "alice")
    inbox.wait_for(5)
    svc.approve(request_id, "olivia")  # one of two: no news for the author yet
    req = svc.approve(request_id, "oscar")
    assert req.state is RequestState.approved
    (approved,) = inbox.wait_for(6)[5:]
    assert mail.recipients()[5:] == ["alice@demo-hospital.invalid"]
    assert approved["X-TRE-Event"] == "approved"
    assert "ready to release" in approved.get_content()

    svc.release(request_id, "alice")
    (released,) = inbox.wait_for(7)[6:]
    assert mail.recipients()[6:] == ["alice@demo-hospital.invalid"]
    assert released["X-TRE-Event"] == "released"
    assert link in released.get_content()

    assert mail.notifier.flush(10)
    assert len(inbox.messages) == 7  # nothing else was sent (no mail for olivia's approval)
    # The planted value lives in the first file; it never travels by e-mail.
    assert SECRET.encode() not in inbox.raw()
    assert all(SECRET not in m.as_string() for m in inbox.wait_for(7))


def test_a_rejection_carries_its_reason_to_the_author(mail: MailSite) -> None:
    request_id = mail.draft()
    mail.service.submit(request_id, "alice")
    mail.inbox.wait_for(2)
    mail.service.reject(request_id, "oscar", "a patient could be recognised")
    (rejected,) = mail.inbox.wait_for(3)[2:]
    assert rejected["To"] == "alice@demo-hospital.invalid"
    assert rejected["X-TRE-Event"] == "rejected"
    assert "Reason:   a patient could be recognised" in rejected.get_content()
    assert SECRET.encode() not in mail.inbox.raw()


def test_people_without_an_address_get_no_mail(
    tmp_path: Path,
    demo_policy: Policy,
    inbox: Inbox,
    smtp: Controller,
    caplog: pytest.LogCaptureFixture,
) -> None:
    people = tuple(
        p.model_copy(update={"email": None}) if p.username == "oscar" else p
        for p in demo_policy.people
    )
    policy = demo_policy.model_copy(update={"people": people})
    notifier = SmtpNotifier("127.0.0.1", smtp.port, retry_delays=SHORT_RETRIES)
    mail = make_site(tmp_path, policy, notifier, inbox)
    try:
        with caplog.at_level(logging.INFO, logger="tre.review.notify"):
            mail.service.submit(mail.draft(), "alice")
            assert notifier.flush(10)
    finally:
        mail.service.close()
    assert mail.recipients() == ["olivia@demo-hospital.invalid"]
    assert "oscar has no e-mail address" in caplog.text


def test_a_mail_server_that_is_down_fails_no_action(
    tmp_path: Path, demo_policy: Policy, caplog: pytest.LogCaptureFixture
) -> None:
    nobody = free_port()  # nothing listens here: every connection is refused
    notifier = SmtpNotifier("127.0.0.1", nobody, retry_delays=SHORT_RETRIES, timeout=5)
    mail = make_site(tmp_path, demo_policy, notifier, Inbox())
    try:
        with caplog.at_level(logging.INFO, logger="tre.review.notify"):
            request_id = mail.draft()
            assert mail.service.submit(request_id, "alice").state is RequestState.submitted
            req = mail.service.return_(request_id, "olivia", "round the counts")
            assert req.state is RequestState.returned
            assert notifier.flush(30)
    finally:
        mail.service.close()
    records = [r for r in caplog.records if r.name == "tre.review.notify"]
    retries = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    given_up = [r.getMessage() for r in records if r.levelno == logging.ERROR]
    # olivia, oscar (submitted) and alice (returned), three tries each, then given up.
    assert len(retries) == 9
    assert all("ConnectionRefusedError" in m for m in retries)
    assert sorted(m.split()[2] for m in given_up) == ["alice", "olivia", "oscar"]
    assert all(f"request {request_id} was" in m for m in given_up)
    assert all("3 tries failed, the last with: ConnectionRefusedError" in m for m in given_up)
    # The actions happened, and were audited, whatever became of their mail.
    kinds = [r.kind for r in mail.site.audit(GBM)]
    assert kinds[-3:] == [
        EventKind.review_submitted,
        EventKind.review_started,
        EventKind.review_returned,
    ]


def test_a_busy_mail_server_is_tried_again(
    mail: MailSite, caplog: pytest.LogCaptureFixture
) -> None:
    mail.inbox.replies += ["451 4.3.0 try again later", "421 4.3.2 busy"]
    with caplog.at_level(logging.INFO, logger="tre.review.notify"):
        mail.service.submit(mail.draft(), "alice")
        assert mail.notifier.flush(30)
    assert sorted(mail.recipients()) == [
        "olivia@demo-hospital.invalid",
        "oscar@demo-hospital.invalid",
    ]
    assert "try 1 of 3 failed: SMTPDataError" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_refusal_for_good_is_not_tried_again(
    mail: MailSite, caplog: pytest.LogCaptureFixture
) -> None:
    mail.inbox.replies.append("554 5.7.1 not accepted")
    with caplog.at_level(logging.INFO, logger="tre.review.notify"):
        mail.service.submit(mail.draft(), "alice")
        assert mail.notifier.flush(30)
    assert len(mail.inbox.messages) == 1  # the other checker's message went through
    refused = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(refused) == 1
    assert "the mail server refused it: SMTPDataError: (554" in refused[0]
    assert "failed" not in caplog.text  # no second try


def test_a_slow_mail_server_does_not_hold_up_an_action(mail: MailSite) -> None:
    mail.inbox.gate = threading.Event()
    request_id = mail.draft()
    req = mail.service.submit(request_id, "alice")
    # submit returned while the server still holds the first message open (it waits on the
    # gate, which only this test opens): delivery is not part of the action.
    assert req.state is RequestState.submitted
    assert mail.inbox.arrived.wait(30)
    assert not mail.inbox.finished.is_set()
    req = mail.service.start_review(request_id, "olivia")  # the service still answers
    assert req.state is RequestState.under_review
    assert not mail.inbox.finished.is_set()
    mail.inbox.gate.set()
    assert len(mail.inbox.wait_for(2)) == 2
