"""The package mirror with a real devpi-server, the real front and the real upstream PyPI.

pip runs as a workspace's pip does: `--index-url http://tre:<token>@<host>:<port>/simple/`,
no other index, no config files. Most tests identify workspaces with a stand-in for the
hub (a token → workspace table); one test runs a real JupyterHub and uses a real server
token. The service runs in this process (a thread with its own event loop), so a test
can restart it, point it at a dead upstream or break its audit store.

What "an sdist whose build needs the internet" means here: `docopt==0.6.2` exists only as
an sdist, and building it needs setuptools, which pip (with build isolation, its default)
fetches from the same index. setuptools is not on the allow-list, so the install fails
at once with the allow-list message for setuptools: the mirror is the only index, and
nothing waits for a network that is not there.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.standin_hub import HubPlan, free_port, site_settings, standin_hub
from tre.audit import EventKind, open_store
from tre.audit.identity import Refused, Workspace, WorkspaceIdentifier
from tre.mirror import MirrorService
from tre.settings import MirrorSettings, ReviewSettings, Settings

pytestmark = [pytest.mark.slow, pytest.mark.security]

SIX_OK, SIX_OLD = "1.16.0", "1.15.0"
ALICE = Workspace(user="alice", server="proj-a", project="proj-a", permit="permit-a")
BORIS = Workspace(user="boris", server="proj-b", project="proj-b", permit="permit-b")
TOKENS = {"token-alice": ALICE, "token-boris": BORIS}
CONSTRAINTS: dict[str, list[str]] = {
    "proj-a": [f"six=={SIX_OK}", "docopt==0.6.2"],
    "proj-b": ["idna"],
}


@pytest.fixture(scope="module", autouse=True)
def pypi_reachable() -> None:
    try:
        requests.get("https://pypi.org/simple/six/", timeout=15).raise_for_status()
    except requests.RequestException as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PyPI is unreachable in CI: {exc}")
        pytest.skip(f"SKIPPED LOUDLY: PyPI is unreachable, the mirror cannot be tested: {exc}")


class StandinHub:
    """Who a token belongs to, as the hub and policy would say; a real identifier may be
    put behind it for the tokens it does not know."""

    def __init__(self) -> None:
        self.behind: WorkspaceIdentifier | None = None

    async def identify(self, token: str) -> Workspace:
        if token in TOKENS:
            return TOKENS[token]
        if token == "token-expired":
            raise Refused(403, "no permit lets you work on project 'proj-a' today")
        if self.behind is not None:
            return await self.behind.identify(token)
        raise Refused(401, "the hub does not know this token")


class Running:
    """A MirrorService in a thread with its own event loop (pip runs beside it)."""

    def __init__(self, settings: Settings, identifier: StandinHub) -> None:
        self.settings = settings
        self.identifier = identifier
        self.constraints = dict(CONSTRAINTS)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.service: MirrorService | None = None

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=300)

    def start(self, **mirror: Any) -> None:
        if mirror:
            self.settings = self.settings.model_copy(
                update={"mirror": self.settings.mirror.model_copy(update=mirror)}
            )
        self.service = MirrorService(
            self.settings,
            identifier=self.identifier,
            audit=open_store(self.settings).append,
            constraints=lambda: self.constraints,
            address="127.0.0.1",
        )
        self.run(self.service.start())

    def stop(self) -> None:
        if self.service is not None:
            self.run(self.service.stop())
            self.service = None

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.mirror.port}"

    def index(self, token: str) -> str:
        return f"http://tre:{token}@127.0.0.1:{self.settings.mirror.port}/simple/"

    def get(self, path: str, token: str | None = "token-alice", **kw: Any) -> requests.Response:
        auth = ("tre", token) if token else None
        return requests.get(self.url + path, auth=auth, timeout=120, **kw)

    def installed(self, project: str = "proj-a") -> list[dict[str, Any]]:
        records = open_store(self.settings).show(kind=EventKind.package_installed, project=project)
        return [
            {"actor": r.actor, "permit": r.permit, "server": r.server, **r.detail} for r in records
        ]


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    root = tmp_path_factory.mktemp("mirror")
    settings = Settings(
        policy_dir=root / "no-policy",
        var_dir=root / "var",
        mirror=MirrorSettings(port=free_port(), request_timeout=60),
    )
    running = Running(settings, StandinHub())
    try:
        running.start()
        yield running
    finally:
        running.close()
        log = MirrorService(
            running.settings, identifier=running.identifier, audit=print, constraints=dict
        ).paths.log_file
        if log.exists():
            print(log.read_text(errors="replace")[-4000:])  # shown when a test failed


def pip_install(
    index: str, target: Path, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """pip as in a workspace: this index only, no cache, no config files, no prompts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    return subprocess.run(
        [
            sys.executable, "-m", "pip", "install",
            "--no-cache-dir", "--disable-pip-version-check", "--no-input",
            "--timeout", "30", "--retries", "0",
            "--index-url", index, "--target", str(target), *args,
        ],
        capture_output=True, text=True, timeout=timeout, env=env, check=False,
    )  # fmt: skip


