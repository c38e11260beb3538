"""Integration tests of `write_demo_silos`: real files, read back with the real readers."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import shutil
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tre.demo import sources
from tre.demo.manifest import MANIFEST_FILE, MODALITIES, PLANTED_FILE, SilosManifest
from tre.demo.silos import DEFAULT_SEED, STEPS, DemoDataError, write_demo_silos

PATIENTS = 30
"""Six glioblastoma patients: three core ones in every modality and three others."""

GLIOBLASTOMA = "393563007"


def _hashes(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _manifest(root: Path) -> SilosManifest:
    return SilosManifest.model_validate_json((root / MANIFEST_FILE).read_bytes())


def _planted(root: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((root / PLANTED_FILE).read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def silos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory.mktemp("a") / "silos", DEFAULT_SEED)


@pytest.fixture(scope="module")
def same_seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory.mktemp("b") / "silos", DEFAULT_SEED)


@pytest.fixture(scope="module")
def other_seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory.mktemp("c") / "silos", DEFAULT_SEED + 1)


def _write(out: Path, seed: int) -> Path:
    write_demo_silos(out, seed=seed, patients=PATIENTS)
    return out


# --- (a) (b) determinism ------------------------------------------------------------


def test_same_seed_writes_identical_bytes(silos: Path, same_seed: Path) -> None:
    first, second = _hashes(silos), _hashes(same_seed)
    assert list(first) == list(second)
    assert first == second
    suffixes = {Path(name).name.split(".", 1)[-1] for name in first}
    # Every binary container is covered: gzip, BGZF, indexes, TIFF, HDF5.
    assert {"nii.gz", "vcf.gz", "vcf.gz.tbi", "bam", "bam.bai", "tif", "h5ad", "dcm"} <= suffixes


def test_other_seed_writes_other_patients(silos: Path, other_seed: Path) -> None:
    ours = _csv(silos / "emr/patients.csv")
    theirs = _csv(other_seed / "emr/patients.csv")
    assert len(ours) == len(theirs) == PATIENTS
    assert {r["patient_id"] for r in ours}.isdisjoint({r["patient_id"] for r in theirs})
    assert {r["national_number"] for r in ours}.isdisjoint({r["national_number"] for r in theirs})
    ours_hashes, their_hashes = _hashes(silos), _hashes(other_seed)
    same = {n for n in set(ours_hashes) & set(their_hashes) if ours_hashes[n] == their_hashes[n]}
    assert same == set(), same


def test_copies_never_share_dicom_uids(silos: Path, other_seed: Path) -> None:
    import pydicom

    seen: dict[str, str] = {}
    for root in (silos, other_seed):
        for path in sorted(root.glob("dicom/**/*.dcm")):
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
            sop = str(ds.SOPInstanceUID)
            assert sop not in seen, (path, seen.get(sop))
            seen[sop] = str(path)
    studies: dict[str, set[str]] = defaultdict(set)
    for path in silos.glob("dicom/**/*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        studies[str(ds.StudyInstanceUID)].add(str(ds.PatientID))
    assert all(len(patients) == 1 for patients in studies.values())


# --- (c) manifest --------------------------------------------------------------------


def test_manifest_checksums_match_the_files(silos: Path) -> None:
    manifest = _manifest(silos)
    on_disk = _hashes(silos)
    listed = {entry.path: entry for entry in manifest.files}
    assert set(listed) == set(on_disk) - {MANIFEST_FILE, PLANTED_FILE}
    for path, entry in listed.items():
        assert entry.sha256 == on_disk[path], path
        assert entry.size == (silos / path).stat().st_size
    assert manifest.planted.sha256 == on_disk[PLANTED_FILE]
    assert manifest.seed == DEFAULT_SEED
    assert manifest.patients == PATIENTS
    assert {e.modality for e in manifest.files} == set(MODALITIES)


def test_manifest_is_canonical_and_placeless(silos: Path) -> None:
    raw = (silos / MANIFEST_FILE).read_text(encoding="utf-8")
    data = json.loads(raw)
    assert raw == json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    paths = [entry["path"] for entry in data["files"]]
    assert paths == sorted(paths)
    assert str(silos) not in raw and str(silos.parent) not in raw
    assert all(not p.startswith("/") for p in paths)
    assert "/usr/share" not in raw and "site-packages" not in raw
    sources_seen = {entry["source"] for entry in data["files"]}
    assert "pydicom 3.0.2: CT_small.dcm" in sources_seen
    assert "synthetic" in sources_seen
    assert any(s.startswith("Debian python-pysam-tests: ") for s in sources_seen)
    assert any(s.startswith("Debian samtools-test: ") for s in sources_seen)
    for entry in data["files"]:
        assert entry["patient_ids"] == sorted(entry["patient_ids"]), entry["path"]
        assert entry["patient_ids"], entry["path"]
    assert "time" not in raw.lower()


def test_csv_files_are_utf8_with_lf(silos: Path) -> None:
    for path in silos.rglob("*.csv"):
        data = path.read_bytes()
        data.decode("utf-8")
        assert b"\r" not in data, path
        assert data.endswith(b"\n")


def test_gzip_members_have_no_time_or_name(silos: Path) -> None:
    for path in silos.glob("nifti/*.nii.gz"):
        header = path.read_bytes()[:10]
        assert header[:2] == b"\x1f\x8b"
        assert header[3] & 0x08 == 0, path  # FNAME
        assert header[4:8] == b"\0\0\0\0", path  # MTIME


# --- (d) linkage, read from the files themselves ------------------------------------------


def _read_h5ad(path: Path) -> Any:
    import anndata

    return anndata.read_h5ad(path)


def _found_in_files(root: Path) -> dict[str, set[str]]:
    """patient id -> modalities, each found with that modality's own reader."""
    import nibabel
    import pydicom
    import pysam
    import tifffile

    found: dict[str, set[str]] = defaultdict(set)
    for row in _csv(root / "emr/patients.csv"):
        found[row["patient_id"]].add("emr")
    for path in root.glob("dicom/**/*.dcm"):
        found[str(pydicom.dcmread(path, stop_before_pixels=True).PatientID)].add("dicom")
    for path in root.glob("nifti/*.nii*"):
        header = nibabel.load(path).header
        pid = header["aux_file"].item().decode()
        assert path.name.startswith(pid)
        assert pid in header["descrip"].item().decode()
        found[pid].add("nifti")
    lab = {r["lab_sample_id"]: r["patient_id"] for r in _csv(root / "genomics/samples.csv")}
    with pysam.VariantFile(str(root / "genomics/glioblastoma_cohort.vcf.gz")) as vcf:
        samples = list(vcf.header.samples)
    assert samples and all(s in lab for s in samples)
    for sample in samples:
        found[lab[sample]].add("vcf")
    for path in root.glob("genomics/*.bam"):
        with pysam.AlignmentFile(str(path), "rb") as bam:
            groups = bam.header.to_dict()["RG"]
        for group in groups:
            found[lab[group["SM"]]].add("bam")
    slides = {r["file"]: r["patient_id"] for r in _csv(root / "pathology/slides.csv")}
    for path in root.glob("pathology/*.tif"):
        with tifffile.TiffFile(path) as tiff:
            description = tiff.pages[0].tags["ImageDescription"].value
            assert len(tiff.pages) == 2  # the slide and its label
        fields = dict(part.split(" = ", 1) for part in description.split("|")[1:])
        pid = fields["MRN"]
        assert pid in path.name
        assert slides[path.relative_to(root).as_posix()] == pid
        found[pid].add("tissue")
    donors = {r["sample_id"]: r["patient_id"] for r in _csv(root / "single-cell/samples.csv")}
    adata = _read_h5ad(root / "single-cell/glioblastoma_pbmc.h5ad")
    for sample in adata.obs["sample_id"].unique():
        found[donors[str(sample)]].add("single-cell")
    return found


