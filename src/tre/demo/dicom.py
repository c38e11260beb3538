"""The PACS silo: real DICOM sample files re-labelled as each glioblastoma patient's studies.

Each copy carries the patient's identity (PatientID = hospital id, name, birth date,
national number in our own private block) and fresh UIDs derived from the seed, the
patient and the original UID, so copies never share UIDs; pixel data stay as shipped.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from random import Random

import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import generate_uid

from . import seeds, sources
from .build import SiloBuild
from .cohort import ModalityPlan
from .emr import ClinicalHistory
from .people import Patient, People
from .planted import IdentifierKind
from .timeline import HOSPITAL, age_on

PRIVATE_GROUP = 0x0033
PRIVATE_CREATOR = "JUPYTER-TRE DEMO"
"""Our private block: (0033,xx01) national number, (0033,xx02) RIS patient label."""

_STANDARD_UID_ROOT = "1.2.840.10008."
_KEEP_UIDS = {"InstanceCreatorUID", "CreatorVersionUID", "ImplementationClassUID"}
_DEIDENTIFICATION_TAGS = (0x00120062, 0x00120063, 0x00120064)
_TOP_LEVEL_DATES = (
    "StudyDate",
    "SeriesDate",
    "AcquisitionDate",
    "ContentDate",
    "InstanceCreationDate",
)


@dataclass(frozen=True)
class _Series:
    number: int
    description: str
    files: tuple[sources.SampleFile, ...]
    load: Callable[[sources.SampleFile], Dataset]


@dataclass(frozen=True)
class _Study:
    key: str
    day: date
    description: str
    accession: str
    series: tuple[_Series, ...]


def _read(sample: sources.SampleFile) -> Dataset:
    return pydicom.dcmread(sample.path)


def _read_gzipped(sample: sources.SampleFile) -> Dataset:
    with gzip.open(sample.path, "rb") as handle:
        return pydicom.dcmread(io.BytesIO(handle.read()))


def _rewrite(ds: Dataset, new_uid: Callable[[str], str], day: str, *, nested: bool) -> bool:
    """In one pass: replace every instance UID (standard and vendor-root UIDs stay), and
    put every date inside sequences on the study day. True if a nested date changed."""
    changed = False
    for element in ds:
        if element.VR == "SQ":
            for item in element.value:
                changed |= _rewrite(item, new_uid, day, nested=True)
        elif element.VR == "UI":
            if element.keyword in _KEEP_UIDS or not element.value:
                continue
            if isinstance(element.value, MultiValue):
                element.value = [_new_uid(str(v), new_uid) for v in element.value]
            else:
                element.value = _new_uid(str(element.value), new_uid)
        elif nested and element.VR == "DA" and element.value:
            element.value = day
            changed = True
        elif nested and element.VR == "DT" and len(str(element.value or "")) >= 8:
            element.value = day + str(element.value)[8:]
            changed = True
    return changed


def _new_uid(old: str, new_uid: Callable[[str], str]) -> str:
    return old if old.startswith(_STANDARD_UID_ROOT) else new_uid(old)


class _DicomWriter:
    def __init__(self, build: SiloBuild) -> None:
        self.build = build

    def uid(self, *parts: str) -> str:
        return str(generate_uid(entropy_srcs=[str(self.build.seed), *parts]))

    def write(
        self,
        patient: Patient,
        study: _Study,
        series: _Series,
        instance: int,
        sample: sources.SampleFile,
    ) -> None:
        ds = series.load(sample)
        pid = patient.patient_id
        originals = {
            str(ds.StudyInstanceUID): self.uid(pid, study.key, "study"),
            str(ds.SeriesInstanceUID): self.uid(pid, study.key, str(series.number), "series"),
            str(ds.SOPInstanceUID): self.uid(pid, study.key, str(series.number), str(instance)),
        }

        def new_uid(old: str) -> str:
            if old not in originals:
                originals[old] = self.uid(pid, study.key, old)
            return originals[old]

        day = f"{study.day:%Y%m%d}"
        nested_dates = _rewrite(ds, new_uid, day, nested=False)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        for tag in _DEIDENTIFICATION_TAGS:
            if tag in ds:
                del ds[tag]

        ds.PatientName = patient.dicom_name
        ds.PatientID = pid
        ds.PatientBirthDate = f"{patient.birth_date:%Y%m%d}"
        ds.PatientSex = patient.sex
        ds.PatientAge = f"{age_on(patient.birth_date, study.day):03d}Y"
        ds.PatientAddress = patient.address
        ds.PatientTelephoneNumbers = patient.phone
        ds.StudyDate = day
        for keyword in _TOP_LEVEL_DATES[1:]:
            if keyword in ds:
                setattr(ds, keyword, day)
        ds.StudyDescription = study.description
        ds.SeriesDescription = series.description
        ds.SeriesNumber = series.number
        ds.InstanceNumber = instance
        ds.AccessionNumber = study.accession
        ds.StudyID = study.accession[-6:]
        ds.InstitutionName = HOSPITAL
        ds.ReferringPhysicianName = patient.gp.dicom_name
        block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
        block.add_new(0x01, "LO", patient.national_number)
        block.add_new(0x02, "LO", f"{patient.last_name.upper()} {patient.first_name}")

        path = f"dicom/{pid}/{study.accession}/{series.number:03d}/IM{instance:05d}.dcm"
        ds.save_as(self.build.path(path))
        self.build.record(path, "dicom", sample.label, [pid])
        self.build.plant_path(path, "patient_id", pid, pid)
        self.build.plant_path(path, "accession_number", study.accession, pid)
        plants: list[tuple[str, IdentifierKind, str]] = [
            ("(0010,0010)", "name", patient.dicom_name),
            ("(0010,0020)", "patient_id", pid),
            ("(0010,0030)", "birth_date", f"{patient.birth_date:%Y%m%d}"),
            ("(0010,1040)", "address", patient.address),
            ("(0010,2154)", "phone", patient.phone),
            ("(0008,0050)", "accession_number", study.accession),
            ("(0008,0080)", "institution", HOSPITAL),
            ("(0008,0090)", "clinician_name", patient.gp.dicom_name),
            ("(0008,0020)", "visit_date", day),
        ]
        for keyword in _TOP_LEVEL_DATES[1:]:
            if keyword in ds:
                tag = ds[keyword].tag
                plants.append((f"({tag.group:04X},{tag.element:04X})", "visit_date", day))
        private: tuple[tuple[int, IdentifierKind, str], ...] = (
            (0x01, "national_number", patient.national_number),
            (0x02, "name", f"{patient.last_name.upper()} {patient.first_name}"),
        )
        for offset, kind, value in private:
            tag = block.get_tag(offset)
            plants.append((f"({tag.group:04X},{tag.element:04X}) {PRIVATE_CREATOR}", kind, value))
        if nested_dates:
            plants.append(("(DA/DT inside sequences)", "visit_date", day))
        for location, kind, value in plants:
            self.build.plant(path, f"dicom:{location}", kind, value, pid)


def _accession(rng: Random, day: date) -> str:
    return f"AZD{day:%y}{rng.randint(0, 9_999_999):07d}"


def write_dicom(
    build: SiloBuild, people: People, history: ClinicalHistory, plan: ModalityPlan
) -> None:
    """A pre-operative MR study and a post-operative CT study per glioblastoma patient."""
    rng = seeds.rng(build.seed, "dicom")
    writer = _DicomWriter(build)
    ct = tuple(sources.pydicom_file(name) for name in sources.PYDICOM_FILES["ct"])
    mr = tuple(sources.pydicom_file(name) for name in sources.PYDICOM_FILES["mr"])
    mr_series = tuple(sources.pydicom_file(name) for name in sources.PYDICOM_FILES["mr_series"])
    mprage = (sources.nibabel_file(sources.NIBABEL_MPRAGE),)
    for pid in plan.dicom:
        patient = people.patient(pid)
        course = history.tumour[pid]
        mr_study_series = [
            _Series(1, "T2 AX", mr, _read),
            _Series(2, "MRA 3D TOF", mr_series, _read),
        ]
        if pid in plan.mprage:
            mr_study_series.append(_Series(3, "T1 3D MPRAGE", mprage, _read_gzipped))
        studies = (
            _Study(
                "mr-preop", course.mri_on, "MRI brain with contrast",
                _accession(rng, course.mri_on), tuple(mr_study_series),
            ),
            _Study(
                "ct-postop", course.surgery_on, "CT brain post-operative",
                _accession(rng, course.surgery_on), (_Series(1, "AXIAL BRAIN", ct, _read),),
            ),
        )  # fmt: skip
        for study in studies:
            for series in study.series:
                for instance, sample in enumerate(series.files, start=1):
                    writer.write(patient, study, series, instance, sample)
