"""The `tre` command for administrators and data managers.

This is the one module that may import every part of `tre`; each command is a
thin wrapper that loads settings, calls a package function and reports.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import __version__
from .policy import Severity, validate_policy
from .policy.schema import stale_schemas, write_schemas
from .settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from .audit import AuditStore
    from .pseudonym import OptOutRegister

app = typer.Typer(
    name="tre",
    help="jupyter-tre: administer a trusted research environment for health data.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)


def _group(name: str, help: str) -> typer.Typer:
    """A command group `tre <name>`, listed in the order the groups are made."""
    group = typer.Typer(help=help, no_args_is_help=True)
    app.add_typer(group, name=name)
    return group


policy_app = _group("policy", "Validate the site's policy and generate its JSON Schemas.")
demo_app = _group("demo", "Demo site: synthetic source data for trying the TRE out.")
key_app = _group("key", "The site master key that all pseudonyms derive from (ingest host only).")
optout_app = _group("optout", "The opt-out register (EHDS Art. 71): reversible, no reason needed.")
ingest_app = _group(
    "ingest", "Pseudonymise source silos into immutable dataset versions (ingest host only)."
)
stack_app = _group("stack", "The embedded stack on this host: demo OIDC provider and JupyterHub.")
image_app = _group("image", "The workspace image, built here without any container registry.")
audit_app = _group(
    "audit", "The audit log: verify its hash chains, show records, prune past retention."
)
packages_app = _group(
    "packages",
    "The package allow-list: resolve additions for a permit, list what projects installed.",
)
resources_app = _group(
    "resources",
    "Read-only project resources (reference genomes, models) copied in with a manifest.",
)
publish_app = _group(
    "publish",
    "Publication: summaries, the public register, the dataset catalogue, who used my data.",
)
project_app = _group(
    "project", "A project's life on the hub host: provision (or resume), suspend, archive."
)

out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)

SCHEMA_DIR = Path("policies/schema")


def _settings(ctx: typer.Context) -> Settings:
    settings = ctx.obj
    if not isinstance(settings, Settings):  # pragma: no cover - set by the callback
        raise typer.Exit(2)
    return settings


@app.callback()
def main(
    ctx: typer.Context,
    settings_file: Annotated[
        Path | None,
        typer.Option("--settings", help="Settings file (YAML); default: $TRE_SETTINGS or none."),
    ] = None,
) -> None:
    """jupyter-tre administration."""
    try:
        ctx.obj = load_settings(settings_file)
    except SettingsError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


@app.command()
def version() -> None:
    """Print the jupyter-tre version."""
    out.print(__version__)


def _parse_day(value: str | None, option: str) -> date:
    try:
        return date.fromisoformat(value) if value else date.today()
    except ValueError as exc:
        err.print(f"[red]error:[/red] {option} {value!r} is not a date; expected YYYY-MM-DD")
        raise typer.Exit(2) from exc


def _fail(message: object) -> NoReturn:
    # Escaped: messages quote user input and pip's output, where [brackets] are not markup.
    err.print(f"[red]error:[/red] {escape(str(message))}")
    raise typer.Exit(1)


def _resolve_site(site: str | None, settings: Settings) -> Path:
    if site is None:
        return settings.policy_dir
    path = Path(site)
    if not path.exists() and not any(sep in site for sep in "/\\"):
        named = Path("policies") / site
        if named.is_dir():
            return named
    return path


@policy_app.command("validate")
def policy_validate(
    ctx: typer.Context,
    site: Annotated[
        str | None,
        typer.Argument(help="Policy folder, or a site name under policies/. Default: settings."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    today: Annotated[
        str | None,
        typer.Option(help="Validate as of this date (YYYY-MM-DD) instead of today."),
    ] = None,
) -> None:
    """Check every policy file and the references between them. Exit 1 on any error."""
    on = _parse_day(today, "--today")
    policy_dir = _resolve_site(site, _settings(ctx))
    report = validate_policy(policy_dir, on)
    if as_json:
        payload = {
            "policy_dir": str(policy_dir),
            "today": on.isoformat(),
            "ok": report.ok,
            "findings": [f.model_dump(mode="json") for f in report.findings],
        }
        typer.echo(json.dumps(payload, indent=2))
    else:
        for finding in report.findings:
            colour = "red" if finding.severity is Severity.error else "yellow"
            out.print(f"[{colour}]{escape(str(finding))}[/{colour}]")
        errors, warnings = len(report.errors), len(report.findings) - len(report.errors)
        if report.ok and report.policy is not None:
            p = report.policy
            out.print(
                f"[green]ok[/green]: {policy_dir} ({len(p.datasets)} datasets, "
                f"{len(p.projects)} projects, {len(p.permits)} permits, {len(p.people)} people; "
                f"{warnings} warning(s))",
                highlight=False,
            )
        else:
            out.print(
                f"[red]{errors} error(s)[/red], {warnings} warning(s) in {policy_dir}",
                highlight=False,
            )
    raise typer.Exit(0 if report.ok else 1)


@policy_app.command("schema")
def policy_schema(
    out_dir: Annotated[
        Path, typer.Option("--out", help="Where to write the schemas.")
    ] = SCHEMA_DIR,
    check: Annotated[
        bool, typer.Option("--check", help="Only report schemas that differ; exit 1 if any.")
    ] = False,
) -> None:
    """Generate the JSON Schemas of the policy files from the models."""
    if check:
        stale = stale_schemas(out_dir)
        for name in stale:
            err.print(f"[red]stale:[/red] {out_dir / name}; run `tre policy schema`")
        raise typer.Exit(1 if stale else 0)
    for path in write_schemas(out_dir):
        out.print(f"wrote {path}", highlight=False)


@demo_app.command("data")
def demo_data(
    ctx: typer.Context,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Where to write the silos. Default: var/silos.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed; same seed, same bytes.")] = None,
    patients: Annotated[int, typer.Option(min=10, max=100_000, help="Number of patients.")] = 200,
) -> None:
    """Write the demo hospital's source silos: synthetic EMR plus real sample files."""
    from .demo.silos import DEFAULT_SEED, DemoDataError, write_demo_silos

    target = out_dir or _settings(ctx).silos_dir
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as progress:
        tasks: dict[str, TaskID] = {}

        def report(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = progress.add_task(label, total=total)
            progress.update(tasks[label], completed=done, total=total)

        try:
            manifest = write_demo_silos(
                target,
                seed=DEFAULT_SEED if seed is None else seed,
                patients=patients,
                progress=report,
            )
        except DemoDataError as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from exc
    table = Table("modality", "files", title=f"Demo silos in {target}")
    counts: dict[str, int] = {}
    for entry in manifest.files:
        counts[str(entry.modality)] = counts.get(str(entry.modality), 0) + 1
    for modality, n in sorted(counts.items()):
        table.add_row(modality, str(n))
    out.print(table)


@demo_app.command("release")
def demo_release_cmd(
    ctx: typer.Context,
    today: Annotated[str | None, typer.Option(help="Act as of this date (YYYY-MM-DD).")] = None,
) -> None:
    """Release the demo's example result of gbm-linkage through the airlock, once: alice asks,
    olivia and oscar approve, alice releases; pat then sees it in the published summaries."""
    from .demo.release import DemoReleaseError, demo_release
    from .policy import PolicyError, load_policy
    from .review import ReviewError

    settings = _settings(ctx)
    day = _parse_day(today, "--today")
    try:
        result = demo_release(settings, load_policy(settings.policy_dir, day), day)
    except (DemoReleaseError, PolicyError, ReviewError) as exc:
        _fail(exc)
    if result.already_released:
        out.print(f"already released: {result.request_id}")
        return
    table = Table("step", title=f"Demo release {result.request_id}")
    for step in result.done:
        table.add_row(escape(step))
    out.print(table)
    out.print(
        f"released: {', '.join(result.files)}; pat sees them at /services/tre-summaries/ "
        "once the summaries are rebuilt (`tre publish build`, or the service's next refresh)"
    )


@key_app.command("create")
def key_create(
    ctx: typer.Context,
    if_missing: Annotated[
        bool, typer.Option("--if-missing", help="Do nothing when a key exists already.")
    ] = False,
) -> None:
    """Create the site master key (mode 0600). Never overwrites: pseudonyms would change."""
    from .pseudonym import (
        KeyCustodyError,
        create_master_key,
        default_master_key_path,
        load_master_key,
    )

    path = default_master_key_path(_settings(ctx).keys_dir)
    try:
        if if_missing and path.exists():
            key = load_master_key(path)
            out.print(f"key exists: {path} (key id {key.key_id})")
            return
        key = create_master_key(path)
    except KeyCustodyError as exc:
        _fail(exc)
    out.print(f"created {path} (key id {key.key_id}); back it up offline: see the docs")


@key_app.command("show")
def key_show(ctx: typer.Context) -> None:
    """Print where the master key is and its public id (never the key)."""
    from .pseudonym import KeyCustodyError, default_master_key_path, load_master_key

    path = default_master_key_path(_settings(ctx).keys_dir)
    try:
        key = load_master_key(path)
    except KeyCustodyError as exc:
        _fail(exc)
    out.print(f"{path}: key id {key.key_id}")


PatientArg = Annotated[str, typer.Argument(help="The patient's hospital id.")]
OnOption = Annotated[
    str | None, typer.Option("--on", help="Effective date (YYYY-MM-DD); default today.")
]
ByOption = Annotated[str, typer.Option("--by", help="Who records this (for the record).")]


def _register(ctx: typer.Context) -> OptOutRegister:
    from .pseudonym import OptOutRegister

    return OptOutRegister.in_keys_dir(_settings(ctx).keys_dir)


@optout_app.command("add")
def optout_add(ctx: typer.Context, patient: PatientArg, by: ByOption, on: OnOption = None) -> None:
    """Record that a patient opts out; later ingests leave them out of every dataset."""
    from .pseudonym import OptOutError, OptOutRegisterError, PatientIdError

    try:
        event = _register(ctx).record_opt_out(
            patient, recorded_by=by, effective=_parse_day(on, "--on")
        )
    except (OptOutError, OptOutRegisterError, PatientIdError) as exc:
        _fail(exc)
    out.print(f"opt-out recorded, effective {event.effective}")


@optout_app.command("withdraw")
def optout_withdraw(
    ctx: typer.Context, patient: PatientArg, by: ByOption, on: OnOption = None
) -> None:
    """Record that a patient withdraws an opt-out (opts back in)."""
    from .pseudonym import OptOutError, OptOutRegisterError, PatientIdError

    try:
        event = _register(ctx).record_opt_in(
            patient, recorded_by=by, effective=_parse_day(on, "--on")
        )
    except (OptOutError, OptOutRegisterError, PatientIdError) as exc:
        _fail(exc)
    out.print(f"opt-out withdrawn, effective {event.effective}")


@optout_app.command("status")
def optout_status(
    ctx: typer.Context,
    patient: Annotated[str | None, typer.Argument(help="A hospital id; default: all.")] = None,
    on: OnOption = None,
) -> None:
    """How many patients are opted out on a day, or one patient's history."""
    from .pseudonym import OptOutRegisterError, PatientIdError

    day = _parse_day(on, "--on")
    register = _register(ctx)
    try:
        if patient is None:
            out.print(f"{len(register.opted_out(day))} patient(s) opted out on {day}")
            return
        for event in register.history(patient):
            out.print(f"{event.effective} {event.kind} (recorded by {event.recorded_by})")
        state = "opted out" if register.is_opted_out(patient, day) else "not opted out"
        out.print(f"on {day}: {state}")
    except (OptOutRegisterError, PatientIdError) as exc:
        _fail(exc)


def _ingest_progress(progress: Progress) -> Callable[[str, int, int], None]:
    tasks: dict[str, TaskID] = {}

    def report(label: str, done: int, total: int) -> None:
        if label not in tasks:
            tasks[label] = progress.add_task(label, total=total)
        progress.update(tasks[label], completed=done, total=total)

    return report


def _progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err,
    )


