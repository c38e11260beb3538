"""E-mail about release requests: checkers hear of a submission, the author of each decision.

Messages are built after the action's transaction committed and handed to a worker
thread, so a mail server that is down or slow never holds up, fails or undoes an
action. A message names the request, its title, project and state, a checker's reason
and a link to the review pages, and nothing else: never a file, a file name or the
checks' findings, which stay behind the pages' login.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import smtplib
import ssl
import threading
from collections.abc import Callable, Iterable, Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from enum import StrEnum
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from tre.policy import Policy
from tre.settings import ReviewSettings, Settings, SettingsError

from .models import ReleaseRequest
from .states import Action, Step

log = logging.getLogger("tre.review.notify")

PAGES_PATH = "/services/tre-review"
"""Where the hub's proxy serves the review pages (the managed service's prefix)."""

TITLE_CHARS = 120
"""A request's title is the researcher's free text: e-mail carries at most this much of it."""

DEFAULT_RETRY_DELAYS: tuple[float, ...] = (5.0, 30.0, 120.0, 600.0)
"""Seconds before each retry of a transient failure; one more try than delays."""


class NotificationEvent(StrEnum):
    """What happened to a request that someone is told about."""

    submitted = "submitted"
    returned = "returned"
    rejected = "rejected"
    approved = "approved"
    released = "released"


_EVENTS: dict[Action, NotificationEvent] = {
    Action.submit: NotificationEvent.submitted,
    Action.return_: NotificationEvent.returned,
    Action.reject: NotificationEvent.rejected,
    Action.approve: NotificationEvent.approved,
    Action.release: NotificationEvent.released,
}
"""The steps worth a message. A single checker's approval is not one: the author hears
once the request as a whole is approved (`Action.approve`, taken by the service)."""

_ADDRESS = r'^[^\s@,;:<>()\[\]"\\]+@[^\s@,;:<>()\[\]"\\]+$'


class Notification(BaseModel):
    """One message to one person."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    to: str = Field(pattern=_ADDRESS, description="The recipient's bare e-mail address.")
    username: str = Field(description="Who the recipient is (what logs name, not the address).")
    subject: str = Field(pattern=r"^[^\r\n]+$")
    body: str
    request_id: str
    event: NotificationEvent


class Notifier(Protocol):
    """Where notifications go. `send` returns at once and never raises for the mail
    server's sake; `close` ends delivery (what is still queued may be given up)."""

    def send(self, notification: Notification, /) -> None: ...

    def close(self) -> None: ...


class NullNotifier:
    """No mail server configured: every notification is dropped (logged at DEBUG)."""

    def send(self, notification: Notification, /) -> None:
        log.debug(
            "no mail server configured: %s not told that request %s was %s",
            notification.username,
            notification.request_id,
            notification.event,
        )

    def close(self) -> None:
        return None


# -- what is said to whom -------------------------------------------------------------------


def review_pages(settings: Settings) -> str:
    """Base URL of the review pages, for links: `review.public_url`, else the hub's
    public URL with the service's prefix."""
    base = settings.review.public_url or settings.hub.public_url.rstrip("/") + PAGES_PATH
    return base.rstrip("/")


def announce(
    notifier: Notifier,
    policy_loader: Callable[[], Policy],
    req: ReleaseRequest,
    steps: Iterable[Step],
    *,
    pages: str,
) -> None:
    """Tell the people concerned about `steps`, just committed on `req`. Never raises:
    the action happened whatever becomes of its mail (a failure is logged at ERROR)."""
    wanted = [s for s in steps if s.action in _EVENTS]
    if not wanted:
        return
    try:
        policy = policy_loader()
        for step in wanted:
            for notification in notifications_for(policy, req, step, pages=pages):
                notifier.send(notification)
    except Exception:
        log.exception("could not notify anyone about request %s", req.id)


def notifications_for(
    policy: Policy, req: ReleaseRequest, step: Step, *, pages: str
) -> list[Notification]:
    """The messages one step of `req` calls for: to the project's eligible checkers (never
    the author) on submission; to the author on return, rejection, approval and release.
    People the policy gives no address are skipped (logged at INFO)."""
    event = _EVENTS.get(step.action)
    if event is None:
        return []
    if event is NotificationEvent.submitted:
        project = policy.project(req.project)
        if project is None:
            log.warning("request %s: project %s is not in the policy", req.id, req.project)
            return []
        recipients = [u for u in policy.eligible_checkers(project) if u != req.author]
    else:
        recipients = [req.author]
    subject, body = _message(req, step, event, pages)
    found: list[Notification] = []
    for username in recipients:
        person = policy.person(username)
        address = (person.email or "").strip() if person is not None else ""
        if not address:
            log.info(
                "%s has no e-mail address: not told that request %s was %s",
                username,
                req.id,
                event,
            )
            continue
        try:
            found.append(
                Notification(
                    to=address,
                    username=username,
                    subject=subject,
                    body=body,
                    request_id=req.id,
                    event=event,
                )
            )
        except ValueError:
            log.warning(
                "%s's e-mail address in the policy is not a plain address: "
                "not told that request %s was %s",
                username,
                req.id,
                event,
            )
    return found


