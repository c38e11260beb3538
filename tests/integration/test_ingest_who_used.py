"""The key holder's lookup ("who used my data?") on really ingested versions: it names the
right projects, permits, periods and datasets, says when nobody did, knows about opt-outs,
never shows a pseudonym or the key, and refuses to answer when it cannot be sure."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from tests.support import DEMO_TODAY
from tre.ingest import ingest_version, project_keys
from tre.ingest.who_used import (
    EMR_PSEUDONYM_COLUMN,
    SINGLE_CELL_PATIENT_COLUMN,
    LookupNotAllowed,
    MalformedHospitalId,
    UsageReport,
    WhoUsedError,
    can_lookup,
    check_lookup_allowed,
    render_text,
    who_used,
)
from tre.policy import Permit, PermitStatus, Policy, Purpose
from tre.pseudonym import (
    OptOutRegister,
    PatientIdError,
    create_master_key,
    default_master_key_path,
)
from tre.settings import Settings

PROJECTS = ("gbm-linkage", "hf-outcomes")
EMR = ("clinical-records", "1")
SUBSET = 12
UNKNOWN = "MRN9999999"


@dataclass(frozen=True)
class Site:
    settings: Settings
    policy: Policy
    both: str
    """In both projects' EMR versions."""
    only_gbm: str
    """Left out of hf-outcomes' source: in gbm-linkage only."""
    opted_out: str
    """Opted out on DEMO_TODAY, after gbm-linkage and before hf-outcomes was ingested."""
    patients: tuple[str, ...]

    def pseudonyms(self) -> set[str]:
        """Every pseudonym any of the site's patients has in any project."""
        return {
            project_keys(self.settings, project).pseudonymiser.pseudonym(patient)
            for project in PROJECTS
            for patient in (*self.patients, UNKNOWN)
        }

    def version_dir(self, project: str) -> Path:
        return self.settings.datasets_dir / project / "clinical-records" / "1"


def write_emr_subset(silos: Path, target: Path, keep: Iterable[str]) -> None:
    """The demo EMR export, with only the rows of the `keep` patients (fast to ingest)."""
    wanted = set(keep)
    target.mkdir(parents=True)
    for table in sorted((silos / "emr").glob("*.csv")):
        with table.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            fields = list(reader.fieldnames or [])
            rows = [row for row in reader if row["patient_id"] in wanted]
        with (target / table.name).open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, demo_silos: Path, demo_policy: Policy) -> Site:
    root = tmp_path_factory.mktemp("lookup")
    var = root / "var"
    var.mkdir()
    (var / "silos").symlink_to(demo_silos, target_is_directory=True)
    settings = Settings(policy_dir=Path("policies/demo"), var_dir=var)
    create_master_key(default_master_key_path(settings.keys_dir))
    with (demo_silos / "emr" / "patients.csv").open(encoding="utf-8") as handle:
        patients = tuple(row["patient_id"] for row in csv.DictReader(handle))[:SUBSET]
    both, only_gbm, opted_out = patients[0], patients[1], patients[2]
    write_emr_subset(demo_silos, root / "emr-gbm", patients)
    write_emr_subset(demo_silos, root / "emr-hf", [p for p in patients if p != only_gbm])
    ingest_version(
        settings, demo_policy, "gbm-linkage", *EMR, source=root / "emr-gbm", today=DEMO_TODAY
    )
    OptOutRegister.in_keys_dir(settings.keys_dir).record_opt_out(
        opted_out, recorded_by="test", effective=DEMO_TODAY
    )
    ingest_version(
        settings, demo_policy, "hf-outcomes", *EMR, source=root / "emr-hf", today=DEMO_TODAY
    )
    return Site(settings, demo_policy, both, only_gbm, opted_out, patients)


@pytest.fixture
def own_site(site: Site, tmp_path: Path) -> Site:
    """A private copy of the module's site, for tests that break it."""
    var = tmp_path / "var"
    shutil.copytree(site.settings.var_dir, var, symlinks=True)
    settings = Settings(policy_dir=site.settings.policy_dir, var_dir=var)
    return Site(settings, site.policy, site.both, site.only_gbm, site.opted_out, site.patients)