@ingest_app.command("run")
def ingest_run(
    ctx: typer.Context,
    project: Annotated[str, typer.Argument(help="Project the version is pseudonymised for.")],
    dataset: Annotated[str, typer.Argument(help="Dataset id from datasets.yaml.")],
    version: Annotated[str, typer.Argument(help="Version id from datasets.yaml.")],
    source: Annotated[
        Path | None, typer.Option(help="Source folder; default: the version's silo folder.")
    ] = None,
    continue_on_error: Annotated[
        bool,
        typer.Option(help="Ingest the good files and list the rejects in the manifest."),
    ] = False,
    today: Annotated[str | None, typer.Option(help="Ingest as of this date.")] = None,
) -> None:
    """Pseudonymise one dataset version for one project and seal it."""
    from .ingest import IngestError, ingest_version
    from .policy import PolicyError, load_policy

    settings = _settings(ctx)
    day = _parse_day(today, "--today")
    try:
        policy = load_policy(settings.policy_dir, day)
        with _progress_bar() as progress:
            result = ingest_version(
                settings,
                policy,
                project,
                dataset,
                version,
                source=source,
                continue_on_error=continue_on_error,
                today=day,
                progress=_ingest_progress(progress),
            )
    except (IngestError, PolicyError) as exc:
        _fail(exc)
    counts = result.manifest.counts
    out.print(
        f"sealed {result.version_dir}: {counts.output_files} files, {counts.patients} patients, "
        f"{counts.excluded_opt_out} excluded by opt-out, {counts.rejected} rejected, "
        f"{counts.quarantined} quarantined"
    )
    out.print(f"manifest_sha256: {result.manifest_sha256}")
    if counts.rejected or counts.quarantined:
        out.print(f"details for the data manager: {result.record_path}")


