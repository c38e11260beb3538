"""BAM/CRAM and FASTQ ingest on the demo silos' BAMs (samtools test data, identifiers planted).

Every planted identifier is gone from headers, tags, names and file names; read groups,
read names and samples are neutral or pseudonyms; an opted-out patient has no file; bad
files are rejected by name; header-only changes take samtools' fast path.
"""

from __future__ import annotations

import csv
import gzip
import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pysam
import pytest

from tests.support import DEMO_POLICY, DEMO_TODAY
from tre.ingest import IngestContext, IngestError, InputRejected, ingest_version
from tre.ingest import bam as bam_module
from tre.ingest.patients import PatientIndex
from tre.ingest.runner import project_keys
from tre.policy import Policy
from tre.pseudonym import (
    OptOutRegister,
    create_master_key,
    default_master_key_path,
    transform_date,
)
from tre.settings import Settings

PROJECT, DATASET = "gbm-linkage", "gbm-alignments"


def bam_rows(genomics: Path) -> list[dict[str, str]]:
    with (genomics / "samples.csv").open(newline="", encoding="utf-8") as handle:
        return [row for row in csv.DictReader(handle) if ".bam" in row["files"]]


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


def add_fastq(genomics: Path, sample: str) -> tuple[Path, Path]:
    """Paired FASTQ from the sample's BAM (`samtools collate | fastq`), lab id in the names."""
    r1, r2 = (genomics / f"{sample}_S1_L001_R{n}_001.fastq.gz" for n in (1, 2))
    plain = [genomics / f"r{n}.fq" for n in (1, 2)]
    collated = subprocess.run(
        ["samtools", "collate", "-u", "-O", "--no-PG", str(genomics / f"{sample}.bam")],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        ["samtools", "fastq", "-n", "-1", str(plain[0]), "-2", str(plain[1]),
         "-0", "/dev/null", "-s", "/dev/null", "-"],
        input=collated.stdout, check=True, capture_output=True,
    )  # fmt: skip
    for source, target, number in ((plain[0], r1, 1), (plain[1], r2, 2)):
        lines = source.read_text(encoding="ascii").splitlines()
        for i in range(0, len(lines), 4):
            lines[i] = f"@{sample}:{lines[i][1:]} {number}:N:0:{sample}"
        target.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
        source.unlink()
    return r1, r2


@dataclass(frozen=True)
class Ingested:
    settings: Settings
    source: Path
    version: Path
    opted_out: str
    fastq_patient: str
    manifest: dict[str, object]

    def pseudonym(self, patient: str) -> str:
        return project_keys(self.settings, PROJECT).pseudonymiser.pseudonym(patient)


@pytest.fixture(scope="module")
def ingested(
    tmp_path_factory: pytest.TempPathFactory, demo_silos: Path, demo_policy: Policy
) -> Ingested:
    root = tmp_path_factory.mktemp("bam")
    source = root / "genomics"
    shutil.copytree(demo_silos / "genomics", source)
    rows = bam_rows(source)
    add_fastq(source, rows[1]["lab_sample_id"])
    settings = new_site(root, demo_silos)
    OptOutRegister.in_keys_dir(settings.keys_dir).record_opt_out(
        rows[0]["patient_id"], recorded_by="test", effective=DEMO_TODAY
    )
    result = ingest_version(
        settings, demo_policy, PROJECT, DATASET, "1", source=source, today=DEMO_TODAY
    )
    manifest = json.loads((result.version_dir / "MANIFEST.json").read_text(encoding="utf-8"))
    return Ingested(
        settings, source, result.version_dir, rows[0]["patient_id"], rows[1]["patient_id"], manifest
    )


def header_text(path: Path) -> str:
    return subprocess.run(
        ["samtools", "view", "-H", "--no-PG", str(path)], check=True, capture_output=True, text=True
    ).stdout


def reads(path: Path) -> Iterator[pysam.AlignedSegment]:
    with pysam.AlignmentFile(str(path), check_sq=False) as alignments:
        yield from alignments


def test_every_planted_identifier_of_the_alignments_is_gone(
    ingested: Ingested, demo_silos: Path
) -> None:
    planted = json.loads((demo_silos / "PLANTED.json").read_text(encoding="utf-8"))
    mine = [i for i in planted["identifiers"] if i["file"].endswith(".bam")]
    assert len(mine) >= 45
    for identifier in mine:
        if identifier["patient_id"] == ingested.opted_out:
            assert not list(
                ingested.version.glob(f"{ingested.pseudonym(identifier['patient_id'])}*")
            )
            continue
        out = ingested.version / f"{ingested.pseudonym(identifier['patient_id'])}.bam"
        value = identifier["value"]
        assert value not in header_text(out)
        assert value.encode() not in gzip.decompress(out.read_bytes())
        for read in reads(out):
            assert value not in (read.query_name or "")
            assert all(value not in str(v) for _, v in read.get_tags())
    names = " ".join(p.name for p in ingested.version.iterdir())
    assert all(i["value"] not in names for i in mine)