def test_every_glioblastoma_patient_is_linked_across_modalities(silos: Path) -> None:
    found = _found_in_files(silos)
    diagnoses = _csv(silos / "emr/diagnoses.csv")
    cohort = {d["patient_id"] for d in diagnoses if d["snomed_code"] == GLIOBLASTOMA}
    assert len(cohort) == round(PATIENTS * 0.2)
    for pid in cohort:
        assert "emr" in found[pid]
        assert len(found[pid] - {"emr"}) >= 2, (pid, found[pid])
    everywhere = [pid for pid, modalities in found.items() if modalities == set(MODALITIES)]
    assert len(everywhere) >= 3
    outside_cohort = {pid for pid, mods in found.items() if mods != {"emr"}} - cohort
    assert outside_cohort == set()


def test_manifest_patients_agree_with_the_files(silos: Path) -> None:
    found = _found_in_files(silos)
    by_modality: dict[str, set[str]] = defaultdict(set)
    for entry in _manifest(silos).files:
        by_modality[entry.modality].update(entry.patient_ids)
    for modality in MODALITIES:
        in_files = {pid for pid, mods in found.items() if modality in mods}
        assert by_modality[modality] == in_files, modality


# --- PLANTED.json: every listed identifier is really where it says ------------------------


class _Texts:
    """The text at planted locations, each file parsed once with its own reader."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.parsed: dict[str, Any] = {}

    def _load(self, file: str, reader: Callable[[Path], Any]) -> Any:
        if file not in self.parsed:
            self.parsed[file] = reader(self.root / file)
        return self.parsed[file]

    def at(self, file: str, location: str) -> str | None:
        """The text at `location`, or None where only pixels hold it."""
        if location == "path":
            return file
        kind, _, where = location.partition(":")
        return getattr(self, f"_{kind}")(file, where)

    def _csv(self, file: str, where: str) -> str:
        key, column = where.split("/")
        key_column, key_value = key.split("=")
        rows = [r for r in self._load(file, _csv) if r[key_column] == key_value]
        assert len(rows) == 1
        return str(rows[0][column])

    def _dicom(self, file: str, where: str) -> str:
        import pydicom

        ds = self._load(file, lambda p: pydicom.dcmread(p, stop_before_pixels=True))
        if where.startswith("(DA/DT"):
            return " ".join(str(e.value) for e in ds.iterall() if e.VR in ("DA", "DT"))
        group, element = where[1:10].split(",")
        return str(ds[int(group, 16), int(element, 16)].value)

    def _nifti(self, file: str, where: str) -> str:
        import nibabel

        header = self._load(file, lambda p: nibabel.load(p).header)
        return str(header[where].item().decode())

    def _vcf(self, file: str, where: str) -> str:
        import pysam

        def read(path: Path) -> str:
            with pysam.VariantFile(str(path)) as vcf:
                return str(vcf.header)

        return str(self._load(file, read))

    def _bam(self, file: str, where: str) -> str:
        import pysam

        def read(path: Path) -> str:
            with pysam.AlignmentFile(str(path), "rb") as bam:
                return str(bam.header)

        return str(self._load(file, read))

    def _tiff(self, file: str, where: str) -> str | None:
        import tifffile

        def read(path: Path) -> list[dict[str, str]]:
            with tifffile.TiffFile(path) as tiff:
                return [{t.name: str(t.value) for t in page.tags.values()} for page in tiff.pages]

        page, _, tag = where.partition(".")
        if tag == "pixels":
            return None
        return str(self._load(file, read)[int(page.removeprefix("page"))][tag])

    def _h5ad(self, file: str, where: str) -> str:
        adata = self._load(file, _read_h5ad)
        if where == "obs_names":
            return " ".join(adata.obs_names)
        parts = where.split("/")
        if parts[0] == "obs":
            return " ".join(map(str, adata.obs[parts[1]].unique()))
        value: Any = adata.uns
        for part in parts[1:]:
            value = value[part]
        return " ".join(map(str, value))


def test_planted_identifiers_are_where_planted_says(silos: Path) -> None:
    planted = _planted(silos)
    assert planted["seed"] == DEFAULT_SEED
    entries = planted["identifiers"]
    keys = [(e["file"], e["location"], e["kind"], e["value"], e["patient_id"]) for e in entries]
    assert keys == sorted(keys)
    by_place: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    for entry in entries:
        by_place[entry["file"], entry["location"]].append(entry)
    texts = _Texts(silos)
    checked_formats = set()
    for (file, location), group in by_place.items():
        text = texts.at(file, location)
        if text is None:
            continue
        checked_formats.add(location.split(":")[0])
        for entry in group:
            assert entry["value"] in text, (file, location, entry["value"])
    assert checked_formats >= {"path", "csv", "dicom", "nifti", "vcf", "bam", "tiff", "h5ad"}


def test_planted_covers_every_kind_and_modality(silos: Path) -> None:
    planted = _planted(silos)
    kinds = {e["kind"] for e in planted["identifiers"]}
    assert kinds >= {
        "patient_id", "name", "birth_date", "national_number", "address", "phone", "email",
        "clinician_name", "visit_date", "accession_number", "lab_sample_id", "slide_id",
        "file_path",
    }  # fmt: skip
    manifest = {e.path: e.modality for e in _manifest(silos).files}
    assert {manifest[e["file"]] for e in planted["identifiers"]} == set(MODALITIES)
    columns = {(c["file"], c["column"]) for c in planted["columns"]}
    assert ("emr/patients.csv", "national_number") in columns
    assert ("genomics/samples.csv", "patient_id") in columns
    for file, column in columns:
        assert column in _csv(silos / file)[0], (file, column)
    notes = [e for e in planted["identifiers"] if e["file"] == "emr/notes.csv"]
    assert {e["kind"] for e in notes} >= {
        "name", "national_number", "patient_id", "birth_date", "visit_date", "clinician_name",
        "phone",
    }  # fmt: skip


def test_dicom_carries_the_national_number_in_our_private_block(silos: Path) -> None:
    import pydicom

    patients = {r["patient_id"]: r for r in _csv(silos / "emr/patients.csv")}
    paths = sorted(silos.glob("dicom/**/*.dcm"))
    assert paths
    for path in paths:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        patient = patients[str(ds.PatientID)]
        block = ds.private_block(0x0033, "JUPYTER-TRE DEMO")
        assert block[0x01].value == patient["national_number"]
        assert str(ds.PatientName) == f"{patient['last_name']}^{patient['first_name']}"
        assert ds.PatientBirthDate == patient["birth_date"].replace("-", "")
        assert "PatientIdentityRemoved" not in ds


def test_dicom_pixel_data_are_kept(silos: Path) -> None:
    import pydicom

    source = pydicom.dcmread(sources.pydicom_file("CT_small.dcm").path)
    copies = [
        p for p in silos.glob("dicom/**/*.dcm")
        if pydicom.dcmread(p).SOPClassUID == source.SOPClassUID
    ]  # fmt: skip
    assert copies
    for path in copies:
        assert pydicom.dcmread(path).PixelData == source.PixelData


# --- progress -------------------------------------------------------------------------------


def test_progress_reports_every_step(tmp_path: Path) -> None:
    calls: list[tuple[str, int, int]] = []
    write_demo_silos(tmp_path / "silos", patients=5, progress=lambda *call: calls.append(call))
    assert calls == [(label, i, len(STEPS)) for i, label in enumerate(STEPS, start=1)]


# --- (e) atomicity ------------------------------------------------------------------------


class _StopError(Exception):
    pass


def _fail_at(step: str) -> Callable[[str, int, int], None]:
    def progress(label: str, done: int, total: int) -> None:
        if label == step:
            raise _StopError(label)

    return progress


@pytest.mark.parametrize("step", ["emr", "vcf", "manifest"])
def test_failure_leaves_no_output_folder(tmp_path: Path, step: str) -> None:
    out = tmp_path / "silos"
    with pytest.raises(_StopError):
        write_demo_silos(out, patients=5, progress=_fail_at(step))
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no half-built sibling either


def test_failure_leaves_earlier_silos_unchanged(silos: Path, tmp_path: Path) -> None:
    out = tmp_path / "silos"
    shutil.copytree(silos, out)
    before = _hashes(out)
    with pytest.raises(_StopError):
        write_demo_silos(out, seed=DEFAULT_SEED + 7, patients=5, progress=_fail_at("tissue"))
    assert _hashes(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["silos"]


def test_rerun_replaces_earlier_silos_cleanly(silos: Path, tmp_path: Path) -> None:
    out = tmp_path / "silos"
    shutil.copytree(silos, out)
    manifest = write_demo_silos(out, seed=DEFAULT_SEED + 1, patients=5)
    on_disk = _hashes(out)
    assert on_disk.keys() - {MANIFEST_FILE, PLANTED_FILE} == {e.path for e in manifest.files}
    assert all(on_disk[e.path] == e.sha256 for e in manifest.files)
    assert _manifest(out) == manifest
    assert len(_csv(out / "emr/patients.csv")) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["silos"]


def test_refuses_to_replace_silos_holding_files_of_someone_else(
    silos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "silos"
    shutil.copytree(silos, out)
    (out / "emr" / "my_analysis.csv").write_text("keep me\n")
    before = _hashes(out)
    with pytest.raises(DemoDataError, match=r"emr/my_analysis\.csv"):
        write_demo_silos(out, patients=5)
    assert _hashes(out) == before


def test_refuses_to_replace_a_folder_that_is_not_demo_silos(tmp_path: Path) -> None:
    out = tmp_path / "important"
    out.mkdir()
    (out / "thesis.tex").write_text("do not delete")
    with pytest.raises(DemoDataError, match="refusing to replace"):
        write_demo_silos(out, patients=5)
    assert (out / "thesis.tex").read_text() == "do not delete"


# --- (f) missing Debian test files -----------------------------------------------------------


def test_missing_debian_vcf_names_file_and_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nowhere" / "22.vcf.gz"
    monkeypatch.setattr(sources, "VCF_SOURCE", missing)
    out = tmp_path / "silos"
    with pytest.raises(DemoDataError) as raised:
        write_demo_silos(out, patients=5)
    message = str(raised.value)
    assert str(missing) in message
    assert "apt-get install python-pysam-tests samtools-test" in message
    assert not out.exists()


def test_missing_debian_bam_names_file_and_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "mpileup.1.bam"
    monkeypatch.setattr(sources, "BAM_SOURCES", (missing, *sources.BAM_SOURCES[1:]))
    with pytest.raises(DemoDataError, match="samtools-test") as raised:
        write_demo_silos(tmp_path / "silos", patients=5)
    assert str(missing) in str(raised.value)


def test_bad_patient_count_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DemoDataError, match="patients"):
        write_demo_silos(tmp_path / "silos", patients=0)
    assert list(tmp_path.iterdir()) == []


def test_vcf_source_is_a_gzip_of_real_samples() -> None:
    with gzip.open(sources.VCF_SOURCE, "rt") as handle:
        header = next(line for line in handle if line.startswith("#CHROM"))
    assert len(header.split("\t")) - 9 == 158
