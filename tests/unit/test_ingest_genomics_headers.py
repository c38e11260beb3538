"""Header allow-lists of VCF and BAM ingest, on headers shaped like the demo silos' files."""

from __future__ import annotations

from typing import Any

from tre.ingest.bam import HeaderScrubber
from tre.ingest.genomics_common import FileReport
from tre.ingest.vcf import HeaderLine, column_line, scrub_header

IDS = {"GL23-1429", "GL22-1579", "MRN5346559", "MRN6053622"}
RENAMED: dict[str, str | None] = {"GL23-1429": "PZZZ", "GL22-1579": None, "GL24-0001": "PAAA"}


def vcf_lines() -> list[HeaderLine]:
    return [
        HeaderLine("fileformat", "VCFv4.2"),
        HeaderLine("FILTER", items=(("ID", "PASS"), ("Description", '"All filters passed"'))),
        HeaderLine("fileDate", "20250311"),
        HeaderLine("source", '"AZ Demostad Centre for Medical Genetics somatic pipeline v2.3"'),
        HeaderLine("reference", "file:///data/refs/hg19/hg19.fasta"),
        HeaderLine(
            "contig",
            items=(("ID", "chr1"), ("length", "249250621"), ("URL", "file:///x/y"), ("IDX", "0")),
        ),
        HeaderLine(
            "INFO",
            items=(
                ("ID", "DB"),
                ("Number", "0"),
                ("Type", "Flag"),
                ("Description", '"from /data/lab/2023/GL23-1429/db.vcf"'),
            ),
        ),
        HeaderLine(
            "SAMPLE",
            items=(
                ("ID", "GL23-1429"),
                ("Individual", '"Liesbet De Ridder"'),
                ("Genomes", "Tumor"),
                ("Description", '"Tumour DNA, MRN5346559, resected 2023-03-09"'),
            ),
        ),
        HeaderLine("SAMPLE", items=(("ID", "GL22-1579"), ("Genomes", "Tumor"))),
        HeaderLine("SAMPLE", items=(("ID", "GL24-0001"), ("Genomes", "Germline"))),
        HeaderLine("PEDIGREE", items=(("Derived", "GL23-1429"), ("Original", "GL24-0001"))),
        HeaderLine("PEDIGREE", items=(("Derived", "GL22-1579"), ("Original", "GL24-0001"))),
        HeaderLine("commandline", '"gatk GenotypeGVCFs -V /data/lab/GL23-1429.g.vcf.gz"'),
        HeaderLine("bcftools_viewCommand", "view -h x.vcf.gz; Date=Mon Nov 23 2026"),
        HeaderLine("GATKCommandLine", items=(("ID", "HaplotypeCaller"), ("CommandLine", '"x"'))),
        HeaderLine("FilterLiftedVariants", '"analysis_type=FilterLiftedVariants rodBind=[/l/x]"'),
    ]


def test_vcf_header_keeps_only_allow_listed_lines_and_rewrites_samples() -> None:
    report = FileReport()
    lines = scrub_header(vcf_lines(), RENAMED, IDS, report)
    assert lines == [
        "##fileformat=VCFv4.2",
        '##FILTER=<ID=PASS,Description="All filters passed">',
        "##reference=hg19.fasta",
        "##contig=<ID=chr1,length=249250621>",
        '##INFO=<ID=DB,Number=0,Type=Flag,Description="Description removed">',
        "##SAMPLE=<ID=PAAA,Genomes=Germline>",  # sorted like the columns
        "##SAMPLE=<ID=PZZZ,Genomes=Tumor>",
        "##PEDIGREE=<Derived=PZZZ,Original=PAAA>",
    ]
    assert report.removed == {
        "vcf: header dates": 1,
        "vcf: other header lines": 2,  # source naming the institution, FilterLiftedVariants
        "vcf: header command lines": 3,
        "vcf: header fields outside the allow-list": 1,
        "vcf: sample metadata fields": 2,
        "vcf: SAMPLE lines of absent samples": 1,
        "vcf: pedigree lines": 1,
    }
    assert report.changed["vcf: header paths reduced to file names"] == 1
    text = "\n".join(lines)
    for leaked in (*IDS, "Liesbet", "/data", "2023-03-09", "20250311", "Demostad"):
        assert leaked not in text


def test_program_sources_stay_and_undefined_tags_are_described() -> None:
    report = FileReport()
    lines = scrub_header(
        [
            HeaderLine("source", "freeBayes v1.3.6"),
            HeaderLine("source", "GL23-1429"),
            HeaderLine(
                "INFO",
                items=(
                    ("ID", "x"),
                    ("Number", "1"),
                    ("Type", "String"),
                    ("Description", '"Dummy"'),
                ),
            ),
        ],
        {},
        IDS,
        report,
        undefined=frozenset({"x"}),
    )
    assert lines == [
        "##source=freeBayes v1.3.6",
        '##INFO=<ID=x,Number=1,Type=String,Description="Not defined in the source header">',
    ]


