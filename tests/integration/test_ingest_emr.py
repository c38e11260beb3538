"""EMR ingest on the demo hospital's export: no planted identifier survives, intervals and
joins do, opted-out patients vanish, and bad tables are refused with a clear reason."""

from __future__ import annotations

import csv
import json
import re
import shutil
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.support import DEMO_TODAY
from tre.ingest import IngestContext, InputRejected, UnknownPatient, ingest_version, project_keys
from tre.ingest.emr import admit_column, ingest, ingest_tables
from tre.ingest.emr_schema import DEFAULT_SCHEMA, DEMO_TABLES, build_schema
from tre.ingest.patients import PatientIndex
from tre.policy import Policy
from tre.pseudonym import OptOutRegister, age_at, create_master_key, default_master_key_path
from tre.settings import Settings

EMR = ("clinical-records", "1")
PROJECTS = ("gbm-linkage", "hf-outcomes")
TABLES = ("admissions", "diagnoses", "medications", "notes", "patients")
NAME_KINDS = frozenset({"name", "first_name", "last_name", "clinician_name"})
PREFIX = {"admission": "A", "diagnosis": "D", "administration": "M", "note": "N"}


@dataclass(frozen=True)
class Ingested:
    settings: Settings
    silos: Path
    opted_out: str
    versions: dict[str, Path]

    def table(self, project: str, name: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = pq.read_table(
            self.versions[project] / f"{name}.parquet"
        ).to_pylist()
        return rows


def source(silos: Path, name: str) -> list[dict[str, str]]:
    with (silos / "emr" / f"{name}.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def ingested(
    tmp_path_factory: pytest.TempPathFactory, demo_silos: Path, demo_policy: Policy
) -> Ingested:
    var = tmp_path_factory.mktemp("emr") / "var"
    var.mkdir()
    (var / "silos").symlink_to(demo_silos, target_is_directory=True)
    settings = Settings(policy_dir=Path("policies/demo"), var_dir=var)
    create_master_key(default_master_key_path(settings.keys_dir))
    # Opt out a patient who has notes, admissions, diagnoses and medications.
    with_notes = {n["patient_id"] for n in source(demo_silos, "notes")}
    with_drugs = {m["patient_id"] for m in source(demo_silos, "medications")}
    with_dx = {d["patient_id"] for d in source(demo_silos, "diagnoses")}
    opted_out = sorted(with_notes & with_drugs & with_dx)[3]
    OptOutRegister.in_keys_dir(settings.keys_dir).record_opt_out(
        opted_out, recorded_by="test", effective=DEMO_TODAY
    )
    versions = {
        project: ingest_version(settings, demo_policy, project, *EMR, today=DEMO_TODAY).version_dir
        for project in PROJECTS
    }
    return Ingested(settings, demo_silos, opted_out, versions)


def folded(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def word_runs(cells: str, longest: int = 7) -> set[tuple[str, ...]]:
    """Every run of up to `longest` consecutive words within one cell (one cell a line)."""
    runs: set[tuple[str, ...]] = set()
    for cell in cells.split("\n"):
        tokens = re.findall(r"\w+", cell)
        for n in range(1, longest + 1):
            runs.update(zip(*(tokens[i:] for i in range(n)), strict=False))
    return runs


def every_cell(ingested: Ingested, *, text_only: bool = False) -> str:
    """Every cell of every output table of both projects, folded, one per line.

    `text_only` keeps string columns alone: shifted dates in date columns can equal
    someone's date of birth by chance, which is no leak."""
    cells = []
    for version in ingested.versions.values():
        for path in sorted(version.glob("*.parquet")):
            table = pq.read_table(path)
            for field, column in zip(table.schema, table.columns, strict=True):
                if text_only and not pa.types.is_string(field.type):
                    continue
                cells += [str(v).replace("\n", " ") for v in column.to_pylist() if v is not None]
    return folded("\n".join(cells))


def keyed(settings: Settings, project: str, kind: str, source_id: str) -> str:
    pseudonym = project_keys(settings, project).pseudonymiser.pseudonym(
        f"emr-record/{kind}/{source_id}"
    )
    return PREFIX[kind] + pseudonym[1:]


# -- nothing identifying survives ------------------------------------------------------------


def test_no_planted_identifier_survives_in_any_cell(ingested: Ingested) -> None:
    planted = json.loads((ingested.silos / "PLANTED.json").read_text(encoding="utf-8"))
    needles: dict[str, str] = {}  # value -> kind
    for item in planted["identifiers"]:
        if item["file"].startswith("emr/") and item["kind"] != "visit_date":
            needles[item["value"]] = item["kind"]
    for column in planted["columns"]:
        if column["file"].startswith("emr/") and column["kind"] != "visit_date":
            name = Path(column["file"]).stem
            for row in source(ingested.silos, name):
                if row[column["column"]]:
                    needles[row[column["column"]]] = column["kind"]
    assert len(needles) > 2000
    haystack = every_cell(ingested)
    # Dates of birth are sought in text cells only: a shifted date in a date column can
    # equal someone's date of birth by chance (the key differs every run).
    text = every_cell(ingested, text_only=True)
    # Names count as found when their words appear consecutively in one cell, whatever
    # is between them ("Ali" is no leak in "Alimentary", "Van den Eynde" is in "VAN-DEN eynde").
    phrases, text_phrases = word_runs(haystack), word_runs(text)
    survivors = []
    for value, kind in needles.items():
        needle = folded(value)
        if kind in NAME_KINDS:
            found = tuple(re.findall(r"\w+", needle)) in phrases
        elif kind == "birth_date":
            found = tuple(re.findall(r"\w+", needle)) in text_phrases
        else:
            found = needle in haystack
        if found:
            survivors.append(kind)  # the kind only: the value stays out of test logs
    assert survivors == []


def test_visit_dates_in_notes_are_shifted_with_the_patients_offset(ingested: Ingested) -> None:
    planted = json.loads((ingested.silos / "PLANTED.json").read_text(encoding="utf-8"))
    by_note: dict[str, list[str]] = {}
    owner: dict[str, str] = {}
    for item in planted["identifiers"]:
        if item["file"] == "emr/notes.csv" and item["kind"] == "visit_date":
            note = item["location"].split("=")[1].split("/")[0]
            by_note.setdefault(note, []).append(item["value"])
            owner[note] = item["patient_id"]
    for project in PROJECTS:
        keys = project_keys(ingested.settings, project)
        texts = {r["note_id"]: r["text"] for r in ingested.table(project, "notes")}
        checked = 0
        for note, values in by_note.items():
            if owner[note] == ingested.opted_out:
                assert keyed(ingested.settings, project, "note", note) not in texts
                continue
            text = texts[keyed(ingested.settings, project, "note", note)]
            offset = timedelta(days=keys.dates.offset_days(owner[note]))
            shifted = {shift_written(v, offset) for v in values}
            assert shifted <= {d for d in shifted if d in text}
            # An original date may appear only where it is another date's shifted form.
            assert all(v in shifted for v in values if v in text)
            checked += 1
        assert checked > 700


def shift_written(value: str, offset: timedelta) -> str:
    for spelling in ("%Y-%m-%d", "%d/%m/%Y"):
        try:
            return (datetime.strptime(value, spelling) + offset).strftime(spelling)
        except ValueError:
            continue
    raise AssertionError("visit date in an unexpected spelling")


def test_every_date_of_a_patient_moves_by_the_same_offset(ingested: Ingested) -> None:
    settings = ingested.settings
    for project in PROJECTS:
        dates = project_keys(settings, project).dates
        admissions = {r["admission_id"]: r for r in ingested.table(project, "admissions")}
        checked = 0
        for row in source(ingested.silos, "admissions"):
            out = admissions.get(keyed(settings, project, "admission", row["admission_id"]))
            if row["patient_id"] == ingested.opted_out:
                assert out is None
                continue
            assert out is not None
            offset = timedelta(days=dates.offset_days(row["patient_id"]))
            admitted = datetime.fromisoformat(row["admitted"])
            discharged = datetime.fromisoformat(row["discharged"])
            assert offset != timedelta(0)
            assert out["admitted"] == admitted + offset
            assert out["discharged"] - out["admitted"] == discharged - admitted
            checked += 1
        assert checked > 300
        diagnoses = {r["diagnosis_id"]: r for r in ingested.table(project, "diagnoses")}
        first_admission: dict[str, tuple[date, date]] = {}
        for row in source(ingested.silos, "admissions"):
            key = keyed(settings, project, "admission", row["admission_id"])
            if key in admissions:
                first_admission.setdefault(
                    row["patient_id"],
                    (
                        datetime.fromisoformat(row["admitted"]).date(),
                        admissions[key]["admitted"].date(),
                    ),
                )
        for row in source(ingested.silos, "diagnoses"):
            out = diagnoses.get(keyed(settings, project, "diagnosis", row["diagnosis_id"]))
            if row["patient_id"] in first_admission:
                assert out is not None
                before, after = first_admission[row["patient_id"]]
                gap = date.fromisoformat(row["diagnosed_on"]) - before
                assert out["diagnosed_on"] - after == gap


# -- pseudonyms, keyed ids, codes ----------------------------------------------------------


def test_the_pseudonym_column_is_the_projects_pseudonym_of_each_row(ingested: Ingested) -> None:
    for project in PROJECTS:
        pseudonymiser = project_keys(ingested.settings, project).pseudonymiser
        for name in TABLES:
            expected = Counter(
                pseudonymiser.pseudonym(row["patient_id"])
                for row in source(ingested.silos, name)
                if row["patient_id"] != ingested.opted_out
            )
            assert Counter(r["pseudonym"] for r in ingested.table(project, name)) == expected


def test_keyed_record_ids_keep_joins_and_differ_between_projects(ingested: Ingested) -> None:
    ids: dict[str, set[str]] = {}
    for project in PROJECTS:
        admissions = {
            r["admission_id"]: r["pseudonym"] for r in ingested.table(project, "admissions")
        }
        for name in ("notes", "medications"):
            rows = ingested.table(project, name)
            assert rows
            assert all(admissions[r["admission_id"]] == r["pseudonym"] for r in rows)
        assert all(re.fullmatch(r"A[0-9A-HJKMNP-TV-Z]{20}", a) for a in admissions)
        ids[project] = set(admissions)
    assert ids[PROJECTS[0]].isdisjoint(ids[PROJECTS[1]])
    expected = {
        keyed(ingested.settings, PROJECTS[1], "admission", r["admission_id"])
        for r in source(ingested.silos, "admissions")
        if r["patient_id"] != ingested.opted_out
    }
    assert ids[PROJECTS[1]] == expected


def test_snomed_and_atc_codes_are_kept(ingested: Ingested) -> None:
    for name, column in (
        ("diagnoses", "snomed_code"),
        ("admissions", "reason_snomed_code"),
        ("medications", "atc_code"),
    ):
        expected = Counter(
            r[column] for r in source(ingested.silos, name) if r["patient_id"] != ingested.opted_out
        )
        assert Counter(r[column] for r in ingested.table(PROJECTS[0], name)) == expected


def test_patients_keep_sex_and_a_top_coded_birth_year_only(ingested: Ingested) -> None:
    rows = ingested.table(PROJECTS[0], "patients")
    assert set(rows[0]) == {"pseudonym", "sex", "birth_year"}
    pseudonymiser = project_keys(ingested.settings, PROJECTS[0]).pseudonymiser
    years = {r["pseudonym"]: r["birth_year"] for r in rows}
    created = date(2026, 11, 1)
    for row in source(ingested.silos, "patients"):
        if row["patient_id"] == ingested.opted_out:
            continue
        born = date.fromisoformat(row["birth_date"])
        expected = created.year - 90 if age_at(born, created) >= 90 else born.year
        assert years[pseudonymiser.pseudonym(row["patient_id"])] == expected


def test_the_opted_out_patient_is_in_no_table(ingested: Ingested) -> None:
    haystack = every_cell(ingested)
    for project in PROJECTS:
        pseudonym = project_keys(ingested.settings, project).pseudonymiser.pseudonym(
            ingested.opted_out
        )
        assert folded(pseudonym) not in haystack
        manifest = json.loads((ingested.versions[project] / "MANIFEST.json").read_text())
        assert manifest["counts"]["excluded_opt_out"] == 1
        assert manifest["counts"]["patients"] == 199
    assert folded(ingested.opted_out) not in haystack


def test_the_manifest_counts_redactions_by_kind_only(ingested: Ingested) -> None:
    manifest = json.loads((ingested.versions[PROJECTS[0]] / "MANIFEST.json").read_text())
    changed = manifest["changed"]
    for kind in ("NAME", "ID", "PHONE", "EMAIL", "ADDRESS"):
        assert changed[f"notes: {kind} redacted"] > 100
    assert changed["notes: DATE shifted"] > 1000
    assert manifest["removed"]["emr patients: national_number dropped"] == 199
    assert set(manifest["tools"]) >= {"presidio-analyzer", "pyarrow", "pandas"}
    assert "MRN" not in json.dumps(manifest)


def test_same_inputs_and_key_give_identical_versions(
    ingested: Ingested, demo_policy: Policy, tmp_path: Path
) -> None:
    other = Settings(policy_dir=ingested.settings.policy_dir, var_dir=tmp_path / "var")
    other.var_dir.mkdir()
    (other.var_dir / "silos").symlink_to(ingested.silos, target_is_directory=True)
    other.keys_dir.mkdir(mode=0o700)
    for name in ("master.key", "opt-out.jsonl"):
        shutil.copy2(ingested.settings.keys_dir / name, other.keys_dir / name)
    again = ingest_version(other, demo_policy, PROJECTS[1], *EMR, today=DEMO_TODAY)
    first = ingested.versions[PROJECTS[1]]
    for path in sorted(first.iterdir()):
        assert (again.version_dir / path.name).read_bytes() == path.read_bytes(), path.name


# -- bad tables -------------------------------------------------------------------------------


def context(
    settings: Settings,
    policy: Policy,
    source_dir: Path,
    *,
    project: str = "gbm-linkage",
    opted_out: Iterable[str] = (),
    continue_on_error: bool = False,
) -> IngestContext:
    dataset = policy.dataset("clinical-records")
    assert dataset is not None
    version = dataset.version("1")
    assert version is not None
    index = PatientIndex.load(settings.silos_dir / "emr" / "patients.csv", None, DEMO_TODAY)
    out = source_dir.parent / f"out-{project}"
    out.mkdir(exist_ok=True)
    return IngestContext(
        project=project,
        dataset=dataset,
        version=version,
        source_dir=source_dir,
        out_dir=out,
        quarantine_dir=source_dir.parent / "quarantine",
        keys=project_keys(settings, project),
        patients=PatientIndex(index.known, frozenset(opted_out)),
        continue_on_error=continue_on_error,
    )


def small_source(tmp_path: Path, silos: Path, *tables: str) -> Path:
    """A source folder with copies of some of the demo tables."""
    folder = tmp_path / "emr"
    folder.mkdir(parents=True)
    for name in tables:
        shutil.copy(silos / "emr" / f"{name}.csv", folder / f"{name}.csv")
    return folder


def rewrite(path: Path, change: Any) -> None:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    rows = change(rows)
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)


def test_an_undeclared_column_is_refused_naming_file_and_column(
    tre_site: Settings, demo_policy: Policy, tmp_path: Path, demo_silos: Path
) -> None:
    folder = small_source(tmp_path, demo_silos, "diagnoses")
    rewrite(folder / "diagnoses.csv", lambda rows: [[*r, "remark"] for r in rows])
    with pytest.raises(
        InputRejected,
        match=r"diagnoses\.csv: has column\(s\) 'remark' that the EMR schema does not declare",
    ):
        ingest_version(tre_site, demo_policy, "hf-outcomes", *EMR, source=folder, today=DEMO_TODAY)
    assert not (tre_site.datasets_dir / "hf-outcomes").exists()
    # Configured to drop undeclared columns, the same file ingests without it.
    ctx = context(tre_site, demo_policy, folder)
    ingest_tables(ctx, build_schema(DEMO_TABLES, unknown_columns="drop"))
    assert "remark" not in pq.read_table(ctx.out_dir / "diagnoses.parquet").column_names
    assert ctx.report.removed["emr diagnoses: undeclared columns dropped"] == 1


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            lambda rows: [r[:1] + r[2:] for r in rows],
            r"admissions\.csv: has no 'patient_id' column; table 'admissions' needs it",
        ),
        (
            lambda rows: [rows[0], *[r[:-1] if i == 7 else r for i, r in enumerate(rows[1:])]],
            r"admissions\.csv: has 1 row\(s\) whose number of fields differs from the header's "
            r"7 \(first at line 9\)",
        ),
        (
            lambda rows: [rows[0], [*rows[1][:1], "MRN9999999", *rows[1][2:]], *rows[2:]],
            r"admissions\.csv: column 'patient_id', data row 1, refers to a patient not in the "
            "patient index",
        ),
        (
            lambda rows: [rows[0], [*rows[1][:4], rows[2][1], *rows[1][5:]], *rows[2:]],
            r"admissions\.csv: column 'ward' holds what looks like hospital patient ids "
            r"\(data row 1\)",
        ),
        (
            lambda rows: [rows[0], [*rows[1][:4], "ICU 39.02.09-845.09", *rows[1][5:]], *rows[2:]],
            r"admissions\.csv: column 'ward' holds what looks like national register numbers",
        ),
        (
            lambda rows: [rows[0], [*rows[1][:2], "29/06/2024 07:30", *rows[1][3:]], *rows[2:]],
            r"admissions\.csv: column 'admitted' has a value that is not an ISO 8601 date "
            r"\(data row 1\)",
        ),
        (
            lambda rows: [rows[0], [*rows[1][:1], "  ", *rows[1][2:]], *rows[2:]],
            "data row 1 has no patient id",
        ),
        (lambda rows: [], "is empty: a table needs a header row"),
    ],
)
def test_a_bad_table_is_refused_with_a_reason_that_quotes_no_value(
    tre_site: Settings, demo_policy: Policy, tmp_path: Path, demo_silos: Path,
    change: Any, problem: str,
) -> None:  # fmt: skip
    folder = small_source(tmp_path, demo_silos, "admissions")
    rewrite(folder / "admissions.csv", change)
    with pytest.raises(InputRejected, match=problem) as raised:
        ingest_version(tre_site, demo_policy, "hf-outcomes", *EMR, source=folder, today=DEMO_TODAY)
    assert "MRN" not in raised.value.problem
    assert not (tre_site.datasets_dir / "hf-outcomes").exists()


