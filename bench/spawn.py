"""Spawn-to-ready and first-result latency: jupyter-tre beside stock JupyterHub + DockerSpawner.

Both stacks run at once, on the same workspace image, behind the same
configurable-http-proxy, and are measured in interleaved rounds (the order
flips every round) so that load on the machine hits both alike:

- jupyter-tre: `tre.stack.Stack` (the bundled OIDC provider, JupyterHub, the
  project spawner with policy check, dataset verification, firewall check and
  the project's internal network) on a fresh site: the demo policy with its
  dates moved to today, demo silos, a new master key, the datasets of project
  gbm-linkage really ingested. The person logs in through the provider's form.
- stock: JupyterHub with plain DockerSpawner on Docker's default bridge
  (bench/stock_jupyterhub_config.py), logging in through the hub's login form.

spawn-to-ready: from the POST of the spawn form to the first 200 of the
server's /api/status through the proxy (with the OAuth handshake a browser
makes; the bench polls every 0.1 s, adding ~0.05 s to both on average).
first result: from the kernel-creation request to the output of `print(1+1)`
arriving over the kernel websocket. One warm-up spawn per stack (the first
jupyter-tre spawn also hashes every dataset file) is reported apart from the
statistics. p95 is interpolated between order statistics (10 spawns: between
the 9th and the 10th).

Everything lives in a temporary folder; the stacks, their containers and the
folder are removed at the end (the project network and the host firewall
rules too, unless they were there before). The firewall rules are host-wide
and name one hub port: if another jupyter-tre stack on this host replaces
them during the run, the bench puts its own back before its next spawn and
says so. Only loopback and the Docker bridges are contacted.

    .venv/bin/python bench/spawn.py [--spawns 10] [--json PATH]
        [--hub-config EXTRA.py] [--image TAG] [--profile]

`--hub-config` loads a further JupyterHub config file after jupyter-tre's own
(to measure a tuning prototype without changing the project); `--profile`
runs the jupyter-tre hub at DEBUG level and prints the hub's and the
container's log lines of the last spawn of each stack, with their offsets
from the spawn request.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(1, str(REPO / "src"))

import docker  # noqa: E402
import jupyterhub  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

import tre.stack  # noqa: E402
from bench.results import RESULTS_DIR, BenchResult, Comparison, docker_version  # noqa: E402
from tests.e2e.hubclient import HubUser, message_of, parse_form  # noqa: E402
from tests.e2e.sites import free_port, policy_for_today  # noqa: E402
from tre.demo.silos import write_demo_silos  # noqa: E402
from tre.hub.config import PROXY_COMMAND, firewall_rules  # noqa: E402
from tre.hub.firewall import (  # noqa: E402
    DEFAULT_BACKEND,
    Family,
    apply_rules,
    remove_rules,
    rules_in_place,
)
from tre.hub.networks import get_project_network, network_name, remove_project_network  # noqa: E402
from tre.ingest import granted_versions, ingest_version  # noqa: E402
from tre.policy import load_policy  # noqa: E402
from tre.pseudonym import create_master_key, default_master_key_path  # noqa: E402
from tre.settings import (  # noqa: E402
    AuditSettings,
    HubSettings,
    MirrorSettings,
    OidcSettings,
    PublishSettings,
    ReviewSettings,
    Settings,
)

PROJECT = "gbm-linkage"
TRE_USER = "bob"
"""A member of gbm-linkage; not alice, whose container name the e2e tests use."""
STOCK_USER = "benchuser"
STOCK_PREFIX = "spawnbench"
"""Stock containers are named `spawnbench-<user>`: nothing else on the engine uses that."""
TRE_CONTAINERS = f"tre-{TRE_USER}--"
STOCK_CONTAINERS = f"{STOCK_PREFIX}-{STOCK_USER}"
POLL = 0.1
"""Seconds between the bench's readiness probes (the same for both stacks)."""
READY_TIMEOUT = 180.0
STOCK_CONFIG = Path(__file__).resolve().parent / "stock_jupyterhub_config.py"
LOG_TIME = re.compile(r"^\[\w (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) ")
NOISE = re.compile(r" 302 GET /user/| 424 GET /hub/user/| oauthlib\.|Checking access to /hub/user/")
"""Hub log lines of the bench's own readiness probes, left out of the profile."""
SPAWN_ERROR = re.compile(r'class="[^"]*spawn-error-msg[^"]*"[^>]*>(.*?)</', re.DOTALL)


