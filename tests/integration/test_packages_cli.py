"""`tre packages`: resolve a permit's additions against the real index with pip, write them
atomically (or not at all), and list installs from the real audit store."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support import DEMO_TODAY, Edit
from tre.audit import AuditEvent, EventKind, open_store
from tre.packages import WriteRefused, write_additions
from tre.policy import allowed_requirements, load_policy
from tre.settings import Settings

TRE = Path(sys.executable).parent / "tre"
TODAY = ["--today", DEMO_TODAY.isoformat()]
PERMIT = "gbm-linkage-2026"
INDEX = "https://pypi.org/simple"


def tre(*args: str, cwd: Path, var: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    env.pop("TRE_SETTINGS", None)
    if var is not None:
        env["TRE_VAR_DIR"] = str(var)
    return subprocess.run(
        [str(TRE), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )


@pytest.fixture(scope="module")
def index_up() -> None:
    """The real index, or a loud skip (a failure in CI)."""
    try:
        with urllib.request.urlopen(f"{INDEX}/six/", timeout=15) as answer:
            answer.read(1)
    except (OSError, urllib.error.URLError) as exc:
        message = f"the package index {INDEX} is unreachable from this machine: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(f"SKIPPED LOUDLY: {message}")


def resolve(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return tre("packages", "resolve", *args, "--site", str(site), *TODAY, cwd=site.parent)


def rows(stdout: str) -> dict[str, list[str]]:
    """The closure table's rows by package name: [version, requested, allowed by]."""
    found = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if len(cells) == 4 and cells[0] and cells[0] != "package":
            found[cells[0]] = cells[1:]
    return found


@pytest.mark.slow
@pytest.mark.usefixtures("index_up")
def test_a_site_package_resolves_to_nothing_new(site: Path) -> None:
    before = (site / "packages.yaml").read_bytes()
    result = resolve(site, "six", "--permit", PERMIT, "--write")
    assert result.returncode == 0, result.stdout + result.stderr
    assert rows(result.stdout)["six"][1:] == ["yes", "site"]
    assert "nothing new" in result.stdout
    assert (site / "packages.yaml").read_bytes() == before


@pytest.mark.slow
@pytest.mark.usefixtures("index_up")
def test_resolve_shows_the_closure_and_write_appends_the_new_pins(site: Path) -> None:
    before = (site / "packages.yaml").read_text(encoding="utf-8")
    shown = resolve(site, "Python_DateUtil<2.10", "--permit", PERMIT)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    table = rows(shown.stdout)
    # python-dateutil 2.9 needs six, which the site list already allows.
    assert set(table) == {"python-dateutil", "six"}
    assert table["python-dateutil"] == ["2.9.0.post0", "yes", "new"]
    assert table["six"][1:] == ["", "site"]
    assert "1 new pin(s): python-dateutil==2.9.0.post0" in shown.stdout
    assert "run again with --write" in shown.stdout
    assert (site / "packages.yaml").read_text(encoding="utf-8") == before

    written = resolve(site, "Python_DateUtil<2.10", "--permit", PERMIT, "--write")
    assert written.returncode == 0, written.stdout + written.stderr
    assert f"1 pin(s) for {PERMIT}" in written.stdout
    after = (site / "packages.yaml").read_text(encoding="utf-8")
    # Appended to the permit's list; the rest of the file (comments too) as it was.
    assert after == before.replace(
        "      - simpleitk==2.5.7\n",
        "      - simpleitk==2.5.7\n      - python-dateutil==2.9.0.post0\n",
    )
    policy = load_policy(site, DEMO_TODAY)
    assert "python-dateutil==2.9.0.post0" in allowed_requirements(policy, "gbm-linkage", DEMO_TODAY)
    assert "python-dateutil==2.9.0.post0" not in allowed_requirements(
        policy, "hf-outcomes", DEMO_TODAY
    )
    # A second run finds it already allowed by the permit.
    again = resolve(site, "python-dateutil<2.10", "--permit", PERMIT)
    assert rows(again.stdout)["python-dateutil"][2] == "permit"
    assert "nothing new" in again.stdout


@pytest.mark.slow
@pytest.mark.usefixtures("index_up")
def test_resolution_stays_within_what_is_allowed(site: Path, edit: Edit) -> None:
    edit("packages.yaml", "    - six\n", "    - six<1.16\n")
    result = resolve(site, "python-dateutil<2.10", "--permit", PERMIT)
    assert result.returncode == 0, result.stdout + result.stderr
    version = rows(result.stdout)["six"][0]
    assert tuple(int(p) for p in version.split(".")[:2]) < (1, 16)
    assert rows(result.stdout)["six"][2] == "site"