def test_column_line() -> None:
    assert column_line([]) == "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"
    assert column_line(["P1", "P2"]).endswith("\tINFO\tFORMAT\tP1\tP2")


def bam_header() -> dict[str, Any]:
    return {
        "HD": {"VN": "1.0", "SO": "coordinate"},
        "SQ": [
            {
                "SN": "1",
                "LN": 249250621,
                "M5": "1b22b98cdeb4a9304cb5d48026a85128",
                "UR": "ftp://ftp.1000genomes.ebi.ac.uk/vol1/hs37d5.fa.gz",
                "DS": "from /data/refs",
            }
        ],
        "RG": [
            {
                "ID": "GL23-1429.L001",
                "CN": "AZ Demostad Centre for Medical Genetics",
                "SM": "GL23-1429",
                "LB": "GL23-1429-LIB1",
                "DT": "2023-03-12",
                "DS": "Tumour DNA Liesbet De Ridder MRN5346559",
                "PL": "ILLUMINA",
                "PU": "HXXXX.1.GL23-1429",
                "PG": "bwa",
            },
            {"ID": "GL23-1429.L002", "SM": "GL23-1429", "LB": "GL23-1429-LIB1", "DT": "junk"},
        ],
        "PG": [
            {"PN": "bwa", "ID": "bwa", "VN": "0.7.17-r1188", "CL": "bwa mem /data/lab/x.fq.gz"},
            {"PN": "samtools", "ID": "samtools", "PP": "bwa", "VN": "1.16.1", "CL": "samtools"},
            {"PN": "samtools", "ID": "samtools.1", "PP": "samtools", "DS": "GL23-1429"},
        ],
        "CO": ["Sample GL23-1429 received 2023-03-12 for Liesbet De Ridder (MRN5346559)"],
    }


def scrubber(report: FileReport, *, keep_institution: bool = False) -> HeaderScrubber:
    return HeaderScrubber(
        samples={"GL23-1429": "PZZZ"},
        transform_date=lambda text: "2024-01-02" if text == "2023-03-12" else None,
        identifiers=IDS,
        keep_institution=keep_institution,
        report=report,
    )


def test_bam_header_keeps_only_allow_listed_fields() -> None:
    report = FileReport()
    scrubbed = scrubber(report).scrub(bam_header())
    assert scrubbed.read_groups == {"GL23-1429.L001": "rg1", "GL23-1429.L002": "rg2"}
    assert scrubbed.header == {
        "HD": {"VN": "1.0", "SO": "coordinate"},
        "SQ": [
            {
                "SN": "1",
                "LN": 249250621,
                "M5": "1b22b98cdeb4a9304cb5d48026a85128",
                "UR": "hs37d5.fa.gz",
            }
        ],
        "RG": [
            {
                "ID": "rg1",
                "SM": "PZZZ",
                "LB": "lib1",
                "DT": "2024-01-02",
                "PL": "ILLUMINA",
                "PG": "bwa",
            },
            {"ID": "rg2", "SM": "PZZZ", "LB": "lib1"},
        ],
        "PG": [
            {"ID": "bwa", "PN": "bwa", "VN": "0.7.17-r1188"},
            {"ID": "samtools", "PN": "samtools", "PP": "bwa", "VN": "1.16.1"},
            {"ID": "samtools.1", "PN": "samtools", "PP": "samtools"},
        ],
    }
    assert report.removed["bam: @CO comment lines"] == 1
    assert report.removed["bam: @PG command lines"] == 2
    assert report.removed["bam: @RG CN fields"] == 1
    assert report.removed["bam: @RG DT fields"] == 1  # not a date: dropped
    assert report.removed["bam: @RG DS fields"] == 1
    assert report.removed["bam: @RG PU fields"] == 1
    assert report.changed["bam: read group dates"] == 1


def test_the_institution_stays_only_when_the_dataset_retains_it() -> None:
    scrubbed = scrubber(FileReport(), keep_institution=True).scrub(bam_header())
    assert scrubbed.header["RG"][0]["CN"] == "AZ Demostad Centre for Medical Genetics"


def test_program_names_that_carry_identifiers_become_neutral() -> None:
    header = {"PG": [{"ID": "bwa-GL23-1429", "PN": "bwa-GL23-1429", "VN": "x"}]}
    scrubbed = scrubber(FileReport()).scrub(header)
    assert scrubbed.header["PG"] == [{"ID": "program", "VN": "x"}]


def test_dates_in_descriptions_and_odd_file_formats_are_neutralised() -> None:
    lines = scrub_header(
        [
            HeaderLine("fileformat", "VCFv4.2 exported for GL23-1429"),
            HeaderLine("FILTER", items=(("ID", "q10"), ("Description", '"batch of 2023-03-12"'))),
            HeaderLine("FILTER", items=(("ID", "q20"), ("Description", '"Quality below 20"'))),
        ],
        {},
        IDS,
        FileReport(),
    )
    assert lines == [
        "##fileformat=VCFv4.2",
        '##FILTER=<ID=q10,Description="Description removed">',
        '##FILTER=<ID=q20,Description="Quality below 20">',
    ]
