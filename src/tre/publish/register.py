"""The public register of permits (EHDS Art. 58(1)(f)(g), Art. 61(4)): who got access to which
datasets, for what purpose, how much they worked, what left the TRE, and whether the results
were published in time.

Every permit of the policy appears, whatever its status. The register names the permit
holder (the principal investigator) and nobody else, and carries counts and dates only —
never researchers' names, code or file names. Counts come from the audit database and
release dates from the review database's history, both opened read-only: building the
register never migrates either database nor writes a row to it.
"""

from __future__ import annotations

import calendar
import csv
import io
import json
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import quote, unquote

from alembic.runtime.migration import MigrationContext
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine, and_, create_engine, func, make_url, pool, select
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from tre.audit import AuditStore, AuditStoreError, EventKind, audit_dir, default_db_url
from tre.audit.database import records_table
from tre.audit.migrations.runner import shown
from tre.policy import Permit, PermitStatus, Policy, Purpose, load_policy
from tre.policy.permits import Publication
from tre.review import Action, RequestState
from tre.review.store import SCHEMA as REVIEW_SCHEMA
from tre.review.store import default_db_url as review_default_db_url
from tre.review.store import history_table, requests_table
from tre.settings import Settings

PUBLICATION_MONTHS = 18
"""EHDS Art. 61(4): results are made public within 18 months of the end of processing."""

SESSION_KINDS = frozenset({EventKind.server_started})
EXECUTION_KINDS = frozenset({EventKind.execute})
_SYSTEM_ACTOR_PREFIX = "system:"


class RegisterError(Exception):
    """The register cannot be built truthfully; the message says what is missing or wrong."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Holder(_Model):
    """The permit holder as the register shows them: the project's principal investigator."""

    name: str
    organisation: str | None = None


class PurposeEntry(_Model):
    """The permit's EHDS purpose, with the article it comes from."""

    code: Purpose
    article: str = Field(description="e.g. 'Art. 53(1)(e)'.")
    label: str


class DatasetEntry(_Model):
    """One dataset version the permit grants."""

    id: str
    title: str
    version: str


class Release(_Model):
    """One released output request: when it was released and how many files left."""

    released: date = Field(description="Day of release (UTC).")
    files: int = Field(ge=0)


class RegisterEntry(_Model):
    """One permit, as the public sees it."""

    permit: str = Field(description="The permit's id in the site's policy.")
    access_body_reference: str
    issued_by: str
    issued: date
    project: str
    project_title: str
    lay_summary: str
    holder: Holder
    purpose: PurposeEntry
    datasets: tuple[DatasetEntry, ...]
    start: date
    expiry: date
    revoked: date | None = Field(
        default=None, description="Day the access body's revocation took effect."
    )
    status: PermitStatus
    researchers_named: int = Field(ge=0, description="People the permit names.")
    researchers_active: int = Field(
        ge=0, description="Distinct people with a session or an execution under the permit."
    )
    sessions: int = Field(ge=0, description="Workspace servers started under the permit.")
    executions: int = Field(ge=0, description="Code executions under the permit.")
    counted_since: datetime | None = Field(
        default=None,
        description=(
            "Set when the project's audit log was pruned: the counts cover records from "
            "this time on. None: the whole log."
        ),
    )
    releases: tuple[Release, ...] = ()
    end_of_processing: date = Field(
        description="Expiry, or the revocation's effective day when that comes first."
    )
    publication_deadline: date = Field(description="End of processing + 18 months.")
    publications: tuple[Publication, ...] = ()
    results_published: bool = Field(description="A publication dated on or before `as_of`.")
    overdue: bool = Field(description="The deadline has passed and nothing is published.")


class Register(_Model):
    """The site's public register of permits."""

    site: str
    site_name: str
    access_body: str
    as_of: date = Field(description="The day statuses and the overdue flags are given for.")
    generated_at: datetime
    entries: tuple[RegisterEntry, ...]


@dataclass(frozen=True)
class Activity:
    """What the audit log holds for one permit: counts only."""

    sessions: int = 0
    executions: int = 0
    researchers: int = 0


Releases = Mapping[str, Sequence[Release]]
"""Permit id → its releases."""


# -- dates -------------------------------------------------------------------------------


def add_months(day: date, months: int) -> date:
    """`day` moved by whole months; a day the target month lacks becomes its last day
    (2026-08-31 + 18 months = 2028-02-29, 2027-08-31 + 18 months = 2029-02-28)."""
    index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(day.day, last))


def end_of_processing(permit: Permit) -> date:
    """The permit's expiry, or the day its revocation took effect when that is earlier."""
    if permit.revoked is not None and permit.revoked.effective <= permit.expiry:
        return permit.revoked.effective
    return permit.expiry


