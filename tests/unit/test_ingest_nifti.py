"""NIfTI ingest on real volumes (nibabel's samples, pydeface's head template) and broken files."""

from __future__ import annotations

import csv
import gzip
import io
import json
from datetime import date
from importlib.resources import files
from pathlib import Path
from typing import Any

import nibabel
import numpy as np
import pytest

from tests.support import gbm_version_dir, hospital_ids, ingest_for_gbm
from tre.ingest import IngestResult, InputRejected, UnknownPatient
from tre.policy import Policy
from tre.pseudonym import OptOutRegister, default_register_path
from tre.settings import Settings

DATASET = "gbm-mri-nifti"
nib: Any = nibabel
SAMPLES = Path(nibabel.__file__).parent / "tests" / "data"
"""nibabel's own test volumes, shipped in its wheel."""


def run(
    settings: Settings, policy: Policy, source: Path, *, continue_on_error: bool = False
) -> IngestResult:
    return ingest_for_gbm(settings, policy, DATASET, source, continue_on_error=continue_on_error)


def version_dir(settings: Settings) -> Path:
    return gbm_version_dir(settings, DATASET)


def patients(silos: Path) -> list[str]:
    return hospital_ids(silos)


def sample(name: str) -> Any:
    return nib.load(SAMPLES / name)


def identifying_image(mrn: str, *, nifti2: bool = False) -> Any:
    """nibabel's anatomical sample with an id in every text field and in three extensions."""
    source = sample("anatomical.nii")
    klass = nib.Nifti2Image if nifti2 else nib.Nifti1Image
    image = klass(np.asarray(source.dataobj), source.affine)
    header = image.header
    header["descrip"] = f"Doe^Jane {mrn}".encode()
    header["aux_file"] = mrn.encode()
    header["intent_name"] = mrn[:16].encode()
    if not nifti2:
        header["db_name"] = mrn.encode()
        header["data_type"] = mrn[:10].encode()
        header["session_error"] = 4242
    afni = f'<AFNI_attributes><ni_group patient="{mrn}"/></AFNI_attributes>'.encode()
    for code, content in ((4, afni), (6, f"converted for {mrn}".encode()), (14, mrn.encode())):
        header.extensions.append(nib.nifti1.Nifti1Extension(code, content))
    return image


def with_deface(policy: Policy) -> Policy:
    datasets = tuple(
        d.model_copy(
            update={"deidentification": d.deidentification.model_copy(update={"deface": True})}
        )
        if d.id == DATASET
        else d
        for d in policy.datasets
    )
    return policy.model_copy(update={"datasets": datasets})


# -- what is kept and what is removed --------------------------------------------------------


@pytest.mark.parametrize("nifti2", [False, True], ids=["nifti1", "nifti2"])
def test_header_text_and_extensions_go_voxels_and_affine_stay(
    tre_site: Settings, demo_policy: Policy, demo_silos: Path, tmp_path: Path, nifti2: bool
) -> None:
    mrn = patients(demo_silos)[0]
    source = tmp_path / "src"
    source.mkdir()
    image = identifying_image(mrn, nifti2=nifti2)
    path = source / f"{mrn}_20230102_T1w.nii.gz"
    nib.save(image, path)
    assert mrn.encode() in gzip.decompress(path.read_bytes())

    result = run(tre_site, demo_policy, source)

    (out,) = [f for f in result.manifest.files if f.path.endswith(".nii.gz")]
    assert mrn not in out.path and "20230102" not in out.path
    assert out.path.endswith("_1_T1w.nii.gz")
    data = (result.version_dir / out.path).read_bytes()
    assert data[3] == 0, "no file name in the gzip header"
    assert data[4:8] == b"\0\0\0\0", "gzip mtime is 0"
    raw = gzip.decompress(data)
    assert mrn.encode() not in raw and b"Doe" not in raw
    cleaned = nib.load(result.version_dir / out.path)
    for field in ("descrip", "aux_file", "intent_name"):
        assert bytes(cleaned.header[field]).strip(b"\0") == b""
    assert len(cleaned.header.extensions) == 0
    assert type(cleaned) is type(image)
    assert cleaned.get_data_dtype() == image.get_data_dtype()
    assert np.array_equal(np.asarray(cleaned.dataobj), np.asarray(image.dataobj))
    assert np.array_equal(cleaned.affine, image.affine)
    removed = result.manifest.removed
    assert removed["nifti: header extensions"] == 3
    assert removed["nifti: header text fields"] == (3 if nifti2 else 5)
    assert mrn not in result.manifest.model_dump_json()


