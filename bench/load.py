"""A real load test: many researchers across several projects on one site, with locust.

A fresh site in a temporary folder (the bundled OIDC provider, JupyterHub, the project
spawner, the review and audit services; `tests/e2e/sites.py`'s settings) runs the demo
policy plus `--projects` load projects with `--users` researchers between them
(bench/load_policy.py), each project's clinical records really ingested. Then locust, the
load tool, runs headless on loopback for `--duration` seconds with one simulated user per
researcher, arriving `--spawn-rate` per second (bench/load_users.py): log in through the
provider's form, spawn the project workspace, open a kernel over the websocket, then
execute cells, call the hub's REST API and submit release requests through the
workspace's review API, with 1-5 s of thinking between steps. Afterwards the workspaces
are left idle (kernels shut down) for `--idle` seconds and `docker stats` reads each one's
memory.

Reported: p50 and p95 of every step (hub API, spawn, execute, release), memory per idle
workspace, and every error (the goal is none). The host firewall rules name one hub port:
if another jupyter-tre stack on this host replaces them during the run, the bench puts its
own back (and counts how often). Everything the bench made is removed at the end.

    .venv/bin/python bench/load.py [--users 20] [--projects 3] [--duration 300]
        [--spawn-rate 0.2] [--idle 20] [--think 1 5] [--image TAG] [--results DIR] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from datetime import date
from importlib.metadata import version
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(1, str(REPO / "src"))

import docker  # noqa: E402

from bench.load_policy import DATASET, Researcher, researchers, write_bench_policy  # noqa: E402
from bench.results import (  # noqa: E402
    BenchResult,
    Comparison,
    Figure,
    docker_version,
    git_revision,
    ours_version,
)
from tests.e2e.sites import site_settings  # noqa: E402
from tre.demo.silos import write_demo_silos  # noqa: E402
from tre.hub.config import firewall_rules  # noqa: E402
from tre.hub.firewall import (  # noqa: E402
    DEFAULT_BACKEND,
    Family,
    apply_rules,
    remove_rules,
    rules_in_place,
)
from tre.hub.networks import get_project_network, remove_project_network  # noqa: E402
from tre.ingest import ingest_version  # noqa: E402
from tre.policy import load_policy  # noqa: E402
from tre.pseudonym import create_master_key, default_master_key_path  # noqa: E402
from tre.settings import HubSettings, Settings  # noqa: E402
from tre.stack import Stack  # noqa: E402

USERS_FILE = Path(__file__).resolve().parent / "load_users.py"
UNITS = {"B": 1, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "KB": 1e3, "MB": 1e6, "GB": 1e9}
MEMORY = re.compile(r"^\s*([\d.]+)\s*([KMG]?i?B)\s*/", re.IGNORECASE)
STEPS_IN_SECONDS = ("log in (OIDC)", "spawn to ready")


class BenchError(RuntimeError):
    pass


# -- the site --------------------------------------------------------------------------------


def make_site(root: Path, image: str, people: list[Researcher]) -> tuple[Settings, list[str]]:
    """Settings of a fresh site under `root`, its policy written, every load project's data
    ingested; returns the settings and the load projects."""
    today = date.today()
    settings = site_settings(root, image)
    projects = write_bench_policy(settings.policy_dir, today, people)
    settings.var_dir.mkdir()
    write_demo_silos(settings.var_dir / "silos")
    create_master_key(default_master_key_path(settings.keys_dir))
    policy = load_policy(settings.policy_dir, today)
    for project in projects:
        ingest_version(settings, policy, project, DATASET[0], DATASET[1], today=today)
    return settings, projects


class FirewallKeeper(threading.Thread):
    """Puts this site's host firewall rules back whenever another stack replaced them."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.rules = firewall_rules(settings)
        self.replaced = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.5):
            with contextlib.suppress(Exception):  # a failed check is retried in a second
                if not rules_in_place(self.rules):
                    apply_rules(self.rules)
                    self.replaced += 1
                    print("note: another stack replaced the firewall rules; ours are back")