def output(done: subprocess.CompletedProcess[str]) -> str:
    return done.stdout + done.stderr


def pypi_file(name: str, version: str, suffix: str) -> tuple[str, str]:
    """(devpi's +f path, sha256) of a real file on PyPI: what a workspace could try to guess."""
    page = requests.get(
        f"https://pypi.org/simple/{name}/",
        headers={"Accept": "application/vnd.pypi.simple.v1+json"},
        timeout=30,
    ).json()
    [f] = [
        u
        for u in page["files"]
        if u["filename"].startswith(f"{name}-{version}") and u["filename"].endswith(suffix)
    ][:1]
    sha = f["hashes"]["sha256"]
    return f"{sha[:3]}/{sha[3:16]}/{f['filename']}", sha


# -- what a workspace may install ----------------------------------------------------------


def test_an_allowed_package_installs_and_is_audited_once(mirror: Running, tmp_path: Path) -> None:
    done = pip_install(mirror.index("token-alice"), tmp_path, "six")
    assert done.returncode == 0, output(done)
    assert (tmp_path / "six.py").exists()
    _, sha = pypi_file("six", SIX_OK, ".whl")
    wheel = f"six-{SIX_OK}-py2.py3-none-any.whl"
    assert mirror.installed() == [
        {
            "actor": "alice",
            "permit": "permit-a",
            "server": "proj-a",
            "name": "six",
            "version": SIX_OK,
            "filename": wheel,
            "sha256": sha,
        }
    ]
    assert mirror.installed("proj-b") == []


def test_the_index_lists_only_the_projects_allow_list(mirror: Running) -> None:
    page = mirror.get("/simple/")
    assert page.status_code == 200
    assert 'href="six/"' in page.text and 'href="docopt/"' in page.text
    assert "idna" not in page.text
    six = mirror.get("/simple/six/")
    assert six.status_code == 200 and six.headers["Content-Type"].startswith("text/html")
    assert f"six-{SIX_OK}" in six.text and SIX_OLD not in six.text
    assert "root/pypi" not in six.text and "refresh" not in six.text  # only the front's links
    assert six.text.count('href="/files/') == 2  # the sdist and the wheel
    assert mirror.get("/simple/Six").url.endswith("/simple/six/")  # normalised, as PEP 503


@pytest.mark.parametrize("name", ["requests", "requets"])
def test_a_package_not_on_the_list_is_refused_with_the_reason(
    mirror: Running, tmp_path: Path, name: str
) -> None:
    done = pip_install(mirror.index("token-alice"), tmp_path, name)
    assert done.returncode != 0
    text = output(done)
    assert f"package '{name}' is not on the allow-list of project 'proj-a'" in text, text
    assert f"tre packages resolve {name} --permit permit-a" in text, text
    assert "No matching distribution" in text
    # Not pip: the plain status and reason.
    answer = mirror.get(f"/simple/{name}/")
    assert answer.status_code == 404
    assert "not on the allow-list" in answer.reason and "not on the allow-list" in answer.text


def test_a_typo_of_an_allowed_name_gets_a_hint(mirror: Running) -> None:
    answer = mirror.get("/simple/sixx/")
    assert answer.status_code == 404
    assert "did you mean 'six'" in answer.text


