"""Everything one modality's ingest needs, and what it reports back.

Modalities never compute pseudonyms, date shifts or UIDs themselves: they ask
the context, which refuses unknown patients and excludes opted-out ones first.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from tre.policy import Dataset, DatasetVersion
from tre.policy.datasets import Deidentification
from tre.pseudonym import DateShifter, Pseudonymiser, UidMapper, normalise_patient_id
from tre.pseudonym import transform_date as _transform_date

from .errors import IngestError, InputRejected, UnknownPatient
from .patients import PatientIndex

ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ProjectKeys:
    """The keyed transforms of one project (from `tre.pseudonym`), and the master key's id."""

    pseudonymiser: Pseudonymiser
    dates: DateShifter
    uids: UidMapper
    key_id: str


@dataclass
class Report:
    """What a modality did, collected while it runs."""

    source_files: list[tuple[str, str]] = field(default_factory=list)
    """(relative source path, sha256) of every source file read."""
    patients: set[str] = field(default_factory=set)
    excluded: set[str] = field(default_factory=set)
    removed: Counter[str] = field(default_factory=Counter)
    changed: Counter[str] = field(default_factory=Counter)
    rejected: list[tuple[str, str | None, str]] = field(default_factory=list)
    """(relative source path, source sha256 or None, problem)."""
    quarantined: list[tuple[str, str]] = field(default_factory=list)
    """(path inside the quarantine folder, reason)."""
    tools: dict[str, str] = field(default_factory=dict)


@dataclass
class IngestContext:
    project: str
    dataset: Dataset
    version: DatasetVersion
    source_dir: Path
    out_dir: Path
    """Where the version's files go (a staging folder, renamed into place at the end)."""
    quarantine_dir: Path
    """Where files held back for review go; never mounted into a workspace."""
    keys: ProjectKeys
    patients: PatientIndex
    continue_on_error: bool = False
    progress: ProgressFn | None = None
    report: Report = field(default_factory=Report)

    @property
    def options(self) -> Deidentification:
        return self.dataset.deidentification

    # -- patients -----------------------------------------------------------------

    def admit(self, patient_id: str, *, source: Path, where: str) -> str | None:
        """The patient's pseudonym, or None if they opted out (then counted, never named).

        Raises `UnknownPatient` for an id the patient index does not know.
        """
        pid = normalise_patient_id(patient_id)
        if not self.patients.is_known(pid):
            raise UnknownPatient(source, where)
        if self.patients.is_opted_out(pid):
            self.report.excluded.add(pid)
            return None
        pseudonym = self.keys.pseudonymiser.pseudonym(pid)
        self.report.patients.add(pseudonym)
        return pseudonym

    def transform_date(self, value: date, patient_id: str) -> date:
        """Shift or generalise a date as the dataset asks; same patient, same offset.

        Shifting keeps the type (a datetime stays a datetime); generalising gives a date.
        """
        return _transform_date(
            value,
            self.options.dates.value,
            patient_id=normalise_patient_id(patient_id),
            shifter=self.keys.dates,
        )

    # -- files ----------------------------------------------------------------------

    def read_source(self, path: Path) -> bytes:
        """Read a source file and remember its checksum for the manifest's source digest."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputRejected(path, f"cannot read file: {exc.strerror}") from exc
        self.note_source(path, hashlib.sha256(data).hexdigest())
        return data

    def note_source(self, path: Path, sha256: str) -> None:
        self.report.source_files.append((self.relative_source(path), sha256))

    def relative_source(self, path: Path) -> str:
        try:
            return path.relative_to(self.source_dir).as_posix()
        except ValueError:
            return path.as_posix()

    def process(self, paths: Iterable[Path], label: str, ingest: Callable[[Path], None]) -> None:
        """Ingest source files one by one, in a stable order, reporting progress.

        A file that raises `InputRejected` is recorded when `continue_on_error` is set;
        otherwise the error ends the run and nothing is written.
        """
        items = sorted(paths)
        for done, path in enumerate(items, start=1):
            # A rejected file must not count its patients: undo what it admitted.
            patients, excluded = set(self.report.patients), set(self.report.excluded)
            try:
                ingest(path)
            except InputRejected as error:
                self.report.patients, self.report.excluded = patients, excluded
                self.reject(error)
            if self.progress is not None:
                self.progress(label, done, len(items))

    def reject(self, error: InputRejected) -> None:
        """Record a rejected file, or re-raise when the run must stop on errors."""
        if not self.continue_on_error:
            raise error
        sha = None
        if error.path.is_file():
            sha = hashlib.sha256(error.path.read_bytes()).hexdigest()
        self.report.rejected.append((self.relative_source(error.path), sha, error.problem))

    def quarantine(self, relative: str, data: bytes, reason: str) -> None:
        """Hold a (pseudonymised) file back for manual review instead of releasing it."""
        target = self.quarantine_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        self.report.quarantined.append((relative, reason))

    def output(self, relative: str) -> Path:
        """The path of an output file inside the version, its folder created."""
        if relative.startswith("/") or ".." in Path(relative).parts:
            raise IngestError(f"output path {relative!r} leaves the version folder")
        target = self.out_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        return target