def test_big_endian_scaled_volume_keeps_its_exact_bytes(
    tre_site: Settings, demo_policy: Policy, demo_silos: Path, tmp_path: Path
) -> None:
    """The demo's T1w sample is big-endian: the voxel bytes are copied, never re-encoded."""
    mrn = patients(demo_silos)[1]
    source = tmp_path / "src"
    source.mkdir()
    original = (SAMPLES / "anatomical.nii").read_bytes()
    header = nib.Nifti1Header.from_fileobj(io.BytesIO(original))
    assert header.endianness == ">"
    (source / f"{mrn}_20230102_T1w.nii").write_bytes(original)

    result = run(tre_site, demo_policy, source)

    (out,) = [f for f in result.manifest.files if f.path.endswith(".nii.gz")]
    written = gzip.decompress((result.version_dir / out.path).read_bytes())
    offset = int(header["vox_offset"])
    assert written[352:] == original[offset:]


def test_sessions_are_numbered_by_date_and_dates_shifted(
    tre_site: Settings, demo_policy: Policy, demo_silos: Path, tmp_path: Path
) -> None:
    mrn = patients(demo_silos)[2]
    source = tmp_path / "src"
    source.mkdir()
    image = sample("anatomical.nii")
    for day in ("20230515", "20220110"):
        nib.save(image, source / f"{mrn}_{day}_T1w.nii")
    nib.save(sample("example4d.nii.gz"), source / f"{mrn}_20220110_bold.nii.gz")

    result = run(tre_site, demo_policy, source)

    names = sorted(Path(f.path).name for f in result.manifest.files)
    pseudonym = names[0].split("_")[0]
    assert names == [
        f"{pseudonym}_1_T1w.nii.gz",
        f"{pseudonym}_1_bold.nii.gz",
        f"{pseudonym}_2_T1w.nii.gz",
        "sessions.csv",
    ]
    rows = list(csv.DictReader(io.StringIO((result.version_dir / "sessions.csv").read_text())))
    assert [(r["patient"], r["session"]) for r in rows] == [(pseudonym, "1"), (pseudonym, "2")]
    first, second = (date.fromisoformat(r["acquired_on"]) for r in rows)
    assert (second - first) == date(2023, 5, 15) - date(2022, 1, 10)
    assert first != date(2022, 1, 10)


def test_an_opted_out_patient_leaves_no_output(
    tre_site: Settings, demo_policy: Policy, demo_silos: Path, tmp_path: Path
) -> None:
    kept, opted = patients(demo_silos)[3:5]
    OptOutRegister(default_register_path(tre_site.keys_dir)).record_opt_out(
        opted, recorded_by="test", effective=date(2026, 1, 1)
    )
    source = tmp_path / "src"
    source.mkdir()
    for mrn in (kept, opted):
        nib.save(sample("anatomical.nii"), source / f"{mrn}_20230102_T1w.nii")

    result = run(tre_site, demo_policy, source)

    assert result.manifest.counts.excluded_opt_out == 1
    assert result.manifest.counts.patients == 1
    assert len([f for f in result.manifest.files if f.path.endswith(".nii.gz")]) == 1


# -- bad input --------------------------------------------------------------------------------


