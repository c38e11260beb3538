"""The shared rules of genomics ingest: read names, file names, linkage by name, paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from tre.ingest.fastq import read_number
from tre.ingest.genomics_common import (
    MAX_READ_PREFIXES,
    Linkage,
    OutputNames,
    ReadNamer,
    looks_like_path,
    strip_path,
)


def keyed(name: str) -> str:
    return "k" + format(abs(hash(name)) % 16**32, "032x")


def test_run_accession_prefixes_become_neutral_and_keep_the_spot_number() -> None:
    namer = ReadNamer(keyed)
    assert namer("ERR229775.22049853") == "r1.22049853"
    assert namer("ERR013140.17") == "r2.17"
    assert namer("ERR229775.5") == "r1.5"
    assert namer.renamed == 3


def test_illumina_names_keep_lane_tile_and_coordinates() -> None:
    namer = ReadNamer(keyed)
    assert namer("A00123:45:HXXXXDSXY:1:1101:1000:2000") == "r1:1:1101:1000:2000"
    assert namer("A00123:45:HXXXXDSXY:2:2202:3:4") == "r1:2:2202:3:4"
    assert namer("A00999:7:HYYYY:1:1101:1000:2000") == "r2:1:1101:1000:2000"


def test_a_planted_lab_sample_id_prefix_is_gone_and_mates_stay_paired() -> None:
    namer = ReadNamer(keyed)
    first = namer("GL23-1429:ERR229775.22049853/1")
    mate = ReadNamer(keyed)("GL23-1429:ERR229775.22049853/1")
    assert first == mate == "r1.22049853/1"
    assert "GL23" not in first


def test_names_of_digits_and_separators_are_kept() -> None:
    namer = ReadNamer(keyed)
    assert namer("1:1101:1000:2000") == "1:1101:1000:2000"
    assert namer("12345") == "12345"
    assert namer.renamed == 0


def test_names_without_structure_stay_unique_and_consistent() -> None:
    namer = ReadNamer(keyed)
    names = [f"read{i}x" for i in range(MAX_READ_PREFIXES + 50)]
    renamed = [namer(n) for n in names]
    assert len(set(renamed)) == len(names)
    assert renamed[0] == "r1"
    assert renamed[-1].startswith("k")
    assert namer(names[-1]) == renamed[-1]  # a mate seen later gets the same name
    assert namer(names[0]) == "r1"


def test_a_name_whose_prefix_differs_only_by_separator_does_not_collide() -> None:
    namer = ReadNamer(keyed)
    assert namer("run.12") != namer("run_12")


@pytest.mark.parametrize(
    ("rest", "number", "unit"),
    [
        ("_R1", "1", "_#"),
        ("_R2", "2", "_#"),
        ("_S1_L001_R1_001", "1", "_S1_L001_#_001"),
        ("_S1_L002_R2_001", "2", "_S1_L002_#_001"),
        ("_1", "1", "_#"),
        ("", None, ""),
        ("_tumour", None, "_tumour"),
    ],
)
def test_fastq_file_names_give_read_number_and_unit(
    rest: str, number: str | None, unit: str
) -> None:
    assert read_number(rest) == (number, unit)


def test_output_names_are_unique_and_units_numbered_in_order() -> None:
    names = OutputNames()
    assert names.claim("variants", ".vcf.gz") == "variants.vcf.gz"
    assert names.claim("variants", ".vcf.gz") == "variants_2.vcf.gz"
    assert names.unit("P1", "lane1") == 1
    assert names.unit("P1", "lane2") == 2
    assert names.unit("P1", "lane1") == 1
    assert names.unit("P2", "lane9") == 1


def test_a_file_name_links_by_the_longest_lab_sample_id_followed_by_a_separator() -> None:
    linkage = Linkage(Path("samples.csv"), {"GL23-14": "MRN1", "GL23-1429": "MRN2"})
    assert linkage.sample_in_file_name("GL23-1429_R1.fastq.gz") == "GL23-1429"
    assert linkage.sample_in_file_name("GL23-14.bam") == "GL23-14"
    assert linkage.sample_in_file_name("GL23-142.bam") is None
    assert linkage.sample_in_file_name("GL23-1429") == "GL23-1429"
    assert linkage.identifiers(["GL23-1429", "unknown"]) == {"GL23-1429", "MRN2", "unknown"}


@pytest.mark.parametrize(
    "value",
    [
        "file:///data/refs/hg19/hg19.fasta",
        "/data/lab/2023/GL23-1429/x.bam",
        "gatk -V /data/lab/a.g.vcf.gz",
        '"rodBind=[/local/scratch/xyliu/x.vcf]"',
        "C:\\lab\\sample.vcf",
        "~/runs/x",
    ],
)
def test_paths_are_recognised(value: str) -> None:
    assert looks_like_path(value)


@pytest.mark.parametrize(
    "value", ["Allele count (AC/AN)", "Genotype", "QD < 2.0 || FS > 60.0", "hg19", "v1.3/2"]
)
def test_descriptions_are_not_paths(value: str) -> None:
    assert not looks_like_path(value)


def test_paths_are_stripped_to_their_file_name() -> None:
    assert strip_path("file:///data/refs/hg19/hg19.fasta") == "hg19.fasta"
    assert strip_path("ftp://ftp.example.org/ref/hs37d5.fa.gz") == "hs37d5.fa.gz"
    assert strip_path("hg19") == "hg19"


def test_reusing_the_previous_prefix_never_changes_a_name() -> None:
    names = ["x.1.2.3.4.5", "x.1.7", "x.1.8", "ERR1.5", "ERR1.6/1", "ERR1.7.8.9.1.2", "ERR1.3"]
    sequential = ReadNamer(keyed)
    first = [sequential(n) for n in names]
    assert first == ["r1.2.3.4.5", "r2.1.7", "r2.1.8", "r3.5", "r3.6/1", "r4.8.9.1.2", "r3.3"]
    assert [sequential(n) for n in names] == first