def test_a_version_not_allowed_is_not_there(mirror: Running, tmp_path: Path) -> None:
    done = pip_install(mirror.index("token-alice"), tmp_path, f"six=={SIX_OLD}")
    assert done.returncode != 0
    assert f"(from versions: {SIX_OK})" in output(done), output(done)
    assert not (tmp_path / "six.py").exists()


def test_files_are_served_only_when_the_projects_index_lists_them(mirror: Running) -> None:
    """devpi's own /root/pypi/+f/ serves any mirrored file: the front never forwards a path
    its caller's constrained index does not list, however well it is guessed."""
    before = len(mirror.installed()) + len(mirror.installed("proj-b"))
    for name, version, suffix in [
        ("six", SIX_OLD, ".whl"),  # a version not allowed
        ("requests", "2.32.3", ".whl"),  # a package not allowed
        ("idna", "3.10", ".whl"),  # allowed for proj-b only
    ]:
        path, _ = pypi_file(name, version, suffix)
        answer = mirror.get(f"/files/{path}")
        assert answer.status_code == 404, (name, answer.status_code, answer.text)
    assert mirror.get("/files/../root/pypi/+simple/requests/").status_code == 404
    assert mirror.get("/root/pypi/+simple/requests/").status_code == 404
    assert mirror.get("/tre/proj-b/+simple/idna/").status_code == 404
    assert len(mirror.installed()) + len(mirror.installed("proj-b")) == before


def test_another_projects_packages_are_not_reachable(mirror: Running, tmp_path: Path) -> None:
    done = pip_install(mirror.index("token-alice"), tmp_path / "a", "idna")
    assert done.returncode != 0
    assert "package 'idna' is not on the allow-list of project 'proj-a'" in output(done)
    done = pip_install(mirror.index("token-boris"), tmp_path / "b", "idna")
    assert done.returncode == 0, output(done)
    [record] = mirror.installed("proj-b")
    assert (record["actor"], record["name"]) == ("boris", "idna")


def test_no_or_a_wrong_token_gets_401(mirror: Running, tmp_path: Path) -> None:
    for token in (None, "not-a-token"):
        answer = mirror.get("/simple/six/", token=token)
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"].startswith("Basic")
    garbled = mirror.get("/simple/six/", token=None, headers={"Authorization": "Basic %%%"})
    assert garbled.status_code == 401
    bearer = requests.get(
        mirror.url + "/simple/six/", headers={"Authorization": "token token-alice"}, timeout=30
    )
    assert bearer.status_code == 401
    done = pip_install(mirror.index("not-a-token"), tmp_path, "six")
    assert done.returncode != 0
    assert "401" in output(done)
    assert not (tmp_path / "six.py").exists()


def test_a_workspace_without_a_permit_today_gets_403_with_the_reason(
    mirror: Running, tmp_path: Path
) -> None:
    answer = mirror.get("/simple/six/", token="token-expired")
    assert answer.status_code == 403 and "no permit" in answer.text
    done = pip_install(mirror.index("token-expired"), tmp_path, "six")
    assert done.returncode != 0
    assert "no permit lets you work on project 'proj-a' today" in output(done)


def test_an_sdist_whose_build_needs_the_internet_fails_clearly(
    mirror: Running, tmp_path: Path
) -> None:
    started = time.monotonic()
    done = pip_install(mirror.index("token-alice"), tmp_path, "docopt==0.6.2", timeout=240)
    assert done.returncode != 0
    text = output(done)
    assert "package 'setuptools' is not on the allow-list of project 'proj-a'" in text, text
    assert time.monotonic() - started < 120  # refused at once, no waiting on a network
    # The sdist itself was allowed, sent and recorded.
    assert [r["filename"] for r in mirror.installed() if r["name"] == "docopt"] == [
        "docopt-0.6.2.tar.gz"
    ]