def test_files_read_groups_and_reads_carry_only_neutral_names(
    ingested: Ingested, demo_policy: Policy
) -> None:
    rows = bam_rows(ingested.source)
    kept = [r for r in rows if r["patient_id"] != ingested.opted_out]
    keys = project_keys(ingested.settings, PROJECT)
    dataset = demo_policy.dataset(DATASET)
    assert dataset is not None
    dataset_dates = dataset.deidentification.dates.value
    for row in kept:
        pseudonym = ingested.pseudonym(row["patient_id"])
        out = ingested.version / f"{pseudonym}.bam"
        with pysam.AlignmentFile(str(out)) as alignments:
            (group,) = alignments.header.to_dict()["RG"]
            assert group["ID"] == "rg1"
            assert group["SM"] == pseudonym
            assert group["LB"] == "lib1"
            source_dt = date.fromisoformat(row["received_on"])
            assert (
                group["DT"]
                == transform_date(
                    source_dt, dataset_dates, patient_id=row["patient_id"], shifter=keys.dates
                ).isoformat()
            )
            assert set(group) == {"ID", "SM", "LB", "DT", "PL"}
            assert all("CL" not in pg for pg in alignments.header.to_dict()["PG"])
            assert "CO" not in alignments.header.to_dict()
            assert len(list(alignments.fetch("17"))) > 100  # the rebuilt index works
        names = [r.query_name or "" for r in reads(out)]
        assert all(n.startswith("r") for n in names)
        assert all(r.get_tag("RG") == "rg1" for r in reads(out))
    assert ingested.manifest["counts"] == {
        "source_files": len(rows) + 1 + 2,  # BAMs, samples.csv, two FASTQ files
        "output_files": 2 * len(kept) + 2,
        "patients": len(kept),
        "excluded_opt_out": 1,
        "rejected": 0,
        "quarantined": 0,
    }


def test_fastq_names_are_neutral_and_mates_stay_paired(ingested: Ingested) -> None:
    pseudonym = ingested.pseudonym(ingested.fastq_patient)
    sample = next(
        r["lab_sample_id"]
        for r in bam_rows(ingested.source)
        if r["patient_id"] == ingested.fastq_patient
    )
    outputs = [ingested.version / f"{pseudonym}_R{n}.fastq.gz" for n in (1, 2)]
    titles = []
    for out in outputs:
        raw = out.read_bytes()
        assert raw[3] & 0x08 == 0  # no FNAME field
        assert raw[4:8] == b"\0\0\0\0"  # mtime 0
        text = gzip.decompress(raw).decode()
        assert sample not in text
        lines = text.splitlines()
        assert set(lines[2::4]) == {"+"}
        titles.append([line.split("/")[0] for line in lines[0::4]])
        source = ingested.source / f"{sample}_S1_L001_R{outputs.index(out) + 1}_001.fastq.gz"
        assert lines[1::4] == gzip.decompress(source.read_bytes()).decode().splitlines()[1::4]
    assert titles[0] == titles[1]
    assert all(t.startswith("@r1.") for t in titles[0])


def test_same_inputs_and_key_give_identical_bytes(
    tre_site: Settings, demo_policy: Policy, tmp_path: Path, demo_silos: Path, ingested: Ingested
) -> None:
    other = new_site(tmp_path / "other", demo_silos, key_from=tre_site)
    first = ingest_version(
        tre_site, demo_policy, PROJECT, DATASET, "1", source=ingested.source, today=DEMO_TODAY
    )
    second = ingest_version(
        other, demo_policy, PROJECT, DATASET, "1", source=ingested.source, today=DEMO_TODAY
    )
    assert first.manifest_sha256 == second.manifest_sha256