def firewall_present() -> bool:
    return "TRE-INPUT" in DEFAULT_BACKEND.listing(Family.ipv4)


# -- memory ------------------------------------------------------------------------------------


def mib(text: str) -> float:
    """`docker stats`' "123.4MiB / 2GiB" as MiB of the first figure."""
    found = MEMORY.match(text)
    if not found:
        raise BenchError(f"docker stats: cannot read the memory figure {text!r}")
    return float(found.group(1)) * UNITS[found.group(2).upper()] / 2**20


def memory(names: list[str]) -> dict[str, float]:
    """MiB in use per container (`docker stats --no-stream`, as an operator reads it)."""
    if not names:
        return {}
    done = subprocess.run(
        ["docker", "stats", "--no-stream", "--format", "{{.Name}}\t{{.MemUsage}}", *names],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    rows = (line.split("\t", 1) for line in done.stdout.splitlines() if "\t" in line)
    return {name: mib(usage) for name, usage in rows}


def prefixes(people: list[Researcher]) -> tuple[str, ...]:
    """Container names start `tre-<user>--` (DockerSpawner escapes the server name after it)."""
    return tuple(f"tre-{p.username}--" for p in people)


def workspaces(
    client: docker.DockerClient, people: list[Researcher], *, stopped: bool = False
) -> list[str]:
    return sorted(
        c.name for c in client.containers.list(all=stopped) if c.name.startswith(prefixes(people))
    )


class MemoryWatch(threading.Thread):
    """`docker stats` of the workspaces every `every` seconds while the load runs."""

    def __init__(self, client: docker.DockerClient, people: list[Researcher], every: float = 20):
        super().__init__(daemon=True)
        self.client, self.people, self.every = client, people, every
        self.samples: list[float] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.every):
            with contextlib.suppress(Exception):
                self.samples += memory(workspaces(self.client, self.people)).values()


# -- locust ------------------------------------------------------------------------------------


