"""VCF ingest on the demo silos' cohort VCF (real 1000 Genomes calls, identifiers planted).

Every planted identifier is gone; sample columns are the project's pseudonyms, sorted; an
opted-out patient leaves no column, no header line and no allele; bad files are rejected
by name; the same inputs and key give the same bytes.
"""

from __future__ import annotations

import csv
import gzip
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pysam
import pytest

from tests.support import DEMO_POLICY, DEMO_TODAY
from tre.ingest import IngestContext, IngestError, InputRejected, UnknownPatient, ingest_version
from tre.ingest import vcf as vcf_module
from tre.ingest.patients import PatientIndex
from tre.ingest.runner import project_keys
from tre.policy import Policy
from tre.pseudonym import OptOutRegister, create_master_key, default_master_key_path
from tre.settings import Settings

PROJECT, DATASET = "gbm-linkage", "gbm-variants"
COHORT = "glioblastoma_cohort.vcf.gz"
ALLOWED_KEYS = {"fileformat", "FILTER", "reference", "contig", "FORMAT", "INFO", "SAMPLE"}


def linkage(genomics: Path) -> dict[str, str]:
    with (genomics / "samples.csv").open(newline="", encoding="utf-8") as handle:
        return {row["lab_sample_id"]: row["patient_id"] for row in csv.DictReader(handle)}


def bam_patient(genomics: Path) -> str:
    """A patient with both a VCF column and a BAM file (opted out in the module fixture)."""
    with (genomics / "samples.csv").open(newline="", encoding="utf-8") as handle:
        return next(r["patient_id"] for r in csv.DictReader(handle) if ".bam" in r["files"])


def new_site(root: Path, silos: Path, key_from: Settings | None = None) -> Settings:
    var = root / "var"
    var.mkdir(parents=True)
    (var / "silos").symlink_to(silos, target_is_directory=True)
    settings = Settings(policy_dir=DEMO_POLICY, var_dir=var)
    if key_from is None:
        create_master_key(default_master_key_path(settings.keys_dir))
    else:
        settings.keys_dir.mkdir(mode=0o700)
        shutil.copy2(
            default_master_key_path(key_from.keys_dir), default_master_key_path(settings.keys_dir)
        )
    return settings


def read_vcf(path: Path) -> tuple[list[str], list[str]]:
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    return [ln for ln in lines if ln.startswith("#")], [
        ln for ln in lines if not ln.startswith("#")
    ]


def write_vcf(path: Path, header: list[str], records: list[str]) -> None:
    plain = path.with_suffix(".plain")
    plain.write_text("\n".join([*header, *records]) + "\n", encoding="utf-8")
    pysam.tabix_compress(str(plain), str(path), force=True)
    plain.unlink()


def single_sample(source: Path, sample: str, target: Path) -> None:
    header, records = read_vcf(source)
    columns = header[-1].split("\t")
    at = columns.index(sample)
    write_vcf(
        target,
        [*header[:-1], "\t".join([*columns[:9], sample])],
        ["\t".join([*(f := r.split("\t"))[:9], f[at]]) for r in records],
    )


@dataclass(frozen=True)
class Ingested:
    settings: Settings
    version: Path
    opted_out: str
    manifest: dict[str, object]


@pytest.fixture(scope="module")
def ingested(
    tmp_path_factory: pytest.TempPathFactory, demo_silos: Path, demo_policy: Policy
) -> Ingested:
    settings = new_site(tmp_path_factory.mktemp("vcf"), demo_silos)
    opted_out = bam_patient(demo_silos / "genomics")
    OptOutRegister.in_keys_dir(settings.keys_dir).record_opt_out(
        opted_out, recorded_by="test", effective=DEMO_TODAY
    )
    result = ingest_version(settings, demo_policy, PROJECT, DATASET, "1", today=DEMO_TODAY)
    manifest = json.loads((result.version_dir / "MANIFEST.json").read_text(encoding="utf-8"))
    return Ingested(settings, result.version_dir, opted_out, manifest)


def test_every_planted_identifier_of_the_vcf_is_gone(ingested: Ingested, demo_silos: Path) -> None:
    planted = json.loads((demo_silos / "PLANTED.json").read_text(encoding="utf-8"))
    values = {i["value"] for i in planted["identifiers"] if i["file"] == f"genomics/{COHORT}"}
    assert len(values) > 60
    outputs = sorted(p for p in ingested.version.iterdir() if p.name != "MANIFEST.json")
    assert [p.name for p in outputs] == ["variants.vcf.gz", "variants.vcf.gz.tbi"]
    data = b"".join(gzip.decompress(p.read_bytes()) for p in outputs)  # the index too
    survivors = [v for v in values if v.encode() in data or any(v in p.name for p in outputs)]
    assert survivors == []