@ingest_app.command("project")
def ingest_project(
    ctx: typer.Context,
    project: Annotated[str, typer.Argument(help="Project whose granted versions to ingest.")],
    continue_on_error: Annotated[
        bool,
        typer.Option(help="Ingest the good files and list the rejects in the manifest."),
    ] = False,
    today: Annotated[str | None, typer.Option(help="Ingest as of this date.")] = None,
) -> None:
    """Ingest every dataset version the project's current permits grant; skip sealed ones."""
    from .ingest import IngestError, granted_versions, ingest_version
    from .policy import PolicyError, load_policy

    settings = _settings(ctx)
    day = _parse_day(today, "--today")
    try:
        policy = load_policy(settings.policy_dir, day)
        pending = granted_versions(settings, policy, project, day)
        if not pending:
            _fail(f"no current permit of project '{project}' grants any dataset version")
        table = Table("dataset", "version", "state", "manifest_sha256", title=f"Project {project}")
        for dataset, version, folder in pending:
            if folder.exists():
                table.add_row(dataset, version, "already sealed", "")
                continue
            with _progress_bar() as progress:
                result = ingest_version(
                    settings,
                    policy,
                    project,
                    dataset,
                    version,
                    continue_on_error=continue_on_error,
                    today=day,
                    progress=_ingest_progress(progress),
                )
            table.add_row(dataset, version, "sealed", result.manifest_sha256)
    except (IngestError, PolicyError) as exc:
        _fail(exc)
    out.print(table)


@stack_app.command("start")
def stack_start(ctx: typer.Context) -> None:
    """Start the OIDC provider (demo) and JupyterHub in the background; print the address."""
    from .stack import Stack, StackError, stop_detached

    settings = _settings(ctx)
    stopped = stop_detached(settings)
    if stopped:
        out.print(f"stopped the previous {' and '.join(stopped)}")
    stack = Stack(settings)
    try:
        stack.start()
    except StackError as exc:
        _fail(exc)
    stack.detach()
    out.print(f"JupyterHub is running at {settings.hub.public_url}")
    out.print(f"logs: {settings.logs_dir}; stop with `tre stack stop` (or `make stop`)")


@stack_app.command("stop")
def stack_stop(ctx: typer.Context) -> None:
    """Stop what `tre stack start` started."""
    from .stack import stop_detached

    stopped = stop_detached(_settings(ctx))
    out.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


hub_app = _group(
    "hub", "The hub's processes in the foreground, one per service unit (Ansible deployment)."
)


