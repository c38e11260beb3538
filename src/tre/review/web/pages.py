"""The checker's and the researcher's pages, server-rendered (Jinja2, no scripts).

Every page and every stored copy is shown only to someone with a part in the request
(the domain's `ReviewService.get`); a released file leaves only here, as an attachment
to its author's browser session, and each time through `ReviewService.download`, which
audits it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, select_autoescape
from jupyterhub.services.auth import HubOAuthCallbackHandler
from tornado import web

from tre.audit.identity import Refused
from tre.hub.roles import REVIEW_CHECK, REVIEW_READ, REVIEW_SUBMIT

from ..models import Decision, ReleaseRequest
from ..parties import parties_of
from ..states import Action, RequestState, allowed_actions
from .base import BaseHandler, ReviewWeb
from .views import FileView, content_type, file_view, findings_of
from .visibility import can_see_contents, check_sees_contents, outline

TEMPLATES = Environment(
    loader=PackageLoader("tre.review.web", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)

PAGE_CSP = (
    "default-src 'none'; img-src 'self'; object-src 'self'; style-src 'self' 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'self'; base-uri 'none'"
)
FILE_CSP = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
"""A stored copy shown inline runs nothing (an SVG's scripts included)."""

_DECISIONS = {"approve": Decision.approve, "return": Decision.return_, "reject": Decision.reject}


def age(at: datetime) -> str:
    days = (datetime.now(UTC) - at).days
    return "today" if days < 1 else f"{days} day{'s' if days != 1 else ''}"


def disposition(kind: str, name: str) -> str:
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_").replace("\\", "_")
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


class PageHandler(BaseHandler):
    html = True

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Content-Security-Policy", PAGE_CSP)

    def page(self, template: str, **values: Any) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        caller = getattr(self, "caller", None)
        self.finish(
            TEMPLATES.get_template(template).render(
                prefix=self.ctx.prefix,
                caller=caller,
                can_check=caller is not None and caller.can(REVIEW_CHECK),
                xsrf=self.xsrf_form_html() if caller is not None else "",
                xsrf_token=self.xsrf_token.decode() if caller is not None else "",
                age=age,
                quote=quote,
                **values,
            )
        )

    def render_page(self, status: int, message: str) -> None:
        self.set_header("Content-Security-Policy", PAGE_CSP)
        self.page("error.html", status=status, message=message)

    def back_to(self, req_id: str) -> None:
        self.redirect(f"{self.ctx.prefix}requests/{req_id}", status=303)

    def browser_only(self) -> None:
        if not self.caller.browser:
            raise Refused(403, "these pages are for people's browsers, through the hub")


class HomePage(PageHandler):
    def get(self) -> None:
        target = "queue" if self.caller.can(REVIEW_CHECK) else "mine"
        self.redirect(f"{self.ctx.prefix}{target}")


class QueuePage(PageHandler):
    """The checker's queue, with filters: project, state, older than N days, my turn."""

    def get(self) -> None:
        self.caller.check(REVIEW_CHECK)
        policy = self.ctx.policy()
        projects = [
            p.id for p in policy.projects if self.caller.user in policy.eligible_checkers(p)
        ]
        project = self.get_argument("project", "") or None
        state = self.get_argument("state", "") or None
        days = self.get_argument("older_than_days", "").strip() or None
        my_turn = self.get_argument("my_turn", "") in ("1", "on", "true")
        try:
            older = timedelta(days=int(days)) if days else None
            chosen = RequestState(state) if state else None
        except ValueError as exc:
            raise Refused(400, f"bad filter: {exc}") from exc
        found = self.ctx.service.list_for(
            self.caller.user,
            "checker",
            project=project,
            state=chosen,
            older_than=older,
            my_turn=my_turn,
        )
        self.page(
            "queue.html",
            requests=found,
            projects=projects,
            states=[s for s in RequestState if s is not RequestState.draft],
            filters={
                "project": project,
                "state": state,
                "older_than_days": days or "",
                "my_turn": my_turn,
            },
        )


class MinePage(PageHandler):
    """A researcher's own requests and their status."""

    def get(self) -> None:
        self.caller.check(REVIEW_READ, REVIEW_SUBMIT)
        found = self.ctx.service.list_for(self.caller.user, "author")
        self.page("mine.html", requests=found)


class RequestPage(PageHandler):
    """One request: each file rendered from the stored copy, its checks, the history, and
    the forms the viewer may use now."""

    def get(self, request_id: str) -> None:
        self.caller.check(REVIEW_CHECK, REVIEW_READ, REVIEW_SUBMIT)
        req = self.ctx.service.get(request_id, self.caller.user)
        self.show(req)

    def show(self, req: ReleaseRequest, status: int = 200, error: str | None = None) -> None:
        parties = parties_of(self.ctx.policy(), req, self.caller.user)
        actions = set(allowed_actions(req.state, parties))
        if req.state is RequestState.submitted and Action.start_review in actions:
            actions |= {Action.review, Action.return_, Action.reject}  # review() starts it
        if not self.caller.can(REVIEW_CHECK):
            actions -= {Action.review, Action.return_, Action.reject, Action.start_review}
        policy = self.ctx.policy()
        contents = can_see_contents(policy, req, self.caller)
        if contents:
            views = [file_view(self.ctx.service.files, f) for f in req.files]
        else:
            req = outline(policy, req)
            views = [FileView(file=f, findings=findings_of(f)) for f in req.files]
        self.set_status(status)
        self.page(
            "request.html",
            req=req,
            views=views,
            contents=contents,
            actions={str(a) for a in actions},
            is_author=req.author == self.caller.user,
            error=error,
        )


class DecidePage(RequestPage):
    """POST decision=approve|return|reject, reason, file: a checker's decision."""

    SUPPORTED_METHODS = ("POST",)

    def post(self, request_id: str) -> None:
        self.caller.check(REVIEW_CHECK)
        decision = self.get_body_argument("decision", "")
        reason = self.get_body_argument("reason", "").strip() or None
        file = self.get_body_argument("file", "") or None
        if decision not in _DECISIONS:
            raise Refused(400, "choose approve, return or reject")
        if decision != "approve" and reason is None:
            req = self.ctx.service.get(request_id, self.caller.user)
            self.show(req, 400, f"a reason is needed to {decision} a request")
            return
        self.ctx.service.review(request_id, self.caller.user, _DECISIONS[decision], reason, file)
        self.back_to(request_id)


class CommentPage(PageHandler):
    """POST file, text: a remark on a file's current version."""

    def post(self, request_id: str) -> None:
        self.caller.check(REVIEW_CHECK, REVIEW_SUBMIT)
        self.ctx.service.comment(
            request_id,
            self.caller.user,
            self.get_body_argument("file", ""),
            self.get_body_argument("text", ""),
        )
        self.back_to(request_id)


class ReleasePage(PageHandler):
    """POST: the author releases an approved request."""

    def post(self, request_id: str) -> None:
        self.caller.check(REVIEW_SUBMIT)
        self.ctx.service.release(request_id, self.caller.user)
        self.back_to(request_id)


class StoredFile(PageHandler):
    """GET: a request's stored copy of a file, inline, for those with a part in it."""

    def get(self, request_id: str, name: str) -> None:
        self.caller.check(REVIEW_CHECK, REVIEW_READ, REVIEW_SUBMIT)
        self.browser_only()
        req = self.ctx.service.get(request_id, self.caller.user)
        check_sees_contents(self.ctx.policy(), req, self.caller)
        f = req.file(name)
        if f is None:
            raise web.HTTPError(404, f"{name}: no such file in request {request_id}")
        content = self.ctx.service.files.read(f.stored_path, f.sha256)
        ctype = content_type(name)
        self.set_header("Content-Type", ctype)
        if ctype != "application/pdf":  # a sandboxed document cannot host the PDF viewer
            self.set_header("Content-Security-Policy", FILE_CSP)
        else:
            self.set_header("Content-Security-Policy", "default-src 'none'; object-src 'self'")
        kind = "attachment" if ctype == "application/octet-stream" else "inline"
        self.set_header("Content-Disposition", disposition(kind, name))
        self.finish(content)


class ReleasedFile(PageHandler):
    """GET: a released file, as an attachment to its author's browser: the only way out."""

    def get(self, request_id: str, name: str) -> None:
        self.caller.check(REVIEW_SUBMIT, REVIEW_READ)
        self.browser_only()
        content = self.ctx.service.download(request_id, name, self.caller.user)
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("Content-Disposition", disposition("attachment", name))
        self.set_header("Content-Security-Policy", FILE_CSP)
        self.finish(content)


class CallbackHandler(HubOAuthCallbackHandler):  # type: ignore[misc]
    def initialize(self, ctx: ReviewWeb) -> None:
        self.hub_auth = ctx.hub_auth


_ID = r"([0-9a-f]{32})"

ROUTES: list[tuple[str, type[web.RequestHandler]]] = [
    (r"", HomePage),
    (r"queue", QueuePage),
    (r"mine", MinePage),
    (rf"requests/{_ID}", RequestPage),
    (rf"requests/{_ID}/decide", DecidePage),
    (rf"requests/{_ID}/comments", CommentPage),
    (rf"requests/{_ID}/release", ReleasePage),
    (rf"requests/{_ID}/files/([^/]+)", StoredFile),
    (rf"released/{_ID}/([^/]+)", ReleasedFile),
    (r"oauth_callback", CallbackHandler),
]