def test_columns_are_the_sorted_pseudonyms_of_the_admitted_patients(
    ingested: Ingested, demo_silos: Path
) -> None:
    keys = project_keys(ingested.settings, PROJECT)
    expected = sorted(
        keys.pseudonymiser.pseudonym(patient)
        for patient in linkage(demo_silos / "genomics").values()
        if patient != ingested.opted_out
    )
    with pysam.VariantFile(str(ingested.version / "variants.vcf.gz")) as out:
        assert list(out.header.samples) == expected
        assert len(list(out.fetch("chr1"))) > 100  # the tabix index works
    assert ingested.manifest["counts"] == {
        "source_files": 2,
        "output_files": 2,
        "patients": len(expected),
        "excluded_opt_out": 1,
        "rejected": 0,
        "quarantined": 0,
    }


def test_the_opted_out_patient_leaves_no_trace(ingested: Ingested) -> None:
    keys = project_keys(ingested.settings, PROJECT)
    pseudonym = keys.pseudonymiser.pseudonym(ingested.opted_out)
    header, records = read_vcf(ingested.version / "variants.vcf.gz")
    assert pseudonym not in "\n".join(header)
    assert ingested.opted_out not in "\n".join(header + records)
    # allele counts describe the remaining samples only, and no site is theirs alone
    for record in records:
        fields = record.split("\t")
        info = dict(kv.split("=", 1) for kv in fields[7].split(";") if "=" in kv)
        alleles = [a for gt in fields[9:] for a in gt.replace("|", "/").split("/") if a != "."]
        assert int(info["AN"]) == len(alleles)
        assert int(info["AC"]) == sum(a != "0" for a in alleles) > 0


def test_the_header_holds_only_allow_listed_lines(ingested: Ingested) -> None:
    header, _ = read_vcf(ingested.version / "variants.vcf.gz")
    keys = {line[2:].split("=", 1)[0] for line in header if line.startswith("##")}
    assert keys <= ALLOWED_KEYS
    assert "##reference=hg19.fasta" in header
    removed = ingested.manifest["removed"]
    assert isinstance(removed, dict)
    assert removed["vcf: header command lines"] == 1
    assert removed["vcf: header dates"] == 1
    assert removed["vcf: sample columns of opted-out patients"] == 1


def test_same_inputs_and_key_give_identical_bytes(
    tre_site: Settings, demo_policy: Policy, tmp_path: Path, demo_silos: Path
) -> None:
    other = new_site(tmp_path / "other", demo_silos, key_from=tre_site)
    first = ingest_version(tre_site, demo_policy, PROJECT, DATASET, "1", today=DEMO_TODAY)
    second = ingest_version(other, demo_policy, PROJECT, DATASET, "1", today=DEMO_TODAY)
    assert first.manifest_sha256 == second.manifest_sha256
    assert (first.version_dir / "MANIFEST.json").read_bytes() == (
        second.version_dir / "MANIFEST.json"
    ).read_bytes()


def context(settings: Settings, project: str, demo_policy: Policy, out: Path) -> IngestContext:
    dataset = demo_policy.dataset(DATASET)
    assert dataset is not None
    with (settings.silos_dir / "emr" / "patients.csv").open(encoding="utf-8") as handle:
        known = frozenset(row["patient_id"] for row in csv.DictReader(handle))
    out.mkdir(parents=True)
    return IngestContext(
        project=project,
        dataset=dataset,
        version=dataset.versions[0],
        source_dir=settings.silos_dir / "genomics",
        out_dir=out / "version",
        quarantine_dir=out / "quarantine",
        keys=project_keys(settings, project),
        patients=PatientIndex(known=known),
    )


def test_two_projects_get_different_sample_names(
    tre_site: Settings, demo_policy: Policy, tmp_path: Path
) -> None:
    samples = {}
    for project in (PROJECT, "other-project"):
        ctx = context(tre_site, project, demo_policy, tmp_path / project)
        vcf_module.ingest(ctx)
        with pysam.VariantFile(str(ctx.out_dir / "variants.vcf.gz")) as out:
            samples[project] = set(out.header.samples)
        assert len(samples[project]) == 22
    assert samples[PROJECT].isdisjoint(samples["other-project"])


