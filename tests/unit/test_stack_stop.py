"""Stopping the stack: what `tre stack start` left running is stopped by its pid files, and a
proxy that outlived its hub (a hub that had to be killed leaves it, for a restarted hub to
take over) is stopped too; a pid reused by anything else is not."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tre.settings import Settings
from tre.stack import stop_detached, stop_left_proxy


@contextmanager
def process_named(
    argv0: str, settings: Settings, pid_file: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A process whose command line starts with `argv0`, its pid in `pid_file` (default:
    the proxy's)."""
    process = subprocess.Popen([argv0, "600"], executable="sleep")
    cmdline = Path(f"/proc/{process.pid}/cmdline")
    deadline = time.monotonic() + 10
    while not cmdline.read_bytes().startswith(argv0.encode()):  # until the exec is done
        assert time.monotonic() < deadline
        time.sleep(0.01)
    pid_file = pid_file or settings.hub_dir / "proxy.pid"
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{process.pid}\n")
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def test_a_proxy_left_by_its_hub_is_stopped(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var")
    with process_named("configurable-http-proxy", settings) as proxy:
        assert stop_left_proxy(settings)
        assert proxy.wait(5) is not None
        assert not (settings.hub_dir / "proxy.pid").exists()


def test_control_a_pid_reused_by_something_else_is_left_alone(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var")
    with process_named("something-else", settings) as other:
        assert not stop_left_proxy(settings)
        assert other.poll() is None
        assert (settings.hub_dir / "proxy.pid").exists()


def test_no_pid_file_or_a_broken_one_is_nothing_to_stop(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var")
    assert not stop_left_proxy(settings)
    settings.hub_dir.mkdir(parents=True)
    (settings.hub_dir / "proxy.pid").write_text("not a pid\n")
    assert not stop_left_proxy(settings)


def test_stop_ends_the_detached_hub_its_left_proxy_and_the_provider(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var")
    run = settings.var_dir / "run"
    with (
        process_named("jupyterhub", settings, run / "hub.pid") as hub,
        process_named("configurable-http-proxy", settings) as proxy,
        process_named("node", settings, run / "idp.pid") as idp,
    ):
        assert stop_detached(settings, timeout=5) == ["hub", "proxy", "idp"]
        assert all(p.wait(5) is not None for p in (hub, proxy, idp))
    assert list(run.iterdir()) == []
    assert stop_detached(settings) == []  # nothing left: nothing to do