def lookup(site: Site, hospital_id: str, today: date = DEMO_TODAY) -> UsageReport:
    return who_used(site.settings, site.policy, hospital_id, today=today)


def used_in(report: UsageReport) -> dict[str, list[tuple[str, list[tuple[str, str]]]]]:
    """project -> [(permit, [(dataset, version), ...]), ...]"""
    return {
        project.project: [
            (permit.permit, [(d.dataset, d.version) for d in permit.datasets])
            for permit in project.permits
        ]
        for project in report.projects
    }


def writable(path: Path) -> None:
    """Undo the seal of a copied version folder, so that a test can tamper with it."""
    for p in [path, *path.rglob("*")]:
        p.chmod(0o700 if p.is_dir() else 0o600)


# -- the answer ----------------------------------------------------------------------------


def test_a_patient_in_both_projects_is_reported_for_both(site: Site) -> None:
    report = lookup(site, site.both)
    assert used_in(report) == {
        "gbm-linkage": [("gbm-linkage-2026", [EMR])],
        "hf-outcomes": [("hf-outcomes-2026", [EMR])],
    }
    gbm, hf = report.projects
    assert (gbm.title, gbm.purpose, gbm.purpose_article) == (
        site.policy.project("gbm-linkage").title,  # type: ignore[union-attr]
        Purpose.scientific_research,
        "Art. 53(1)(e)",
    )
    assert hf.purpose_label == "Public interest in public and occupational health"
    assert hf.lay_summary.startswith("Researchers use hospital records")
    (permit,) = hf.permits
    assert (permit.start, permit.expiry, permit.revoked_from) == (
        date(2026, 3, 1),
        date(2027, 4, 30),
        None,
    )
    assert (permit.status, permit.active) == (PermitStatus.active, True)
    assert permit.access_body_reference == "HDAB-DEMO-2026-0057"
    assert gbm.permits[0].start == date(2026, 1, 15)
    assert gbm.permits[0].expiry == date(2028, 1, 14)
    assert (report.opt_out.opted_out, report.opt_out.since) == (False, None)
    # Both EMR versions were read; gbm-linkage's six other datasets were never ingested.
    assert report.versions_checked == 2
    assert {(r.project, r.dataset) for r in report.not_ingested} == {
        ("gbm-linkage", d)
        for d in (
            "gbm-mri",
            "gbm-mri-nifti",
            "gbm-variants",
            "gbm-alignments",
            "gbm-pathology",
            "gbm-single-cell",
        )
    }
    text = render_text(report)
    assert "included in the data given to 2 research projects" in text
    assert "Readmission and mortality after admission for heart failure" in text
    assert "from 1 March 2026 to 30 April 2027; the project may still use your data" in text
    assert "Public interest in public and occupational health (EHDS Art. 53(1)(a))" in text
    assert "You have not opted out" in text
    assert "6 granted but not prepared yet" in text


def test_a_patient_in_one_project_is_reported_for_that_one_only(site: Site) -> None:
    report = lookup(site, site.only_gbm)
    assert used_in(report) == {"gbm-linkage": [("gbm-linkage-2026", [EMR])]}
    assert "included in the data given to 1 research project." in render_text(report)


def test_surrounding_white_space_is_the_same_patient(site: Site) -> None:
    assert lookup(site, f"  {site.only_gbm}\t") == lookup(site, site.only_gbm)


def test_an_unknown_id_gives_an_empty_answer_that_says_so(site: Site) -> None:
    report = lookup(site, UNKNOWN)
    assert report.projects == ()
    assert not report.used
    assert report.versions_checked == 2
    assert any("None of the datasets" in note for note in report.notes)
    text = render_text(report)
    assert "None of the datasets prepared for research projects so far includes your data." in text
    assert "Checked: 2 dataset version(s)" in text