@pytest.mark.slow
@pytest.mark.usefixtures("index_up")
def test_an_unresolvable_requirement_shows_pips_message(site: Path) -> None:
    result = resolve(site, "tre-no-such-package-xyzzy==1.0", "--permit", PERMIT, "--write")
    assert result.returncode == 1
    assert "pip cannot resolve tre-no-such-package-xyzzy==1.0" in result.stderr
    assert "No matching distribution found for tre-no-such-package-xyzzy==1.0" in result.stderr
    conflicting = resolve(site, "six==1.15.0", "--permit", PERMIT)
    assert conflicting.returncode == 0, conflicting.stderr
    assert rows(conflicting.stdout)["six"] == ["1.15.0", "yes", "site"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_index_is_named(site: Path, edit: Edit) -> None:
    index = f"http://127.0.0.1:{free_port()}/simple"
    edit("packages.yaml", f"  index: {INDEX}\n", f"  index: {index}\n")
    before = (site / "packages.yaml").read_bytes()
    result = resolve(site, "six", "--permit", PERMIT, "--write")
    assert result.returncode == 1
    assert f"cannot reach the package index {index}" in result.stderr
    assert (site / "packages.yaml").read_bytes() == before


def test_an_unknown_permit_and_a_bad_requirement_are_refused(site: Path) -> None:
    unknown = resolve(site, "six", "--permit", "gbm-linkage-2025")
    assert unknown.returncode == 1
    assert (
        "error: unknown permit 'gbm-linkage-2025' (allowed: gbm-linkage-2026, hf-outcomes-2026)"
        in unknown.stderr
    )
    extras = resolve(site, "lifelines[plot]", "--permit", PERMIT)
    assert extras.returncode == 1
    assert "'lifelines[plot]' has extras [plot]" in extras.stderr


def leftovers(site: Path) -> list[str]:
    return sorted(p.name for p in site.iterdir() if p.name.startswith(".packages.yaml"))


def test_write_refuses_pins_that_break_the_policy_and_leaves_the_file(site: Path) -> None:
    before = (site / "packages.yaml").read_bytes()
    with pytest.raises(WriteRefused) as refused:
        write_additions(site, PERMIT, ["six==1.17.0"], DEMO_TODAY)
    assert str(refused.value).startswith(f"{site / 'packages.yaml'} left unchanged")
    (finding,) = refused.value.findings
    assert str(finding) == (
        f"{site / 'packages.yaml'}:17: error: python.permits.gbm-linkage-2026[1]: 'six' is on "
        "the site list ('six'); a permit may not list it again: change the site entry instead"
    )
    assert (site / "packages.yaml").read_bytes() == before
    assert leftovers(site) == []


def test_a_failed_write_leaves_the_old_file_and_no_partial(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = (site / "packages.yaml").read_bytes()

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("tre.packages.resolve.os.fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_additions(site, PERMIT, ["attrs==25.1.0"], DEMO_TODAY)
    assert (site / "packages.yaml").read_bytes() == before
    assert leftovers(site) == []


def test_write_creates_packages_yaml_when_there_is_none(site: Path) -> None:
    (site / "packages.yaml").unlink()
    written = write_additions(site, PERMIT, ["attrs==25.1.0"], DEMO_TODAY)
    assert written.added == ("attrs==25.1.0",)
    text = (site / "packages.yaml").read_text(encoding="utf-8")
    assert text.startswith("# yaml-language-server: $schema=../schema/packages.schema.json\n")
    policy = load_policy(site, DEMO_TODAY)
    assert policy.python.additions(PERMIT) == ("attrs==25.1.0",)
    assert policy.python.index == INDEX


def test_installed_lists_the_audited_installs(site: Path, tmp_path: Path) -> None:
    var = tmp_path / "var"
    store = open_store(Settings(policy_dir=site, var_dir=var))
    now = datetime.now(UTC)
    digest = "ab" * 32
    for project, actor, name, at in [
        ("gbm-linkage", "alice", "simpleitk", now - timedelta(days=40)),
        ("gbm-linkage", "bob", "six", now),
        ("hf-outcomes", "carla", "tabulate", now),
    ]:
        store.append(
            AuditEvent(
                kind=EventKind.package_installed,
                actor=actor,
                project=project,
                permit=f"{project}-2026",
                at=at,
                detail={
                    "name": name,
                    "version": "1.0",
                    "sha256": digest,
                    "filename": f"{name}-1.0-py3-none-any.whl",
                },
            )
        )
    store.append(
        AuditEvent(kind=EventKind.execute, actor="alice", project="gbm-linkage", detail={})
    )

    every = tre("packages", "installed", cwd=tmp_path, var=var)
    assert every.returncode == 0, every.stdout + every.stderr
    assert "3 install(s)" in every.stdout
    lines = [line for line in every.stdout.splitlines() if digest[:12] in line]
    assert [[c.strip() for c in line.split("│")[2:7]] for line in lines] == [
        ["gbm-linkage", "alice", "simpleitk", "1.0", digest[:12]],
        ["gbm-linkage", "bob", "six", "1.0", digest[:12]],
        ["hf-outcomes", "carla", "tabulate", "1.0", digest[:12]],
    ]
    assert digest[:13] not in every.stdout  # shortened

    one = tre(
        "packages",
        "installed",
        "--project",
        "gbm-linkage",
        "--since",
        (now - timedelta(days=1)).date().isoformat(),
        cwd=tmp_path,
        var=var,
    )
    assert one.returncode == 0, one.stderr
    assert "1 install(s)" in one.stdout
    assert " six " in one.stdout
    assert "tabulate" not in one.stdout


def test_package_installed_is_not_a_workspace_kind() -> None:
    from tre.audit import WORKSPACE_KINDS

    assert EventKind.package_installed not in WORKSPACE_KINDS


def test_without_ruamel_the_file_is_rewritten_without_comments(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tre.packages.resolve.HAVE_RUAMEL", False)
    written = write_additions(site, PERMIT, ["attrs==25.1.0"], DEMO_TODAY)
    assert not written.comments_kept
    text = (site / "packages.yaml").read_text(encoding="utf-8")
    assert "CVE-2024-3651" not in text
    policy = load_policy(site, DEMO_TODAY)
    assert policy.python.additions(PERMIT) == ("simpleitk==2.5.7", "attrs==25.1.0")
    assert policy.python.site == ("idna>=3.7", "six", "tabulate>=0.9")