class BenchError(RuntimeError):
    """A stack did not start or a spawn failed; the message says where to look."""


# -- one person's server, as HTTP sees it ----------------------------------------------------------


@dataclass
class Target:
    """A server to spawn: who, at which URLs, and how its hub is told to start and stop it."""

    label: str
    user: HubUser
    server: str
    """The named server ('' for the default server)."""
    form: dict[str, str]
    hub_log: Path
    container_prefix: str
    """Names of this target's containers start with this (DockerSpawner escapes the rest)."""
    before_spawn: Callable[[], None] = lambda: None

    @property
    def prefix(self) -> str:
        name = self.user.username
        return f"/user/{name}/{self.server}/" if self.server else f"/user/{name}/"

    @property
    def spawn_path(self) -> str:
        name = self.user.username
        return f"/hub/spawn/{name}/{self.server}" if self.server else f"/hub/spawn/{name}"

    @property
    def api_path(self) -> str:
        name = self.user.username
        return f"/users/{name}/servers/{self.server}" if self.server else f"/users/{name}/server"


@dataclass
class Sample:
    spawn_to_ready: float
    first_result: float
    spawn_started: float
    """Wall-clock time (epoch seconds) of the spawn request, for matching log lines."""


def spawn_to_ready(target: Target) -> float:
    """POST the spawn form; return seconds until /api/status answers 200 through the proxy."""
    user = target.user
    user.get("/hub/home")  # a page, as before any click: refreshes the hub's _xsrf cookie
    data = {**target.form, "_xsrf": user.xsrf("/hub/")}
    start = time.perf_counter()
    response = user._checked("POST", user.url(target.spawn_path), data=data, allow_redirects=False)
    if response.status_code not in (302, 303):
        shown = SPAWN_ERROR.search(response.text)
        why = message_of(response)[:300] if shown is None else shown.group(1).strip()
        raise BenchError(f"{target.label}: spawn refused ({response.status_code}): {why}")
    status_url = user.url(target.prefix + "api/status")
    deadline = start + READY_TIMEOUT
    while time.perf_counter() < deadline:
        # Until the proxy has the route, the hub answers (via /hub/user/...): 424.
        status = user._checked("GET", status_url, allow_redirects=True)
        if status.status_code == 200 and status.headers.get("content-type", "").startswith(
            "application/json"
        ):
            return time.perf_counter() - start
        if status.status_code in (424, 503) or "/hub/" in status.url:
            time.sleep(POLL)
            continue
        # The server answers but knows no one yet: the OAuth handshake a browser's
        # first page makes (hub authorize, server callback, cookie), then ask again.
        page = user._checked("GET", user.url(target.prefix + "lab"), allow_redirects=True)
        if page.status_code >= 500 or "/hub/spawn-pending/" in page.url:
            time.sleep(POLL)
    raise BenchError(
        f"{target.label}: not ready {READY_TIMEOUT:g} s after the spawn request; "
        f"see {target.hub_log}"
    )


def first_result(target: Target, timeout: float = 60) -> float:
    """Create a kernel, run print(1+1) over its websocket; seconds until the output arrives."""
    user = target.user
    prefix = target.prefix
    headers = {"X-XSRFToken": user.xsrf(prefix)}
    start = time.perf_counter()
    kernel = user._checked(
        "POST", user.url(prefix + "api/kernels"), headers=headers, json={"name": "python3"}
    )
    if kernel.status_code != 201:
        raise BenchError(f"{target.label}: no kernel ({kernel.status_code}): {kernel.text}")
    kernel_id = kernel.json()["id"]
    try:
        base = user.public_url.replace("http://", "ws://").rstrip("/")
        url = f"{base}{prefix}api/kernels/{kernel_id}/channels"
        cookies = "; ".join(f"{c.name}={c.value}" for c in user.session.cookies)
        msg_id = uuid.uuid4().hex
        request = {
            "header": {
                "msg_id": msg_id,
                "username": user.username,
                "session": uuid.uuid4().hex,
                "msg_type": "execute_request",
                "version": "5.3",
                "date": datetime.now(UTC).isoformat(),
            },
            "parent_header": {},
            "metadata": {},
            "content": {
                "code": "print(1+1)",
                "silent": False,
                "store_history": False,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": True,
            },
            "channel": "shell",
            "buffers": [],
        }
        deadline = time.monotonic() + timeout
        with connect(url, additional_headers={"Cookie": cookies}, open_timeout=timeout) as ws:
            ws.send(json.dumps(request))
            while time.monotonic() < deadline:
                reply = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
                if reply.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = reply["header"]["msg_type"]
                content = reply["content"]
                if (kind == "stream" and content.get("text", "").strip() == "2") or (
                    kind == "execute_result"
                ):
                    return time.perf_counter() - start
                if kind == "error":
                    raise BenchError(f"{target.label}: " + "\n".join(content["traceback"]))
        raise BenchError(f"{target.label}: no output from print(1+1) in {timeout:g} s")
    finally:
        user._checked("DELETE", user.url(f"{prefix}api/kernels/{kernel_id}"), headers=headers)