def test_an_opted_out_patient_is_reported_as_opted_out(site: Site) -> None:
    report = lookup(site, site.opted_out)
    assert (report.opt_out.opted_out, report.opt_out.since) == (True, DEMO_TODAY)
    # gbm-linkage's version was sealed before the opt-out, hf-outcomes' after it.
    assert used_in(report) == {"gbm-linkage": [("gbm-linkage-2026", [EMR])]}
    assert report.warnings == ()  # the permit was issued long before the opt-out
    text = render_text(report)
    assert "You opted out of the use of your data for research from 23 November 2026" in text
    assert "Every dataset prepared since that day leaves your data out" in text
    # The day before it took effect, the same patient was not opted out.
    earlier = lookup(site, site.opted_out, today=date(2026, 11, 22))
    assert not earlier.opt_out.opted_out
    assert any("takes effect on 23 November 2026" in note for note in earlier.notes)


def test_a_permit_issued_after_the_opt_out_is_flagged_for_the_data_manager(site: Site) -> None:
    first = site.policy.permit("gbm-linkage-2026")
    assert first is not None
    renewal = Permit.model_validate(
        first.model_dump()
        | {
            "id": "gbm-linkage-2027",
            "issued": date(2026, 12, 1),
            "start": date(2026, 12, 1),
            "expiry": date(2027, 12, 1),
            "datasets": [{"dataset": "clinical-records", "version": "1"}],
        }
    )
    policy = site.policy.model_copy(update={"permits": (*site.policy.permits, renewal)})
    report = who_used(site.settings, policy, site.opted_out, today=date(2026, 12, 2))
    assert used_in(report) == {
        "gbm-linkage": [("gbm-linkage-2026", [EMR]), ("gbm-linkage-2027", [EMR])]
    }
    (warning,) = report.warnings
    assert "permit 'gbm-linkage-2027' was issued on 2026-12-01" in warning
    assert "EHDS Art. 71" in warning
    text = render_text(report)
    assert text.index("For the data manager") > text.index("This answer says")


def test_an_ended_permit_is_reported_as_ended(site: Site) -> None:
    report = lookup(site, site.both, today=date(2027, 5, 1))
    permit = report.projects[1].permits[0]
    assert (permit.permit, permit.status, permit.active) == (
        "hf-outcomes-2026",
        PermitStatus.expired,
        False,
    )
    assert "it has ended, so the project may no longer use your data" in render_text(report)


def test_the_answer_never_holds_a_pseudonym_the_key_or_the_hospital_id(site: Site) -> None:
    pseudonyms = site.pseudonyms()
    assert len(pseudonyms) == 2 * (SUBSET + 1)
    # They are really there to be found: the versions' tables hold them.
    table = (site.version_dir("gbm-linkage") / "patients.parquet").read_bytes()
    assert any(p.encode() in table for p in pseudonyms)
    key_hex = default_master_key_path(site.settings.keys_dir).read_text().strip()
    for patient in (site.both, site.only_gbm, site.opted_out, UNKNOWN):
        report = lookup(site, patient)
        outputs = (report.model_dump_json(), repr(report), render_text(report))
        for out in outputs:
            assert not any(p in out for p in pseudonyms), patient
            assert key_hex not in out
            assert key_hex.upper() not in out
            assert patient not in out


def test_the_reader_agrees_with_ingest_on_names() -> None:
    from tre.ingest import emr, single_cell

    assert EMR_PSEUDONYM_COLUMN == emr.PSEUDONYM_COLUMN
    assert SINGLE_CELL_PATIENT_COLUMN == single_cell.PATIENT


# -- bad input and broken custody fail closed ------------------------------------------------


@pytest.mark.parametrize("bad", ["", "   ", "\t\n", "MRN\ud800"])
def test_a_malformed_hospital_id_is_refused(site: Site, bad: str) -> None:
    with pytest.raises(MalformedHospitalId, match=r"^hospital id: ") as raised:
        lookup(site, bad)
    assert isinstance(raised.value, PatientIdError)
    assert isinstance(raised.value, WhoUsedError)


