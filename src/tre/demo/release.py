"""The demo site's example release: a real aggregate of gbm-linkage's pseudonymised clinical
records, taken out through the airlock as a researcher and two output checkers would.

Invariant: the outputs leave only through `ReviewService` (which audits every step); the
table is shaped to the permit's disclosure profile and must pass the automated checks
before any request exists; files are written into the project's workspace without ever
following a link the workspace holds; and a second run finds the released request by its
title and changes nothing.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import os
import secrets
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd

from tre.hub.plan import SpawnRefused, permit_mounts
from tre.hub.quota import WORKSPACE_GID, WORKSPACE_UID, QuotaError, prepare_workspace
from tre.policy import DisclosureProfile, Permit, Policy
from tre.review import Controls, ReleaseRequest, RequestState, ReviewService, Verdict
from tre.review.checks import IdentifierIndexError
from tre.review.parties import current_permit, disclosure_profile
from tre.settings import Settings

PROJECT = "gbm-linkage"
DATASET = "clinical-records"
SOURCE_TABLE = "diagnoses.parquet"
AUTHOR = "alice"
TITLE = "Patients by diagnosis in the linked clinical records"
"""How a later run recognises the demo's request (with its author and project)."""
DESCRIPTION = (
    "The demo site's example release, made by `tre demo release` through the airlock: "
    "written by alice, approved by two output checkers, released by alice."
)
FOLDER = "demo-release"
"""The folder in the project's workspace the outputs are written to."""
TABLE_NAME = "patients_by_diagnosis.csv"
FIGURE_NAME = "patients_by_diagnosis.png"

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class DemoReleaseError(RuntimeError):
    """The example release cannot be made; the message says why and what to run."""


@dataclass(frozen=True)
class DemoRelease:
    """What `demo_release` did: the request, its files (workspace paths) and each step."""

    request_id: str
    files: tuple[str, ...]
    done: tuple[str, ...]
    already_released: bool = False


@dataclass(frozen=True)
class DiagnosisTable:
    """Patients per diagnosis, shaped to a disclosure profile."""

    rows: tuple[tuple[str, str], ...]
    """(diagnosis, count as shown): a number, or `<threshold` where suppressed."""
    suppressed: tuple[str, ...]
    controls: str

    def csv_bytes(self) -> bytes:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["diagnosis", "patients"])
        writer.writerows(self.rows)
        return out.getvalue().encode("utf-8")


def demo_release(settings: Settings, policy: Policy, today: date) -> DemoRelease:
    """Release the demo's example outputs of gbm-linkage once; report the existing release
    if there is one. Raises `DemoReleaseError` (or the review service's `ReviewError`)."""
    service = ReviewService(settings, policy_loader=lambda: policy, clock=_clock(today))
    try:
        existing = _existing(service)
        if existing is not None and existing.state is RequestState.released:
            return DemoRelease(
                request_id=existing.id,
                files=tuple(f.workspace_path for f in existing.files),
                done=(f"already released: {existing.id}",),
                already_released=True,
            )
        permit = current_permit(policy, PROJECT, AUTHOR, today)
        profile = disclosure_profile(policy, permit)
        try:
            source = _clinical_records(settings, policy, permit)
        except SpawnRefused as exc:
            raise DemoReleaseError(str(exc)) from exc
        table = diagnosis_table(diagnosis_counts(source), profile)
        outputs = {TABLE_NAME: table.csv_bytes()}
        figure = bar_chart(table)
        if figure is not None:
            outputs[FIGURE_NAME] = figure
        try:
            _preflight(service, profile, outputs)
        except IdentifierIndexError as exc:
            raise DemoReleaseError(f"the automated checks cannot run: {exc}") from exc
        done = [f"{DATASET} ({source}): {table.controls}"]
        if figure is None:
            done.append("no figure: matplotlib is not installed, so the table goes alone")
        paths = write_outputs(settings, outputs)
        done.append(f"wrote {', '.join(paths)} in the {PROJECT} workspace")
        request = _through_the_airlock(
            service, policy=policy, existing=existing, outputs=outputs, table=table, done=done
        )
    finally:
        service.close()
    return DemoRelease(
        request_id=request.id,
        files=tuple(f.workspace_path for f in request.files),
        done=tuple(done),
    )