_OPENINGS: dict[NotificationEvent, str] = {
    NotificationEvent.submitted: (
        "A release request in project {project} is waiting for an output checker."
    ),
    NotificationEvent.returned: (
        "Your release request in project {project} was returned to you for changes."
    ),
    NotificationEvent.rejected: "Your release request in project {project} was rejected.",
    NotificationEvent.approved: (
        "Your release request in project {project} has all the approvals it needs: "
        "it is ready to release."
    ),
    NotificationEvent.released: (
        "Your release request in project {project} is released: its files can be "
        "downloaded from the review pages."
    ),
}

_SUBJECTS: dict[NotificationEvent, str] = {
    NotificationEvent.submitted: "Release request to review",
    NotificationEvent.returned: "Release request returned",
    NotificationEvent.rejected: "Release request rejected",
    NotificationEvent.approved: "Release request approved, ready to release",
    NotificationEvent.released: "Release request released",
}


def _message(
    req: ReleaseRequest, step: Step, event: NotificationEvent, pages: str
) -> tuple[str, str]:
    # Only what the module docstring allows: no file names, contents or check findings.
    subject = f"[jupyter-tre] {_SUBJECTS[event]}: {req.project} ({req.id[:8]})"
    lines = [
        _OPENINGS[event].format(project=req.project),
        "",
        f"Request:  {req.id}",
        f"Title:    {_one_line(req.title, TITLE_CHARS)}",
        f"Project:  {req.project}",
        f"State:    {step.to_state}",
    ]
    if event is NotificationEvent.submitted:
        lines.append(f"Files:    {len(req.files)}")
        lines.append(f"Reviews:  {req.reviews_required} needed")
    if step.reason:
        first, *rest = step.reason.strip().splitlines() or [""]
        lines.append(f"Reason:   {first}")
        lines.extend(f"          {line}".rstrip() for line in rest)
    lines += [
        "",
        f"Open it: {pages}/requests/{req.id}",
        "",
        "-- ",
        "Sent by jupyter-tre's output review. This message never carries files or the",
        "results of their checks: read them on the review pages.",
    ]
    return subject, "\n".join(lines) + "\n"


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


# -- delivery --------------------------------------------------------------------------------