def test_two_projects_get_different_sample_names(
    tre_site: Settings, demo_policy: Policy, tmp_path: Path
) -> None:
    dataset = demo_policy.dataset(DATASET)
    assert dataset is not None
    with (tre_site.silos_dir / "emr" / "patients.csv").open(encoding="utf-8") as handle:
        known = frozenset(row["patient_id"] for row in csv.DictReader(handle))
    samples = {}
    for project in (PROJECT, "other-project"):
        ctx = IngestContext(
            project=project,
            dataset=dataset,
            version=dataset.versions[0],
            source_dir=tre_site.silos_dir / "genomics",
            out_dir=tmp_path / project / "version",
            quarantine_dir=tmp_path / project / "quarantine",
            keys=project_keys(tre_site, project),
            patients=PatientIndex(known=known),
        )
        ctx.out_dir.mkdir(parents=True)
        bam_module.ingest(ctx)
        samples[project] = {
            pysam.AlignmentFile(str(p)).header.to_dict()["RG"][0]["SM"]
            for p in ctx.out_dir.glob("*.bam")
        }
        assert {f"{s}.bam" for s in samples[project]} == {p.name for p in ctx.out_dir.glob("*.bam")}
    assert len(samples[PROJECT]) == 3
    assert samples[PROJECT].isdisjoint(samples["other-project"])


# -- variants of the source ------------------------------------------------------------------


def rewrite_bam(source: Path, target: Path, change: Callable[[pysam.AlignedSegment], None]) -> None:
    with (
        pysam.AlignmentFile(str(source)) as src,
        pysam.AlignmentFile(str(target), "wb", header=src.header) as out,
    ):
        for read in src:
            change(read)
            out.write(read)


def bgzf_blocks(path: Path) -> list[bytes]:
    data, blocks, at = path.read_bytes(), [], 0
    while at < len(data):
        size = int.from_bytes(data[at + 16 : at + 18], "little") + 1  # BSIZE of the BC field
        blocks.append(data[at : at + size])
        at += size
    return blocks


def copy_source(tmp_path: Path, demo_silos: Path) -> tuple[Path, dict[str, str]]:
    source = tmp_path / "genomics"
    shutil.copytree(demo_silos / "genomics", source)
    return source, bam_rows(source)[0]


def test_header_only_changes_take_the_fast_path_and_keep_the_reads(
    tre_site: Settings, demo_policy: Policy, tmp_path: Path, demo_silos: Path
) -> None:
    source, row = copy_source(tmp_path, demo_silos)
    bam = source / f"{row['lab_sample_id']}.bam"
    # numeric names, no RG tags, and enough reads (x20) to fill many BGZF blocks
    with (
        pysam.AlignmentFile(str(demo_silos / "genomics" / bam.name)) as src,
        pysam.AlignmentFile(str(bam), "wb", header=src.header) as out,
    ):
        names: dict[tuple[str, int], str] = {}
        for read in src:
            for copy in range(20):
                name = names.setdefault((read.query_name or "", copy), str(len(names) + 1))
                clone = pysam.AlignedSegment.fromstring(read.to_string(), src.header)
                clone.query_name = name
                clone.set_tag("RG", None)
                out.write(clone)
    result = ingest_version(
        tre_site, demo_policy, PROJECT, DATASET, "1", source=source, today=DEMO_TODAY
    )
    out = (
        result.version_dir
        / f"{project_keys(tre_site, PROJECT).pseudonymiser.pseudonym(row['patient_id'])}.bam"
    )
    body = ["samtools", "view", "--no-PG"]
    assert (
        subprocess.run([*body, str(out)], check=True, capture_output=True).stdout
        == subprocess.run([*body, str(bam)], check=True, capture_output=True).stdout
    )
    assert row["lab_sample_id"] not in header_text(out)
    # reheader copies the compressed blocks after the header; a rewrite would recompress them
    copied = set(bgzf_blocks(out)) & set(bgzf_blocks(bam))
    assert len(copied) >= 0.9 * len(bgzf_blocks(bam))
    others = [p for p in source.glob("*.bam") if p != bam]
    renamed = sum(1 for p in others for _ in reads(p))
    assert result.manifest.changed["bam: read names"] == renamed


def test_a_cram_source_is_decoded_locally_and_written_as_bam(
    tre_site: Settings, demo_policy: Policy, tmp_path: Path, demo_silos: Path
) -> None:
    source, row = copy_source(tmp_path, demo_silos)
    bam = source / f"{row['lab_sample_id']}.bam"
    subprocess.run(
        ["samtools", "view", "-C", "--no-PG", "--output-fmt-option", "no_ref=1",
         "-o", str(bam.with_suffix(".cram")), str(bam)],
        check=True, capture_output=True,
    )  # fmt: skip
    bam.unlink()
    Path(f"{bam}.bai").unlink()
    result = ingest_version(
        tre_site, demo_policy, PROJECT, DATASET, "1", source=source, today=DEMO_TODAY
    )
    pseudonym = project_keys(tre_site, PROJECT).pseudonymiser.pseudonym(row["patient_id"])
    out = result.version_dir / f"{pseudonym}.bam"
    assert row["lab_sample_id"] not in header_text(out)
    assert sum(1 for _ in reads(out)) == sum(1 for _ in reads(demo_silos / "genomics" / bam.name))