def _clock(today: date) -> Callable[[], datetime]:
    """Now, or now's time of day on `today` when acting as of another date."""

    def now() -> datetime:
        current = datetime.now(UTC)
        return current if current.date() == today else datetime.combine(today, current.timetz())

    return now


def _existing(service: ReviewService) -> ReleaseRequest | None:
    """The demo's request: the released one if any, else one still under way."""
    mine = [r for r in service.list_for(AUTHOR, "author", project=PROJECT) if r.title == TITLE]
    for wanted in (
        (RequestState.released,),
        (
            RequestState.draft,
            RequestState.returned,
            RequestState.submitted,
            RequestState.under_review,
            RequestState.approved,
        ),
    ):
        found = [r for r in mine if r.state in wanted]
        if found:
            return found[-1]
    return None


def _clinical_records(settings: Settings, policy: Policy, permit: Permit) -> Path:
    """The sealed clinical-records version alice's workspace mounts under `permit`."""
    mount = next((m for m in permit_mounts(policy, settings, permit) if m.dataset == DATASET), None)
    if mount is None:
        raise DemoReleaseError(
            f"permit '{permit.id}' of project '{PROJECT}' grants no dataset '{DATASET}'"
        )
    if (
        not (mount.source / "MANIFEST.json").is_file()
        or not (mount.source / SOURCE_TABLE).is_file()
    ):
        raise DemoReleaseError(
            f"dataset '{DATASET}' version '{mount.version}' of project '{PROJECT}' is not "
            f"ingested ({mount.source} holds no sealed {SOURCE_TABLE}): run "
            f"`tre ingest project {PROJECT}` first"
        )
    return mount.source


def diagnosis_counts(version_dir: Path) -> dict[str, int]:
    """Distinct patients per diagnosis in a sealed clinical-records version."""
    path = version_dir / SOURCE_TABLE
    try:
        frame = pd.read_parquet(path, columns=["pseudonym", "description"])
    except (OSError, ValueError, KeyError) as exc:
        raise DemoReleaseError(f"{path}: cannot read the diagnoses table ({exc})") from exc
    counts = frame.dropna().groupby("description")["pseudonym"].nunique()
    return {str(name): int(n) for name, n in counts.items() if int(n) > 0}


def diagnosis_table(counts: Mapping[str, int], profile: DisclosureProfile) -> DiagnosisTable:
    """`counts` as the profile wants them shown: counts below its threshold (or at or below
    its redaction limit) suppressed, the rest rounded when it asks for rounding. Categories
    without patients are not listed (zeros can disclose). Rows overlap (a patient may have
    several diagnoses) and there is no total, so a suppressed count cannot be worked back."""
    threshold = max(profile.safe_threshold, (profile.redact_at_or_below or 0) + 1)
    shown: list[tuple[str, int]] = []
    suppressed: list[str] = []
    for name, n in counts.items():
        value = n
        if profile.round_to is not None:
            value = profile.round_to * ((2 * n + profile.round_to) // (2 * profile.round_to))
        if n < threshold or value < threshold:
            suppressed.append(name)
        else:
            shown.append((name, value))
    shown.sort(key=lambda row: (-row[1], row[0]))
    rows = [(name, str(value)) for name, value in shown]
    rows += [(name, f"<{threshold}") for name in sorted(suppressed)]
    said = f"counts below {threshold} are shown as <{threshold} ({len(suppressed)} here)"
    if profile.round_to is not None:
        said += f", the others rounded to the nearest {profile.round_to}"
    controls = (
        f"distinct patients per diagnosis; {said}; no zeros and no totals "
        f"(disclosure profile '{profile.id}')"
    )
    return DiagnosisTable(rows=tuple(rows), suppressed=tuple(sorted(suppressed)), controls=controls)


def bar_chart(table: DiagnosisTable) -> bytes | None:
    """The shown counts as a PNG bar chart; None without matplotlib (a dev/bench extra)."""
    try:
        from matplotlib.figure import Figure  # noqa: PLC0415
    except ImportError:
        return None
    bars = [(name, int(value)) for name, value in table.rows if value.isdigit()]
    figure = Figure(figsize=(7, 0.4 * len(bars) + 1.2), layout="constrained")
    axes = figure.add_subplot()
    axes.barh([name for name, _ in reversed(bars)], [n for _, n in reversed(bars)])
    label = "patients"
    if table.suppressed:
        label += f"\nnot shown, too few patients: {', '.join(table.suppressed)}"
    axes.set_xlabel(label)
    axes.set_title("Patients by diagnosis (gbm-linkage)")
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=100)
    return out.getvalue()