def is_transient(exc: BaseException) -> bool:
    """Whether trying again later may help: a refused or dropped connection, a timeout,
    a 4xx reply. 5xx replies, TLS failures and unsupported features are for good."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        return bool(codes) and all(400 <= code < 500 for code in codes)
    if isinstance(exc, smtplib.SMTPResponseException):
        return 400 <= exc.smtp_code < 500
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return True
    if isinstance(exc, smtplib.SMTPException | ssl.SSLError):
        return False
    return isinstance(exc, OSError)


class SmtpNotifier:
    """Sends notifications through an SMTP server from one worker thread.

    `send` only queues (a bounded queue: when it is full the message is dropped and
    logged at ERROR). Transient failures are tried again after each of `retry_delays`;
    a message still not accepted after the last try, or refused for good, is logged
    at ERROR and given up. Each message is one connection: STARTTLS (verifying the
    server's certificate) and login when configured.
    """

    def __init__(
        self,
        host: str,
        port: int = 25,
        *,
        mail_from: str = "jupyter-tre@localhost",
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        timeout: float = 30.0,
        queue_size: int = 1000,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        if (username is None) != (password is None):
            raise ValueError("an SMTP login needs both a username and a password")
        self.host, self.port = host, port
        self.mail_from = mail_from
        self._envelope_from = parseaddr(mail_from)[1] or mail_from
        self._starttls = starttls
        self._login = (
            (username, password) if username is not None and password is not None else None
        )
        self._delays = tuple(retry_delays)
        self._timeout = timeout
        self._tls = tls_context or ssl.create_default_context()
        self._queue: queue.Queue[Notification | None] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._pending = 0
        if self._login is not None and not starttls:
            log.warning(
                "SMTP login to %s:%d without STARTTLS sends the password in clear", host, port
            )
        self._thread = threading.Thread(target=self._run, name="tre-review-mail", daemon=True)
        self._thread.start()

    def send(self, notification: Notification, /) -> None:
        if self._stop.is_set():
            _given_up(notification, "the notifier is closed")
            return
        with self._idle:
            self._pending += 1
        try:
            self._queue.put_nowait(notification)
        except queue.Full:
            self._done()
            _given_up(notification, f"the mail queue is full ({self._queue.maxsize} waiting)")

    def flush(self, timeout: float) -> bool:
        """Wait until every queued message was sent or given up; False if `timeout` ran out."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Let the queue drain for up to `timeout` seconds, then give up what is left."""
        if self._stop.is_set():
            return
        self.flush(timeout)
        self._stop.set()  # cuts short any wait between tries
        with contextlib.suppress(queue.Full):  # the worker also ends once the queue is empty
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning(
                "the mail worker is still talking to %s:%d; left behind", self.host, self.port
            )

    # -- the worker ----------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            notification = self._queue.get()
            if notification is None:
                return
            try:
                if self._stop.is_set():
                    _given_up(notification, "the review service is stopping")
                else:
                    self._deliver(notification)
            except Exception:  # the worker must outlive any one message
                log.exception("mail about request %s failed", notification.request_id)
            finally:
                self._done()
            if self._stop.is_set() and self._queue.empty():
                return  # closed, and close() found no room for its end marker

    def _done(self) -> None:
        with self._idle:
            self._pending -= 1
            self._idle.notify_all()

    def _deliver(self, notification: Notification) -> None:
        message = self._email(notification)
        tries = len(self._delays) + 1
        error: BaseException | None = None
        for attempt, delay in enumerate((0.0, *self._delays), start=1):
            if delay and self._stop.wait(delay):
                _given_up(notification, f"the review service is stopping (last error: {error})")
                return
            try:
                self._transmit(message, notification.to)
            except Exception as exc:
                error = exc
                if not is_transient(exc):
                    _given_up(notification, f"the mail server refused it: {_describe(exc)}")
                    return
                log.warning(
                    "mail to %s about request %s: try %d of %d failed: %s",
                    notification.username,
                    notification.request_id,
                    attempt,
                    tries,
                    _describe(exc),
                )
                continue
            log.info(
                "mail sent to %s: request %s was %s",
                notification.username,
                notification.request_id,
                notification.event,
            )
            return
        _given_up(notification, f"{tries} tries failed, the last with: {_describe(error)}")

    def _email(self, notification: Notification) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.mail_from
        message["To"] = notification.to
        message["Subject"] = notification.subject
        message["Date"] = formatdate(usegmt=True)
        domain = self._envelope_from.rpartition("@")[2] or "localhost"
        message["Message-ID"] = make_msgid(domain=domain)
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies, please
        message["X-TRE-Request"] = notification.request_id
        message["X-TRE-Event"] = str(notification.event)
        message.set_content(notification.body, cte="quoted-printable")
        return message

    def _transmit(self, message: EmailMessage, to: str) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self._timeout) as smtp:
            if self._starttls:
                smtp.starttls(context=self._tls)
            if self._login is not None:
                smtp.login(*self._login)
            smtp.send_message(message, from_addr=self._envelope_from, to_addrs=[to])


def _given_up(notification: Notification, why: str) -> None:
    log.error(
        "mail to %s not sent (request %s was %s): %s",
        notification.username,
        notification.request_id,
        notification.event,
        why,
    )


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "no error"
    return f"{type(exc).__name__}: {exc}"


def notifier_from_settings(review: ReviewSettings) -> Notifier:
    """An `SmtpNotifier` when `review.smtp_host` is set, else a `NullNotifier`. The password
    is read from `review.smtp_password_file` now, so a missing file stops the start."""
    if review.smtp_host is None:
        log.info("review.smtp_host is not set: no e-mail notifications")
        return NullNotifier()
    password: str | None = None
    if (review.smtp_username is None) != (review.smtp_password_file is None):
        raise SettingsError(
            "review.smtp_username and review.smtp_password_file go together: "
            "set both to log in to the mail server, or neither"
        )
    if review.smtp_password_file is not None:
        try:
            password = review.smtp_password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise SettingsError(
                f"review.smtp_password_file: cannot read {review.smtp_password_file}: "
                f"{exc.strerror}"
            ) from exc
        if not password:
            raise SettingsError(f"review.smtp_password_file: {review.smtp_password_file} is empty")
    return SmtpNotifier(
        review.smtp_host,
        review.smtp_port,
        mail_from=review.mail_from,
        starttls=review.smtp_starttls,
        username=review.smtp_username,
        password=password,
    )
