"""Genomics ingest, records or reads per second, side by side with the tools alone, one run.

On the same temporary files (built from the demo silos' cohort VCF and BAMs):

- VCF, 22 samples, >= 1 M records: `bcftools reheader -s` alone (header only: the
  floor); `bcftools view -S --no-update -Oz` alone (what re-ordering columns costs);
  jupyter-tre `vcf` ingest (header allow-list, sorted pseudonym columns, index, identifier
  check); the same with one opted-out patient (subset, `-a -c 1`, `+fill-tags`);
- VCF, 1 sample: `bcftools reheader -s` alone, and followed by `bcftools index`, vs
  jupyter-tre (its fast path: header only, plus index, checksum and identifier check);
- BAM, >= 1 M reads with run-prefixed names and RG tags: `samtools reheader -P` alone;
  `samtools view -b` alone (a full rewrite in C); jupyter-tre `bam` ingest (every read:
  new name, RG tag; CO/LB/PU/PG tags dropped; index; identifier check);
- BAM with numeric names and no tags to rewrite: `samtools reheader -P` alone, and
  followed by `samtools index`, vs jupyter-tre (its fast path: a C scan proving no read
  needs a change, header only, index, checksum and identifier check).

Methods run in interleaved rounds; the table shows the median wall-clock rate, the rate
per CPU second (this process and its children) and the ratio to the tool alone.

Writes its results to var/bench/ingest-genomics.json for bench/report.py.

    .venv/bin/python bench/ingest_genomics.py [--silos DIR] [--rounds 1] [--records N]
        [--reads N] [--results DIR]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pysam

try:
    import tre  # noqa: F401
except ModuleNotFoundError:  # run from a source tree that was never installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.results import RESULTS_DIR, BenchResult, Comparison
from tre.demo.silos import write_demo_silos
from tre.ingest import bam as bam_module
from tre.ingest import vcf as vcf_module
from tre.ingest.context import IngestContext
from tre.ingest.patients import PatientIndex
from tre.ingest.runner import project_keys
from tre.policy import load_policy
from tre.pseudonym import create_master_key, default_master_key_path
from tre.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DEMO_POLICY = REPO / "policies" / "demo"
COHORT = "glioblastoma_cohort.vcf.gz"


@dataclass
class Case:
    group: str
    method: str
    units: int
    unit: str
    baseline: str
    run: Callable[[Path], None]


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _sh(*args: str, stdout: Path | None = None) -> None:
    with stdout.open("wb") if stdout else Path(os.devnull).open("wb") as out:
        subprocess.run(args, stdout=out, check=True)


def _chain(*steps: Callable[[Path], None]) -> Callable[[Path], None]:
    def run(out: Path) -> None:
        for step in steps:
            step(out)

    return run


def _tool(*args: str, stdout: str | None = None) -> Callable[[Path], None]:
    """A tool alone; "{out}" in an argument is the round's output folder."""

    def run(out: Path) -> None:
        fill = [a.format(out=out) for a in args]
        _sh(*fill, stdout=Path(stdout.format(out=out)) if stdout else None)

    return run


# -- inputs --------------------------------------------------------------------------------


def big_vcf(silos: Path, work: Path, records: int) -> tuple[Path, Path, list[str]]:
    """The cohort's records repeated on chr1 (positions 1, 101, ...), tags defined."""
    lines = gzip.decompress((silos / "genomics" / COHORT).read_bytes()).decode().splitlines()
    header = [ln for ln in lines if ln.startswith("##")]
    header += [
        f'##INFO=<ID={t},Number=1,Type=String,Description="Annotation">'
        for t in ("refseq.name", "refseq.positionType")
    ]
    columns = next(ln for ln in lines if ln.startswith("#CHROM"))
    body = [ln.split("\t", 2)[2] for ln in lines if not ln.startswith("#")]
    samples = columns.split("\t")[9:]
    multi, single = work / "cohort" / COHORT, work / "single" / f"{samples[0]}.vcf.gz"
    for path, keep in ((multi, None), (single, 9)):
        path.parent.mkdir(parents=True)
        shutil.copy2(silos / "genomics" / "samples.csv", path.parent)
        plain = path.with_suffix(".txt")
        with plain.open("w", encoding="utf-8") as out:
            cols = columns if keep is None else "\t".join(columns.split("\t")[: keep + 1])
            out.write("\n".join([*header, cols]) + "\n")
            for start in range(0, records, 10_000):
                chunk = []
                for i in range(start, min(records, start + 10_000)):
                    rest = body[i % len(body)]
                    if keep is not None:
                        rest = "\t".join(rest.split("\t")[: keep - 1])
                    chunk.append(f"chr1\t{100 * i + 1}\t{rest}")
                out.write("\n".join(chunk) + "\n")
        _sh("bgzip", "-@", "2", "-c", str(plain), stdout=path)
        plain.unlink()
    return multi, single, samples


