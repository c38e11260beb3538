"""The output-review service's domain: every action on a release request, checked and audited.

Each action reads the request, asks the transition table whether this actor may take
it now, writes the change and its history step, and appends the audit event — all in
one database transaction, which the audit append precedes, so an action the audit
did not record did not happen. Files are copied from the project's workspace by the
service itself (never carried by a browser) into the immutable file store, and the
automated checks run on that copy.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection

from tre.audit import AuditEvent, EventKind, open_store
from tre.policy import Policy, load_policy
from tre.settings import Settings

from .auditing import AuditSink, step_event
from .checking import Checker, DisclosureChecks
from .errors import ChecksBlocked, NotAllowed, ReviewError, TransitionRefused
from .filestore import FileStore, check_file_name
from .models import (
    Comment,
    Controls,
    Decision,
    HistoryEntry,
    ReleasedFile,
    ReleaseFile,
    ReleaseRequest,
    Review,
)
from .notify import Notifier, NullNotifier, announce, review_pages
from .parties import SYSTEM_ACTOR, current_permit, disclosure_profile, parties_of
from .states import Action, Party, RequestState, Step, check_transition
from .store import ConcurrentChange, ReviewStore, default_db_url
from .workspace import open_in_workspace, split_workspace_path

DEFAULT_MAX_FILE_BYTES = 100 << 20
_ATTEMPTS = 5

_DECISION_ACTIONS = {
    Decision.approve: Action.review,
    Decision.return_: Action.return_,
    Decision.reject: Action.reject,
}

_CHECKER_QUEUE = (RequestState.submitted, RequestState.under_review)
_AUTHOR_TURN = (RequestState.draft, RequestState.returned, RequestState.approved)

Clock = Callable[[], datetime]
PolicyLoader = Callable[[], Policy]
ListRole = Literal["author", "checker"]


class ReviewService:
    """Release requests of one site. `db_url`: the review database (default SQLite in db_dir);
    `notifier`: where e-mail about submissions and decisions goes (the service closes it)."""

    def __init__(
        self,
        settings: Settings,
        policy_loader: PolicyLoader | None = None,
        checker: Checker | None = None,
        clock: Clock | None = None,
        *,
        db_url: str | None = None,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        audit: AuditSink | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.settings = settings
        self._clock: Clock = clock or (lambda: datetime.now(UTC))
        self._policy_loader: PolicyLoader = policy_loader or (
            lambda: load_policy(settings.policy_dir, self._today())
        )
        self.checker: Checker = checker or DisclosureChecks(settings)
        if db_url is None:
            settings.db_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.db = ReviewStore(db_url or default_db_url(settings.db_dir))
        self.files = FileStore(settings.releases_dir)
        self.max_file_bytes = max_file_bytes
        self.audit: AuditSink = audit or open_store(settings)
        self.notifier: Notifier = notifier or NullNotifier()

    def close(self) -> None:
        self.db.close()
        self.notifier.close()

    # -- the author's actions --------------------------------------------------

    def create_request(
        self, author: str, project: str, title: str, description: str = ""
    ) -> ReleaseRequest:
        """A new draft request of `author` in `project`, under their current permit."""
        policy = self._policy_loader()
        permit = current_permit(policy, project, author, self._today())
        now = self._now()
        req = ReleaseRequest(
            id=uuid.uuid4().hex,
            project=project,
            permit=permit.id,
            author=author,
            title=title,
            description=description.strip(),
            state=RequestState.draft,
            created=now,
            updated=now,
            reviews_required=permit.conditions.reviews_required,
        )
        step = Step(
            action=Action.create,
            actor=author,
            from_state=RequestState.draft,
            to_state=RequestState.draft,
            at=now,
            detail={"title": req.title},
        )
        with self.db.transaction() as conn:
            self.db.insert_request(conn, req)
            self.db.insert_step(conn, req.id, 1, step)
            self.audit.append(step_event(req, step, 1))
        return self._load(req.id)

    def add_file(
        self,
        request_id: str,
        author: str,
        workspace_path: str,
        *,
        description: str,
        context: str,
        controls: Controls,
    ) -> ReleaseRequest:
        """Copy a file from the project's workspace into the request (a new version if it is
        there already, which resets that file's reviews), and run the checks on the copy."""
        policy = self._policy_loader()
        req = self._load(request_id)
        parties = parties_of(policy, req, author)
        self._precheck(req, Action.add_file, author, parties)
        permit = current_permit(policy, req.project, author, self._today())
        profile = disclosure_profile(policy, permit)
        parts = split_workspace_path(workspace_path)
        relative, name = "/".join(parts), parts[-1]
        check_file_name(name)
        existing = req.file(name)
        if existing is not None and existing.workspace_path != relative:
            raise ReviewError(
                f"{name}: the request already has a file of this name, from "
                f"{existing.workspace_path}; rename one of them"
            )
        root = self.settings.workspaces_dir / req.project
        with self.files.locked(req.project, req.id):
            with self.db.transaction() as conn:
                versions = self.db.versions(conn, req.id, name)
                version = versions[-1].version + 1 if versions else 1
                target = self.files.path_for(req.project, req.id, version, name)
                if target.exists() and not self.db.recorded_path(conn, target):
                    self.files.discard_unrecorded(target)
            source = open_in_workspace(root, relative, max_bytes=self.max_file_bytes)
            try:
                stored = self.files.put(target, source.fd, max_bytes=self.max_file_bytes)
            finally:
                source.close()
            try:
                now = self._now()
                kind = self.checker.kind_of(name)
                self.files.verify(stored.path, stored.sha256)
                result = self.checker.check(
                    stored.path,
                    kind=kind,
                    profile=profile,
                    project=req.project,
                    earlier=[r.file.stored_path for r in self.released_files(req.project)],
                )
                new = ReleaseFile(
                    name=name,
                    version=version,
                    workspace_path=relative,
                    sha256=stored.sha256,
                    size=stored.size,
                    kind=kind,
                    description=description,
                    context=context,
                    controls=controls,
                    stored_path=stored.path,
                    checks=result.detail,
                    verdict=result.verdict,
                    added_by=author,
                    added_at=now,
                )
                if existing is not None and _same_submission(existing, new):
                    # A second click on the same file: nothing changed, nothing to reset.
                    self.files.discard_unrecorded(stored.path)
                    return req

                def act(conn: Connection, req: ReleaseRequest) -> None:
                    parties = parties_of(policy, req, author)
                    self.db.insert_file(conn, req.id, new)
                    current = req.file(name)
                    reset = sorted(req.approvers(name)) if current is not None else []
                    self._step(
                        conn,
                        req,
                        Action.add_file,
                        author,
                        parties,
                        detail={
                            "file": name,
                            "version": version,
                            "workspace_path": relative,
                            "sha256": stored.sha256,
                            "size": stored.size,
                            "kind": kind,
                            "verdict": str(result.verdict),
                            "reviews_reset": reset,
                        },
                    )

                return self._mutate(request_id, act)
            except BaseException:
                self.files.discard_unrecorded(stored.path)
                raise

    def remove_file(self, request_id: str, author: str, name: str) -> ReleaseRequest:
        policy = self._policy_loader()

        def act(conn: Connection, req: ReleaseRequest) -> None:
            current = req.file(name)
            if current is None:
                raise ReviewError(f"{name}: no such file in request {req.id}")
            self._step(
                conn,
                req,
                Action.remove_file,
                author,
                parties_of(policy, req, author),
                detail={"file": name, "version": current.version},
            )
            self.db.mark_removed(conn, req.id, name, current.version, self._now())

        return self._mutate(request_id, act)

    def submit(self, request_id: str, author: str) -> ReleaseRequest:
        """Send the request to the checkers, under the author's current permit."""
        policy = self._policy_loader()

        def act(conn: Connection, req: ReleaseRequest) -> None:
            parties = parties_of(policy, req, author)
            self._precheck(req, Action.submit, author, parties)
            permit = current_permit(policy, req.project, author, self._today())
            if not req.files:
                raise TransitionRefused("a request without files cannot be submitted")
            for f in req.files:
                self.files.verify(f.stored_path, f.sha256)
            self._step(
                conn,
                req,
                Action.submit,
                author,
                parties,
                detail={
                    "files": req.file_versions(),
                    "reviews_required": permit.conditions.reviews_required,
                    "blocked": req.blocked_files(),
                },
                changes={
                    "permit": permit.id,
                    "reviews_required": permit.conditions.reviews_required,
                },
            )

        return self._mutate(request_id, act)

    def withdraw(self, request_id: str, author: str, reason: str | None = None) -> ReleaseRequest:
        policy = self._policy_loader()

        def act(conn: Connection, req: ReleaseRequest) -> None:
            parties = parties_of(policy, req, author)
            self._step(conn, req, Action.withdraw, author, parties, reason=reason)

        return self._mutate(request_id, act)

    def release(self, request_id: str, actor: str) -> ReleaseRequest:
        """Release an approved request (by its author, or by the service itself), after
        checking every stored copy once more."""
        policy = self._policy_loader()

        def act(conn: Connection, req: ReleaseRequest) -> None:
            parties = parties_of(policy, req, actor)
            self._precheck(req, Action.release, actor, parties)
            if Party.author in parties:
                current_permit(policy, req.project, actor, self._today())
            if not req.is_fully_approved():
                raise TransitionRefused(
                    f"request {req.id} lacks approvals: {req.missing_approvals()}"
                )
            self._refuse_blocked(req, req.file_versions())
            for f in req.files:
                self.files.verify(f.stored_path, f.sha256)
            self._step(
                conn,
                req,
                Action.release,
                actor,
                parties,
                detail={"files": {f.name: f.sha256 for f in req.files}},
            )

        return self._mutate(request_id, act)

    # -- the checker's actions ------------------------------------------------

    def start_review(self, request_id: str, checker: str) -> ReleaseRequest:
        policy = self._policy_loader()

        def act(conn: Connection, req: ReleaseRequest) -> None:
            self._step(conn, req, Action.start_review, checker, parties_of(policy, req, checker))

        return self._mutate(request_id, act)

    def review(
        self,
        request_id: str,
        checker: str,
        decision: Decision,
        reason: str | None = None,
        file: str | None = None,
    ) -> ReleaseRequest:
        """Record a checker's decision. An approval covers one file (or every file) at its
        current version; once every file has enough distinct approvers the service approves
        the request. Return and reject apply to the whole request and need a reason."""
        policy = self._policy_loader()

        def act(conn: Connection, req: ReleaseRequest) -> None:
            parties = parties_of(policy, req, checker)
            if file is not None and req.file(file) is None:
                raise ReviewError(f"{file}: no such file in request {req.id}")
            covered = req.file_versions() if file is None else {file: req.file_versions()[file]}
            if (
                decision is Decision.approve
                and parties == {Party.checker}
                and req.state in (RequestState.under_review, RequestState.approved)
                and all(checker in req.approvers(name) for name in covered)
            ):
                return  # approved already (a double click): counted once, recorded once
            if req.state is RequestState.submitted:
                req = self._step(conn, req, Action.start_review, checker, parties)
            action = _DECISION_ACTIONS[decision]
            self._precheck(req, action, checker, parties, reason=reason)
            if decision is Decision.approve:
                self._refuse_blocked(req, covered)
            review = Review(
                checker=checker,
                decision=decision,
                file=file,
                reason=reason.strip() if reason else None,
                at=self._now(),
                file_versions=covered,
            )
            self.db.insert_review(conn, req.id, review)
            req = self._step(
                conn,
                req,
                action,
                checker,
                parties,
                reason=reason,
                detail={"decision": str(decision), "file": file, "file_versions": covered},
                changes={"reviews": (*req.reviews, review)},
            )
            if decision is Decision.approve and req.is_fully_approved():
                self._step(
                    conn,
                    req,
                    Action.approve,
                    SYSTEM_ACTOR,
                    frozenset({Party.system}),
                    detail={
                        "approvers": {f.name: sorted(req.approvers(f.name)) for f in req.files},
                        "reviews_required": req.reviews_required,
                    },
                )

        return self._mutate(request_id, act)

    def approve(self, request_id: str, checker: str, file: str | None = None) -> ReleaseRequest:
        return self.review(request_id, checker, Decision.approve, file=file)

    def return_(
        self, request_id: str, checker: str, reason: str, file: str | None = None
    ) -> ReleaseRequest:
        return self.review(request_id, checker, Decision.return_, reason, file)

    def reject(
        self, request_id: str, checker: str, reason: str, file: str | None = None
    ) -> ReleaseRequest:
        return self.review(request_id, checker, Decision.reject, reason, file)

    def comment(self, request_id: str, user: str, file: str, text: str) -> ReleaseRequest:
        """A remark on the current version of one file, by a checker or the author."""
        policy = self._policy_loader()

        def act(conn: Connection, req: ReleaseRequest) -> None:
            current = req.file(file)
            if current is None:
                raise ReviewError(f"{file}: no such file in request {req.id}")
            if not text.strip():
                raise ReviewError("a comment needs some text")
            c = Comment(author=user, file=file, version=current.version, text=text, at=self._now())
            self._step(
                conn,
                req,
                Action.comment,
                user,
                parties_of(policy, req, user),
                detail={"file": file, "version": current.version, "text": c.text},
            )
            self.db.insert_comment(conn, req.id, c)

        return self._mutate(request_id, act)

    # -- reading -----------------------------------------------------------------

    def get(self, request_id: str, viewer: str) -> ReleaseRequest:
        """The request, if `viewer` has a part in it (author, member, eligible checker)."""
        req = self._load(request_id)
        parties = parties_of(self._policy_loader(), req, viewer)
        checker_only = parties == {Party.checker}
        if not parties or (checker_only and req.state is RequestState.draft):
            raise NotAllowed(f"'{viewer}' has no part in request {request_id}")
        return req

    def list_for(
        self,
        user: str,
        role: ListRole,
        *,
        project: str | None = None,
        state: RequestState | None = None,
        older_than: timedelta | None = None,
        my_turn: bool = False,
    ) -> list[ReleaseRequest]:
        """The requests `user` sees as author (their own) or as checker (their projects'
        queue, never their own), oldest change first."""
        policy = self._policy_loader()
        before = self._now() - older_than if older_than is not None else None
        states: Iterable[RequestState] | None = None if state is None else [state]
        with self.db.transaction() as conn:
            if role == "author":
                ids = self.db.ids(
                    conn,
                    author=user,
                    projects=None if project is None else [project],
                    states=states,
                    updated_before=before,
                )
            else:
                projects = [
                    p.id
                    for p in policy.projects
                    if user in policy.eligible_checkers(p) and project in (None, p.id)
                ]
                visible = [s for s in RequestState if s is not RequestState.draft]
                ids = self.db.ids(
                    conn,
                    projects=projects,
                    states=visible if states is None else [s for s in states if s in visible],
                    updated_before=before,
                )
            found = [self.db.load(conn, i) for i in ids]
        if role == "checker":
            found = [r for r in found if r.author != user]
        if my_turn:
            found = [r for r in found if _is_turn_of(r, user, role)]
        return found

    def released_files(self, project: str) -> list[ReleasedFile]:
        """Every released file of `project` (the publication service's input)."""
        with self.db.transaction() as conn:
            ids = self.db.ids(conn, projects=[project], states=[RequestState.released])
            found = [self.db.load(conn, i) for i in ids]
        return [
            ReleasedFile(request_id=r.id, author=r.author, file=f) for r in found for f in r.files
        ]

    def download(self, request_id: str, name: str, user: str) -> bytes:
        """A released file's content, for its author alone (holding a current permit)."""
        policy = self._policy_loader()
        req = self._load(request_id)
        if user != req.author:
            raise NotAllowed(f"only the author of request {request_id} may download its files")
        if req.state is not RequestState.released:
            raise NotAllowed(f"request {request_id} is {req.state}, not released")
        current_permit(policy, req.project, user, self._today())
        f = req.file(name)
        if f is None:
            raise ReviewError(f"{name}: no such file in request {request_id}")
        content = self.files.read(f.stored_path, f.sha256)
        self.audit.append(
            AuditEvent(
                kind=EventKind.review_downloaded,
                actor=user,
                project=req.project,
                permit=req.permit,
                at=self._now(),
                detail={"request": req.id, "file": name, "version": f.version, "sha256": f.sha256},
            )
        )
        return content

    # -- the machinery -----------------------------------------------------------

    def _now(self) -> datetime:
        return self._clock()

    def _today(self) -> date:
        return self._clock().date()

    def _load(self, request_id: str) -> ReleaseRequest:
        with self.db.transaction() as conn:
            return self.db.load(conn, request_id)

    def _mutate(
        self, request_id: str, act: Callable[[Connection, ReleaseRequest], None]
    ) -> ReleaseRequest:
        """Run `act` on the freshly read request in one transaction; again if someone
        else changed the request meanwhile (it then re-checks everything)."""
        for attempt in range(_ATTEMPTS):
            try:
                with self.db.transaction() as conn:
                    before = self.db.load(conn, request_id)
                    act(conn, before)
                    after = self.db.load(conn, request_id)
                break
            except ConcurrentChange:
                if attempt == _ATTEMPTS - 1:
                    raise
        # Only once committed are people told, of this call's steps alone; mail never
        # holds up or fails an action.
        steps = [h.step for h in after.history[len(before.history) :]]
        announce(
            self.notifier, self._policy_loader, after, steps, pages=review_pages(self.settings)
        )
        return after

    def _precheck(
        self,
        req: ReleaseRequest,
        action: Action,
        actor: str,
        parties: frozenset[Party],
        reason: str | None = None,
    ) -> None:
        check_transition(
            req.state, action, actor=actor, parties=parties, at=self._now(), reason=reason
        )

    def _step(
        self,
        conn: Connection,
        req: ReleaseRequest,
        action: Action,
        actor: str,
        parties: frozenset[Party],
        *,
        reason: str | None = None,
        detail: dict[str, Any] | None = None,
        changes: Mapping[str, Any] | None = None,
    ) -> ReleaseRequest:
        step = check_transition(
            req.state, action, actor=actor, parties=parties, at=self._now(), reason=reason
        ).model_copy(update={"detail": detail or {}})
        seq = len(req.history) + 1
        new = req.model_copy(
            update={
                **(changes or {}),
                "state": step.to_state,
                "updated": step.at,
                "revision": req.revision + 1,
                "history": (*req.history, HistoryEntry(seq=seq, step=step)),
            }
        )
        self.db.update_request(conn, new, expected=req.revision)
        self.db.insert_step(conn, req.id, seq, step)
        self.audit.append(step_event(new, step, seq))
        return new

    def _refuse_blocked(self, req: ReleaseRequest, covered: Mapping[str, int]) -> None:
        blocked = {n: why for n, why in req.blocked_files().items() if n in covered}
        if blocked:
            raise ChecksBlocked(
                "blocked by the automated checks, so it cannot be approved or released: "
                + "; ".join(f"{n}: {why}" for n, why in sorted(blocked.items()))
            )


def _same_submission(old: ReleaseFile, new: ReleaseFile) -> bool:
    return (old.sha256, old.description, old.context, old.controls) == (
        new.sha256,
        new.description,
        new.context,
        new.controls,
    )


def _is_turn_of(req: ReleaseRequest, user: str, role: ListRole) -> bool:
    if role == "author":
        return req.state in _AUTHOR_TURN
    return req.state in _CHECKER_QUEUE and not all(user in req.approvers(f.name) for f in req.files)