def test_no_audit_record_no_file(mirror: Running, tmp_path: Path) -> None:
    chain = open_store(mirror.settings).path_of("proj-a")
    aside = chain.with_name("aside.jsonl")
    before = mirror.installed()
    chain.rename(aside)
    chain.mkdir()  # the audit log's file cannot be opened: the store refuses every record
    try:
        done = pip_install(mirror.index("token-alice"), tmp_path, "six")
        assert done.returncode != 0
        assert "503" in output(done)  # pip does not show a 503's reason, only that it came
        assert not (tmp_path / "six.py").exists()
        path, _ = pypi_file("six", SIX_OK, ".whl")
        answer = mirror.get(f"/files/{path}")
        assert answer.status_code == 503 and answer.content.startswith(b"the audit log")
    finally:
        chain.rmdir()
        aside.rename(chain)
    assert mirror.installed() == before


def test_policy_changes_reach_the_index(mirror: Running) -> None:
    assert mirror.service is not None
    mirror.constraints["proj-a"] = [*CONSTRAINTS["proj-a"], "idna<3"]
    mirror.run(mirror.service.resync())
    page = mirror.get("/simple/idna/")
    assert page.status_code == 200 and "idna-2." in page.text and "idna-3." not in page.text
    mirror.constraints["proj-a"] = CONSTRAINTS["proj-a"]
    mirror.run(mirror.service.resync())
    assert mirror.get("/simple/idna/").status_code == 404


# -- faults: restart, upstream down ---------------------------------------------------------


def test_after_a_restart_with_the_upstream_down_cached_packages_still_install(
    mirror: Running, tmp_path: Path
) -> None:
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}/simple"
        mirror.stop()
        mirror.start(upstream_url=dead)
        done = pip_install(mirror.index("token-alice"), tmp_path / "six", "six")
        assert done.returncode == 0, output(done)
        assert (tmp_path / "six" / "six.py").exists()
        # Something never cached cannot come, and says why.
        mirror.constraints["proj-a"] = [*CONSTRAINTS["proj-a"], "attrs"]
        assert mirror.service is not None
        mirror.run(mirror.service.resync())
        done = pip_install(mirror.index("token-alice"), tmp_path / "attrs", "attrs")
        assert done.returncode != 0
    mirror.constraints["proj-a"] = CONSTRAINTS["proj-a"]
    mirror.stop()
    mirror.start(upstream_url="https://pypi.org/simple")
    assert [r["name"] for r in mirror.installed()].count("six") == 2


# -- a real hub's token ---------------------------------------------------------------------

MIRROR_TOKEN = "test-mirror-" + "3" * 32
PLAN = HubPlan(
    groups={"tre-researchers": {"users": ["alice", "bob"]}},
    extra_services=({"name": "tre-mirror", "api_token": MIRROR_TOKEN},),
    extra_roles=({"name": "tre-mirror", "scopes": ["read:servers"], "services": ["tre-mirror"]},),
    admin_scopes=("admin:users", "admin:servers"),
)


def test_a_real_workspace_token_installs_and_names_its_owner(
    mirror: Running, tmp_path: Path
) -> None:
    from jupyterhub.services.auth import HubAuth

    settings = site_settings(tmp_path, review=ReviewSettings(port=free_port()))
    with standin_hub(tmp_path, settings, PLAN, "test-admin-" + "2" * 32) as hub:
        token = hub.spawn("alice", "gbm-linkage", "gbm-linkage")
        try:
            mirror.identifier.behind = WorkspaceIdentifier(
                HubAuth(api_token=MIRROR_TOKEN, api_url=hub.hub_api, cache_max_age=30),
                settings.policy_dir,
            )
            mirror.constraints["gbm-linkage"] = [f"six=={SIX_OK}"]
            assert mirror.service is not None
            mirror.run(mirror.service.resync())

            done = pip_install(mirror.index(token), tmp_path / "t", "six")
            assert done.returncode == 0, output(done)
            [record] = mirror.installed("gbm-linkage")
            assert (record["actor"], record["server"], record["permit"], record["name"]) == (
                "alice", "gbm-linkage", "gbm-linkage-2026", "six",
            )  # fmt: skip
            # The same token asks for a package of another project's list: refused.
            refused = pip_install(mirror.index(token), tmp_path / "u", "docopt")
            assert "not on the allow-list of project 'gbm-linkage'" in output(refused)
            # A token the hub does not know: 401.
            assert mirror.get("/simple/six/", token=token[::-1]).status_code == 401
        finally:
            mirror.identifier.behind = None
            mirror.constraints.pop("gbm-linkage", None)