@hub_app.command("run")
def hub_run(
    ctx: typer.Context,
    bind_url: Annotated[
        str | None,
        typer.Option(
            help="Where JupyterHub's proxy listens when a TLS proxy in front serves "
            "hub.public_url, e.g. http://127.0.0.1:8000; default: hub.public_url."
        ),
    ] = None,
) -> None:
    """Put the host firewall rules in place, then run JupyterHub in the foreground."""
    from .hub.firewall import FirewallError
    from .stack import StackError, exec_hub

    try:
        exec_hub(_settings(ctx), bind_url=bind_url)
    except (StackError, FirewallError, OSError) as exc:
        _fail(exc)


@hub_app.command("demo-idp")
def hub_demo_idp(ctx: typer.Context) -> None:
    """Run the bundled demo OIDC provider in the foreground (demo and test sites only)."""
    from .demo.idp import DemoIdPError
    from .policy import PolicyError
    from .stack import StackError, exec_demo_idp

    try:
        exec_demo_idp(_settings(ctx))
    except (StackError, DemoIdPError, PolicyError, OSError) as exc:
        _fail(exc)


@hub_app.command("firewall")
def hub_firewall(ctx: typer.Context) -> None:
    """Put the host firewall rules that confine project networks in place (idempotent);
    the last line says `changed` or `unchanged`."""
    from .hub.config import firewall_rules
    from .hub.firewall import FirewallError, apply_rules

    try:
        changed = apply_rules(firewall_rules(_settings(ctx)))
    except FirewallError as exc:
        _fail(exc)
    out.print("host firewall rules in place")
    out.print("changed" if changed else "unchanged")


@image_app.command("build")
def image_build(
    base: Annotated[
        str, typer.Option(help="Base image; default: a Debian base built here with mmdebstrap.")
    ] = "tre-base:bookworm",
    extension_wheel: Annotated[
        list[Path] | None,
        typer.Option("--extension-wheel", help="Lab extension wheel(s) to install (repeat)."),
    ] = None,
    ca_bundle: Annotated[
        Path | None,
        typer.Option(help="CA bundle trusted during the build only (TLS-intercepting proxies)."),
    ] = None,
    index_url: Annotated[str | None, typer.Option(help="Python package index to use.")] = None,
    force: Annotated[
        bool, typer.Option(help="Rebuild even if the same inputs were built.")
    ] = False,
    context: Annotated[Path | None, typer.Option(help="Build context folder.")] = None,
) -> None:
    """Build the workspace image (skipped when an image of the same inputs exists)."""
    from .image import ImageBuildError, build_workspace_image

    with _progress_bar() as progress:
        try:
            info = build_workspace_image(
                context_dir=context,
                base=base,
                extension_wheels=tuple(extension_wheel or ()),
                ca_bundle=ca_bundle,
                pip_index_url=index_url,
                force=force,
                progress=_ingest_progress(progress),
            )
        except ImageBuildError as exc:
            _fail(exc)
    state = "built" if info.built else "reused"
    out.print(
        f"{info.tag} ({state} in {info.seconds:.0f} s, {info.size_bytes / 1e9:.2f} GB); "
        f"also tagged {info.latest}"
    )


def _audit_store(ctx: typer.Context) -> AuditStore:
    from .audit import AuditStoreError, open_store

    try:
        return open_store(_settings(ctx))
    except AuditStoreError as exc:
        _fail(exc)


def _parse_when(value: str | None, option: str, *, end_of_day: bool = False) -> datetime | None:
    """A date (whole day, UTC) or an ISO date-time (UTC unless it says otherwise)."""
    if value is None:
        return None
    try:
        if len(value) == 10:
            day = datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
            return day + timedelta(days=1) if end_of_day else day
        when = datetime.fromisoformat(value)
    except ValueError as exc:
        err.print(
            f"[red]error:[/red] {option} {value!r} is not a date; expected YYYY-MM-DD "
            "or YYYY-MM-DDTHH:MM[:SS][+00:00]"
        )
        raise typer.Exit(2) from exc
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