def _preflight(
    service: ReviewService, profile: DisclosureProfile, outputs: Mapping[str, bytes]
) -> None:
    """The service's own checks on each output before any request exists: the table must
    pass, the figure may need a person (review) but nothing more."""
    earlier = [r.file.stored_path for r in service.released_files(PROJECT)]
    with tempfile.TemporaryDirectory(prefix="tre-demo-release-") as tmp:
        for name, data in outputs.items():
            path = Path(tmp) / name
            path.write_bytes(data)
            kind = service.checker.kind_of(name)
            result = service.checker.check(
                path, kind=kind, profile=profile, project=PROJECT, earlier=earlier
            )
            allowed = (Verdict.passed,) if name == TABLE_NAME else (Verdict.passed, Verdict.review)
            if result.verdict in allowed:
                continue
            findings = [
                f"{item.get('check')} ({item.get('verdict')}): {item.get('message')}"
                for item in result.detail.get("findings", [])
                if isinstance(item, dict) and item.get("verdict") not in allowed
            ]
            raise DemoReleaseError(
                f"{name}: the automated checks say {result.verdict}, so the demo does not "
                f"submit it: {'; '.join(findings) or result.detail.get('summary')}"
            )


def write_outputs(settings: Settings, outputs: Mapping[str, bytes]) -> list[str]:
    """Write `outputs` to `FOLDER` in the project's workspace (replacing earlier copies),
    readable and writable by the workspace user; the workspace paths written.

    The workspace is the researchers' to change, so no link in it is followed: the folder
    is opened with O_NOFOLLOW and each file is written to a new name, then renamed."""
    root = settings.workspaces_dir / PROJECT
    as_root = os.geteuid() == 0
    if as_root:
        try:
            prepare_workspace(settings, PROJECT)
        except QuotaError as exc:
            raise DemoReleaseError(f"project '{PROJECT}': {exc}") from exc
    else:
        root.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        root_fd = os.open(root, _DIR_FLAGS)
        try:
            with contextlib.suppress(FileExistsError):
                os.mkdir(FOLDER, 0o2770, dir_fd=root_fd)
            folder_fd = os.open(FOLDER, _DIR_FLAGS, dir_fd=root_fd)
        finally:
            os.close(root_fd)
        try:
            if as_root:
                os.fchown(folder_fd, WORKSPACE_UID, WORKSPACE_GID)
                os.fchmod(folder_fd, 0o2770)
            for name, data in outputs.items():
                _replace(folder_fd, name, data, as_root=as_root)
                written.append(f"{FOLDER}/{name}")
        finally:
            os.close(folder_fd)
    except OSError as exc:
        raise DemoReleaseError(
            f"cannot write the demo outputs to {root / FOLDER}: {exc.strerror or exc} (links in a "
            "workspace are never followed; remove or rename what is there)"
        ) from exc
    return written