def test_a_bcf_source_gives_the_same_columns(
    tre_site: Settings, demo_policy: Policy, tmp_path: Path, demo_silos: Path
) -> None:
    source = tmp_path / "genomics"
    source.mkdir()
    shutil.copy2(demo_silos / "genomics" / "samples.csv", source)
    header, records = read_vcf(demo_silos / "genomics" / COHORT)
    extra = [
        f'##INFO=<ID={tag},Number=1,Type=String,Description="Annotation">'
        for tag in ("refseq.name", "refseq.positionType")
    ]
    write_vcf(tmp_path / "defined.vcf.gz", [*header[:-1], *extra, header[-1]], records)
    pysam.VariantFile(str(tmp_path / "defined.vcf.gz"))  # readable before conversion
    with (
        pysam.VariantFile(str(tmp_path / "defined.vcf.gz")) as vcf_in,
        pysam.VariantFile(str(source / "cohort.bcf"), "wb", header=vcf_in.header) as bcf,
    ):
        for record in vcf_in:
            bcf.write(record)
    result = ingest_version(
        tre_site, demo_policy, PROJECT, DATASET, "1", source=source, today=DEMO_TODAY
    )
    keys = project_keys(tre_site, PROJECT)
    expected = sorted(keys.pseudonymiser.pseudonym(p) for p in linkage(source).values())
    with pysam.VariantFile(str(result.version_dir / "variants.vcf.gz")) as out:
        assert list(out.header.samples) == expected
        assert sum(1 for _ in out) == len(records)


def test_a_single_sample_file_is_named_by_its_pseudonym_and_only_reheadered(
    tre_site: Settings, demo_policy: Policy, tmp_path: Path, demo_silos: Path
) -> None:
    source = tmp_path / "genomics"
    source.mkdir()
    shutil.copy2(demo_silos / "genomics" / "samples.csv", source)
    sample, patient = next(iter(linkage(source).items()))
    single_sample(demo_silos / "genomics" / COHORT, sample, source / f"{sample}.vcf.gz")
    result = ingest_version(
        tre_site, demo_policy, PROJECT, DATASET, "1", source=source, today=DEMO_TODAY
    )
    pseudonym = project_keys(tre_site, PROJECT).pseudonymiser.pseudonym(patient)
    out = result.version_dir / f"{pseudonym}.vcf.gz"
    assert read_vcf(out)[1] == read_vcf(source / f"{sample}.vcf.gz")[1]
    assert read_vcf(out)[0][-1].endswith(f"\tFORMAT\t{pseudonym}")
    assert "vcf: INFO fields recomputed without removed samples" not in result.manifest.changed


def test_tags_the_header_never_defined_get_definitions_in_a_large_file(
    tre_site: Settings, demo_policy: Policy, tmp_path: Path, demo_silos: Path
) -> None:
    """bcftools refuses to subset such a file mid-stream; the retry defines the tags."""
    source = tmp_path / "genomics"
    source.mkdir()
    shutil.copy2(demo_silos / "genomics" / "samples.csv", source)
    header, records = read_vcf(demo_silos / "genomics" / COHORT)
    rest = [r.split("\t", 2)[2] for r in records]
    many = [f"chr1\t{100 * i + 1}\t{rest[i % len(rest)]}" for i in range(60 * len(rest))]
    write_vcf(source / "large.vcf.gz", header, many)
    result = ingest_version(
        tre_site, demo_policy, PROJECT, DATASET, "1", source=source, today=DEMO_TODAY
    )
    assert result.manifest.changed["vcf: header definitions added for undefined tags"] == 2
    with pysam.VariantFile(str(result.version_dir / "variants.vcf.gz")) as out:
        assert "refseq.name" in out.header.info
        assert sum(1 for _ in out) == len(many)


# -- bad inputs ---------------------------------------------------------------------------


def drop_column_line(source: Path, target: Path) -> None:
    header, records = read_vcf(source)
    write_vcf(target, header[:-1], records)


