"""The embedded stack on one host: the bundled OIDC provider and JupyterHub (with its proxy).

`Stack` starts both and waits until the hub answers; it is used by the demo
(`tre stack start`, in the background, with pid files under var/run) and by the
end-to-end tests (in the foreground). A site with its own OIDC provider sets
`oidc.issuer` and gets only the hub. `exec_hub` and `exec_demo_idp` run the same
commands in the foreground, replacing the calling process, for a service manager
(the Ansible deployment's systemd units).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import NoReturn, Self
from urllib.parse import urlsplit

from tre.demo.idp import (
    IDP_DIR,
    DemoClient,
    DemoIdP,
    DemoIdPConfig,
    install_command,
    node_modules_current,
    node_version,
)
from tre.hub.config import REPO, client_secret, firewall_rules, oidc_urls, settings_file_for
from tre.hub.firewall import apply_rules
from tre.policy import load_policy
from tre.settings import Settings

HUB_CONFIG = REPO / "jupyterhub_config.py"


class StackError(RuntimeError):
    """A part of the stack did not start; the message says which and where its log is."""


def hub_client(settings: Settings) -> DemoClient:
    public = settings.hub.public_url.rstrip("/")
    return DemoClient(
        client_id=settings.oidc.client_id,
        client_secret=client_secret(settings),
        client_name="jupyter-tre hub",
        redirect_uris=(f"{public}/hub/oauth_callback",),
        post_logout_redirect_uris=(f"{public}/hub/login",),
    )


def demo_idp_config(settings: Settings) -> DemoIdPConfig:
    """The bundled provider for the site's policy, with the hub as its one client."""
    policy = load_policy(settings.policy_dir)
    return DemoIdPConfig.for_policy(
        policy,
        state_dir=settings.hub_dir / "demo-idp",
        clients=(hub_client(settings),),
        port=settings.oidc.demo_idp_port,
        issuer=oidc_urls(settings)["issuer"],
    )


def hub_command(bind_url: str | None = None) -> list[str]:
    """JupyterHub with the site's config; `bind_url` overrides where its proxy listens (a TLS
    proxy in front then serves `hub.public_url`). Command-line config wins over the file's."""
    command = [sys.executable, "-m", "jupyterhub", "-f", str(HUB_CONFIG)]
    if bind_url is not None:
        parts = urlsplit(bind_url)
        if parts.scheme != "http" or not parts.hostname or parts.port is None:
            raise StackError(
                f"--bind-url {bind_url!r}: expected http://<address>:<port> (TLS is the "
                "front proxy's job)"
            )
        command.append(f"--JupyterHub.bind_url={bind_url}")
    return command


def hub_environment(settings: Settings) -> dict[str, str]:
    return {**os.environ, "TRE_SETTINGS": str(settings_file_for(settings))}


def make_state_folders(settings: Settings) -> None:
    for folder in (settings.logs_dir, settings.hub_dir, settings.var_dir / "run"):
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)


def exec_hub(settings: Settings, bind_url: str | None = None) -> NoReturn:
    """Put the host firewall rules in place, then become JupyterHub (in `hub_dir`)."""
    command = hub_command(bind_url)
    make_state_folders(settings)
    apply_rules(firewall_rules(settings))
    env = hub_environment(settings)
    os.chdir(settings.hub_dir)
    os.execve(command[0], command, env)  # noqa: S606 - fixed argv, no shell


def exec_demo_idp(settings: Settings) -> NoReturn:
    """Write the demo provider's config, then become its node process (in demo-idp/)."""
    if settings.oidc.issuer is not None:
        raise StackError(
            f"oidc.issuer is {settings.oidc.issuer!r}: the site has its own provider, "
            "the demo provider is not used"
        )
    node_version()
    if not node_modules_current(IDP_DIR):
        raise StackError(
            f"{IDP_DIR}/node_modules is missing or older than the lockfile: "
            f"run `{install_command(IDP_DIR)}`"
        )
    make_state_folders(settings)
    config_path = demo_idp_config(settings).write()
    node = shutil.which("node")
    assert node is not None  # node_version found it
    os.chdir(IDP_DIR)
    os.execv(node, [node, str(IDP_DIR / "server.mjs"), "--config", str(config_path)])  # noqa: S606