@audit_app.command("verify")
def audit_verify(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Recompute every chain in the database and the files; exit 1 naming the first broken
    record of each, and any record the two copies disagree on."""
    store = _audit_store(ctx)
    report = store.verify()
    if as_json:
        payload = {
            "ok": report.ok,
            "chains": {c: {"database": d, "file": f} for c, (d, f) in report.counts.items()},
            "problems": [
                {
                    "project": p.project,
                    "copy": p.copy,
                    "kind": str(p.kind),
                    "seq": p.seq,
                    "line": p.line,
                    "where": p.where,
                    "message": p.message,
                }
                for p in report.problems
            ],
        }
        typer.echo(json.dumps(payload, indent=2))
    else:
        table = Table("chain", "database", "file", title=f"Audit log ({store.log_dir})")
        for chain, (in_db, in_file) in report.counts.items():
            table.add_row(chain, str(in_db), str(in_file))
        out.print(table)
        for problem in report.problems:
            err.print(f"[red]broken:[/red] {problem}")
        if report.ok:
            out.print(f"[green]ok[/green]: {len(report.counts)} chain(s) verify in both copies")
    raise typer.Exit(0 if report.ok else 1)


@audit_app.command("show")
def audit_show(
    ctx: typer.Context,
    project: Annotated[str | None, typer.Option(help="Only this project's chain.")] = None,
    user: Annotated[str | None, typer.Option(help="Only records whose actor is this user.")] = None,
    since: Annotated[
        str | None, typer.Option(help="From this day (YYYY-MM-DD, UTC) or date-time on.")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Up to and including this day, or before this date-time.")
    ] = None,
    kind: Annotated[str | None, typer.Option(help="Only records of this kind.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many records.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="The records as stored: one JSON line each.")
    ] = False,
) -> None:
    """List audit records from the database, oldest first."""
    from .audit import AuditStoreError, EventKind

    event_kind = None
    if kind is not None:
        try:
            event_kind = EventKind(kind)
        except ValueError as exc:
            err.print(
                f"[red]error:[/red] --kind {kind!r} is not a kind of audit record; "
                f"allowed: {', '.join(k.value for k in EventKind)}"
            )
            raise typer.Exit(2) from exc
    try:
        records = _audit_store(ctx).show(
            project=project,
            user=user,
            since=_parse_when(since, "--since"),
            until=_parse_when(until, "--until", end_of_day=True),
            kind=event_kind,
            limit=limit,
        )
    except AuditStoreError as exc:
        _fail(exc)
    if as_json:
        for record in records:
            typer.echo(record.line())
        return
    table = Table("at (UTC)", "project", "seq", "kind", "actor", "server", "permit", "detail")
    for r in records:
        detail = json.dumps(r.detail, ensure_ascii=False)
        table.add_row(
            r.at.strftime("%Y-%m-%d %H:%M:%S"),
            r.project,
            str(r.seq),
            str(r.kind),
            r.actor,
            r.server or "",
            r.permit or "",
            detail if len(detail) <= 80 else detail[:79] + "…",
        )
    out.print(table)
    out.print(f"{len(records)} record(s)")


@audit_app.command("prune")
def audit_prune(
    ctx: typer.Context,
    before: Annotated[
        str | None,
        typer.Option(help="Remove records older than this day; default today - retention_days."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only say what would be removed.")
    ] = False,
) -> None:
    """Remove records older than the retention period, leaving an anchor in each chain."""
    from .audit import AuditStoreError

    settings = _settings(ctx)
    oldest_kept = date.today() - timedelta(days=settings.audit.retention_days)
    day = _parse_day(before, "--before") if before else oldest_kept
    if day > oldest_kept:
        _fail(
            f"--before {day} would remove records younger than audit.retention_days "
            f"({settings.audit.retention_days} days); the latest allowed is {oldest_kept}"
        )
    cutoff = datetime.combine(day, datetime.min.time(), UTC)
    try:
        results = _audit_store(ctx).prune(cutoff, dry_run=dry_run)
    except AuditStoreError as exc:
        _fail(exc)
    verb = "would remove" if dry_run else "removed"
    for result in results:
        out.print(
            f"{result.project}: {verb} {result.removed} record(s) up to seq "
            f"{result.last_removed_seq}; {result.kept} kept"
        )
    if not results:
        out.print(f"nothing older than {day}")


@packages_app.command("resolve")
def packages_resolve(
    ctx: typer.Context,
    requirements: Annotated[
        list[str],
        typer.Argument(help="Packages to add, each a name with an optional specifier."),
    ],
    permit: Annotated[str, typer.Option("--permit", help="The permit the additions are for.")],
    write: Annotated[
        bool,
        typer.Option("--write", help="Append the new pins to the permit's list in packages.yaml."),
    ] = False,
    site: Annotated[
        str | None,
        typer.Option(help="Policy folder, or a site name under policies/. Default: settings."),
    ] = None,
    today: Annotated[
        str | None,
        typer.Option(help="Load and validate the policy as of this date (YYYY-MM-DD)."),
    ] = None,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds pip may take to resolve.")] = 300.0,
) -> None:
    """Resolve the dependency closure of REQUIREMENTS with pip, for the Python and platform
    of the workspace image, and show what is already allowed and what would be new."""
    from .packages import ResolveError, resolve_additions, write_additions
    from .policy import PolicyError, load_policy

    day = _parse_day(today, "--today")
    policy_dir = _resolve_site(site, _settings(ctx))
    try:
        policy = load_policy(policy_dir, day)
        resolution = resolve_additions(policy, permit, requirements, timeout=timeout)
    except (PolicyError, ResolveError) as exc:
        _fail(exc)
    table = Table(
        "package", "version", "requested", "allowed by", title=f"Closure for permit {permit}"
    )
    for pkg in resolution.packages:
        allowed = "[green]new[/green]" if pkg.source == "new" else str(pkg.source)
        table.add_row(pkg.name, pkg.version, "yes" if pkg.requested else "", allowed)
    out.print(table)
    new = resolution.new_pins
    if not new:
        out.print(f"nothing new: the site list and permit {permit} already allow all of it")
        return
    out.print(f"{len(new)} new pin(s): {' '.join(new)}")
    if not write:
        out.print("review them, then run again with --write to add them to packages.yaml")
        return
    try:
        written = write_additions(policy_dir, permit, new, day)
    except ResolveError as exc:
        _fail(exc)
    out.print(f"[green]wrote[/green] {written.path}: {len(written.added)} pin(s) for {permit}")
    if not written.comments_kept:
        out.print("[yellow]note:[/yellow] ruamel.yaml is not installed: comments were not kept")


@packages_app.command("installed")
def packages_installed(
    ctx: typer.Context,
    project: Annotated[str | None, typer.Option(help="Only this project's installs.")] = None,
    since: Annotated[
        str | None, typer.Option(help="From this day (YYYY-MM-DD, UTC) or date-time on.")
    ] = None,
) -> None:
    """List the packages workspaces installed from the mirror, as the audit log records them."""
    from .audit import AuditStoreError
    from .packages.installed import installed_packages

    try:
        installs = installed_packages(
            _audit_store(ctx), project=project, since=_parse_when(since, "--since")
        )
    except AuditStoreError as exc:
        _fail(exc)
    table = Table("at (UTC)", "project", "user", "package", "version", "sha256")
    for i in installs:
        table.add_row(
            i.at.strftime("%Y-%m-%d %H:%M:%S"), i.project, i.user, i.name, i.version, i.short_sha256
        )
    out.print(table)
    out.print(f"{len(installs)} install(s)")


def _size(n: int) -> str:
    if n < 1000:
        return f"{n} B"
    value = n / 1000
    for unit in ("KB", "MB", "GB"):
        if value < 1000:
            return f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


@resources_app.command("add")
def resources_add(
    ctx: typer.Context,
    source: Annotated[Path, typer.Argument(help="The file or folder to copy in.")],
    project: Annotated[str, typer.Option("--project", help="The project it is for.")],
    name: Annotated[
        str | None,
        typer.Option(help="The resource's name (its folder); default: the source's name."),
    ] = None,
    note: Annotated[str | None, typer.Option(help="What it is and why, for the manifest.")] = None,
    by: Annotated[
        str | None,
        typer.Option("--by", help="Who adds it, for the record; default: $SUDO_USER or $USER."),
    ] = None,
    today: Annotated[
        str | None, typer.Option(help="Load the policy as of this date (YYYY-MM-DD).")
    ] = None,
) -> None:
    """Copy a file or folder into var/resources/PROJECT/NAME/, read-only, with MANIFEST.json
    (paths, sizes, sha256) and an audit record. Resources are immutable: a name is never reused."""
    from .audit import AuditStoreError
    from .policy import PolicyError, load_policy
    from .resources import ResourceError, add_resource, default_actor

    settings = _settings(ctx)
    actor = by or default_actor()
    if not actor:
        _fail("who adds the resource is unknown ($SUDO_USER and $USER are unset): pass --by")
    try:
        policy = load_policy(settings.policy_dir, _parse_day(today, "--today"))
        with _progress_bar() as progress:
            tasks: list[TaskID] = []

            def report(label: str, done: int, total: int) -> None:
                if not tasks:  # one bar for the bytes, labelled with the latest file
                    tasks.append(progress.add_task(label, total=total))
                progress.update(tasks[0], description=label, completed=done, total=total)

            added = add_resource(
                settings, policy, project, source, by=actor, name=name, note=note, progress=report
            )
    except (ResourceError, PolicyError, AuditStoreError, OSError) as exc:
        _fail(exc)
    m = added.manifest
    out.print(f"added {added.path}: {len(m.files)} file(s), {_size(m.total_bytes)}, read-only")
    out.print(f"manifest_sha256: {added.manifest_sha256}")


@resources_app.command("list")
def resources_list(
    ctx: typer.Context,
    project: Annotated[str | None, typer.Option(help="Only this project's resources.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="The manifests' summaries as JSON.")
    ] = False,
) -> None:
    """List the resources of every project (or one), from their manifests."""
    from .resources import ResourceError, list_resources

    try:
        found = list_resources(_settings(ctx), project)
    except ResourceError as exc:
        _fail(exc)
    if as_json:
        payload = [
            {
                "project": r.project,
                "name": r.name,
                "files": r.files,
                "bytes": r.manifest.total_bytes,
                "added_by": r.manifest.added_by,
                "added_at": r.manifest.added_at.isoformat(),
                "note": r.manifest.note,
                "path": str(r.path),
            }
            for r in found
        ]
        typer.echo(json.dumps(payload, indent=2))
        return
    table = Table("project", "name", "files", "size", "added by", "at (UTC)", "note")
    for r in found:
        m = r.manifest
        table.add_row(
            r.project,
            r.name,
            str(r.files),
            _size(m.total_bytes),
            m.added_by,
            m.added_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            m.note or "",
        )
    out.print(table)
    out.print(f"{len(found)} resource(s)")


@publish_app.command("build")
def publish_build(
    ctx: typer.Context,
    today: Annotated[
        str | None, typer.Option(help="Load the policy as of this date (YYYY-MM-DD).")
    ] = None,
) -> None:
    """Rebuild the published folder (var/publish) from released outputs now: what the
    summaries service shows. The service does the same every publish.refresh_seconds."""
    from .policy import PolicyError, load_policy
    from .publish.build import PublishError, build_publication
    from .publish.catalogue import CatalogueError
    from .publish.exports import site_exports
    from .publish.register import RegisterError

    settings = _settings(ctx)
    day = _parse_day(today, "--today")
    try:
        policy = load_policy(settings.policy_dir, day)
        build = build_publication(
            settings, policy, today=day, exports=site_exports(settings, policy, day)
        )
    except (PublishError, PolicyError, CatalogueError, RegisterError, OSError) as exc:
        _fail(exc)
    index = json.loads((build / "index.json").read_text(encoding="utf-8"))
    out.print(
        f"published build {build.name} ({len(index['projects'])} projects, "
        f"{len(index['exports'])} exports) in {settings.publish_dir}"
    )


@publish_app.command("register")
def publish_register(
    ctx: typer.Context,
    fmt: Annotated[str, typer.Option("--format", help="json or csv.")] = "csv",
    today: Annotated[
        str | None, typer.Option(help="Statuses and deadlines as of this date (YYYY-MM-DD).")
    ] = None,
) -> None:
    """Print the public register of permits (EHDS Art. 58(1)(f)(g), Art. 61(4))."""
    from .publish.register import (
        RegisterError,
        register_csv,
        register_from_settings,
        register_json,
    )

    if fmt not in ("json", "csv"):
        _fail(f"--format {fmt!r}: use json or csv")
    day = _parse_day(today, "--today")
    try:
        register = register_from_settings(_settings(ctx), day)
    except (RegisterError, OSError) as exc:
        _fail(exc)
    typer.echo(register_json(register) if fmt == "json" else register_csv(register), nl=False)


@publish_app.command("catalogue")
def publish_catalogue(
    ctx: typer.Context,
    fmt: Annotated[str, typer.Option("--format", help="turtle, jsonld or json.")] = "turtle",
    base_uri: Annotated[
        str | None,
        typer.Option(help="Base of the datasets' URIs; default: the hub's public URL."),
    ] = None,
    today: Annotated[
        str | None, typer.Option(help="Load the policy as of this date (YYYY-MM-DD).")
    ] = None,
) -> None:
    """Print the dataset catalogue in HealthDCAT-AP (validated against our SHACL shapes
    first), or its entries as JSON."""
    from .policy import PolicyError, load_policy
    from .publish.browse import catalogue_entries, catalogue_json
    from .publish.catalogue import (
        CatalogueError,
        catalogue_graph,
        catalogue_jsonld,
        catalogue_turtle,
    )
    from .publish.conformance import check_catalogue
    from .publish.exports import catalogue_base_uri

    if fmt not in ("turtle", "jsonld", "json"):
        _fail(f"--format {fmt!r}: use turtle, jsonld or json")
    settings = _settings(ctx)
    day = _parse_day(today, "--today")
    try:
        policy = load_policy(settings.policy_dir, day)
        if fmt == "json":
            typer.echo(catalogue_json(catalogue_entries(policy, day)), nl=False)
            return
        graph = catalogue_graph(policy, base_uri or catalogue_base_uri(settings))
        check_catalogue(graph)
    except (PolicyError, CatalogueError) as exc:
        _fail(exc)
    typer.echo(catalogue_turtle(graph) if fmt == "turtle" else catalogue_jsonld(graph))


@publish_app.command("who-used")
def publish_who_used(
    ctx: typer.Context,
    patient: Annotated[
        str | None,
        typer.Argument(
            help="The patient's hospital id; omit it to be asked (it then stays out of the "
            "shell history and the process list)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The answer as JSON.")] = False,
    today: Annotated[
        str | None, typer.Option(help="Statuses as of this date (YYYY-MM-DD).")
    ] = None,
) -> None:
    """Which projects' datasets included this patient, under which permits and when: the
    answer to "who used my data?". On the ingest host only, where the keys are."""
    from .ingest.who_used import WhoUsedError, render_text, who_used
    from .policy import PolicyError, load_policy

    settings = _settings(ctx)
    day = _parse_day(today, "--today")
    if patient is None:
        patient = typer.prompt("hospital id", hide_input=True)
    try:
        policy = load_policy(settings.policy_dir, day)
        report = who_used(settings, policy, patient, today=day)
    except (WhoUsedError, PolicyError) as exc:
        _fail(exc)
    # typer.echo, not rich: project texts may hold [brackets] rich would take as markup.
    typer.echo(report.model_dump_json(indent=2) if as_json else render_text(report), nl=False)


@app.command("usage")
def usage(
    ctx: typer.Context,
    first: Annotated[
        str | None, typer.Option("--from", help="First month, YYYY-MM; default: this month.")
    ] = None,
    last: Annotated[
        str | None, typer.Option("--to", help="Last month, YYYY-MM; default: --from.")
    ] = None,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV for the fee schedule.")] = False,
) -> None:
    """Usage per project and month: sessions, session and compute hours (hours x CPUs
    given), peak memory, and storage now; from the audit log and the workspace folders."""
    from .audit import AuditStoreError
    from .usage import UsageError, usage_csv, usage_report

    settings = _settings(ctx)
    first = first or datetime.now(UTC).strftime("%Y-%m")
    try:
        rows = usage_report(settings, _audit_store(ctx), first, last or first)
    except (UsageError, AuditStoreError) as exc:
        _fail(exc)
    if as_csv:
        typer.echo(usage_csv(rows), nl=False)
        return
    table = Table("project", "month", "sessions", "hours", "CPU hours", "peak memory", "storage")
    for r in rows:
        table.add_row(
            r.project,
            r.month,
            str(r.sessions),
            f"{r.session_hours:.1f}",
            f"{r.compute_hours:.1f}",
            "" if r.peak_memory_bytes is None else _size(r.peak_memory_bytes),
            "" if r.storage_bytes is None else _size(r.storage_bytes),
        )
    out.print(table)


_BY = Annotated[
    str | None,
    typer.Option("--by", help="Who does it, for the audit log; default: $SUDO_USER or $USER."),
]


def _actor(by: str | None) -> str:
    from .resources import default_actor

    actor = by or default_actor()
    if not actor:
        _fail("who does this is unknown ($SUDO_USER and $USER are unset): pass --by")
    return actor


@project_app.command("provision")
def project_provision(
    ctx: typer.Context,
    project: Annotated[str, typer.Argument(help="The project's id in the policy.")],
    by: _BY = None,
    today: Annotated[
        str | None, typer.Option(help="Load the policy as of this date (YYYY-MM-DD).")
    ] = None,
) -> None:
    """Set a project up, or resume a suspended one: workspace folder, network, firewall
    rules, and its permitted dataset versions checked against their manifests."""
    from .hub.firewall import FirewallError
    from .hub.lifecycle import provision
    from .hub.networks import ProjectNetworkError
    from .hub.project_state import LifecycleError
    from .policy import PolicyError, load_policy

    settings = _settings(ctx)
    day = _parse_day(today, "--today")
    try:
        steps = provision(
            settings, load_policy(settings.policy_dir, day), project, by=_actor(by), today=day
        )
    except (LifecycleError, PolicyError, FirewallError, ProjectNetworkError, OSError) as exc:
        _fail(exc)
    for step in steps:
        out.print(f"- {escape(step)}")
    out.print(f"project {project}: provisioned")


@project_app.command("suspend")
def project_suspend(
    ctx: typer.Context,
    project: Annotated[str, typer.Argument(help="The project's id in the policy.")],
    reason: Annotated[str, typer.Option(help="Why, for the audit log and the researchers.")],
    by: _BY = None,
) -> None:
    """Stop a project's workspaces and refuse new ones until `tre project provision`."""
    from .hub.lifecycle import suspend
    from .hub.project_state import LifecycleError
    from .policy import PolicyError, load_policy

    settings = _settings(ctx)
    try:
        steps = suspend(
            settings, load_policy(settings.policy_dir), project, by=_actor(by), reason=reason
        )
    except (LifecycleError, PolicyError) as exc:
        _fail(exc)
    for step in steps:
        out.print(f"- {escape(step)}")
    out.print(f"project {project}: suspended")


@project_app.command("archive")
def project_archive(
    ctx: typer.Context,
    project: Annotated[str, typer.Argument(help="The project's id in the policy.")],
    reason: Annotated[str, typer.Option(help="Why, for the audit log.")],
    confirm: Annotated[
        str, typer.Option(help="The project's id again: archiving removes its data.")
    ],
    by: _BY = None,
) -> None:
    """End a project: keep its audit log and the review service's copies; remove its
    workspace, resources, pseudonymised dataset copies and network. Irreversible."""
    from .hub.lifecycle import archive
    from .hub.networks import ProjectNetworkError
    from .hub.project_state import LifecycleError
    from .policy import PolicyError, load_policy

    settings = _settings(ctx)
    try:
        steps = archive(
            settings,
            load_policy(settings.policy_dir),
            project,
            by=_actor(by),
            reason=reason,
            confirm=confirm,
        )
    except (LifecycleError, PolicyError, ProjectNetworkError, OSError) as exc:
        _fail(exc)
    for step in steps:
        out.print(f"- {escape(step)}")
    out.print(f"project {project}: archived")


@project_app.command("status")
def project_status(
    ctx: typer.Context,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help='One JSON object: {"<project>": "<state>" or null if never provisioned}.'
        ),
    ] = False,
) -> None:
    """Every project of the policy and its lifecycle state."""
    from .hub.lifecycle import describe
    from .hub.project_state import LifecycleError, project_state
    from .policy import PolicyError, load_policy

    settings = _settings(ctx)
    try:
        policy = load_policy(settings.policy_dir)
        states = {p.id: project_state(settings, p.id) for p in policy.projects}
    except (LifecycleError, PolicyError) as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps({k: str(r.state) if r else None for k, r in states.items()}))
        return
    for project, record in states.items():
        out.print(f"{project}: {escape(describe(record))}")