def test_continue_on_error_keeps_the_good_tables(
    tre_site: Settings, demo_policy: Policy, tmp_path: Path, demo_silos: Path
) -> None:
    folder = small_source(tmp_path, demo_silos, "diagnoses", "admissions", "notes")
    (folder / "admissions.csv").write_bytes(b"\xff\xfe" + (folder / "admissions.csv").read_bytes())
    (folder / "labs.csv").write_text("patient_id,value\n", encoding="utf-8")
    result = ingest_version(
        tre_site, demo_policy, "hf-outcomes", *EMR, source=folder, today=DEMO_TODAY,
        continue_on_error=True,
    )  # fmt: skip
    assert {f.path for f in result.manifest.files} == {"diagnoses.parquet"}
    problems = sorted(r.problem for r in result.manifest.rejected)
    assert problems == [
        "has free text, which needs the deny-lists built from a table of patient "
        "identifiers, and none was ingested",
        "is not UTF-8 text (invalid byte at offset 0)",
        "is not a table of the EMR schema (known: admissions, diagnoses, medications, notes, "
        "patients)",
    ]


def test_a_parquet_table_gives_the_same_output_as_its_csv(
    tre_site: Settings, demo_policy: Policy, tmp_path: Path, demo_silos: Path
) -> None:
    as_csv = small_source(tmp_path / "csv", demo_silos, "admissions", "medications")
    as_parquet = tmp_path / "parquet" / "emr"
    as_parquet.mkdir(parents=True)
    for name in ("admissions", "medications"):
        table = pa.Table.from_pylist(source(demo_silos, name))
        timestamps = {"admitted", "discharged", "administered_at"}
        for i, field in enumerate(table.schema):
            if field.name in timestamps:
                parsed = pa.array(
                    [datetime.fromisoformat(v) for v in table[field.name].to_pylist()]
                )
                table = table.set_column(i, field.name, parsed)
            elif field.name == "dose":
                table = table.set_column(i, "dose", table["dose"].cast(pa.float64()))
        pq.write_table(table, as_parquet / f"{name}.parquet")
    outputs = []
    for folder in (as_csv, as_parquet):
        ctx = context(tre_site, demo_policy, folder)
        ingest(ctx)
        outputs.append({p.name: p.read_bytes() for p in sorted(ctx.out_dir.iterdir())})
    assert outputs[0] == outputs[1]
    assert set(outputs[0]) == {"admissions.parquet", "medications.parquet"}


