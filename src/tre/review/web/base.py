"""What every handler shares: who the caller is, how domain errors become HTTP answers.

A request carrying `Authorization: token …` is identified by that token alone (a workspace
or a person's API token) and is exempt from XSRF, as it carries no cookie authority; every
other request is a browser's, identified by its HubOAuth cookie and XSRF-checked.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from typing import Any

from jupyterhub.services.auth import HubOAuth, HubOAuthenticated, UserNotAllowed
from pydantic import ValidationError
from tornado import web

from tre.audit.identity import Refused, WorkspaceIdentifier
from tre.policy import Policy
from tre.settings import Settings

from ..errors import ChecksBlocked, NotAllowed, PermitRefused, ReviewError, TransitionRefused
from ..filestore import FileTooLarge, StoreError
from ..service import ReviewService
from ..store import ConcurrentChange, RequestNotFound
from ..workspace import PathRefused
from .callers import Caller, caller_of_browser, caller_of_token

log = logging.getLogger("tre.review.web")

_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (RequestNotFound, 404),
    (NotAllowed, 403),
    (PermitRefused, 403),
    (PathRefused, 400),
    (FileTooLarge, 413),
    (StoreError, 500),
    (ConcurrentChange, 409),
    (TransitionRefused, 409),
    (ChecksBlocked, 409),
    (ReviewError, 400),
    (ValidationError, 400),
)


def status_of(exc: BaseException) -> tuple[int, str] | None:
    """The HTTP status and message for a refusal the caller should read; None otherwise."""
    if isinstance(exc, Refused):
        return exc.status, exc.message
    if isinstance(exc, web.HTTPError):
        return exc.status_code, exc.log_message or ""
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            if status == 500:
                return 500, "the stored copy cannot be read; ask the administrator"
            if isinstance(exc, ValidationError):
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
                )
                return status, problems
            return status, str(exc)
    return None


@dataclass
class ReviewWeb:
    """What the handlers share: the domain service, the hub and the policy."""

    settings: Settings
    service: ReviewService
    hub_auth: HubOAuth
    identifier: WorkspaceIdentifier
    prefix: str
    """Where the proxy routes the service's pages, e.g. /services/tre-review/."""

    def policy(self) -> Policy:
        return self.identifier.policy.current(date.today())


def token_header(handler: web.RequestHandler) -> str | None:
    header = handler.request.headers.get("Authorization", "")
    match = HubOAuth.auth_header_pat.match(header)
    if header and match is None:
        raise Refused(401, "the Authorization header must be 'token <Hub token>'")
    return match.group(1).strip() if match else None


class BaseHandler(HubOAuthenticated, web.RequestHandler):  # type: ignore[misc]
    """Identifies the caller in `prepare`; refusals are answered by `write_error`."""

    caller: Caller
    html = False
    """True for pages: an unknown browser is sent to log in; errors are pages too."""

    def initialize(self, ctx: ReviewWeb) -> None:
        self.ctx = ctx
        self.hub_auth = ctx.hub_auth

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")

    def check_xsrf_cookie(self) -> None:
        if "Authorization" in self.request.headers:
            return  # token callers: no cookie is ever consulted for them
        super().check_xsrf_cookie()

    async def prepare(self) -> None:
        token = token_header(self)
        if token is not None:
            self._token_authenticated = True
            self.caller = await caller_of_token(self.ctx.identifier, token)
            return
        model = await self.hub_auth.get_user(self, sync=False)
        if not model:
            if self.html and self.request.method in ("GET", "HEAD"):
                self.redirect(self.get_login_url())
                return
            raise Refused(401, "log in through the hub first")
        try:
            model = self.check_hub_user(model)
        except UserNotAllowed as exc:
            raise Refused(403, f"{model.get('name')} may not use the review service") from exc
        self.caller = caller_of_browser(model)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        found = status_of(value) if value is not None else None
        if found is not None and found[0] < 500:
            log.info("%s %s: %d %s", self.request.method, self.request.path, *found)
            return
        super().log_exception(typ, value, tb)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        found = status_of(exc) if exc is not None else None
        status, message = found if found is not None else (status_code, "")
        if status != status_code:
            self.set_status(status)
        message = message or self._reason
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "no-store")
        if self.html:
            self.render_page(status, message)
        else:
            self.set_header("Content-Type", "application/json")
            self.finish({"message": message})

    def render_page(self, status: int, message: str) -> None:
        """Overridden by pages (rendered error page)."""
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(f"{status}: {message}\n")