def _truncated_nii(mrn: str) -> tuple[str, bytes]:
    data = (SAMPLES / "anatomical.nii").read_bytes()
    return f"{mrn}_20230102_T1w.nii", data[: len(data) // 2]


def _truncated_gz(mrn: str) -> tuple[str, bytes]:
    data = (SAMPLES / "example4d.nii.gz").read_bytes()
    return f"{mrn}_20230102_bold.nii.gz", data[: len(data) // 2]


def _header_only(mrn: str) -> tuple[str, bytes]:
    data = (SAMPLES / "anatomical.nii").read_bytes()
    return f"{mrn}_20230102_T1w.nii", data[:300]


BAD = {
    "truncated voxels": (_truncated_nii, "truncated"),
    "truncated gzip": (_truncated_gz, "gzip"),
    "cut inside the header": (_header_only, "too short"),
    "not nifti": (lambda m: (f"{m}_20230102_T1w.nii", b"%PDF-1.4\n" * 60), "not a NIfTI"),
    "no id in name": (lambda m: ("brain_T1w.nii", b""), "patient cannot be recognised"),
    "free-text suffix": (lambda m: (f"{m}_20230102_JaneDoe.nii", b""), "BIDS suffix"),
    "impossible date": (lambda m: (f"{m}_20231345_T1w.nii", b""), "not a valid date"),
    "sidecar file": (lambda m: (f"{m}_20230102_T1w.json", b"{}"), "file name"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_rejected_and_nothing_written(
    tre_site: Settings, demo_policy: Policy, demo_silos: Path, tmp_path: Path, case: str
) -> None:
    mrn = patients(demo_silos)[5]
    make, problem = BAD[case]
    name, data = make(mrn)
    source = tmp_path / "src"
    source.mkdir()
    (source / name).write_bytes(data)

    with pytest.raises(InputRejected) as caught:
        run(tre_site, demo_policy, source)

    assert caught.value.path == source / name
    assert problem in caught.value.problem
    assert mrn not in caught.value.problem
    assert not version_dir(tre_site).exists()


def test_unknown_patient_is_rejected(
    tre_site: Settings, demo_policy: Policy, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    nib.save(sample("anatomical.nii"), source / "MRN0000000_20230102_T1w.nii")
    with pytest.raises(UnknownPatient):
        run(tre_site, demo_policy, source)
    assert not version_dir(tre_site).exists()


def test_continue_on_error_ingests_the_good_and_lists_the_bad(
    tre_site: Settings, demo_policy: Policy, demo_silos: Path, tmp_path: Path
) -> None:
    good, bad = patients(demo_silos)[6:8]
    source = tmp_path / "src"
    source.mkdir()
    nib.save(sample("anatomical.nii"), source / f"{good}_20230102_T1w.nii")
    name, data = _truncated_nii(bad)
    (source / name).write_bytes(data)
    (source / "MRN0000000_20230102_T1w.nii").write_bytes(b"")

    result = run(tre_site, demo_policy, source, continue_on_error=True)

    assert result.manifest.counts.rejected == 2
    assert result.manifest.counts.patients == 1
    assert [f.path.endswith("_1_T1w.nii.gz") for f in result.manifest.files].count(True) == 1
    manifest = (result.version_dir / "MANIFEST.json").read_text()
    assert bad not in manifest and good not in manifest
    record = json.loads(result.record_path.read_text())
    assert {r["source"] for r in record["rejected"]} == {name, "MRN0000000_20230102_T1w.nii"}


# -- defacing ---------------------------------------------------------------------------------


def test_defacing_refuses_a_volume_that_holds_no_whole_head(
    tre_site: Settings, demo_policy: Policy, demo_silos: Path, tmp_path: Path
) -> None:
    """nibabel's samples are a cropped brain and a partial EPI: no face to find, so refused."""
    mrn = patients(demo_silos)[8]
    source = tmp_path / "src"
    source.mkdir()
    nib.save(sample("anatomical.nii"), source / f"{mrn}_20230102_T1w.nii")
    with pytest.raises(InputRejected, match="whole head"):
        run(tre_site, with_deface(demo_policy), source)


def _rotation(degrees: float, shift: tuple[float, float, float]) -> np.ndarray:
    angle = np.deg2rad(degrees)
    c, s = np.cos(angle), np.sin(angle)
    move = np.eye(4)
    move[:3, :3] = [[1, 0, 0], [0, c, -s], [0, s, c]]  # nodding, about the left-right axis
    move[:3, 3] = shift
    return move


@pytest.mark.slow
def test_defacing_zeroes_the_face_of_a_real_head_and_keeps_the_brain(
    tre_site: Settings, demo_policy: Policy, demo_silos: Path, tmp_path: Path
) -> None:
    """pydeface's whole-head template, moved to an unknown pose: its face must go, all else stay."""
    data = files("pydeface") / "data"
    template = nib.load(str(data / "mean_reg2mean.nii.gz"))
    facemask = nib.load(str(data / "facemask.nii.gz"))
    head = np.asarray(template.dataobj)[:, ::2, ::2]  # 1 x 2 x 2 mm, to keep the test short
    face = np.asarray(facemask.dataobj)[:, ::2, ::2] < 0.5
    affine = template.affine @ np.diag([1.0, 2.0, 2.0, 1.0])
    moved = _rotation(12.0, (6.0, -9.0, 5.0)) @ affine  # same voxels, another place in space
    mrn = patients(demo_silos)[9]
    source = tmp_path / "src"
    source.mkdir()
    nib.save(nib.Nifti1Image(head, moved), source / f"{mrn}_20230102_T1w.nii.gz")

    result = run(tre_site, with_deface(demo_policy), source)

    (out,) = [f for f in result.manifest.files if f.path.endswith(".nii.gz")]
    defaced = np.asarray(nib.load(result.version_dir / out.path).dataobj)
    zeroed = (defaced == 0) & (head != 0)
    assert 2 * (zeroed & face).sum() / (zeroed.sum() + (face & (head != 0)).sum()) > 0.95
    brain = ~face
    assert np.mean(defaced[brain] == head[brain]) > 0.995
    assert result.manifest.changed["nifti: volumes defaced"] == 1
    assert "SimpleITK" in result.manifest.tools
