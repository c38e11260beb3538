"""The embedded stack on one host: the bundled OIDC provider and JupyterHub (with its proxy).

`Stack` starts both and waits until the hub answers; it is used by the demo
(`tre stack start`, in the background, with pid files under var/run) and by the
end-to-end tests (in the foreground). A site with its own OIDC provider sets
`oidc.issuer` and gets only the hub.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Self

from tre.demo.idp import DemoClient, DemoIdP, DemoIdPConfig
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
        for folder in (self.settings.logs_dir, self.settings.hub_dir, self.run_dir):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            apply_rules(firewall_rules(self.settings))
            if self.settings.oidc.issuer is None:
                self._start_idp()
            self._start_hub()
        except BaseException:
            self.stop()
            raise

    def _start_idp(self) -> None:
        policy = load_policy(self.settings.policy_dir)
        issuer = oidc_urls(self.settings)["issuer"]
        config = DemoIdPConfig.for_policy(
            policy,
            state_dir=self.settings.hub_dir / "demo-idp",
            clients=(hub_client(self.settings),),
            port=self.settings.oidc.demo_idp_port,
            issuer=issuer,
        )
        self.idp = DemoIdP(config)
        self.idp.start()

    def _start_hub(self) -> None:
        env = {**os.environ, "TRE_SETTINGS": str(settings_file_for(self.settings))}
        log = os.open(self.hub_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            self.hub = subprocess.Popen(
                [sys.executable, "-m", "jupyterhub", "-f", str(HUB_CONFIG)],
                cwd=self.settings.hub_dir,
                env=env,
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
        pid = int(pid_file.read_text(encoding="utf-8").strip())
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.2)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
            stopped.append(name)
        pid_file.unlink()
    return stopped


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