def test_the_batch_admission_equals_the_contexts_admit_one_by_one(
    tre_site: Settings, demo_policy: Policy, tmp_path: Path, demo_silos: Path
) -> None:
    import pandas as pd

    ids = pd.Series([r["patient_id"] for r in source(demo_silos, "medications")])
    opted = ids.iloc[100]
    folder = tmp_path / "src"
    folder.mkdir()
    batch = context(tre_site, demo_policy, folder, project="other-project", opted_out=[opted])
    single = context(tre_site, demo_policy, folder, project="other-project", opted_out=[opted])
    pseudonyms = admit_column(batch, folder / "medications.csv", "patient_id", ids)
    expected = [single.admit(i, source=folder, where="row") for i in ids]
    assert pseudonyms.to_list() == expected
    assert batch.report.patients == single.report.patients
    assert batch.report.excluded == single.report.excluded == {opted}
    with pytest.raises(UnknownPatient, match="column 'patient_id', data row 3,"):
        admit_column(batch, folder / "x.csv", "patient_id", pd.Series([ids[0], ids[1], "MRN0"]))
    assert DEFAULT_SCHEMA.record_prefix("admission") == "A"


def test_times_with_utc_offsets_are_shifted_on_the_utc_time_line(
    tre_site: Settings, demo_policy: Policy, tmp_path: Path
) -> None:
    folder = tmp_path / "emr"
    folder.mkdir()
    patient = source(tre_site.silos_dir, "patients")[0]["patient_id"]
    header = "admission_id,patient_id,admitted,discharged,ward,reason_snomed_code,discharge_outcome"
    # Across the end of summer time: 25 elapsed hours, though the wall clock says 24.
    row = f"ADM1,{patient},2024-10-26T08:00+02:00,2024-10-27T08:00+01:00,ICU,13645005,home"
    (folder / "admissions.csv").write_text(f"{header}\n{row}\n", encoding="utf-8")
    ctx = context(tre_site, demo_policy, folder)
    ingest(ctx)
    table = pq.read_table(ctx.out_dir / "admissions.parquet")
    assert str(table.schema.field("admitted").type) == "timestamp[us, tz=UTC]"
    out = table.to_pylist()[0]
    assert out["discharged"] - out["admitted"] == timedelta(hours=25)
    offset = timedelta(days=ctx.keys.dates.offset_days(patient))
    assert out["admitted"] == datetime.fromisoformat("2024-10-26T06:00+00:00") + offset

    mixed = f"ADM1,{patient},2024-10-26T08:00+02:00,2024-10-27T08:00,ICU,13645005,home"
    (folder / "admissions.csv").write_text(f"{header}\n{mixed}\n", encoding="utf-8")
    with pytest.raises(InputRejected, match=r"admissions\.csv: mixes times with and without"):
        ingest(context(tre_site, demo_policy, folder))


def test_generalised_dates_reach_tables_and_notes(
    tre_site: Settings, demo_policy: Policy, tmp_path: Path, demo_silos: Path
) -> None:
    from tre.policy.datasets import Deidentification

    folder = small_source(tmp_path, demo_silos, "patients", "admissions", "notes")
    ctx = context(tre_site, demo_policy, folder)
    ctx.dataset = ctx.dataset.model_copy(
        update={"deidentification": Deidentification(dates="month")}
    )
    ingest(ctx)
    admissions = pq.read_table(ctx.out_dir / "admissions.parquet")
    assert str(admissions.schema.field("admitted").type) == "date32[day]"
    assert {d.day for d in admissions["admitted"].to_pylist()} == {1}
    notes = pq.read_table(ctx.out_dir / "notes.parquet")["text"].to_pylist()
    assert not any(re.search(r"\d{1,2}/\d{1,2}/\d{4}|\d{4}-\d{2}-\d{2}", t) for t in notes)
    assert ctx.report.changed["notes: DATE redacted"] > 1000
    assert "notes: DATE shifted" not in ctx.report.changed
    assert ctx.report.changed["emr admissions: admitted generalised to month"] == 361