def _replace(folder_fd: int, name: str, data: bytes, *, as_root: bool) -> None:
    partial = f".{name}.{secrets.token_hex(4)}.partial"
    fd = os.open(partial, _NEW_FILE_FLAGS, 0o660, dir_fd=folder_fd)
    try:
        with os.fdopen(fd, "wb", closefd=False) as out:
            out.write(data)
        if as_root:
            os.fchown(fd, WORKSPACE_UID, WORKSPACE_GID)
        os.fchmod(fd, 0o660)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(partial, dir_fd=folder_fd)
        raise
    os.close(fd)
    os.replace(partial, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)


def _through_the_airlock(
    service: ReviewService,
    *,
    policy: Policy,
    existing: ReleaseRequest | None,
    outputs: Mapping[str, bytes],
    table: DiagnosisTable,
    done: list[str],
) -> ReleaseRequest:
    """alice asks, the project's checkers approve in turn until enough have, alice releases;
    a request a previous run left under way is taken up where it stopped."""
    if existing is None:
        request = service.create_request(AUTHOR, PROJECT, TITLE, DESCRIPTION)
        done.append(f"{AUTHOR} created request {request.id}")
    else:
        request = existing
        done.append(f"taking up request {request.id} ({request.state})")
    if request.state in (RequestState.draft, RequestState.returned):
        controls = Controls(
            population=(
                f"every patient in {PROJECT}'s pseudonymised clinical records (dataset "
                f"{DATASET}), one count per diagnosis"
            ),
            suppression=table.controls,
        )
        for name in outputs:
            what = "table" if name == TABLE_NAME else "bar chart of the table's shown counts"
            request = service.add_file(
                request.id,
                AUTHOR,
                f"{FOLDER}/{name}",
                description=f"Patients by diagnosis ({what})",
                context=(
                    "The demo site's example result, to show patients' representatives a "
                    "release made through the airlock"
                ),
                controls=controls,
            )
        _check_stored(service, request, outputs)
        request = service.submit(request.id, AUTHOR)
        done.append(f"{AUTHOR} added {', '.join(outputs)} and submitted")
    checkers = _checkers(policy)
    if request.state is RequestState.submitted:
        request = service.start_review(request.id, checkers[0])
        done.append(f"{checkers[0]} started the review")
    for checker in checkers:
        if request.state is not RequestState.under_review:
            break
        if all(checker in request.approvers(f.name) for f in request.files):
            continue
        request = service.approve(request.id, checker)
        done.append(f"{checker} approved")
    if request.state is RequestState.approved:
        request = service.release(request.id, AUTHOR)
        done.append(f"{AUTHOR} released request {request.id}")
    if request.state is not RequestState.released:
        raise DemoReleaseError(
            f"request {request.id} is {request.state}, not released (missing approvals: "
            f"{request.missing_approvals() or 'none'}; eligible checkers: {', '.join(checkers)})"
        )
    return request


def _checkers(policy: Policy) -> tuple[str, ...]:
    project = policy.project(PROJECT)
    checkers = policy.eligible_checkers(project) if project is not None else ()
    if not checkers:
        raise DemoReleaseError(f"project '{PROJECT}' has no eligible output checker")
    return checkers


def _check_stored(
    service: ReviewService, request: ReleaseRequest, outputs: Mapping[str, bytes]
) -> None:
    """The airlock holds exactly the bytes computed here; otherwise withdraw (the workspace
    copy was changed between writing and copying) rather than release something else."""
    for name, data in outputs.items():
        stored = request.file(name)
        if stored is None or stored.sha256 != hashlib.sha256(data).hexdigest():
            service.withdraw(
                request.id, AUTHOR, reason=f"{FOLDER}/{name} changed before it was copied"
            )
            raise DemoReleaseError(
                f"{FOLDER}/{name} in the {PROJECT} workspace changed before the airlock copied "
                f"it; request {request.id} is withdrawn: run `tre demo release` again"
            )