def test_a_missing_or_exposed_key_is_refused(own_site: Site) -> None:
    key = default_master_key_path(own_site.settings.keys_dir)
    key.chmod(0o644)
    with pytest.raises(WhoUsedError, match=r"master key file has mode 0644.*0600 is required"):
        lookup(own_site, own_site.both)
    key.unlink()
    with pytest.raises(WhoUsedError, match=re.escape(f"{key}: the master key file does not exist")):
        lookup(own_site, own_site.both)


@pytest.mark.security
def test_another_key_is_refused_rather_than_answering_not_used(own_site: Site) -> None:
    key = default_master_key_path(own_site.settings.keys_dir)
    key.unlink()
    create_master_key(key)  # a new key: its pseudonyms match nobody in the versions
    with pytest.raises(WhoUsedError, match=r"pseudonymised with master key .* but this host's"):
        lookup(own_site, own_site.both)


@pytest.mark.security
def test_a_tampered_manifest_is_refused(own_site: Site) -> None:
    version = own_site.version_dir("hf-outcomes")
    writable(version)
    manifest = version / "MANIFEST.json"
    data = json.loads(manifest.read_text(encoding="utf-8"))
    data["counts"]["patients"] += 1
    manifest.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    with pytest.raises(WhoUsedError) as raised:
        lookup(own_site, own_site.both)
    message = str(raised.value)
    assert message.startswith(f"{manifest}: the manifest of dataset 'clinical-records'")
    assert "of project 'hf-outcomes'" in message
    assert "but its ingest record says" in message
    assert "may have been altered" in message


@pytest.mark.security
def test_a_manifest_that_differs_from_the_policys_pin_is_refused(site: Site) -> None:
    dataset = site.policy.dataset("clinical-records")
    assert dataset is not None
    pinned = dataset.versions[0].model_copy(update={"manifest_sha256": "0" * 64})
    policy = site.policy.model_copy(
        update={
            "datasets": tuple(
                d.model_copy(update={"versions": (pinned,)}) if d.id == dataset.id else d
                for d in site.policy.datasets
            )
        }
    )
    with pytest.raises(WhoUsedError, match="but the policy pins 0000"):
        who_used(site.settings, policy, site.both, today=DEMO_TODAY)


@pytest.mark.security
def test_a_replaced_table_is_refused(own_site: Site) -> None:
    version = own_site.version_dir("gbm-linkage")
    writable(version)
    # Swap the patients table for another of the same size: only the checksum tells.
    patients = version / "patients.parquet"
    data = bytearray(patients.read_bytes())
    data[-100] ^= 1
    patients.write_bytes(bytes(data))
    with pytest.raises(WhoUsedError, match="SHA-256 differs from the manifest"):
        lookup(own_site, own_site.both)


@pytest.mark.security
def test_a_missing_version_folder_or_manifest_is_refused(own_site: Site) -> None:
    version = own_site.version_dir("hf-outcomes")
    writable(version)
    (version / "MANIFEST.json").unlink()
    with pytest.raises(WhoUsedError, match=r"MANIFEST\.json: the manifest of .* is missing"):
        lookup(own_site, own_site.both)
    shutil.rmtree(version)
    with pytest.raises(WhoUsedError, match="is missing, though it was sealed"):
        lookup(own_site, own_site.both)


@pytest.mark.security
def test_an_unverifiable_manifest_is_refused(own_site: Site) -> None:
    record = own_site.settings.var_dir / "ingest" / "hf-outcomes" / "clinical-records" / "1"
    (record / "INGEST-RECORD.json").unlink()
    with pytest.raises(WhoUsedError, match="cannot be verified: the policy pins no"):
        lookup(own_site, own_site.both)


