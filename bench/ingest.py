"""Ingest benchmarks side by side with the tools a data manager would otherwise use.

Runs, in one session on the same files: DICOM (ours vs dicognito, pydicom/deid and
pydicom's bare read+write), VCF/BAM (ours vs bcftools/samtools reheader) and EMR
pseudonyms per second; prints each table and writes them all to
docs/reference/benchmarks-ingest.md with the machine they ran on. Each part also leaves its
result file (var/bench/ingest-*.json) for bench/report.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPORT = HERE.parent / "docs" / "reference" / "benchmarks-ingest.md"

PARTS = (
    ("DICOM de-identification (files/s)", "ingest_dicom.py", ["--rounds", "3"]),
    ("VCF and BAM (records or reads/s)", "ingest_genomics.py", ["--rounds", "1"]),
    ("EMR pseudonyms and notes (per s)", "ingest_emr.py", ["--rounds", "3"]),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--report", type=Path, default=REPORT, help="markdown report to write")
    parser.add_argument("--results", type=Path, help="result files folder (default var/bench)")
    args = parser.parse_args()
    sections = []
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        silos = Path(tmp) / "silos"
        sys.path.insert(0, str(HERE.parent / "src"))
        from tre.demo.silos import write_demo_silos

        write_demo_silos(silos)
        for title, script, extra in PARTS:
            command = [sys.executable, str(HERE / script), *extra]
            if script != "ingest_emr.py":
                command += ["--silos", str(silos)]
            if args.results:
                command += ["--results", str(args.results)]
            print(f"== {title}", flush=True)
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            output = result.stdout + (
                f"\n(exit {result.returncode})\n{result.stderr[-2000:]}"
                if result.returncode
                else ""
            )
            print(output, flush=True)
            sections.append(f"## {title}\n\n`bench/{script}`\n\n```\n{output.strip()}\n```\n")
    cpu = platform.processor() or platform.machine()
    header = (
        "# Ingest benchmarks\n\n"
        "Measured by `make bench` (`bench/ingest.py`) in one run, each tool on the same "
        "files. Numbers are from a shared 2-core machine; ratios matter more than "
        "absolute rates. The medians, ratios and plots of the same run are on "
        "[Benchmarks](benchmarks.md).\n\n"
        f"Run on {dt.date.today()}, Python {platform.python_version()}, {os.cpu_count()} CPUs "
        f"({cpu}).\n\n"
        "Goals (from the Ingest issue): DICOM at least 2x dicognito and within 2x of "
        "pydicom's bare read+write; at least 1 M EMR pseudonyms per second.\n\n"
    )
    args.report.write_text(header + "\n".join(sections), encoding="utf-8")
    print(f"report written to {args.report}")


if __name__ == "__main__":
    main()