k8s_app = _group("k8s", "Kubernetes: Zero to JupyterHub values from the site's policy.")


@k8s_app.command("values")
def k8s_values_command(
    ctx: typer.Context,
    output: Annotated[
        Path | None, typer.Option(help="Write the values here (atomically); default: stdout.")
    ] = None,
    image: Annotated[
        str | None, typer.Option(help="The workspace image as the cluster pulls it.")
    ] = None,
    today: Annotated[str | None, typer.Option(help="Permits as of this date (YYYY-MM-DD).")] = None,
) -> None:
    """Zero to JupyterHub values: a profile per project with a current permit, read-only
    dataset mounts, no egress but the hub, security contexts, the TRE's hub services."""
    from .k8s import K8sValuesError, k8s_values_yaml
    from .policy import PolicyError, load_policy

    settings = _settings(ctx)
    day = _parse_day(today, "--today")
    try:
        text = k8s_values_yaml(settings, load_policy(settings.policy_dir, day), day, image=image)
    except (K8sValuesError, PolicyError) as exc:
        _fail(exc)
    if output is None:
        typer.echo(text, nl=False)
        return
    tmp = output.with_name(f".{output.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(output)
    except OSError as exc:
        _fail(f"{output}: cannot write: {exc.strerror}")
    out.print(f"wrote {output}")


backup_app = _group(
    "backup", "Backups of the hub side (databases, audit log, releases, workspaces) and restore."
)


@backup_app.command("create")
def backup_create(
    ctx: typer.Context,
    dest: Annotated[Path, typer.Argument(help="Folder to write tre-backup-<time>.tar into.")],
) -> None:
    """Back up the SQLite databases (consistently, while in use), the audit log, the
    review copies, project states, resources and workspaces, with a checksummed manifest."""
    from .backup import BackupError, create_backup

    try:
        result = create_backup(_settings(ctx), dest)
    except (BackupError, OSError) as exc:
        _fail(exc)
    out.print(f"wrote {result.path}: {result.files} file(s), {_size(result.bytes)}")


@backup_app.command("restore")
def backup_restore(
    ctx: typer.Context,
    archive: Annotated[Path, typer.Argument(help="A tre-backup-*.tar file.")],
) -> None:
    """Restore a backup into this site's var/, which must not hold any of its folders yet;
    every file is checked against the manifest first. Then run `tre audit verify`."""
    from .backup import BackupError, restore_backup

    try:
        result = restore_backup(archive, _settings(ctx))
    except (BackupError, OSError) as exc:
        _fail(exc)
    out.print(f"restored {result.files} file(s), {_size(result.bytes)} from {archive}")
