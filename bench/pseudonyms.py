"""Keyed pseudonyms per second, side by side, in one process and one run.

Compares what a data team would otherwise write (the standard library's `hmac.new` or
`hmac.digest` per id, and HMAC with precomputed inner/outer pads) with
`Pseudonymiser.pseudonym` per id and `Pseudonymiser.pseudonymise_many`. The baselines
only compute the 32-byte MAC; the Pseudonymiser rows also strip, check and format each
id into its 21-character pseudonym, so the comparison favours the baselines.

Methods run in interleaved rounds, so background load hits all of them alike; the
table shows the best and the median round by wall clock, and the median by this
process's CPU time (less sensitive to other work on a shared machine).

Writes its results to var/bench/pseudonyms.json for bench/report.py.

    .venv/bin/python bench/pseudonyms.py [--ids 1000000] [--rounds 5] [--results DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import platform
import ssl
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.results import RESULTS_DIR, BenchResult, Comparison

try:
    from tre.pseudonym import MasterKey, Pseudonymiser, derive_project_key
    from tre.pseudonym.keys import KeyPurpose
    from tre.pseudonym.pseudonyms import ALPHABET
except ModuleNotFoundError:  # run from a source tree that was never installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from tre.pseudonym import MasterKey, Pseudonymiser, derive_project_key
    from tre.pseudonym.keys import KeyPurpose
    from tre.pseudonym.pseudonyms import ALPHABET


def hmac_new_per_id(key: bytes, ids: list[str]) -> list[bytes]:
    sha256 = hashlib.sha256
    return [hmac.new(key, i.encode(), sha256).digest() for i in ids]


def hmac_digest_per_id(key: bytes, ids: list[str]) -> list[bytes]:
    digest = hmac.digest
    return [digest(key, i.encode(), "sha256") for i in ids]


def precomputed_pads(key: bytes, ids: list[str]) -> list[bytes]:
    block = key.ljust(64, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
    icopy, ocopy = inner.copy, outer.copy
    out: list[bytes] = []
    append = out.append
    for i in ids:
        h = icopy()
        h.update(i.encode())
        o = ocopy()
        o.update(h.digest())
        append(o.digest())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=1_000_000, help="ids per round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help="result files folder")
    args = parser.parse_args()

    project = derive_project_key(MasterKey(os.urandom(32)), "bench")
    key = project.subkey(KeyPurpose.pseudonym)
    pseudonymiser = Pseudonymiser(project)
    ids = [f"BE-UZL-{n:07d}" for n in range(args.ids)]

    # The fast path must be the same function as the plain one before it may be timed.
    sample = ids[:: max(1, len(ids) // 5000)]
    expected = [
        "P" + "".join(ALPHABET[b & 31] for b in d[:20]) for d in hmac_new_per_id(key, sample)
    ]
    assert pseudonymiser.pseudonymise_many(sample) == expected
    assert [pseudonymiser.pseudonym(i) for i in sample] == expected
    assert precomputed_pads(key, sample) == hmac_digest_per_id(key, sample)

    methods: dict[str, Callable[[], object]] = {
        "hmac.new per id (stdlib)": lambda: hmac_new_per_id(key, ids),
        "hmac.digest per id (stdlib, OpenSSL one-shot)": lambda: hmac_digest_per_id(key, ids),
        "precomputed inner/outer pads (hashlib copy)": lambda: precomputed_pads(key, ids),
        "Pseudonymiser.pseudonym per id": lambda: [pseudonymiser.pseudonym(i) for i in ids],
        "Pseudonymiser.pseudonymise_many": lambda: pseudonymiser.pseudonymise_many(ids),
    }
    rates: dict[str, list[float]] = {name: [] for name in methods}
    cpu_rates: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(args.rounds):
        for name, run in methods.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            run()
            cpu_rates[name].append(len(ids) / (time.process_time() - cpu_start))
            rates[name].append(len(ids) / (time.perf_counter() - start))

    baseline = statistics.median(rates["hmac.new per id (stdlib)"])
    print(
        f"{len(ids):,} ids x {args.rounds} interleaved rounds; Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, one process"
    )
    width = max(map(len, methods))
    print(
        f"{'method':<{width}}  {'best ids/s':>12}  {'median ids/s':>12}  "
        f"{'ids/CPU-s':>12}  {'x hmac.new':>10}"
    )
    for name, values in rates.items():
        median = statistics.median(values)
        cpu = statistics.median(cpu_rates[name])
        print(
            f"{name:<{width}}  {max(values):>12,.0f}  {median:>12,.0f}  {cpu:>12,.0f}  "
            f"{median / baseline:>10.2f}"
        )
    print("ids/s: wall clock; ids/CPU-s: median by this process's CPU time; ratio of medians")
    ours = "Pseudonymiser.pseudonymise_many"
    pairs = [(ours, name) for name in list(methods)[:3]]
    pairs.append(("Pseudonymiser.pseudonym per id", "hmac.new per id (stdlib)"))
    BenchResult(
        name="pseudonyms",
        title="Keyed pseudonyms per second",
        script="bench/pseudonyms.py",
        versions={
            "Python (hashlib, hmac)": platform.python_version(),
            "OpenSSL": ssl.OPENSSL_VERSION,
        },
        comparisons=[
            Comparison(
                name=f"{mine} vs {theirs}",
                unit="ids/s",
                better="higher",
                ours=mine,
                ours_samples=rates[mine],
                theirs=theirs,
                theirs_samples=rates[theirs],
            )
            for mine, theirs in pairs
        ],
        notes=(
            f"{len(ids):,} ids per round, {args.rounds} interleaved rounds, one process. The "
            "stdlib rows compute only the 32-byte MAC; ours also strips, checks and formats "
            "each id into its 21-character pseudonym."
        ),
    ).write(args.results)


if __name__ == "__main__":
    main()