class Stack:
    def __init__(self, settings: Settings, *, startup_timeout: float = 60.0) -> None:
        self.settings = settings
        self.startup_timeout = startup_timeout
        self.idp: DemoIdP | None = None
        self.hub: subprocess.Popen[bytes] | None = None
        self.run_dir = settings.var_dir / "run"
        self.hub_log = settings.logs_dir / "jupyterhub.log"

    # -- start -------------------------------------------------------------------

    def start(self) -> None:
        make_state_folders(self.settings)
        try:
            apply_rules(firewall_rules(self.settings))
            if self.settings.oidc.issuer is None:
                self._start_idp()
            self._start_hub()
        except BaseException:
            self.stop()
            raise

    def _start_idp(self) -> None:
        self.idp = DemoIdP(demo_idp_config(self.settings))
        self.idp.start()

    def _start_hub(self) -> None:
        log = os.open(self.hub_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            self.hub = subprocess.Popen(
                hub_command(),
                cwd=self.settings.hub_dir,
                env=hub_environment(self.settings),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            os.close(log)
        self._wait_for_hub()

    def _wait_for_hub(self) -> None:
        url = self.settings.hub.public_url.rstrip("/") + "/hub/api/"
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            assert self.hub is not None
            if self.hub.poll() is not None:
                raise StackError(
                    f"JupyterHub exited while starting; see {self.hub_log}:\n" + _tail(self.hub_log)
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise StackError(
            f"JupyterHub did not answer {url} in {self.startup_timeout:g} s; "
            f"see {self.hub_log}:\n" + _tail(self.hub_log)
        )

    # -- stop --------------------------------------------------------------------

    def stop(self) -> None:
        if self.hub is not None and self.hub.poll() is None:
            self.hub.send_signal(signal.SIGTERM)
            try:
                self.hub.wait(30)
            except subprocess.TimeoutExpired:
                self.hub.kill()
                self.hub.wait(10)
        self.hub = None
        stop_left_proxy(self.settings)
        if self.idp is not None:
            self.idp.stop()
            self.idp = None

    def detach(self) -> None:
        """Leave the processes running (for `tre stack start`), their pids in var/run."""
        if self.hub is not None:
            (self.run_dir / "hub.pid").write_text(f"{self.hub.pid}\n", encoding="utf-8")
            self.hub = None
        if self.idp is not None and self.idp.pid is not None:
            (self.run_dir / "idp.pid").write_text(f"{self.idp.pid}\n", encoding="utf-8")
            self.idp.detach()
            self.idp = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def stop_detached(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Stop what `Stack.detach` left running; return what was stopped."""
    stopped = []
    for name in ("hub", "idp"):
        pid_file = settings.var_dir / "run" / f"{name}.pid"
        if not pid_file.exists():
            continue
        if _terminate(int(pid_file.read_text(encoding="utf-8").strip()), timeout):
            stopped.append(name)
        pid_file.unlink()
        if name == "hub" and stop_left_proxy(settings):
            stopped.append("proxy")
    return stopped


def stop_left_proxy(settings: Settings, timeout: float = 10.0) -> bool:
    """Stop the hub's proxy if it outlived the hub; True if there was one to stop.

    A hub that stops normally stops its proxy; one that had to be killed leaves it running
    (on purpose: a restarted hub takes it over by its pid file). When the stack stops, the
    proxy goes too. The pid file's process is stopped only if it is that proxy (a pid
    reused by anything else is left alone)."""
    pid_file = settings.hub_dir / "proxy.pid"
    try:
        pid = int(pid_file.read_text(encoding="utf-8").strip())
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False
    if b"configurable-http-proxy" not in command or not _alive(pid):
        return False
    _terminate(pid, timeout)
    pid_file.unlink(missing_ok=True)
    return True


def _terminate(pid: int, timeout: float) -> bool:
    """SIGTERM, then SIGKILL after `timeout` seconds; False if there was no such process."""
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return False
    return True


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