def big_bam(silos: Path, work: Path, reads: int) -> tuple[Path, Path]:
    """One silo BAM's reads repeated along chromosome 17; and a copy needing no read change."""
    rows = list(csv.DictReader((silos / "genomics" / "samples.csv").open(encoding="utf-8")))
    sample = next(r["lab_sample_id"] for r in rows if ".bam" in r["files"])
    source = silos / "genomics" / f"{sample}.bam"
    tagged, plain = work / "bam" / f"{sample}.bam", work / "bam-plain" / f"{sample}.bam"
    for path in (tagged, plain):
        path.parent.mkdir(parents=True)
        shutil.copy2(silos / "genomics" / "samples.csv", path.parent)
    with pysam.AlignmentFile(str(source)) as src:
        template = sorted(src, key=lambda r: r.reference_start)
        header = src.header
    span = 5000
    with (
        pysam.AlignmentFile(str(tagged), "wb", header=header, threads=2) as out_tagged,
        pysam.AlignmentFile(str(plain), "wb", header=header, threads=2) as out_plain,
    ):
        written, block = 0, 0
        while written < reads:
            for read in template:
                copy = pysam.AlignedSegment.fromstring(read.to_string(), header)
                copy.reference_start = read.reference_start + block * span
                if read.next_reference_id == read.reference_id:
                    copy.next_reference_start = read.next_reference_start + block * span
                run, _, spot = (read.query_name or "").partition(".")
                copy.query_name = f"{run}.{block}{spot}"
                out_tagged.write(copy)
                copy.query_name = f"{block}:{spot}"
                copy.set_tag("RG", None)
                out_plain.write(copy)
                written += 1
            block += 1
    for path in (tagged, plain):
        pysam.index(str(path))
    return tagged, plain


# -- methods -------------------------------------------------------------------------------


def _tre(
    work: Path, module: str, source: Path, opt_out: str | None = None
) -> Callable[[Path], None]:
    """jupyter-tre's ingest of one modality on `source`'s folder (no manifest or sealing)."""
    settings = Settings(policy_dir=DEMO_POLICY, var_dir=work / "var")
    key = default_master_key_path(settings.keys_dir)
    if not key.exists():
        create_master_key(key)
    keys = project_keys(settings, "gbm-linkage")
    dataset = load_policy(DEMO_POLICY).dataset(
        "gbm-variants" if module == "vcf" else "gbm-alignments"
    )
    assert dataset is not None
    ingest = vcf_module.ingest if module == "vcf" else bam_module.ingest
    with (source.parent / "samples.csv").open(encoding="utf-8") as table:
        known = frozenset(r["patient_id"] for r in csv.DictReader(table))
    opted_out = frozenset() if opt_out is None else frozenset({opt_out})

    def run(out: Path) -> None:
        ctx = IngestContext(
            project="gbm-linkage",
            dataset=dataset,
            version=dataset.versions[0],
            source_dir=source.parent,
            out_dir=out / "version",
            quarantine_dir=out / "quarantine",
            keys=keys,
            patients=PatientIndex(known=known, opted_out=opted_out),
        )
        ctx.out_dir.mkdir(parents=True)
        ingest(ctx)

    return run


