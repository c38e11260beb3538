"""A silo folder under construction and the register of what went into it.

Every file written into the silos is recorded once, with modality, source and the
patients it concerns, so the manifest lists exactly the files on disk.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import DemoDataError
from .files import sha256_file
from .manifest import (
    GENERATOR_NAME,
    GENERATOR_VERSION,
    MANIFEST_FILE,
    PLANTED_FILE,
    Generator,
    Modality,
    PlantedChecksum,
    SiloFile,
    SilosManifest,
)
from .planted import IdentifierKind, PlantedColumn, PlantedIdentifier, PlantedRegister


@dataclass(frozen=True)
class FileRecord:
    path: str
    modality: Modality
    source: str
    patient_ids: tuple[str, ...]


class SiloBuild:
    """The folder being filled, the files recorded so far and the identifiers planted."""

    def __init__(self, root: Path, seed: int) -> None:
        self.root = root
        self.seed = seed
        self._records: dict[str, FileRecord] = {}
        self._planted: list[PlantedIdentifier] = []
        self._columns: list[PlantedColumn] = []

    def path(self, relative: str) -> Path:
        """The absolute path for `relative`, with its folder created."""
        pure = PurePosixPath(relative)
        if pure.is_absolute() or ".." in pure.parts:
            raise ValueError(f"not a relative path inside the silos: {relative}")
        target = self.root.joinpath(*pure.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def record(
        self, relative: str, modality: Modality, source: str, patient_ids: Iterable[str]
    ) -> None:
        """Register a file already written at `relative`."""
        if relative in self._records:
            raise ValueError(f"file recorded twice: {relative}")
        self._records[relative] = FileRecord(
            relative, modality, source, tuple(sorted(set(patient_ids)))
        )

    def plant(
        self, relative: str, location: str, kind: IdentifierKind, value: str, patient_id: str
    ) -> None:
        """Register a direct identifier written into `relative` at `location`."""
        self._planted.append(
            PlantedIdentifier(
                file=relative, location=location, kind=kind, value=value, patient_id=patient_id
            )
        )

    def plant_column(self, relative: str, column: str, kind: IdentifierKind) -> None:
        """Declare that every value of a CSV column is a direct identifier."""
        self._columns.append(PlantedColumn(file=relative, column=column, kind=kind))

    def plant_path(self, relative: str, kind: IdentifierKind, value: str, patient_id: str) -> None:
        """Register an identifier that the file's own path embeds."""
        if value not in relative:
            raise ValueError(f"{value!r} does not occur in the path {relative}")
        self.plant(relative, "path", kind, value, patient_id)

    def planted_register(self) -> PlantedRegister:
        unique = {entry.sort_key(): entry for entry in self._planted}
        columns = {entry.sort_key(): entry for entry in self._columns}
        return PlantedRegister(
            seed=self.seed,
            columns=tuple(columns[key] for key in sorted(columns)),
            identifiers=tuple(unique[key] for key in sorted(unique)),
        )

    def manifest(self, patients: int, planted: PlantedChecksum) -> SilosManifest:
        """Checksum every recorded file; fail if the folder and the records disagree."""
        on_disk = {
            path.relative_to(self.root).as_posix()
            for path in self.root.rglob("*")
            if path.is_file()
        } - {MANIFEST_FILE, PLANTED_FILE}
        recorded = set(self._records)
        if on_disk != recorded:
            raise DemoDataError(
                "silo files and records disagree: "
                f"unrecorded {sorted(on_disk - recorded)}, missing {sorted(recorded - on_disk)}"
            )
        unknown = {entry.file for entry in self._planted} | {c.file for c in self._columns}
        unknown -= recorded
        if unknown:
            raise DemoDataError(f"identifiers planted in unrecorded files: {sorted(unknown)}")
        files = []
        for relative in sorted(recorded):
            record = self._records[relative]
            path = self.root / relative
            files.append(
                SiloFile(
                    path=relative,
                    sha256=sha256_file(path),
                    size=path.stat().st_size,
                    modality=record.modality,
                    source=record.source,
                    patient_ids=record.patient_ids,
                )
            )
        return SilosManifest(
            generator=Generator(name=GENERATOR_NAME, version=GENERATOR_VERSION),
            seed=self.seed,
            patients=patients,
            files=tuple(files),
            planted=planted,
        )
