"""One benchmark's results as a JSON file (var/bench/<name>.json) that bench/report.py turns
into docs/reference/benchmarks.md.

Invariant: a result file holds the raw samples of every comparison, so every median and
ratio in the report is computed from what was measured, and a file that does not have this
shape is refused with an error naming it and the field that is wrong.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "var" / "bench"
SCHEMA = 1

Better = Literal["lower", "higher"]


class ResultError(ValueError):
    """A result file is missing or does not hold what the report needs; the message names it."""


@dataclass
class Comparison:
    """One measurement of ours beside the tool one would otherwise use (`theirs`, or None
    when there is nothing to put beside it). `ratio` is ours / theirs, of the medians."""

    name: str
    unit: str
    better: Better
    ours: str
    ours_samples: list[float]
    theirs: str | None = None
    theirs_samples: list[float] = field(default_factory=list)

    @property
    def ours_median(self) -> float:
        return statistics.median(self.ours_samples)

    @property
    def theirs_median(self) -> float | None:
        return statistics.median(self.theirs_samples) if self.theirs_samples else None

    @property
    def ratio(self) -> float | None:
        theirs = self.theirs_median
        return None if not theirs else self.ours_median / theirs


@dataclass
class Figure:
    """A single number the issue asks for (a p95, memory, an error count), with its goal."""

    name: str
    value: float
    unit: str
    goal: str = ""


@dataclass
class BenchResult:
    name: str
    title: str
    script: str
    versions: dict[str, str]
    comparisons: list[Comparison]
    figures: list[Figure] = field(default_factory=list)
    notes: str = ""
    machine: dict[str, Any] = field(default_factory=dict)
    when: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def write(self, directory: Path = RESULTS_DIR) -> Path:
        """Write `<directory>/<name>.json` (a temporary name first, then a rename)."""
        if not self.machine:
            self.machine = machine()
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.name}.json"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        record = {"schema": SCHEMA, **asdict(self)}
        tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)
        print(f"results written to {path}")
        return path


def _need(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ResultError(f"{where}: expected {names}, got {value!r:.60}")
    return value


def _samples(value: Any, where: str, *, required: bool) -> list[float]:
    items = _need(value, list, where)
    if required and not items:
        raise ResultError(f"{where}: no samples")
    return [float(_need(x, (int, float), f"{where}[{i}]")) for i, x in enumerate(items)]


def _comparison(raw: Any, where: str) -> Comparison:
    raw = _need(raw, dict, where)
    try:
        better = raw["better"]
        if better not in ("lower", "higher"):
            raise ResultError(f"{where}.better: expected 'lower' or 'higher', got {better!r}")
        theirs = raw.get("theirs")
        return Comparison(
            name=_need(raw["name"], str, f"{where}.name"),
            unit=_need(raw["unit"], str, f"{where}.unit"),
            better=better,
            ours=_need(raw["ours"], str, f"{where}.ours"),
            ours_samples=_samples(raw["ours_samples"], f"{where}.ours_samples", required=True),
            theirs=None if theirs is None else _need(theirs, str, f"{where}.theirs"),
            theirs_samples=_samples(
                raw.get("theirs_samples", []),
                f"{where}.theirs_samples",
                required=theirs is not None,
            ),
        )
    except KeyError as missing:
        raise ResultError(f"{where}: missing field {missing}") from None


def load_result(path: Path) -> BenchResult:
    """Read a result file; `ResultError` names the file and what is wrong with it."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultError(f"{path}: no such result file (run its benchmark first)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ResultError(f"{path}: not a readable JSON result file ({err})") from None
    where = str(path)
    raw = _need(raw, dict, where)
    if raw.get("schema") != SCHEMA:
        raise ResultError(f"{where}: schema {raw.get('schema')!r}, expected {SCHEMA}")
    try:
        versions = _need(raw["versions"], dict, f"{where}: versions")
        return BenchResult(
            name=_need(raw["name"], str, f"{where}: name"),
            title=_need(raw["title"], str, f"{where}: title"),
            script=_need(raw["script"], str, f"{where}: script"),
            versions={str(k): str(v) for k, v in versions.items()},
            comparisons=[
                _comparison(c, f"{where}: comparisons[{i}]")
                for i, c in enumerate(_need(raw["comparisons"], list, f"{where}: comparisons"))
            ],
            figures=[
                Figure(
                    name=_need(f["name"], str, f"{where}: figures[{i}].name"),
                    value=float(_need(f["value"], (int, float), f"{where}: figures[{i}].value")),
                    unit=_need(f["unit"], str, f"{where}: figures[{i}].unit"),
                    goal=str(f.get("goal", "")),
                )
                for i, f in enumerate(_need(raw.get("figures", []), list, f"{where}: figures"))
            ],
            notes=str(raw.get("notes", "")),
            machine=_need(raw.get("machine", {}), dict, f"{where}: machine"),
            when=str(raw.get("when", "")),
        )
    except (KeyError, TypeError) as missing:
        raise ResultError(f"{where}: missing field {missing}") from None


# -- the machine -------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def docker_version() -> str:
    try:
        done = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "not available"
    return done.stdout.strip() if done.returncode == 0 else "not available"


def machine() -> dict[str, Any]:
    """The host a result was measured on, and how busy it was at the end of the run."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "kernel": platform.release(),
        "docker": docker_version(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def ours_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("jupyter-tre")
    except PackageNotFoundError:
        return "source tree"


def git_revision() -> str:
    done = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"
