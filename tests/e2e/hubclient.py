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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

LEGACY = "legacy"
V1 = "v1.kernel.websocket.jupyter.org"
"""The two kernel websocket protocols: JSON text frames, and jupyter_server's binary v1."""


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

    def execute(self, server: str, code: str, timeout: float = 120, protocol: str = LEGACY) -> str:
        """Run `code` in a new Python kernel over the websocket; return its stdout
        (raises `KernelError` when the cell fails or is refused)."""
        with self.kernel(server, protocol=protocol) as kernel:
            return kernel.run(code, timeout).raise_for_error()

    @contextmanager
    def kernel(
        self, server: str, protocol: str = LEGACY, headers: dict[str, str] | None = None
    ) -> Iterator[KernelChannel]:
        """A new Python kernel and one websocket to it, shut down afterwards.

        `headers` replace the login cookie (e.g. `Authorization: token ...`)."""
        created = self.server_api(server, "POST", "/kernels", json={"name": "python3"})
        assert created.status_code == 201, created.text
        kernel_id = created.json()["id"]
        try:
            with self.channel(server, kernel_id, protocol, headers) as channel:
                yield channel
        finally:
            self.server_api(server, "DELETE", f"/kernels/{kernel_id}")

    @contextmanager
    def channel(
        self,
        server: str,
        kernel_id: str,
        protocol: str = LEGACY,
        headers: dict[str, str] | None = None,
    ) -> Iterator[KernelChannel]:
        base = self.public_url.replace("http://", "ws://").rstrip("/")
        url = f"{base}/user/{self.username}/{server}/api/kernels/{kernel_id}/channels"
        if headers is None:
            cookies = "; ".join(f"{c.name}={c.value}" for c in self.session.cookies)
            headers = {"Cookie": cookies}
        subprotocols = [Subprotocol(V1)] if protocol == V1 else None
        with connect(
            url, additional_headers=headers, subprotocols=subprotocols, open_timeout=30
        ) as ws:
            assert ws.subprotocol == (V1 if protocol == V1 else None), ws.subprotocol
            yield KernelChannel(ws, protocol, self.username)


class KernelError(RuntimeError):
    def __init__(self, ename: str, evalue: str, traceback: list[str]) -> None:
        super().__init__("\n".join(traceback) or f"{ename}: {evalue}")
        self.ename, self.evalue = ename, evalue


@dataclass
class Result:
    msg_id: str
    stdout: str = ""
    error: KernelError | None = None
    reply_status: str | None = None

    def raise_for_error(self) -> str:
        if self.error is not None:
            raise self.error
        return self.stdout


def encode_v1(channel: str, parts: list[bytes]) -> bytes:
    """jupyter_server's v1 frame: offset count, offsets (8-byte little endian), channel, parts."""
    chan = channel.encode()
    offsets = [8 * (1 + 1 + len(parts) + 1)]
    offsets.append(offsets[-1] + len(chan))
    for part in parts:
        offsets.append(offsets[-1] + len(part))
    head = len(offsets).to_bytes(8, "little") + b"".join(o.to_bytes(8, "little") for o in offsets)
    return head + chan + b"".join(parts)


def decode_v1(frame: bytes) -> tuple[str, list[bytes]]:
    count = int.from_bytes(frame[:8], "little")
    offsets = [int.from_bytes(frame[8 * (i + 1) : 8 * (i + 2)], "little") for i in range(count)]
    channel = frame[offsets[0] : offsets[1]].decode()
    return channel, [frame[offsets[i] : offsets[i + 1]] for i in range(1, count - 1)]


@dataclass
class KernelChannel:
    """One kernel websocket in one protocol; `run` sends an execute_request and reads the
    replies to it (other messages are skipped)."""

    ws: ClientConnection
    protocol: str
    username: str
    session: str = field(default_factory=lambda: uuid.uuid4().hex)

    def message(self, msg_type: str, content: dict[str, Any], channel: str) -> dict[str, Any]:
        return {
            "header": {
                "msg_id": uuid.uuid4().hex,
                "username": self.username,
                "session": self.session,
                "msg_type": msg_type,
                "version": "5.3",
                "date": datetime.now(UTC).isoformat(),
            },
            "parent_header": {},
            "metadata": {},
            "content": content,
            "channel": channel,
            "buffers": [],
        }

    def send(self, message: dict[str, Any]) -> None:
        if self.protocol == V1:
            parts = [
                json.dumps(message[k]).encode()
                for k in ("header", "parent_header", "metadata", "content")
            ]
            self.ws.send(encode_v1(message["channel"], parts))
        else:
            self.ws.send(json.dumps(message))

    def send_raw(self, frame: str | bytes) -> None:
        self.ws.send(frame)

    def receive(self, timeout: float) -> dict[str, Any]:
        frame = self.ws.recv(timeout=timeout)
        if self.protocol == V1:
            assert isinstance(frame, bytes), "a v1 connection sent a text frame"
            channel, parts = decode_v1(frame)
            header, parent, metadata, content = (json.loads(p) for p in parts[:4])
            return {
                "channel": channel,
                "header": header,
                "parent_header": parent,
                "metadata": metadata,
                "content": content,
            }
        loaded: dict[str, Any] = json.loads(frame)
        return loaded

    def execute_request(self, code: str) -> dict[str, Any]:
        content = {
            "code": code,
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        }
        return self.message("execute_request", content, "shell")

    def run(self, code: str, timeout: float = 120) -> Result:
        message = self.execute_request(code)
        self.send(message)
        return self.collect(message["header"]["msg_id"], timeout)

    def collect(self, msg_id: str, timeout: float = 120) -> Result:
        """Read until the kernel (or the server on its behalf) reports idle for `msg_id`."""
        result = Result(msg_id)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = self.receive(max(1.0, deadline - time.monotonic()))
            if reply.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = reply["header"]["msg_type"]
            content = reply["content"]
            if kind == "stream":
                result.stdout += content["text"]
            elif kind == "error":
                result.error = KernelError(
                    content["ename"], content["evalue"], content.get("traceback", [])
                )
            elif kind == "execute_reply":
                result.reply_status = content.get("status")
            elif kind == "status" and content["execution_state"] == "idle":
                return result
        raise TimeoutError(f"no idle status for {msg_id} within {timeout} s")


def message_of(page: requests.Response) -> str:
    """The visible text of a page (UTF-8, entities decoded), squeezed."""
    text = re.sub(r"<[^>]+>", " ", page.content.decode("utf-8", errors="replace"))
    return re.sub(r"\s+", " ", html.unescape(text))


def error_of(page: requests.Response) -> str:
    """The hub's error text on a page, or the start of the page when there is none."""
    text = message_of(page)
    at = text.find("Error:")
    return text[at : at + 400] if at >= 0 else text[:400]
