"""The JSON API, for workspaces (their server's Hub token) and browsers (HubOAuth + XSRF).

Who acts is always the caller the hub vouched for; a workspace's requests belong to the
project of its server. A body names files by their path in the project folder only —
the service copies them itself.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from tre.audit.identity import Refused
from tre.hub.roles import REVIEW_CHECK, REVIEW_READ, REVIEW_SUBMIT

from ..models import Controls, Decision, ReleaseRequest
from ..states import RequestState
from .base import BaseHandler
from .views import request_json
from .visibility import as_seen_by

FILE_FIELDS = ("path", "description", "context", "controls")
"""The body of `POST /api/requests/<id>/files`; `controls` is `{population, suppression}`."""

_DECISIONS = {"approve": Decision.approve, "return": Decision.return_, "reject": Decision.reject}


class ApiHandler(BaseHandler):
    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Content-Type", "application/json")

    def body(self, *allowed: str) -> dict[str, Any]:
        """The JSON object of the request's body, with only the `allowed` fields."""
        if not self.request.body:
            return {}
        try:
            payload = json.loads(self.request.body)
        except (ValueError, RecursionError) as exc:
            raise Refused(400, f"the body is not JSON: {exc}") from exc
        if not isinstance(payload, dict):
            raise Refused(400, "the body must be a JSON object")
        unknown = sorted(set(payload) - set(allowed))
        if unknown:
            raise Refused(
                400,
                f"unknown field(s) {unknown} (allowed: {sorted(allowed)}); who and which "
                "project come from your login, never from the body",
            )
        return payload

    def text(self, payload: dict[str, Any], name: str, *, required: bool = True) -> str:
        value = payload.get(name, "")
        if not isinstance(value, str) or (required and not value.strip()):
            raise Refused(400, f"'{name}' must be {'non-empty ' if required else ''}text")
        return value

    def seen(self, req: ReleaseRequest) -> dict[str, Any]:
        """`req` as JSON, as the caller may see it (`visibility`)."""
        return request_json(as_seen_by(self.ctx.policy(), req, self.caller))

    def answer(self, req: ReleaseRequest, status: int = 200) -> None:
        self.set_status(status)
        self.finish(self.seen(req))


class RequestsHandler(ApiHandler):
    """GET: the caller's own requests. POST {title, description[, project]}: a new draft."""

    def get(self) -> None:
        self.caller.check(REVIEW_READ, REVIEW_SUBMIT)
        project = self.caller.workspace.project if self.caller.workspace else None
        found = self.ctx.service.list_for(self.caller.user, "author", project=project)
        self.finish({"requests": [self.seen(r) for r in found]})

    def post(self) -> None:
        self.caller.check(REVIEW_SUBMIT)
        workspace = self.caller.workspace
        payload = self.body("title", "description", *(() if workspace else ("project",)))
        project = workspace.project if workspace else self.text(payload, "project")
        req = self.ctx.service.create_request(
            self.caller.user,
            project,
            self.text(payload, "title"),
            self.text(payload, "description", required=False),
        )
        self.answer(req, 201)


class QueueHandler(ApiHandler):
    """GET ?project=&state=&older_than_days=&my_turn=1: a checker's queue."""

    def get(self) -> None:
        self.caller.check(REVIEW_CHECK)
        state = self.get_argument("state", "") or None
        days = self.get_argument("older_than_days", "") or None
        try:
            found = self.ctx.service.list_for(
                self.caller.user,
                "checker",
                project=self.get_argument("project", "") or None,
                state=RequestState(state) if state else None,
                older_than=timedelta(days=float(days)) if days else None,
                my_turn=self.get_argument("my_turn", "") in ("1", "true", "on"),
            )
        except ValueError as exc:
            raise Refused(400, f"bad filter: {exc}") from exc
        self.finish({"requests": [self.seen(r) for r in found]})


class RequestHandler(ApiHandler):
    """GET one request the caller has a part in."""

    def get(self, request_id: str) -> None:
        self.caller.check(REVIEW_READ, REVIEW_SUBMIT, REVIEW_CHECK)
        self.answer(self.ctx.service.get(request_id, self.caller.user))


class FilesHandler(ApiHandler):
    """POST {path, description, context, controls: {population, suppression}}: the service
    copies `path` from the request's project folder."""

    def post(self, request_id: str) -> None:
        self.caller.check(REVIEW_SUBMIT)
        payload = self.body(*FILE_FIELDS)
        controls = payload.get("controls")
        if not isinstance(controls, dict):
            raise Refused(400, "'controls' must be an object {population, suppression}")
        self._same_project(request_id)
        req = self.ctx.service.add_file(
            request_id,
            self.caller.user,
            self.text(payload, "path"),
            description=self.text(payload, "description"),
            context=self.text(payload, "context"),
            controls=Controls.model_validate(controls),
        )
        self.answer(req, 201)

    def _same_project(self, request_id: str) -> None:
        workspace = self.caller.workspace
        if workspace is None:
            return
        req = self.ctx.service.get(request_id, self.caller.user)
        if req.project != workspace.project:
            raise Refused(
                403,
                f"this workspace is for project {workspace.project!r}; request {req.id} "
                f"belongs to {req.project!r}",
            )


class AuthorActionHandler(FilesHandler):
    """POST /api/requests/<id>/(submit|withdraw|release) [{reason}]."""

    def post(self, request_id: str, action: str) -> None:  # type: ignore[override]
        self.caller.check(REVIEW_SUBMIT)
        payload = self.body("reason")
        self._same_project(request_id)
        svc, user = self.ctx.service, self.caller.user
        if action == "submit":
            req = svc.submit(request_id, user)
        elif action == "withdraw":
            req = svc.withdraw(request_id, user, self.text(payload, "reason", required=False))
        else:
            req = svc.release(request_id, user)
        self.answer(req)


class CheckerActionHandler(ApiHandler):
    """POST /api/requests/<id>/(start|approve|return|reject) {reason, file?}."""

    def post(self, request_id: str, action: str) -> None:
        self.caller.check(REVIEW_CHECK)
        payload = self.body("reason", "file")
        svc, user = self.ctx.service, self.caller.user
        if action == "start":
            self.answer(svc.start_review(request_id, user))
            return
        file = payload.get("file") or None
        if file is not None and not isinstance(file, str):
            raise Refused(400, "'file' must be a file name")
        reason = self.text(payload, "reason", required=action != "approve") or None
        self.answer(svc.review(request_id, user, _DECISIONS[action], reason, file))


class CommentsHandler(ApiHandler):
    """POST {file, text}: a remark on a file's current version (checker or author)."""

    def post(self, request_id: str) -> None:
        self.caller.check(REVIEW_CHECK, REVIEW_SUBMIT)
        payload = self.body("file", "text")
        req = self.ctx.service.comment(
            request_id, self.caller.user, self.text(payload, "file"), self.text(payload, "text")
        )
        self.answer(req, 201)


ROUTES: list[tuple[str, type[BaseHandler]]] = [
    (r"/api/requests", RequestsHandler),
    (r"/api/queue", QueueHandler),
    (r"/api/requests/([0-9a-f]{32})", RequestHandler),
    (r"/api/requests/([0-9a-f]{32})/files", FilesHandler),
    (r"/api/requests/([0-9a-f]{32})/(submit|withdraw|release)", AuthorActionHandler),
    (r"/api/requests/([0-9a-f]{32})/(start|approve|return|reject)", CheckerActionHandler),
    (r"/api/requests/([0-9a-f]{32})/comments", CommentsHandler),
]