def stop(target: Target, timeout: float = 60) -> None:
    response = target.user.api("DELETE", target.api_path)
    if response.status_code not in (202, 204):
        raise BenchError(f"{target.label}: stop refused ({response.status_code}): {response.text}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if target.user.server(target.server) is None:
            return
        time.sleep(0.2)
    raise BenchError(f"{target.label}: server still there {timeout:g} s after the stop request")


def measure(target: Target) -> Sample:
    target.before_spawn()
    started = time.time()
    ready = spawn_to_ready(target)
    result = first_result(target)
    stop(target)
    return Sample(ready, result, started)


# -- jupyter-tre -----------------------------------------------------------------------------------


def tre_site(root: Path, image: str, hub_config: Path | None, debug: bool) -> Settings:
    """A fresh site under `root` with the datasets of PROJECT ingested; the hub config set."""
    today = date.today()
    policy_dir = root / "policy"
    policy_for_today(policy_dir, today)
    var = root / "var"
    var.mkdir()
    write_demo_silos(var / "silos")
    settings = Settings(
        policy_dir=policy_dir,
        var_dir=var,
        hub=HubSettings(
            public_url=f"http://127.0.0.1:{free_port()}",
            hub_port=free_port(),
            proxy_api_port=free_port(),
            image=image,
        ),
        review=ReviewSettings(port=free_port()),
        audit=AuditSettings(port=free_port()),
        oidc=OidcSettings(demo_idp_port=free_port()),
        # Neither takes part in a spawn; stock JupyterHub runs neither.
        mirror=MirrorSettings(enabled=False, port=free_port()),
        publish=PublishSettings(enabled=False),
    )
    create_master_key(default_master_key_path(settings.keys_dir))
    policy = load_policy(policy_dir, today)
    for dataset, version, _ in granted_versions(settings, policy, PROJECT, today):
        ingest_version(settings, policy, PROJECT, dataset, version, today=today)
    # jupyter-tre's own config, then the extras (debug logging, --hub-config).
    wrapper = root / "jupyterhub_config.py"
    lines = [f"load_subconfig({str(tre.stack.HUB_CONFIG)!r})"]
    if debug:
        lines.append("c.JupyterHub.log_level = 'DEBUG'")
    if hub_config is not None:
        lines.append(f"load_subconfig({str(hub_config.resolve())!r})")
    wrapper.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tre.stack.HUB_CONFIG = wrapper
    return settings


def tre_target(settings: Settings) -> Target:
    user = HubUser(settings.hub.public_url, TRE_USER)
    page = user.log_in()
    if not (page.status_code == 200 and page.url.endswith("/hub/home")):
        raise BenchError(f"jupyter-tre: login failed: {message_of(page)[:300]}")
    rules = firewall_rules(settings)

    def ensure_firewall() -> None:
        # The rules are host-wide and name one hub port: any other jupyter-tre stack
        # started on this host meanwhile (a test run) has put its own port in, and the
        # spawner would rightly refuse. Put ours back, as starting the stack did.
        if not rules_in_place(rules):
            print("note: another stack replaced the host firewall rules; re-applying ours")
            apply_rules(rules)

    return Target(
        label="jupyter-tre",
        user=user,
        server=PROJECT,
        form={"project": PROJECT},
        hub_log=settings.logs_dir / "jupyterhub.log",
        container_prefix=TRE_CONTAINERS,
        before_spawn=ensure_firewall,
    )


# -- stock JupyterHub + DockerSpawner --------------------------------------------------------------


@dataclass
class StockHub:
    state_dir: Path
    image: str
    public_url: str = field(default_factory=lambda: f"http://127.0.0.1:{free_port()}")
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.state_dir / "jupyterhub.log"

    def start(self, hub_ip: str) -> None:
        self.state_dir.mkdir(mode=0o700, exist_ok=True)
        settings = {
            "state_dir": str(self.state_dir),
            "public_url": self.public_url,
            "hub_ip": hub_ip,
            "hub_port": free_port(),
            "proxy_api_port": free_port(),
            "proxy_command": str(PROXY_COMMAND),
            "password": self.password,
            "user": STOCK_USER,
            "image": self.image,
            "container_prefix": STOCK_PREFIX,
        }
        env = {**os.environ, "SPAWN_BENCH_STOCK": json.dumps(settings)}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "jupyterhub", "-f", str(STOCK_CONFIG)],
                cwd=self.state_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        url = self.public_url + "/hub/api/"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"stock JupyterHub exited while starting; see {self.log}")
            with (
                contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
                urllib.request.urlopen(url, timeout=2) as response,
            ):
                if response.status == 200:
                    return
            time.sleep(0.2)
        raise BenchError(f"stock JupyterHub did not answer {url} in 60 s; see {self.log}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def target(self) -> Target:
        user = HubUser(self.public_url, STOCK_USER)
        page = user.get("/hub/login")
        form = parse_form(page.text)
        if form.action is None:
            raise BenchError(f"stock: no login form at {page.url}")
        form.fields.update({"username": STOCK_USER, "password": self.password})
        # Not following the redirect: stock JupyterHub sends people to /hub/spawn,
        # which would start the server before the bench times it.
        done = user._checked(
            "POST", urljoin(page.url, form.action), data=form.fields, allow_redirects=False
        )
        if done.status_code != 302 or user.get("/hub/home").status_code != 200:
            raise BenchError(f"stock: login failed: {message_of(done)[:300]}")
        return Target(
            label="stock",
            user=user,
            server="",
            form={},
            hub_log=self.log,
            container_prefix=STOCK_CONTAINERS,
        )


def default_bridge_gateway(client: docker.DockerClient) -> str:
    """The host's address on Docker's default bridge (the engine's IPAM may not name it)."""
    attrs = client.networks.get("bridge").attrs
    config = next(c for c in attrs["IPAM"]["Config"] if ":" not in c.get("Subnet", ":"))
    if config.get("Gateway"):
        return str(config["Gateway"])
    bridge = (attrs.get("Options") or {}).get("com.docker.network.bridge.name", "docker0")
    shown = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "dev", bridge],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return shown[shown.index("inet") + 1].split("/")[0]


