"""The research-imaging silo: nibabel's sample NIfTI files as converted scans of patients.

File names embed the hospital id and scan date, and the header's `descrip` and
`aux_file` carry the patient's name and id, as scanner converters often leave them;
the image data stay as shipped, and `.nii.gz` is gzipped with mtime 0 and no name.
"""

from __future__ import annotations

from typing import Any

import nibabel

from . import sources
from .build import SiloBuild
from .cohort import ModalityPlan
from .emr import ClinicalHistory
from .files import gzip_bytes
from .people import People, ascii_fold

_nib: Any = nibabel  # nibabel's partial annotations do not cover the NIfTI-1 API used here

_SCANS = (
    ("tests/data/anatomical.nii", "T1w", ".nii"),
    ("tests/data/example4d.nii.gz", "bold", ".nii.gz"),
)


def write_nifti(
    build: SiloBuild, people: People, history: ClinicalHistory, plan: ModalityPlan
) -> None:
    for pid in plan.nifti:
        patient = people.patient(pid)
        day = f"{history.tumour[pid].mri_on:%Y%m%d}"
        name = ascii_fold(patient.dicom_name)
        for relative, suffix, extension in _SCANS:
            sample = sources.nibabel_file(relative)
            image = _nib.load(sample.path)
            header = image.header.copy()
            descrip = f"{name} {pid} {day}"[:80]
            header["descrip"] = descrip.encode("ascii")
            header["aux_file"] = pid.encode("ascii")
            copy = _nib.Nifti1Image(image.dataobj, image.affine, header)
            data = copy.to_bytes()
            if extension == ".nii.gz":
                data = gzip_bytes(data)
            path = f"nifti/{pid}_{day}_{suffix}{extension}"
            build.path(path).write_bytes(data)
            build.record(path, "nifti", sample.label, [pid])
            build.plant_path(path, "patient_id", pid, pid)
            build.plant_path(path, "visit_date", day, pid)
            build.plant(path, "nifti:descrip", "name", name, pid)
            build.plant(path, "nifti:descrip", "patient_id", pid, pid)
            build.plant(path, "nifti:descrip", "visit_date", day, pid)
            build.plant(path, "nifti:aux_file", "patient_id", pid, pid)