def truncate(source: Path, target: Path) -> None:
    data = source.read_bytes()
    target.write_bytes(data[: len(data) // 2])


def rename_a_sample(source: Path, target: Path) -> None:
    header, records = read_vcf(source)
    write_vcf(target, [*header[:-1], header[-1].replace("\tGL2", "\tXX2", 1)], records)


def unknown_patient(source: Path, target: Path) -> None:
    single_sample(source, next(iter(linkage(source.parent))), target)
    header, records = read_vcf(target)
    write_vcf(target, [*header[:-1], header[-1].rsplit("\t", 1)[0] + "\tGL99-0001"], records)
    with (target.parent / "samples.csv").open("a", encoding="utf-8") as table:
        table.write("GL99-0001,MRN0000001,2024-01-01,2024-01-02,blood,\n")


def identifier_in_a_record(source: Path, target: Path) -> None:
    header, records = read_vcf(source)
    sample = header[-1].split("\t")[9]
    fields = records[0].split("\t")
    fields[2] = f"seen_in_{sample}"
    write_vcf(target, header, ["\t".join(fields), *records[1:]])


BREAKERS: dict[str, tuple[Callable[[Path, Path], None], str, type[InputRejected]]] = {
    "missing #CHROM line": (drop_column_line, "not a readable VCF/BCF file", InputRejected),
    "truncated bgzip": (truncate, "BGZF end-of-file marker is missing", InputRejected),
    "sample not in the table": (rename_a_sample, "not in the linkage table", InputRejected),
    "unknown patient": (unknown_patient, "not in the patient index", UnknownPatient),
    "identifier in a record": (identifier_in_a_record, "still in the data", InputRejected),
}


@pytest.mark.parametrize("breaker", sorted(BREAKERS))
def test_a_bad_file_is_rejected_by_name_and_nothing_is_written(
    breaker: str, tre_site: Settings, demo_policy: Policy, tmp_path: Path, demo_silos: Path
) -> None:
    make, problem, error = BREAKERS[breaker]
    source = tmp_path / "genomics"
    shutil.copytree(demo_silos / "genomics", source)
    make(source / COHORT, source / "broken.vcf.gz")
    with pytest.raises(error) as raised:
        ingest_version(
            tre_site, demo_policy, PROJECT, DATASET, "1", source=source, today=DEMO_TODAY
        )
    assert raised.value.path.name == "broken.vcf.gz"
    assert "broken.vcf.gz" in str(raised.value)
    assert problem in raised.value.problem
    assert not (tre_site.datasets_dir / PROJECT / DATASET).exists()


@pytest.mark.parametrize("breaker", sorted(BREAKERS))
def test_continue_on_error_ingests_the_good_files_and_lists_the_bad(
    breaker: str, tre_site: Settings, demo_policy: Policy, tmp_path: Path, demo_silos: Path
) -> None:
    make, problem, _ = BREAKERS[breaker]
    source = tmp_path / "genomics"
    shutil.copytree(demo_silos / "genomics", source)
    make(source / COHORT, source / "broken.vcf.gz")
    result = ingest_version(
        tre_site, demo_policy, PROJECT, DATASET, "1",
        source=source, continue_on_error=True, today=DEMO_TODAY,
    )  # fmt: skip
    assert [f.path for f in result.manifest.files] == ["variants.vcf.gz", "variants.vcf.gz.tbi"]
    assert result.manifest.counts.rejected == 1
    assert result.manifest.counts.patients == 22
    assert problem in result.manifest.rejected[0].problem
    record = json.loads(result.record_path.read_text(encoding="utf-8"))
    assert record["rejected"][0]["source"] == "broken.vcf.gz"
    for text in (result.manifest.rejected[0].problem, record["rejected"][0]["reason"]):
        assert "GL2" not in text
        assert "MRN" not in text


@pytest.mark.parametrize("continue_on_error", [False, True])
def test_a_linkage_table_without_patient_ids_stops_the_run(
    continue_on_error: bool,
    tre_site: Settings,
    demo_policy: Policy,
    tmp_path: Path,
    demo_silos: Path,
) -> None:
    source = tmp_path / "genomics"
    shutil.copytree(demo_silos / "genomics", source)
    table = source / "samples.csv"
    table.write_text(table.read_text().replace("patient_id", "patient"), encoding="utf-8")
    with pytest.raises(
        IngestError, match=r"samples\.csv: linkage table has no 'patient_id' column"
    ):
        ingest_version(
            tre_site, demo_policy, PROJECT, DATASET, "1",
            source=source, continue_on_error=continue_on_error, today=DEMO_TODAY,
        )  # fmt: skip
    assert not (tre_site.datasets_dir / PROJECT / DATASET).exists()