def publication_deadline(permit: Permit) -> date:
    """End of processing + 18 months (EHDS Art. 61(4))."""
    return add_months(end_of_processing(permit), PUBLICATION_MONTHS)


# -- the audit log ------------------------------------------------------------------------


def audit_activity(audit: AuditStore) -> dict[tuple[str, str], Activity]:
    """(project, permit) → sessions, executions and distinct active people, from the audit
    database in one query (one snapshot). The TRE's own actors (`system:...`) are never
    counted as people."""
    t = records_table
    kinds = [str(k) for k in SESSION_KINDS | EXECUTION_KINDS]
    query = (
        select(t.c.project, t.c.permit, t.c.kind, t.c.actor, func.count())
        .where(t.c.kind.in_(kinds), t.c.permit.is_not(None))
        .group_by(t.c.project, t.c.permit, t.c.kind, t.c.actor)
    )
    sessions: dict[tuple[str, str], int] = defaultdict(int)
    executions: dict[tuple[str, str], int] = defaultdict(int)
    people: dict[tuple[str, str], set[str]] = defaultdict(set)
    try:
        with audit.engine.connect() as conn:
            rows = conn.execute(query).all()
    except SQLAlchemyError as exc:
        raise RegisterError(f"audit database {shown(audit.db_url)!r}: cannot count: {exc}") from exc
    session_kinds = {str(k) for k in SESSION_KINDS}
    for project, permit, kind, actor, n in rows:
        key = (str(project), str(permit))
        if kind in session_kinds:
            sessions[key] += int(n)
        else:
            executions[key] += int(n)
        if not str(actor).startswith(_SYSTEM_ACTOR_PREFIX):
            people[key].add(str(actor))
    return {
        key: Activity(sessions[key], executions[key], len(people[key]))
        for key in sessions.keys() | executions.keys()
    }


