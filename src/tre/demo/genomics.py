"""The sequencing lab's silo: a cohort VCF, per-patient BAMs and the lab/hospital link table.

Genotypes and reads are real (Debian's pysam and samtools test data); sample columns,
read groups and headers name samples by the lab's own ids (e.g. `GL24-0042`), which
only `genomics/samples.csv` links to hospital patient ids. Headers also leak names and
file paths, as real ones do. BGZF, tabix and BAM indexes are deterministic.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable
from pathlib import Path

import pysam

from . import seeds, sources
from .build import SiloBuild
from .cohort import LabSample, ModalityPlan
from .files import write_csv
from .people import People
from .timeline import HOSPITAL_LAB

VCF_PATH = "genomics/glioblastoma_cohort.vcf.gz"
SAMPLES_PATH = "genomics/samples.csv"

# hg19 lengths of the contigs the source VCF uses (it declares none).
_CONTIGS = (("chr1", 249_250_621), ("chr2", 243_199_373))
_FIXED_COLUMNS = 9


def _fastq_stem(sample: LabSample, people: People) -> str:
    patient = people.patient(sample.patient_id)
    return f"{sample.sample_id}_{patient.last_name.replace(' ', '_')}_{patient.first_name}"


def _lab_folder(sample: LabSample) -> str:
    return f"/data/lab/{sample.collected_on:%Y}/{sample.sample_id}"


def _recount(info: str, genotypes: list[str]) -> str:
    """AC/AN/AF recomputed for the kept samples, as `bcftools view -s` does."""
    alleles = [a for gt in genotypes for a in gt.replace("|", "/").split("/") if a != "."]
    an = len(alleles)
    ac = sum(1 for a in alleles if a != "0")
    fields = [f for f in info.split(";") if f.split("=")[0] not in ("AC", "AN", "AF")]
    counts = [f"AC={ac}", f"AN={an}"] + ([f"AF={ac / an:.2f}"] if an else [])
    vc = [f for f in fields if f.startswith("VC=")]
    rest = [f for f in fields if not f.startswith("VC=")]
    return ";".join(vc + counts + rest)


def _vcf_lines(
    source: Path, samples: tuple[LabSample, ...], columns: list[int], people: People
) -> Iterable[str]:
    last_collected = max(s.collected_on for s in samples)
    with gzip.open(source, "rt", encoding="utf-8") as handle:
        for raw in handle:
            line = raw.rstrip("\n")
            if line.startswith("##fileformat"):
                yield line
                yield f"##fileDate={last_collected:%Y%m%d}"
                yield f'##source="{HOSPITAL_LAB} somatic pipeline v2.3"'
                yield "##reference=file:///data/refs/hg19/hg19.fasta"
                for name, length in _CONTIGS:
                    yield f"##contig=<ID={name},length={length},assembly=hg19>"
            elif line.startswith("##"):
                yield line
            elif line.startswith("#CHROM"):
                for sample in samples:
                    patient = people.patient(sample.patient_id)
                    yield (
                        f'##SAMPLE=<ID={sample.sample_id},Individual="{patient.full_name}",'
                        f'Description="Tumour DNA, {sample.patient_id}, resected '
                        f'{sample.collected_on:%Y-%m-%d}">'
                    )
                inputs = " ".join(
                    f"-V {_lab_folder(s)}/{_fastq_stem(s, people)}.g.vcf.gz" for s in samples
                )
                yield f'##commandline="gatk GenotypeGVCFs -R /data/refs/hg19/hg19.fasta {inputs}"'
                fixed = line.split("\t")[:_FIXED_COLUMNS]
                yield "\t".join(fixed + [s.sample_id for s in samples])
            else:
                fields = line.split("\t")
                genotypes = [fields[_FIXED_COLUMNS + c] for c in columns]
                fields[7] = _recount(fields[7], genotypes)
                yield "\t".join(fields[:_FIXED_COLUMNS] + genotypes)


def _write_vcf(build: SiloBuild, people: People, samples: tuple[LabSample, ...]) -> None:
    sample = sources.debian_vcf()
    with gzip.open(sample.path, "rt", encoding="utf-8") as handle:
        header = next(line for line in handle if line.startswith("#CHROM"))
    available = len(header.rstrip("\n").split("\t")) - _FIXED_COLUMNS
    rng = seeds.rng(build.seed, "genomics/vcf")
    columns = sorted(rng.sample(range(available), len(samples)))
    plain = build.path(VCF_PATH.removesuffix(".gz"))
    text = "\n".join(_vcf_lines(sample.path, samples, columns, people)) + "\n"
    plain.write_text(text, encoding="utf-8")
    compressed = pysam.tabix_index(str(plain), preset="vcf", force=True)
    if Path(compressed) != build.path(VCF_PATH):
        raise RuntimeError(f"tabix wrote {compressed}, expected {VCF_PATH}")
    patient_ids = [s.patient_id for s in samples]
    build.record(VCF_PATH, "vcf", sample.label, patient_ids)
    build.record(VCF_PATH + ".tbi", "vcf", sample.label, patient_ids)
    for number, lab_sample in enumerate(samples, start=_FIXED_COLUMNS + 1):
        pid = lab_sample.patient_id
        patient = people.patient(pid)
        sid = lab_sample.sample_id
        build.plant(VCF_PATH, f"vcf:#CHROM column {number}", "lab_sample_id", sid, pid)
        build.plant(VCF_PATH, f"vcf:header ##SAMPLE ID={sid}", "lab_sample_id", sid, pid)
        build.plant(VCF_PATH, f"vcf:header ##SAMPLE ID={sid}", "name", patient.full_name, pid)
        build.plant(VCF_PATH, f"vcf:header ##SAMPLE ID={sid}", "patient_id", pid, pid)
        build.plant(
            VCF_PATH,
            f"vcf:header ##SAMPLE ID={sid}",
            "visit_date",
            f"{lab_sample.collected_on:%Y-%m-%d}",
            pid,
        )
        stem = _fastq_stem(lab_sample, people)
        gvcf = f"{_lab_folder(lab_sample)}/{stem}.g.vcf.gz"
        build.plant(VCF_PATH, "vcf:header ##commandline", "file_path", gvcf, pid)
        build.plant(VCF_PATH, "vcf:header ##commandline", "name", stem[len(sid) + 1 :], pid)


def _write_bam(
    build: SiloBuild, people: People, lab_sample: LabSample, sample: sources.SampleFile
) -> None:
    pid = lab_sample.patient_id
    sid = lab_sample.sample_id
    patient = people.patient(pid)
    stem = _fastq_stem(lab_sample, people)
    folder = _lab_folder(lab_sample)
    read_group = f"{sid}.L001"
    fastqs = f"{folder}/{stem}_R1.fastq.gz {folder}/{stem}_R2.fastq.gz"
    description = f"Tumour DNA {patient.full_name} {pid}"
    run_date = f"{lab_sample.received_on:%Y-%m-%d}"
    comment = (
        f"Sample {sid} received {run_date} for {patient.full_name} ({pid}), "
        f"requested by {patient.gp.name}"
    )
    path = f"genomics/{sid}.bam"
    with pysam.AlignmentFile(str(sample.path), "rb") as source:
        header = source.header.to_dict()
        new_header = {
            "HD": header["HD"],
            "SQ": header["SQ"],
            "RG": [
                {
                    "ID": read_group, "SM": sid, "LB": f"{sid}-LIB1", "PL": "ILLUMINA",
                    "CN": HOSPITAL_LAB, "DT": run_date, "DS": description,
                }
            ],
            "PG": [
                {
                    "ID": "bwa", "PN": "bwa", "VN": "0.7.17-r1188",
                    "CL": f"bwa mem -t 16 -R @RG\\tID:{read_group}\\tSM:{sid} "
                    f"/data/refs/hs37d5/hs37d5.fa {fastqs}",
                },
                {
                    "ID": "samtools", "PN": "samtools", "PP": "bwa", "VN": "1.16.1",
                    "CL": f"samtools sort -o {folder}/{sid}.bam -",
                },
            ],
            "CO": [comment],
        }  # fmt: skip
        with pysam.AlignmentFile(str(build.path(path)), "wb", header=new_header) as target:
            for read in source.fetch(until_eof=True):
                read.set_tag("RG", read_group, value_type="Z")
                target.write(read)
    pysam.index(str(build.path(path)))
    build.record(path, "bam", sample.label, [pid])
    build.record(path + ".bai", "bam", sample.label, [pid])
    build.plant_path(path, "lab_sample_id", sid, pid)
    for tag in ("ID", "SM", "LB"):
        build.plant(path, f"bam:@RG[0].{tag}", "lab_sample_id", sid, pid)
    build.plant(path, "bam:@RG[0].DS", "name", patient.full_name, pid)
    build.plant(path, "bam:@RG[0].DS", "patient_id", pid, pid)
    build.plant(path, "bam:@RG[0].DT", "visit_date", run_date, pid)
    build.plant(path, "bam:@PG[0].CL", "lab_sample_id", sid, pid)
    build.plant(path, "bam:@PG[0].CL", "file_path", f"{folder}/{stem}_R1.fastq.gz", pid)
    build.plant(path, "bam:@PG[0].CL", "file_path", f"{folder}/{stem}_R2.fastq.gz", pid)
    build.plant(path, "bam:@PG[0].CL", "name", stem[len(sid) + 1 :], pid)
    build.plant(path, "bam:@PG[1].CL", "file_path", f"{folder}/{sid}.bam", pid)
    build.plant(path, "bam:@CO[0]", "lab_sample_id", sid, pid)
    build.plant(path, "bam:@CO[0]", "name", patient.full_name, pid)
    build.plant(path, "bam:@CO[0]", "patient_id", pid, pid)
    build.plant(path, "bam:@CO[0]", "visit_date", run_date, pid)
    build.plant(path, "bam:@CO[0]", "clinician_name", patient.gp.name, pid)


def _files_of(sample: LabSample, with_bam: set[str]) -> str:
    if sample.sample_id in with_bam:
        return f"{VCF_PATH} genomics/{sample.sample_id}.bam"
    return VCF_PATH


def _write_samples(build: SiloBuild, plan: ModalityPlan) -> None:
    with_bam = {s.sample_id for s in plan.bam_samples}
    write_csv(
        build.path(SAMPLES_PATH),
        ["lab_sample_id", "patient_id", "collected_on", "received_on", "specimen", "files"],
        (
            (
                s.sample_id, s.patient_id, f"{s.collected_on:%Y-%m-%d}",
                f"{s.received_on:%Y-%m-%d}", "fresh frozen tumour (resection)",
                _files_of(s, with_bam),
            )
            for s in plan.dna_samples
        ),
    )  # fmt: skip
    build.record(SAMPLES_PATH, "vcf", "synthetic", (s.patient_id for s in plan.dna_samples))
    build.plant_column(SAMPLES_PATH, "lab_sample_id", "lab_sample_id")
    build.plant_column(SAMPLES_PATH, "patient_id", "patient_id")
    build.plant_column(SAMPLES_PATH, "collected_on", "visit_date")
    build.plant_column(SAMPLES_PATH, "received_on", "visit_date")


def write_vcf(build: SiloBuild, people: People, plan: ModalityPlan) -> None:
    """The cohort VCF (one column per sequenced patient) and the lab's link table."""
    _write_vcf(build, people, plan.dna_samples)
    _write_samples(build, plan)


def write_bams(build: SiloBuild, people: People, plan: ModalityPlan) -> None:
    """One BAM (with index) per patient for as many patients as there are source BAMs."""
    for lab_sample, sample in zip(plan.bam_samples, sources.debian_bams(), strict=False):
        _write_bam(build, people, lab_sample, sample)