# -- statistics and output -------------------------------------------------------------------------


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50": statistics.median(ordered),
        "p95": statistics.quantiles(ordered, n=100, method="inclusive")[94],
        "mean": statistics.fmean(ordered),
        "min": ordered[0],
        "max": ordered[-1],
    }


def table(results: dict[str, list[Sample]], warmup: dict[str, Sample]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    print(f"{'':<16}{'':<13}{'n':>3}{'p50 s':>8}{'p95 s':>8}{'mean s':>8}{'min s':>8}{'max s':>8}")
    for metric in ("spawn_to_ready", "first_result"):
        stats = {
            label: summary([getattr(s, metric) for s in samples])
            for label, samples in results.items()
        }
        ratio = {k: stats["jupyter-tre"][k] / stats["stock"][k] for k in ("p50", "p95", "mean")}
        out[metric] = {**stats, "ratio": ratio}
        title = metric.replace("_", "-")
        for i, (label, s) in enumerate(stats.items()):
            n = len(results[label])
            print(
                f"{title if i == 0 else '':<16}{label:<13}{n:>3}{s['p50']:>8.2f}{s['p95']:>8.2f}"
                f"{s['mean']:>8.2f}{s['min']:>8.2f}{s['max']:>8.2f}"
            )
        print(
            f"{'':<16}{'tre / stock':<13}{'':>3}{ratio['p50']:>8.2f}{ratio['p95']:>8.2f}"
            f"{ratio['mean']:>8.2f}"
        )
    print(
        "warm-up (not in the statistics): "
        + "; ".join(
            f"{label} spawn-to-ready {s.spawn_to_ready:.2f} s, first result {s.first_result:.2f} s"
            for label, s in warmup.items()
        )
    )
    return out


def write_results(
    results: dict[str, list[Sample]],
    warmup: dict[str, Sample],
    image: str,
    load: tuple[float, float, float],
    args: argparse.Namespace,
) -> None:
    comparisons = [
        Comparison(
            name=metric.replace("_", "-"),
            unit="s",
            better="lower",
            ours="jupyter-tre",
            ours_samples=[getattr(s, metric) for s in results["jupyter-tre"]],
            theirs="stock JupyterHub + DockerSpawner",
            theirs_samples=[getattr(s, metric) for s in results["stock"]],
        )
        for metric in ("spawn_to_ready", "first_result")
    ]
    BenchResult(
        name="spawn",
        title="Spawn to ready and first result",
        script="bench/spawn.py",
        versions={
            "JupyterHub": jupyterhub.__version__,
            "dockerspawner": metadata.version("dockerspawner"),
            "configurable-http-proxy": json.loads(
                (REPO / "proxy/node_modules/configurable-http-proxy/package.json").read_text()
            )["version"],
            "Docker": docker_version(),
            "workspace image": image,
        },
        comparisons=comparisons,
        notes=(
            f"{args.spawns} spawns per stack in interleaved rounds (the order flips every "
            "round), both on the same image behind the same proxy; load average "
            f"{load[0]:.1f} during the run. Spawn-to-ready: from the POST of the spawn form to "
            "the first 200 of the server's /api/status through the proxy (OIDC login and "
            "policy checks for jupyter-tre, the hub's login form for stock). First result: "
            "from the kernel-creation request to the output of `print(1+1)` over the kernel "
            "websocket. Warm-up spawns (not in the statistics): "
            + "; ".join(
                f"{label} {s.spawn_to_ready:.2f} s to ready, {s.first_result:.2f} s to a result"
                for label, s in warmup.items()
            )
            + ". Goals (Workspaces issue): the policy work adds under 10 %; p50 spawn-to-ready "
            "under 3 s on a 2-core host. Details: [Spawn benchmark](benchmarks-spawn.md)."
        ),
    ).write(args.results)


def log_lines(path: Path, since: float, until: float) -> Iterator[tuple[float, str]]:
    """Lines of a JupyterHub log stamped between two epoch times (local time in the log)."""
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        found = LOG_TIME.match(line)
        if not found:
            continue
        stamp = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        if since - 0.05 <= stamp <= until and not NOISE.search(line):
            yield stamp, line


def print_profile(target: Target, sample: Sample, container_log: list[str]) -> None:
    ready = sample.spawn_started + sample.spawn_to_ready
    until = ready + sample.first_result + 0.2
    print(f"\n-- {target.label}: last spawn, offsets from the spawn request --")
    events = list(log_lines(target.hub_log, sample.spawn_started, until))
    events.append((ready, "(bench) /api/status answered 200 through the proxy"))
    events.append((ready + sample.first_result, "(bench) output of print(1+1) arrived"))
    for line in container_log:
        stamp, _, text = line.partition(" ")
        with contextlib.suppress(ValueError):
            when = datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00").timestamp()
            events.append((when, "[container] " + text))
    for when, text in sorted(events):
        if when <= until:
            print(f"{when - sample.spawn_started:7.3f}  {text[:200]}")


# -- the run ---------------------------------------------------------------------------------------


def firewall_present() -> bool:
    return "TRE-INPUT" in DEFAULT_BACKEND.listing(Family.ipv4)


def main() -> None:  # noqa: PLR0915 - one linear story: set up, run, clean up
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(
        description=doc.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spawns", type=int, default=10, help="measured spawns per stack")
    parser.add_argument("--json", type=Path, help="write the numbers to this file")
    parser.add_argument("--hub-config", type=Path, help="extra config for jupyter-tre's hub")
    parser.add_argument(
        "--image", default=HubSettings().image, help="workspace image for both stacks"
    )
    parser.add_argument("--profile", action="store_true", help="print the last spawns' logs")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help="result files folder")
    args = parser.parse_args()
    if args.spawns < 2:
        parser.error("--spawns must be at least 2 (p95 needs two values)")

    client = docker.from_env()
    image = args.image
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        sys.exit(f"{image} is missing: build it with `tre image build` (make image)")
    for prefix in (TRE_CONTAINERS, STOCK_CONTAINERS):
        for found in containers(client, prefix):
            sys.exit(f"container {found.name} exists: is another spawn bench running?")
    network_before = get_project_network(client, PROJECT) is not None
    firewall_before = firewall_present()

    root = Path(tempfile.mkdtemp(prefix="spawn-bench-"))
    stack: tre.stack.Stack | None = None
    stock = StockHub(root / "stock", image)
    settings: Settings | None = None
    try:
        began = time.perf_counter()
        settings = tre_site(root / "tre", image, args.hub_config, args.profile)
        print(f"site ready in {time.perf_counter() - began:.0f} s (demo silos, {PROJECT} ingested)")
        stack = tre.stack.Stack(settings)
        stack.start()
        stock.start(default_bridge_gateway(client))
        targets = {"jupyter-tre": tre_target(settings), "stock": stock.target()}

        warmup = {label: measure(t) for label, t in targets.items()}
        results: dict[str, list[Sample]] = {label: [] for label in targets}
        last_logs: dict[str, list[str]] = {}
        order = list(targets)
        for round_ in range(args.spawns):
            for label in order if round_ % 2 == 0 else order[::-1]:
                target = targets[label]
                if args.profile and round_ == args.spawns - 1:
                    sample, last_logs[label] = measure_with_logs(client, target)
                else:
                    sample = measure(target)
                results[label].append(sample)
                print(
                    f"round {round_ + 1:>2} {label:<12} spawn-to-ready {sample.spawn_to_ready:6.2f}"
                    f" s  first result {sample.first_result:5.2f} s",
                    flush=True,
                )

        load = os.getloadavg()
        print(
            f"\n{args.spawns} spawns per stack, interleaved; {os.cpu_count()} CPUs "
            f"(load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}); "
            f"JupyterHub {jupyterhub.__version__}; image {image}; "
            f"Docker {client.version().get('Version')}"
        )
        numbers = table(results, warmup)
        write_results(results, warmup, image, load, args)
        if args.profile:
            for label, target in targets.items():
                print_profile(target, results[label][-1], last_logs.get(label, []))
        if args.json:
            record = {
                "when": datetime.now(UTC).isoformat(),
                "host": {
                    "cpus": os.cpu_count(),
                    "load_average": load,
                    "python": platform.python_version(),
                },
                "jupyterhub": jupyterhub.__version__,
                "image": image,
                "spawns": args.spawns,
                "hub_config": str(args.hub_config) if args.hub_config else None,
                "summary": numbers,
                "warmup": {k: asdict(v) for k, v in warmup.items()},
                "samples": {k: [asdict(s) for s in v] for k, v in results.items()},
            }
            args.json.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    finally:
        cleanup(
            client,
            stack=stack,
            stock=stock,
            settings=settings,
            network_before=network_before,
            firewall_before=firewall_before,
            root=root,
        )


def measure_with_logs(client: docker.DockerClient, target: Target) -> tuple[Sample, list[str]]:
    """`measure`, keeping the container's timestamped log before the stop removes it."""
    target.before_spawn()
    started = time.time()
    ready = spawn_to_ready(target)
    result = first_result(target)
    (container,) = containers(client, target.container_prefix)
    logs = container.logs(timestamps=True).decode(errors="replace")
    stop(target)
    return Sample(ready, result, started), logs.splitlines()


def cleanup(
    client: docker.DockerClient,
    *,
    stack: tre.stack.Stack | None,
    stock: StockHub,
    settings: Settings | None,
    network_before: bool,
    firewall_before: bool,
    root: Path,
) -> None:
    steps: list[tuple[str, Callable[[], object]]] = [
        ("stop jupyter-tre", lambda: stack.stop() if stack else None),
        ("stop stock hub", stock.stop),
    ]
    for prefix in (TRE_CONTAINERS, STOCK_CONTAINERS):
        steps.append((f"remove {prefix}*", lambda p=prefix: _remove_containers(client, p)))
    if not network_before:
        steps.append(
            (f"remove {network_name(PROJECT)}", lambda: remove_project_network(client, PROJECT))
        )
    if settings is not None and not firewall_before:
        steps.append(("remove firewall rules", lambda: remove_rules(firewall_rules(settings))))
    steps.append(("remove " + str(root), lambda: shutil.rmtree(root)))
    for what, step in steps:
        try:
            step()
        except Exception as exc:  # keep cleaning up; say what was left behind
            print(f"cleanup: could not {what}: {exc}", file=sys.stderr)


def containers(client: docker.DockerClient, prefix: str) -> list[Any]:
    """Containers (running or not) whose name starts with `prefix`."""
    found = client.containers.list(all=True, filters={"name": prefix})
    return [c for c in found if c.name.startswith(prefix)]


def _remove_containers(client: docker.DockerClient, prefix: str) -> None:
    for container in containers(client, prefix):
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)


if __name__ == "__main__":
    main()