def audit_counted_since(audit: AuditStore) -> dict[str, datetime]:
    """Project → the cut-off of its latest prune (`audit_pruned` anchors): records before it
    are gone, so counts only cover the time from there on."""
    t = records_table
    query = select(t.c.project, t.c.detail).where(t.c.kind == str(EventKind.audit_pruned))
    since: dict[str, datetime] = {}
    try:
        with audit.engine.connect() as conn:
            rows = conn.execute(query).all()
    except SQLAlchemyError as exc:
        raise RegisterError(
            f"audit database {shown(audit.db_url)!r}: cannot read prunes: {exc}"
        ) from exc
    for project, detail in rows:
        try:
            before = datetime.fromisoformat(str(json.loads(detail)["before"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise RegisterError(
                f"audit chain {project!r}: an audit_pruned record has no readable 'before'; "
                "run `tre audit verify`"
            ) from exc
        since[str(project)] = max(before, since.get(str(project), before))
    return since


# -- released outputs ---------------------------------------------------------------------


def read_releases(engine: Engine) -> dict[str, list[Release]]:
    """Permit id → its releases, oldest first, from the review database's history.

    The history's `release` step is written in the same transaction as the request's
    state, and never deleted; the `review_released` audit event is appended before that
    transaction commits (it may outlive a release that failed) and is pruned with the
    audit log. A released request has exactly one release step; anything else is an error.
    """
    r, h = requests_table, history_table
    query = (
        select(r.c.id, r.c.permit, h.c.at, h.c.detail)
        .select_from(
            r.outerjoin(h, and_(h.c.request_id == r.c.id, h.c.action == str(Action.release)))
        )
        .where(r.c.state == str(RequestState.released))
        .order_by(h.c.at, r.c.id)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    seen: set[str] = set()
    found: dict[str, list[Release]] = defaultdict(list)
    for request_id, permit, at, detail in rows:
        if at is None:
            raise RegisterError(f"released request {request_id} has no release step")
        if request_id in seen:
            raise RegisterError(f"request {request_id} has more than one release step")
        seen.add(request_id)
        try:
            files = json.loads(detail).get("files")
        except (ValueError, AttributeError):
            files = None
        if not isinstance(files, dict):
            raise RegisterError(f"release step of request {request_id} does not list its files")
        released = datetime.fromisoformat(at).astimezone(UTC).date()
        found[str(permit)].append(Release(released=released, files=len(files)))
    return dict(found)


def releases_from_settings(settings: Settings) -> dict[str, list[Release]]:
    """`read_releases` on the site's review database, opened read-only."""
    url = settings.review.db_url or review_default_db_url(settings.db_dir)
    engine = create_engine(read_only_url(url, "review database"), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            current = set(
                MigrationContext.configure(
                    conn, opts={"version_table": REVIEW_SCHEMA.version_table}
                ).get_current_heads()
            )
        head = REVIEW_SCHEMA.head()
        if current != {head}:
            raise RegisterError(
                f"review database {shown(url)!r} is at revision "
                f"{', '.join(sorted(current)) or 'none'}, not {head}: start the review "
                "service once (it upgrades the database), then build the register again"
            )
        return read_releases(engine)
    except SQLAlchemyError as exc:
        raise RegisterError(f"review database {shown(url)!r}: cannot read it: {exc}") from exc
    finally:
        engine.dispose()


def read_only_url(url: str, what: str) -> str:
    """`url` changed so that the connection cannot write: SQLite opened `mode=ro` (a missing
    file is an error, never created), PostgreSQL with read-only transactions."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise RegisterError(f"{what} {shown(url)!r}: not a database URL: {exc}") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:"):
            raise RegisterError(f"{what} {shown(url)!r}: in-memory SQLite holds nothing to read")
        if not database.startswith("file:"):
            if not Path(database).is_file():
                raise RegisterError(
                    f"{what} {database} does not exist: build the register on the hub host, "
                    "with the settings (var_dir) of the site whose logs it counts"
                )
            database = "file:" + quote(database, safe="/")
        elif not Path(unquote(database[len("file:") :])).is_file():
            raise RegisterError(f"{what} {database} does not exist")
        query = {**parsed.query, "mode": "ro", "uri": "true"}
        return parsed.set(database=database, query=query).render_as_string(hide_password=False)
    if backend in ("postgresql", "postgres"):
        driver = "postgresql+psycopg" if parsed.drivername in ("postgresql", "postgres") else None
        options = parsed.query.get("options")
        existing = options if isinstance(options, str) else " ".join(options or ())
        readonly = f"{existing} -c default_transaction_read_only=on".strip()
        changed = parsed.update_query_dict({"options": readonly})
        if driver is not None:
            changed = changed.set(drivername=driver)
        return changed.render_as_string(hide_password=False)
    raise RegisterError(
        f"{what} {shown(url)!r}: cannot open a {backend} database read-only "
        "(SQLite and PostgreSQL are supported)"
    )


# -- the register -------------------------------------------------------------------------


def build_register(
    policy: Policy,
    audit: AuditStore,
    releases: Releases,
    today: date,
    *,
    generated_at: datetime | None = None,
) -> Register:
    """The register of every permit in `policy` (archived ones included), as of `today`.

    Activity or releases recorded under a permit the policy no longer holds are an error:
    permits stay in the policy (archived) so that the register stays complete.
    """
    activity = audit_activity(audit)
    since = audit_counted_since(audit)
    known = {(p.project, p.id) for p in policy.permits}
    strays = sorted(f"{permit} (project {project})" for project, permit in activity.keys() - known)
    strays += sorted(
        f"{permit} (released outputs)"
        for permit, found in releases.items()
        if found and policy.permit(permit) is None
    )
    if strays:
        raise RegisterError(
            "the audit log or the review database names permits the policy does not hold: "
            + ", ".join(strays)
            + "; keep ended permits in permits.yaml with `archived: true`"
        )
    entries = tuple(
        _entry(
            policy,
            permit,
            activity=activity.get((permit.project, permit.id), Activity()),
            counted_since=since.get(permit.project),
            releases=releases.get(permit.id, ()),
            today=today,
        )
        for permit in sorted(policy.permits, key=lambda p: (p.issued, p.id))
    )
    return Register(
        site=policy.site.id,
        site_name=policy.site.name,
        access_body=policy.site.access_body,
        as_of=today,
        generated_at=generated_at or datetime.now(UTC),
        entries=entries,
    )


def _entry(
    policy: Policy,
    permit: Permit,
    *,
    activity: Activity,
    counted_since: datetime | None,
    releases: Sequence[Release],
    today: date,
) -> RegisterEntry:
    project = policy.project(permit.project)
    if project is None:
        raise RegisterError(f"permit {permit.id}: unknown project {permit.project!r}")
    pi = policy.person(project.principal_investigator)
    if pi is None:
        raise RegisterError(
            f"project {project.id}: unknown principal investigator "
            f"{project.principal_investigator!r}"
        )
    datasets = []
    for grant in permit.datasets:
        dataset = policy.dataset(grant.dataset)
        if dataset is None:
            raise RegisterError(f"permit {permit.id}: unknown dataset {grant.dataset!r}")
        datasets.append(DatasetEntry(id=dataset.id, title=dataset.title, version=grant.version))
    published = any(p.published <= today for p in permit.publications)
    deadline = publication_deadline(permit)
    return RegisterEntry(
        permit=permit.id,
        access_body_reference=permit.access_body_reference,
        issued_by=permit.issued_by,
        issued=permit.issued,
        project=project.id,
        project_title=project.title,
        lay_summary=project.lay_summary,
        holder=Holder(name=pi.name, organisation=pi.organisation),
        purpose=PurposeEntry(
            code=permit.purpose, article=permit.purpose.article, label=permit.purpose.label
        ),
        datasets=tuple(datasets),
        start=permit.start,
        expiry=permit.expiry,
        revoked=permit.revoked.effective if permit.revoked is not None else None,
        status=permit.status(today),
        researchers_named=len(set(permit.people)),
        researchers_active=activity.researchers,
        sessions=activity.sessions,
        executions=activity.executions,
        counted_since=counted_since,
        releases=tuple(sorted(releases, key=lambda r: r.released)),
        end_of_processing=end_of_processing(permit),
        publication_deadline=deadline,
        publications=tuple(sorted(permit.publications, key=lambda p: (p.published, p.title))),
        results_published=published,
        overdue=today > deadline and not published,
    )


def register_from_settings(
    settings: Settings, today: date, *, policy: Policy | None = None
) -> Register:
    """The site's register: its policy, its audit and review databases opened read-only."""
    policy = policy or load_policy(settings.policy_dir, today)
    releases = releases_from_settings(settings)
    url = read_only_url(default_db_url(settings), "audit database")
    try:
        audit = AuditStore(url, audit_dir(settings))
    except AuditStoreError as exc:
        raise RegisterError(str(exc)) from exc
    try:
        return build_register(policy, audit, releases, today)
    finally:
        audit.close()


# -- exports ------------------------------------------------------------------------------


def register_json(reg: Register) -> str:
    """The register as JSON (`Register.model_validate_json` reads it back)."""
    return reg.model_dump_json(indent=2) + "\n"


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _day(value: date | datetime | None) -> str:
    return "" if value is None else value.isoformat()


def _release(r: Release) -> str:
    return f"{r.released.isoformat()} ({r.files} file{'' if r.files == 1 else 's'})"


def _publication(p: Publication) -> str:
    where = f"https://doi.org/{p.doi}" if p.doi is not None else p.url
    return f"{p.published.isoformat()} {p.title} <{where}>"


LIST_SEPARATOR = "; "

CSV_COLUMNS: tuple[tuple[str, Callable[[RegisterEntry], str]], ...] = (
    ("permit", lambda e: e.permit),
    ("access_body_reference", lambda e: e.access_body_reference),
    ("issued_by", lambda e: e.issued_by),
    ("issued", lambda e: _day(e.issued)),
    ("project", lambda e: e.project),
    ("project_title", lambda e: e.project_title),
    ("lay_summary", lambda e: e.lay_summary),
    ("holder", lambda e: e.holder.name),
    ("holder_organisation", lambda e: e.holder.organisation or ""),
    ("purpose", lambda e: str(e.purpose.code)),
    ("purpose_article", lambda e: e.purpose.article),
    ("purpose_label", lambda e: e.purpose.label),
    (
        "datasets",
        lambda e: LIST_SEPARATOR.join(f"{d.title} (version {d.version})" for d in e.datasets),
    ),
    ("start", lambda e: _day(e.start)),
    ("expiry", lambda e: _day(e.expiry)),
    ("revoked", lambda e: _day(e.revoked)),
    ("status", lambda e: str(e.status)),
    ("researchers_named", lambda e: str(e.researchers_named)),
    ("researchers_active", lambda e: str(e.researchers_active)),
    ("sessions", lambda e: str(e.sessions)),
    ("executions", lambda e: str(e.executions)),
    ("counted_since", lambda e: _day(e.counted_since)),
    ("releases", lambda e: LIST_SEPARATOR.join(_release(r) for r in e.releases)),
    ("end_of_processing", lambda e: _day(e.end_of_processing)),
    ("publication_deadline", lambda e: _day(e.publication_deadline)),
    ("results_published", lambda e: _yes(e.results_published)),
    ("publications", lambda e: LIST_SEPARATOR.join(_publication(p) for p in e.publications)),
    ("overdue", lambda e: _yes(e.overdue)),
)
"""The CSV's columns in order: header, and how each entry's cell is written."""


def register_csv(reg: Register) -> str:
    """One row per permit after a header row; RFC 4180 (CRLF, fields quoted when needed)."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(name for name, _ in CSV_COLUMNS)
    for entry in reg.entries:
        writer.writerow(cell(entry) for _, cell in CSV_COLUMNS)
    return out.getvalue()