def test_a_bam_without_index_is_ingested_with_a_new_index(
    tre_site: Settings, demo_policy: Policy, tmp_path: Path, demo_silos: Path
) -> None:
    source, row = copy_source(tmp_path, demo_silos)
    for index in source.glob("*.bai"):
        index.unlink()
    result = ingest_version(
        tre_site, demo_policy, PROJECT, DATASET, "1", source=source, today=DEMO_TODAY
    )
    pseudonym = project_keys(tre_site, PROJECT).pseudonymiser.pseudonym(row["patient_id"])
    with pysam.AlignmentFile(str(result.version_dir / f"{pseudonym}.bam")) as out:
        assert out.check_index()


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])


def unknown_sample(path: Path) -> None:
    text = header_text(path).replace("SM:GL", "SM:XX")
    header = path.with_suffix(".sam")
    header.write_text(text)
    out = subprocess.run(
        ["samtools", "reheader", "-P", str(header), str(path)], check=True, capture_output=True
    ).stdout
    path.write_bytes(out)


def identifier_in_a_tag(path: Path) -> None:
    sample = path.name.removesuffix(".bam")
    tmp = path.with_suffix(".tmp")

    def tag(read: pysam.AlignedSegment) -> None:
        read.set_tag("CO", f"reviewed for {sample}", "Z")  # dropped: free-text comments
        read.set_tag("ZS", sample, "Z")  # unknown tag: kept, so the check must catch it

    rewrite_bam(path, tmp, tag)
    tmp.replace(path)


def truncate_fastq(path: Path) -> None:
    add_fastq(path.parent, path.name.removesuffix(".bam"))
    r1 = next(path.parent.glob("*_R1_001.fastq.gz"))
    data = r1.read_bytes()
    r1.write_bytes(data[: len(data) // 2])
    path.with_name("broken").write_text(r1.name)


BREAKERS: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated BAM": (truncate, "BGZF end-of-file marker is missing"),
    "sample not in the table": (unknown_sample, "not in the linkage table"),
    "identifier in a read tag": (identifier_in_a_tag, "still in the data"),
    "truncated FASTQ": (truncate_fastq, "not a complete gzip-compressed FASTQ file"),
}


def broken_file(source: Path, bam: Path) -> Path:
    marker = source / "broken"
    return source / marker.read_text() if marker.exists() else bam


@pytest.mark.parametrize("breaker", sorted(BREAKERS))
@pytest.mark.parametrize("continue_on_error", [False, True])
def test_bad_files_are_rejected_by_name(
    breaker: str,
    continue_on_error: bool,
    tre_site: Settings,
    demo_policy: Policy,
    tmp_path: Path,
    demo_silos: Path,
) -> None:
    make, problem = BREAKERS[breaker]
    source, row = copy_source(tmp_path, demo_silos)
    bam = source / f"{row['lab_sample_id']}.bam"
    make(bam)
    bad = broken_file(source, bam)
    if not continue_on_error:
        with pytest.raises(InputRejected) as raised:
            ingest_version(
                tre_site, demo_policy, PROJECT, DATASET, "1", source=source, today=DEMO_TODAY
            )
        assert raised.value.path == bad
        assert bad.name in str(raised.value)
        assert problem in raised.value.problem
        assert not (tre_site.datasets_dir / PROJECT / DATASET).exists()
        return
    result = ingest_version(
        tre_site, demo_policy, PROJECT, DATASET, "1",
        source=source, continue_on_error=True, today=DEMO_TODAY,
    )  # fmt: skip
    assert result.manifest.counts.rejected == 1
    assert problem in result.manifest.rejected[0].problem
    assert "GL2" not in result.manifest.rejected[0].problem
    record = json.loads(result.record_path.read_text(encoding="utf-8"))
    assert record["rejected"][0]["source"] == bad.name
    assert len([f for f in result.manifest.files if f.path.endswith(".bam")]) >= 2


@pytest.mark.parametrize("continue_on_error", [False, True])
def test_a_linkage_table_without_patient_ids_stops_the_run(
    continue_on_error: bool,
    tre_site: Settings,
    demo_policy: Policy,
    tmp_path: Path,
    demo_silos: Path,
) -> None:
    source, _ = copy_source(tmp_path, demo_silos)
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