def run_locust(plan: dict[str, Any], root: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    plan_file = root / "plan.json"
    plan_file.write_text(json.dumps(plan), encoding="utf-8")
    command = [
        sys.executable, "-m", "locust", "-f", str(USERS_FILE), "--headless",
        "--users", str(args.users), "--spawn-rate", str(args.spawn_rate),
        "--run-time", f"{args.duration}s", "--stop-timeout", "60",
        "--only-summary", "--loglevel", "WARNING", "--exit-code-on-error", "0",
        "--csv", str(root / "locust"),
    ]  # fmt: skip
    env = {**os.environ, "TRE_LOAD_PLAN": str(plan_file), "NO_PROXY": "*"}
    print(f"locust: {args.users} researchers, {args.duration} s", flush=True)
    done = subprocess.run(command, env=env, cwd=root, check=False, timeout=args.duration + 900)
    if done.returncode != 0:
        raise BenchError(f"locust exited with {done.returncode}")
    samples: list[dict[str, Any]] = json.loads(Path(plan["samples"]).read_text(encoding="utf-8"))
    return samples


# -- results -----------------------------------------------------------------------------------


def p95(values: list[float]) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[94]


def summarise(
    samples: list[dict[str, Any]],
    idle: dict[str, float],
    loaded: list[float],
    args: argparse.Namespace,
    projects: list[str],
) -> tuple[list[Comparison], list[Figure], str]:
    times: dict[str, list[float]] = defaultdict(list)
    errors: Counter[str] = Counter()
    for s in samples:
        if s["ok"]:
            times[s["name"]].append(s["ms"])
        else:
            errors[f"{s['name']}: {s['error']}"] += 1
    comparisons, figures = [], []
    print(f"\n{'step':<28}{'n':>6}{'p50':>10}{'p95':>10}  unit")
    for name, values in times.items():
        seconds = name in STEPS_IN_SECONDS
        scaled = [v / 1000 for v in values] if seconds else values
        unit = "s" if seconds else "ms"
        comparisons.append(Comparison(name, unit, "lower", "jupyter-tre", scaled))
        figures.append(Figure(f"{name}, p95", p95(scaled), unit))
        middle, high = statistics.median(scaled), p95(scaled)
        print(f"{name:<28}{len(scaled):>6}{middle:>10.3g}{high:>10.3g}  {unit}")
    if idle:
        comparisons.append(
            Comparison(
                "memory per idle workspace", "MiB", "lower", "jupyter-tre", list(idle.values())
            )
        )
        figures += [
            Figure("memory per idle workspace, median", statistics.median(idle.values()), "MiB"),
            Figure("memory per idle workspace, max", max(idle.values()), "MiB"),
        ]
    if loaded:
        figures.append(Figure("memory per workspace under load, p95", p95(loaded), "MiB"))
    total = sum(errors.values())
    figures += [
        Figure("workspaces ready", len(times.get("spawn to ready", [])), f"of {args.users}"),
        Figure("errors", total, "steps", "zero"),
        Figure("steps measured", len(samples), "steps"),
        Figure("workspaces idle at the end", len(idle), f"of {args.users}"),
    ]
    error_text = (
        "No step failed."
        if not errors
        else "Errors:\n\n" + "\n".join(f"- {n} x {cell}" for cell, n in errors.most_common(20))
    )
    print(f"\n{error_text}")
    return comparisons, figures, error_text


def versions(image: str) -> dict[str, str]:
    idp = json.loads(
        (REPO / "demo-idp" / "node_modules" / "oidc-provider" / "package.json").read_text()
    )
    return {
        "locust": version("locust"),
        "JupyterHub": version("jupyterhub"),
        "dockerspawner": version("dockerspawner"),
        "oidc-provider (demo IdP)": idp["version"],
        "Docker": docker_version(),
        "workspace image": image,
        "jupyter-tre": f"{ours_version()} (git {git_revision()})",
    }


def main() -> None:  # noqa: PLR0915 - one linear story: set up, load, measure, clean up
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(
        description=doc.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=20, help="simulated researchers")
    parser.add_argument("--projects", type=int, default=3, help="projects they work in")
    parser.add_argument("--duration", type=int, default=300, help="seconds of load, ramp included")
    parser.add_argument(
        "--spawn-rate", type=float, default=0.2, help="researchers arriving per second"
    )
    parser.add_argument("--idle", type=int, default=20, help="seconds idle before docker stats")
    parser.add_argument("--think", type=float, nargs=2, default=(1.0, 5.0), help="min max s")
    parser.add_argument("--image", default=HubSettings().image, help="workspace image")
    parser.add_argument("--results", type=Path, help="result files folder (default var/bench)")
    parser.add_argument("--keep", action="store_true", help="keep the site's folder (its logs)")
    args = parser.parse_args()
    try:
        people = researchers(args.users, args.projects)
    except ValueError as err:
        parser.error(str(err))

    client = docker.from_env()
    try:
        client.images.get(args.image)
    except docker.errors.ImageNotFound:
        sys.exit(f"{args.image} is missing: build it with `tre image build` (make image)")
    for name in workspaces(client, people, stopped=True):
        sys.exit(f"container {name} exists: is another load bench running?")
    projects = sorted({p.project for p in people})
    networks_before = {p for p in projects if get_project_network(client, p) is not None}
    firewall_before = firewall_present()
    others = [c.name for c in client.containers.list() if not c.name.startswith(prefixes(people))]
    load_before = os.getloadavg()

    root = Path(tempfile.mkdtemp(prefix="load-bench-"))
    stack: Stack | None = None
    settings: Settings | None = None
    keeper: FirewallKeeper | None = None
    watch = MemoryWatch(client, people)
    try:
        began = time.perf_counter()
        settings, projects = make_site(root, args.image, people)
        stack = Stack(settings)
        stack.start()
        print(f"site up in {time.perf_counter() - began:.0f} s: {', '.join(projects)} ingested")
        keeper = FirewallKeeper(settings)
        keeper.start()
        watch.start()
        plan = {
            "url": settings.hub.public_url,
            "people": [{"username": p.username, "project": p.project} for p in people],
            "samples": str(root / "samples.json"),
            "think": list(args.think),
            "spawn_timeout": 300,
        }
        samples = run_locust(plan, root, args)
        watch.done.set()
        load_during = os.getloadavg()
        time.sleep(args.idle)
        idle = memory(workspaces(client, people))
        comparisons, figures, error_text = summarise(samples, idle, watch.samples, args, projects)
        figures.append(Figure("firewall rules put back", keeper.replaced, "times"))
        notes = (
            f"{args.users} researchers across {len(projects)} projects "
            f"({', '.join(projects)}, each with the clinical records ingested) on one site, "
            f"locust headless on loopback for {args.duration} s, researchers arriving "
            f"{args.spawn_rate:g} per second (the last one {args.users / args.spawn_rate:.0f} s "
            f"in), {args.think[0]:g}-{args.think[1]:g} s of thinking between steps. "
            "Each researcher logs in through the demo OIDC provider's form, spawns her "
            "project workspace (spawn to ready: from the spawn form's POST to the server "
            "answering /api/status through the proxy), opens a kernel, then executes cells "
            f"(`{json.dumps('sum(i * i for i in range(100_000))')[1:-1]}`) and writes "
            "tables, asks the hub's REST API about herself, and submits release requests "
            "(create, add the table, submit) through her workspace's jupyter_tre_lab "
            "routes, which forward them to the review service with the server's token. "
            f"Memory: `docker stats` of each workspace after {args.idle} s idle with its "
            "kernel shut down (under load: every 20 s during the run, kernels open). "
            f"Load average before {load_before[0]:.1f}, at the end of the load "
            f"{load_during[0]:.1f}. Containers of other work on the engine when the run "
            f"began: {len(others)}"
            + (
                " (other helpers' Docker tests ran at the same time: the figures include "
                "that contention)"
                if others
                else ""
            )
            + f"; the firewall rules were put back {keeper.replaced} times.\n\n"
            + error_text
        )
        result = BenchResult(
            name="load",
            title=f"Load: {args.users} researchers, {len(projects)} projects, one host",
            script="bench/load.py",
            versions=versions(args.image),
            comparisons=comparisons,
            figures=figures,
            notes=notes,
        )
        if args.results:
            result.write(args.results)
        else:
            result.write()
    finally:
        watch.done.set()
        if keeper is not None:
            keeper.done.set()
        cleanup(
            client,
            stack=stack,
            settings=settings,
            people=people,
            projects=projects,
            networks_before=networks_before,
            firewall_before=firewall_before,
            root=None if args.keep else root,
        )
        if args.keep:
            print(f"kept {root}")


def cleanup(
    client: docker.DockerClient,
    *,
    stack: Stack | None,
    settings: Settings | None,
    people: list[Researcher],
    projects: list[str],
    networks_before: set[str],
    firewall_before: bool,
    root: Path | None,
) -> None:
    steps: list[tuple[str, Any]] = [("stop the stack", lambda: stack.stop() if stack else None)]
    steps.append(
        (
            "remove the workspaces",
            lambda: [
                client.containers.get(name).remove(force=True)
                for name in workspaces(client, people, stopped=True)
            ],
        )
    )
    for project in projects:
        if project not in networks_before:
            steps.append(
                (f"remove {project}'s network", lambda p=project: remove_project_network(client, p))
            )
    if settings is not None and not firewall_before:
        steps.append(("remove firewall rules", lambda: remove_rules(firewall_rules(settings))))
    if root is not None:
        steps.append((f"remove {root}", lambda: shutil.rmtree(root)))
    for what, step in steps:
        try:
            step()
        except Exception as exc:  # keep cleaning up; say what was left behind
            print(f"cleanup: could not {what}: {exc}", file=sys.stderr)


if __name__ == "__main__":
    main()