@pytest.mark.security
def test_a_version_that_hides_patients_is_refused(own_site: Site) -> None:
    """A manifest counting more patients than the files name: the reader cannot be sure."""
    version = own_site.version_dir("hf-outcomes")
    writable(version)
    manifest = version / "MANIFEST.json"
    data = json.loads(manifest.read_text(encoding="utf-8"))
    data["counts"]["patients"] += 1
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    manifest.write_text(text, encoding="utf-8")
    # ... and the record made to agree, as a careful forger would.
    record = own_site.settings.var_dir / "ingest/hf-outcomes/clinical-records/1/INGEST-RECORD.json"
    entry = json.loads(record.read_text(encoding="utf-8"))
    entry["manifest_sha256"] = hashlib.sha256(text.encode()).hexdigest()
    record.write_text(json.dumps(entry), encoding="utf-8")
    with pytest.raises(WhoUsedError, match=r"only \d+ of the \d+ patients the manifest"):
        lookup(own_site, own_site.both)


# -- only where the keys are -------------------------------------------------------------------


def test_the_lookup_runs_only_where_the_keys_are_kept(own_site: Site, tmp_path: Path) -> None:
    settings = own_site.settings
    assert can_lookup(settings)
    check_lookup_allowed(settings)
    settings.keys_dir.chmod(0o750)
    assert not can_lookup(settings)
    with pytest.raises(LookupNotAllowed, match=r"mode 0750.*key custody requires mode 0700"):
        lookup(own_site, own_site.both)
    hub_side = Settings(policy_dir=settings.policy_dir, var_dir=tmp_path / "hub-var")
    assert not can_lookup(hub_side)
    with pytest.raises(LookupNotAllowed, match="there is no keys folder on this host"):
        who_used(hub_side, own_site.policy, own_site.both, today=DEMO_TODAY)
    assert not (tmp_path / "hub-var").exists()  # nothing was created


def test_a_linked_keys_folder_is_refused(own_site: Site, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere"
    own_site.settings.keys_dir.rename(moved)
    own_site.settings.keys_dir.symlink_to(moved, target_is_directory=True)
    with pytest.raises(LookupNotAllowed, match="symbolic link"):
        check_lookup_allowed(own_site.settings)


# -- every modality --------------------------------------------------------------------------


@pytest.mark.slow
def test_every_modality_of_a_project_is_read(tre_site: Settings, demo_policy: Policy) -> None:
    """Imaging and genomics versions name patients in file paths, cohort VCFs in their
    header, single-cell files in a cell annotation: each reader must account for every
    patient its manifest counts, or the lookup refuses."""
    permit = demo_policy.permit("gbm-linkage-2026")
    assert permit is not None
    for grant in permit.datasets:
        ingest_version(
            tre_site, demo_policy, "gbm-linkage", grant.dataset, grant.version, today=DEMO_TODAY
        )
    # The single-cell patients of the demo have data in every modality but few in some.
    with (tre_site.silos_dir / "single-cell" / "samples.csv").open(encoding="utf-8") as handle:
        patients = [row["patient_id"] for row in csv.DictReader(handle)]
    reports = [who_used(tre_site, demo_policy, p, today=DEMO_TODAY) for p in patients]
    everything = {g.dataset for g in permit.datasets}
    for report in reports:
        assert report.versions_checked == len(everything)
        assert {(r.project, r.dataset) for r in report.not_ingested} == {("hf-outcomes", EMR[0])}
        (project,) = report.projects
        (use,) = project.permits
        assert {"clinical-records", "gbm-single-cell"} <= {d.dataset for d in use.datasets}
    widest = max(len(r.projects[0].permits[0].datasets) for r in reports)
    assert widest == len(everything)
    # A file named by a pseudonym goes missing: the error names it, the pseudonym masked.
    mri = tre_site.datasets_dir / "gbm-linkage" / "gbm-mri" / "1"
    writable(mri)
    victim = next(mri.rglob("*.dcm"))
    victim.unlink()
    with pytest.raises(WhoUsedError, match="a file the manifest of dataset 'gbm-mri'") as raised:
        who_used(tre_site, demo_policy, patients[0], today=DEMO_TODAY)
    assert "<pseudonym>" in str(raised.value)
    assert victim.relative_to(mri).parts[0] not in str(raised.value)
