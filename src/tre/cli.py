"""The `tre` command for administrators and data managers.

This is the one module that may import every part of `tre`; each command is a
thin wrapper that loads settings, calls a package function and reports.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import __version__
from .policy import Severity, validate_policy
from .policy.schema import stale_schemas, write_schemas
from .settings import Settings, SettingsError, load_settings

app = typer.Typer(
    name="tre",
    help="jupyter-tre: administer a trusted research environment for health data.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
policy_app = typer.Typer(
    help="Validate the site's policy and generate its JSON Schemas.", no_args_is_help=True
)
demo_app = typer.Typer(
    help="Demo site: synthetic source data for trying the TRE out.", no_args_is_help=True
)
app.add_typer(policy_app, name="policy")
app.add_typer(demo_app, name="demo")

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
    try:
        on = date.fromisoformat(today) if today else date.today()
    except ValueError as exc:
        err.print(f"[red]error:[/red] --today {today!r} is not a date; expected YYYY-MM-DD")
        raise typer.Exit(2) from exc
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
            out.print(f"[{colour}]{finding}[/{colour}]")
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
