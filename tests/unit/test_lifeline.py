"""A service started through `python -m tre.lifeline` ends when the hub that started it is
killed outright; the same service started plainly lives on (the control)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tre.hub.config import configure
from tre.lifeline import main

PARENT = """
import subprocess, sys, time
child = subprocess.Popen(
    [sys.executable, *sys.argv[1:]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
)
print(child.pid, flush=True)
time.sleep(600)
"""
SERVICE = ["http.server", "--bind", "127.0.0.1", "0"]


def ended(pid: int) -> bool:
    """Gone, or a zombie nobody reaped yet (reparented to an init that does not wait)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def listening(pid: int) -> bool:
    """The service is up: it holds a socket (http.server binds before it serves)."""
    links = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # closed while we looked
            links.append(str(fd.readlink()))
    return any(link.startswith("socket:") for link in links)


def start_under_a_parent(*command: str) -> tuple[subprocess.Popen[str], int]:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, *command], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    deadline = time.monotonic() + 20
    while not listening(child):
        assert time.monotonic() < deadline, cmdline(child)
        time.sleep(0.05)
    return parent, child


def kill_parent(parent: subprocess.Popen[str]) -> None:
    parent.send_signal(signal.SIGKILL)
    parent.wait(10)
    if parent.stdout is not None:
        parent.stdout.close()


def wait_ended(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ended(pid):
            return True
        time.sleep(0.05)
    return ended(pid)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_service_under_the_lifeline_ends_with_its_parent() -> None:
    parent, child = start_under_a_parent("-m", "tre.lifeline", *SERVICE)
    assert cmdline(child) == [sys.executable, "-m", *SERVICE]  # the pid the hub knows
    kill_parent(parent)
    assert wait_ended(child, 10), f"pid {child} outlived its parent"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_control_the_same_service_started_plainly_outlives_its_parent() -> None:
    parent, child = start_under_a_parent("-m", *SERVICE)
    try:
        kill_parent(parent)
        assert not wait_ended(child, 2)
    finally:
        os.kill(child, signal.SIGKILL)


def test_the_lifeline_needs_a_module(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in ([], ["-c", "print(1)"]):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 2
        assert "usage: python -m tre.lifeline MODULE" in capsys.readouterr().err


def test_the_idle_culler_runs_under_the_lifeline(tmp_path: Path) -> None:
    from traitlets.config import Config

    from tests.support import DEMO_POLICY
    from tre.settings import Settings

    c = Config()
    configure(c, Settings(policy_dir=DEMO_POLICY, var_dir=tmp_path / "var"))
    [culler] = [s for s in c.JupyterHub.services if s["name"] == "idle-culler"]
    assert culler["command"][:4] == [sys.executable, "-m", "tre.lifeline", "jupyterhub_idle_culler"]
