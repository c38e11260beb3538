"""A person at the hub, as HTTP sees them: OIDC login, spawn, kernel websocket, stop.

Only loopback addresses are ever contacted. Forms are read from the pages the
hub and the identity provider serve, the way a browser reads them.
"""

from __future__ import annotations

import html
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from websockets.sync.client import connect


class Form(HTMLParser):
    """The first <form> of a page: its action and its input values."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self._in_form = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form" and self.action is None:
            self.action = values.get("action", "")
            self._in_form = True
        elif tag == "input" and self._in_form and "name" in values:
            self.fields[values["name"]] = values.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False


def parse_form(html: str) -> Form:
    form = Form()
    form.feed(html)
    return form


@dataclass
class HubUser:
    public_url: str
    username: str
    session: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        self.session.trust_env = False  # never a proxy: everything here is on loopback

    def url(self, path: str) -> str:
        return self.public_url.rstrip("/") + path

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self._checked("GET", self.url(path), **kwargs)

    def _checked(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        host = urlsplit(url).hostname
        assert host in {"127.0.0.1", "localhost"}, f"refusing to contact {url}"
        kwargs.setdefault("timeout", 60)
        return self.session.request(method, url, **kwargs)

    def xsrf(self, path_prefix: str = "/hub/") -> str:
        """The _xsrf cookie that applies to `path_prefix` (the one with the longest path)."""
        matching = [
            c
            for c in self.session.cookies
            if c.name == "_xsrf" and path_prefix.startswith(c.path or "/")
        ]
        best = max(matching, key=lambda c: len(c.path or ""), default=None)
        return (best.value or "") if best else ""

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """The hub's REST API with the login cookie, as the hub's own pages call it."""
        headers = {"X-XSRFToken": self.xsrf("/hub/"), **kwargs.pop("headers", {})}
        return self._checked(method, self.url(f"/hub/api{path}"), headers=headers, **kwargs)

    # -- logging in --------------------------------------------------------------

    def log_in(self, password: str | None = None) -> requests.Response:
        """Log in through the OIDC provider's form; return the final hub page."""
        page = self.get("/hub/oauth_login", allow_redirects=True)
        if "/hub/" in page.url and page.status_code == 200 and "oauth_login" not in page.url:
            return page
        form = parse_form(page.text)
        assert form.action is not None, f"no login form at {page.url}: {page.text[:300]}"
        form.fields.update(
            {"username": self.username, "password": password or f"{self.username}-demo"}
        )
        return self._checked(
            "POST", urljoin(page.url, form.action), data=form.fields, allow_redirects=True
        )

    # -- servers -----------------------------------------------------------------

    def spawn_form(self, server: str) -> requests.Response:
        return self.get(f"/hub/spawn/{self.username}/{server}")

    def spawn(self, server: str, project: str | None = None) -> requests.Response:
        """Submit the spawn form; return the page once the start succeeded or failed."""
        self.spawn_form(server)  # sets the _xsrf cookie
        response = self._checked(
            "POST",
            self.url(f"/hub/spawn/{self.username}/{server}"),
            data={"project": project or server, "_xsrf": self.xsrf("/hub/")},
            allow_redirects=True,
        )
        return self.settle(response)

    def settle(self, response: requests.Response, timeout: float = 60) -> requests.Response:
        """Follow a spawn-pending page until the spawn has succeeded or failed.

        The hub answers a spawn at once with a pending page; a refusal shows up there
        (with its message and status) once the spawner has failed.
        """
        if "/hub/spawn-pending/" not in response.url:
            return response
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            page = self._checked("GET", response.url, allow_redirects=False)
            if page.status_code != 200:
                return page
            time.sleep(0.5)
        return page

    def server(self, server: str) -> dict[str, Any] | None:
        user = self.api("GET", f"/users/{self.username}").json()
        found: dict[str, Any] | None = (user.get("servers") or {}).get(server)
        return found

    def wait_ready(self, server: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.server(server)
            if info and info.get("ready"):
                # A page first: it runs the OAuth handshake that gives the server's cookie.
                self.get(f"/user/{self.username}/{server}/lab", allow_redirects=True)
                status = self.get(f"/user/{self.username}/{server}/api/status")
                if status.status_code == 200 and status.headers.get("content-type", "").startswith(
                    "application/json"
                ):
                    return
            time.sleep(0.5)
        raise TimeoutError(f"{self.username}/{server} not ready after {timeout} s")

    def stop(self, server: str, timeout: float = 60) -> None:
        response = self.api("DELETE", f"/users/{self.username}/servers/{server}")
        assert response.status_code in (202, 204), response.text
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server(server) is None:
                return
            time.sleep(0.5)
        raise TimeoutError(f"{self.username}/{server} did not stop")

    # -- kernels -----------------------------------------------------------------

    def server_api(self, server: str, method: str, path: str, **kwargs: Any) -> requests.Response:
        prefix = f"/user/{self.username}/{server}/"
        headers = {"X-XSRFToken": self.xsrf(prefix), **kwargs.pop("headers", {})}
        return self._checked(method, self.url(prefix + "api" + path), headers=headers, **kwargs)

    def execute(self, server: str, code: str, timeout: float = 120) -> str:
        """Run `code` in a new Python kernel over the websocket; return its stdout."""
        kernel = self.server_api(server, "POST", "/kernels", json={"name": "python3"})
        assert kernel.status_code == 201, kernel.text
        kernel_id = kernel.json()["id"]
        try:
            return self._run(server, kernel_id, code, timeout)
        finally:
            self.server_api(server, "DELETE", f"/kernels/{kernel_id}")

    def _run(self, server: str, kernel_id: str, code: str, timeout: float) -> str:
        base = self.public_url.replace("http://", "ws://").rstrip("/")
        url = f"{base}/user/{self.username}/{server}/api/kernels/{kernel_id}/channels"
        cookies = "; ".join(f"{c.name}={c.value}" for c in self.session.cookies)
        msg_id = uuid.uuid4().hex
        message = {
            "header": {
                "msg_id": msg_id,
                "username": self.username,
                "session": uuid.uuid4().hex,
                "msg_type": "execute_request",
                "version": "5.3",
                "date": datetime.now(UTC).isoformat(),
            },
            "parent_header": {},
            "metadata": {},
            "content": {
                "code": code,
                "silent": False,
                "store_history": False,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": True,
            },
            "channel": "shell",
            "buffers": [],
        }
        out: list[str] = []
        deadline = time.monotonic() + timeout
        with connect(url, additional_headers={"Cookie": cookies}, open_timeout=30) as ws:
            ws.send(json.dumps(message))
            while time.monotonic() < deadline:
                reply = json.loads(ws.recv(timeout=max(1.0, deadline - time.monotonic())))
                if reply.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = reply["header"]["msg_type"]
                if kind == "stream":
                    out.append(reply["content"]["text"])
                elif kind == "error":
                    raise RuntimeError("\n".join(reply["content"]["traceback"]))
                elif kind == "status" and reply["content"]["execution_state"] == "idle":
                    return "".join(out)
        raise TimeoutError("no idle status from the kernel")


def message_of(page: requests.Response) -> str:
    """The visible text of a page (UTF-8, entities decoded), squeezed."""
    text = re.sub(r"<[^>]+>", " ", page.content.decode("utf-8", errors="replace"))
    return re.sub(r"\s+", " ", html.unescape(text))


def error_of(page: requests.Response) -> str:
    """The hub's error text on a page, or the start of the page when there is none."""
    text = message_of(page)
    at = text.find("Error:")
    return text[at : at + 400] if at >= 0 else text[:400]