def run(
    silos: Path, rounds: int = 1, records: int = 1_000_000, reads: int = 1_000_000
) -> list[dict[str, object]]:
    """Time every method; one dict per method (group, method, rates, ratio to the tool)."""
    with tempfile.TemporaryDirectory(prefix="bench-genomics-") as tmp:
        work = Path(tmp)
        multi, single, samples = big_vcf(silos, work / "in", records)
        tagged, plain = big_bam(silos, work / "in", reads)
        rows = list(csv.DictReader((silos / "genomics" / "samples.csv").open(encoding="utf-8")))
        opted_out = rows[0]["patient_id"]
        names = work / "names.txt"
        names.write_text("".join(f"P{i:020d}\n" for i in range(len(samples))))
        name1 = work / "name1.txt"
        name1.write_text("P00000000000000000000\n")
        order = work / "order.txt"
        order.write_text("".join(f"{s}\n" for s in reversed(samples)))
        hdr_tagged, hdr_plain = work / "tagged.sam", work / "plain.sam"
        for bam, hdr in ((tagged, hdr_tagged), (plain, hdr_plain)):
            text = subprocess.run(
                ["samtools", "view", "-H", "--no-PG", str(bam)],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            hdr.write_text(
                "\n".join(ln for ln in text.splitlines() if not ln.startswith("@CO")) + "\n"
            )
        o_vcf, o_bam = "{out}/o.vcf.gz", "{out}/o.bam"
        reheader_s, reheader_p = (
            "bcftools reheader -s (tool alone)",
            "samtools reheader -P (tool alone)",
        )
        v22, v1 = "VCF, 22 samples", "VCF, 1 sample"
        b_tag, b_plain = "BAM, RG tags and run-prefixed names", "BAM, nothing to change in reads"
        cases = [
            Case(v22, reheader_s, records, "records", reheader_s,
                 _tool("bcftools", "reheader", "-s", str(names), "-o", o_vcf, str(multi))),
            Case(v22, "bcftools view -S --no-update (tool alone)", records, "records", reheader_s,
                 _tool("bcftools", "view", "--no-version", "--no-update", "--threads", "1",
                       "-S", str(order), "-Oz", "-o", o_vcf, str(multi))),
            Case(v22, "jupyter-tre vcf ingest", records, "records", reheader_s,
                 _tre(work, "vcf", multi)),
            Case(v22, "jupyter-tre vcf ingest, 1 patient opted out", records, "records", reheader_s,
                 _tre(work, "vcf", multi, opted_out)),
            Case(v1, reheader_s, records, "records", reheader_s,
                 _tool("bcftools", "reheader", "-s", str(name1), "-o", o_vcf, str(single))),
            Case(v1, "bcftools reheader -s + index --tbi (tools alone)", records, "records",
                 reheader_s, _chain(
                     _tool("bcftools", "reheader", "-s", str(name1), "-o", o_vcf, str(single)),
                     _tool("bcftools", "index", "--tbi", o_vcf))),
            Case(v1, "jupyter-tre vcf ingest (fast path)", records, "records", reheader_s,
                 _tre(work, "vcf", single)),
            Case(b_tag, reheader_p, reads, "reads", reheader_p,
                 _tool("samtools", "reheader", "-P", str(hdr_tagged), str(tagged), stdout=o_bam)),
            Case(b_tag, "samtools view -b (tool alone, rewrite)", reads, "reads", reheader_p,
                 _tool("samtools", "view", "-b", "--no-PG", "-@", "1", "-o", o_bam, str(tagged))),
            Case(b_tag, "jupyter-tre bam ingest", reads, "reads", reheader_p,
                 _tre(work, "bam", tagged)),
            Case(b_plain, reheader_p, reads, "reads", reheader_p,
                 _tool("samtools", "reheader", "-P", str(hdr_plain), str(plain), stdout=o_bam)),
            Case(b_plain, "samtools reheader -P + index (tools alone)", reads, "reads", reheader_p,
                 _chain(
                     _tool("samtools", "reheader", "-P", str(hdr_plain), str(plain), stdout=o_bam),
                     _tool("samtools", "index", o_bam))),
            Case(b_plain, "jupyter-tre bam ingest (fast path)", reads, "reads", reheader_p,
                 _tre(work, "bam", plain)),
        ]  # fmt: skip
        wall: dict[int, list[float]] = {i: [] for i in range(len(cases))}
        cpu: dict[int, list[float]] = {i: [] for i in range(len(cases))}
        for r in range(rounds):
            for i, case in enumerate(cases):
                out = work / "out" / f"{r}-{i}"
                out.mkdir(parents=True)
                start, cpu_start = time.perf_counter(), _cpu()
                case.run(out)
                wall[i].append(case.units / (time.perf_counter() - start))
                cpu[i].append(case.units / max(_cpu() - cpu_start, 1e-9))
                shutil.rmtree(out)
    by_name = {(c.group, c.method): statistics.median(wall[i]) for i, c in enumerate(cases)}
    return [
        {
            "group": c.group,
            "method": c.method,
            "unit": c.unit,
            "per_s": statistics.median(wall[i]),
            "per_cpu_s": statistics.median(cpu[i]),
            "x_tool": statistics.median(wall[i]) / by_name[(c.group, c.baseline)],
            "samples": wall[i],
        }
        for i, c in enumerate(cases)
    ]


def write_results(
    rows: list[dict[str, object]], tools: dict[str, str], args: argparse.Namespace
) -> None:
    """Each jupyter-tre row beside each tool-alone row of its group."""
    comparisons = [
        Comparison(
            name=f"{ours['group']}: {str(ours['method']).removeprefix('jupyter-tre ')} vs "
            f"{str(theirs['method']).split(' (')[0]}",
            unit=f"{ours['unit']}/s",
            better="higher",
            ours=str(ours["method"]),
            ours_samples=list(ours["samples"]),  # type: ignore[call-overload]
            theirs=str(theirs["method"]),
            theirs_samples=list(theirs["samples"]),  # type: ignore[call-overload]
        )
        for ours in rows
        if str(ours["method"]).startswith("jupyter-tre")
        for theirs in rows
        if theirs["group"] == ours["group"] and not str(theirs["method"]).startswith("jupyter-tre")
    ]
    BenchResult(
        name="ingest-genomics",
        title="VCF and BAM ingest",
        script="bench/ingest_genomics.py",
        versions={"pysam": version("pysam"), **tools},
        comparisons=comparisons,
        notes=(
            f"{args.records:,} VCF records, {args.reads:,} BAM reads, {args.rounds} round(s), "
            "every method on the same temporary files. The tools alone only rewrite the "
            "header or the file; ours also re-checks identifiers, writes the index and the "
            "checksum (see the script's docstring for what each row does). Details: "
            "[Ingest benchmarks](benchmarks-ingest.md)."
        ),
    ).write(args.results)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--silos", type=Path, help="demo silos folder (default: write them)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds")
    parser.add_argument("--records", type=int, default=1_000_000, help="VCF records")
    parser.add_argument("--reads", type=int, default=1_000_000, help="BAM reads")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help="result files folder")
    args = parser.parse_args()
    keep = None
    silos = args.silos
    if silos is None:
        keep = tempfile.TemporaryDirectory(prefix="bench-silos-")
        silos = Path(keep.name) / "silos"
        write_demo_silos(silos)
    rows = run(silos, args.rounds, args.records, args.reads)
    tools = {
        t: subprocess.run([t, "--version"], capture_output=True, check=False)
        .stdout.decode("utf-8", "replace")
        .splitlines()[0]
        for t in ("bcftools", "samtools")
    }
    print(
        f"{args.records:,} VCF records, {args.reads:,} BAM reads, {args.rounds} round(s); "
        f"Python {platform.python_version()}, pysam {version('pysam')}, "
        f"{tools['bcftools']}, {tools['samtools']}, {os.cpu_count()} CPUs"
    )
    width = max(len(str(r["method"])) for r in rows)
    group = ""
    for r in rows:
        if r["group"] != group:
            group = str(r["group"])
            print(f"\n{group}")
            print(
                f"  {'method':<{width}}  {'units/s':>12}  {'units/CPU-s':>12}  {'x tool alone':>12}"
            )
        print(
            f"  {r['method']!s:<{width}}  {r['per_s']:>12,.0f}  {r['per_cpu_s']:>12,.0f}  "
            f"{r['x_tool']:>12.3f}"
        )
    print("\nunits: records (VCF) or reads (BAM); wall clock, median of rounds")
    write_results(rows, tools, args)
    if keep is not None:
        keep.cleanup()


if __name__ == "__main__":
    main()
