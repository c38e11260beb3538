"""The bundled demo OpenID Connect provider, run for real (node + oidc-provider) on loopback.

Each test drives the authorization code flow with PKCE as a browser and a relying party would,
over plain HTTP with a cookie jar; redirects are followed only within the provider, so the client's
redirect URI (a closed loopback port) is never contacted.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import stat
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import pytest

from tests.support import DEMO_POLICY, DEMO_TODAY
from tre.demo.idp import (
    CONFIG_FILE,
    IDP_DIR,
    KEYS_FILE,
    LOG_FILE,
    STORE_FILE,
    DemoAccount,
    DemoClient,
    DemoIdP,
    DemoIdPConfig,
    DemoIdPError,
    accounts_from_policy,
    demo_password,
    install_command,
    load_or_create_keys,
    node_modules_current,
    node_version,
    verify_password,
)
from tre.policy import load_policy

# Port 9 (discard) on loopback: nothing listens, and nothing here ever connects to it.
CALLBACK = "http://127.0.0.1:9/hub/oauth_callback"
SCOPE = "openid profile email groups"


# ---------------------------------------------------------------- a tiny browser


@dataclass
class Response:
    status: int
    headers: Message
    body: bytes

    @property
    def location(self) -> str | None:
        return self.headers.get("Location")

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Browser:
    """A cookie jar and no automatic redirects or proxies: every hop is visible to the test."""

    def __init__(self) -> None:
        self.cookies = CookieJar()
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),
            urllib.request.HTTPCookieProcessor(self.cookies),
            _NoRedirect(),
        )

    def request(
        self,
        url: str,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        assert urlsplit(url).hostname in {"127.0.0.1", "localhost"}, f"not loopback: {url}"
        data = urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(url, data=data, headers=headers or {})
        try:
            with self._opener.open(request, timeout=10) as answer:
                return Response(answer.status, answer.headers, answer.read())
        except urllib.error.HTTPError as err:
            with err:
                return Response(err.code, err.headers, err.read())


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Flow:
    """One authorization request's secrets, as a relying party keeps them."""

    client: DemoClient
    verifier: str
    state: str
    nonce: str
    redirect_uri: str = CALLBACK

    @classmethod
    def new(cls, client: DemoClient, redirect_uri: str = CALLBACK) -> Flow:
        return cls(
            client,
            secrets.token_urlsafe(48),
            secrets.token_urlsafe(16),
            secrets.token_urlsafe(16),
            redirect_uri,
        )

    def authorize_url(self, issuer: str, *, pkce: bool = True, **extra: str) -> str:
        params = {
            "client_id": self.client.client_id,
            "redirect_uri": self.redirect_uri,
            "response_type": "code",
            "scope": SCOPE,
            "state": self.state,
            "nonce": self.nonce,
        }
        if pkce:
            challenge = _b64url(hashlib.sha256(self.verifier.encode()).digest())
            params |= {"code_challenge": challenge, "code_challenge_method": "S256"}
        return f"{issuer}/auth?{urlencode(params | extra)}"


def follow(browser: Browser, response: Response, issuer: str) -> tuple[Response, str | None]:
    """Follow redirects that stay on the provider; return the last answer and any exit URL."""
    for _ in range(10):
        if response.status not in {302, 303} or response.location is None:
            return response, None
        target = urljoin(issuer + "/", response.location)
        if not target.startswith(issuer + "/"):
            return response, target
        response = browser.request(target)
    raise AssertionError("more than 10 redirects")


def login_form(browser: Browser, flow: Flow, issuer: str) -> str:
    """Start an authorization request; return the login form's action URL."""
    answer, left = follow(browser, browser.request(flow.authorize_url(issuer)), issuer)
    assert left is None, f"left the provider before logging in: {left}"
    assert answer.status == 200, answer.text
    assert 'type="password"' in answer.text
    action = answer.text.split('action="', 1)[1].split('"', 1)[0]
    assert action.startswith("/interaction/") and action.endswith("/login")
    return issuer + action


def submit(
    browser: Browser, action: str, username: str, password: str, issuer: str
) -> tuple[Response, str | None]:
    answer = browser.request(action, {"username": username, "password": password})
    return follow(browser, answer, issuer)


def code_from(exit_url: str | None, flow: Flow, issuer: str) -> str:
    assert exit_url is not None and exit_url.startswith(flow.redirect_uri + "?"), exit_url
    query = parse_qs(urlsplit(exit_url).query)
    assert query["state"] == [flow.state]
    assert query["iss"] == [issuer]
    assert "error" not in query, query
    return query["code"][0]


def token_request(client: DemoClient, issuer: str, form: dict[str, str]) -> Response:
    headers: dict[str, str] = {}
    form = dict(form)
    assert client.client_secret is not None
    if client.token_endpoint_auth_method == "client_secret_basic":
        pair = f"{client.client_id}:{client.client_secret}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    else:
        form |= {"client_id": client.client_id, "client_secret": client.client_secret}
    return Browser().request(f"{issuer}/token", form, headers)


def redeem(flow: Flow, code: str, issuer: str) -> Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": flow.redirect_uri,
        "code_verifier": flow.verifier,
    }
    return token_request(flow.client, issuer, form)


def userinfo(access_token: str, issuer: str) -> Response:
    return Browser().request(f"{issuer}/me", headers={"Authorization": f"Bearer {access_token}"})


def jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


def log_in(idp: DemoIdP, client: DemoClient, username: str) -> dict[str, Any]:
    """The whole flow for one person; returns the token endpoint's answer."""
    browser, flow = Browser(), Flow.new(client)
    action = login_form(browser, flow, idp.issuer)
    _, exit_url = submit(browser, action, username, demo_password(username), idp.issuer)
    tokens = redeem(flow, code_from(exit_url, flow, idp.issuer), idp.issuer)
    assert tokens.status == 200, tokens.text
    answer: dict[str, Any] = tokens.json()
    return answer


# ---------------------------------------------------------------- fixtures


def _require_node() -> None:
    """Node and an installed demo-idp, or a loud skip (a failure in CI).

    Tests never install: `npm ci` would reach the registry, and tests stay on loopback.
    """
    try:
        node_version()
        if not node_modules_current():
            raise DemoIdPError(
                f"demo-idp/node_modules is missing or stale: run `{install_command()}`"
            )
    except DemoIdPError as err:
        message = f"the demo identity provider cannot run: {err}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(f"SKIPPED LOUDLY: {message}")


@pytest.fixture(scope="module")
def clients() -> tuple[DemoClient, DemoClient]:
    post = DemoClient(
        client_id="jupyterhub",
        client_name="JupyterHub",
        client_secret=secrets.token_urlsafe(32),
        redirect_uris=(CALLBACK,),
        post_logout_redirect_uris=("http://127.0.0.1:9/hub/logout",),
    )
    basic = DemoClient(
        client_id="basic-client",
        client_secret=secrets.token_urlsafe(32),
        redirect_uris=(CALLBACK,),
        token_endpoint_auth_method="client_secret_basic",
    )
    return post, basic


@pytest.fixture(scope="module")
def hub_client(clients: tuple[DemoClient, DemoClient]) -> DemoClient:
    return clients[0]


@pytest.fixture(scope="module")
def idp(
    tmp_path_factory: pytest.TempPathFactory, clients: tuple[DemoClient, DemoClient]
) -> Iterator[DemoIdP]:
    _require_node()
    config = DemoIdPConfig.for_policy(
        load_policy(DEMO_POLICY, DEMO_TODAY),
        state_dir=tmp_path_factory.mktemp("idp-state"),
        clients=clients,
    )
    with DemoIdP(config, install=False) as running:
        yield running


# ---------------------------------------------------------------- discovery and configuration


def test_discovery_document_names_the_issuer(idp: DemoIdP) -> None:
    doc = Browser().request(idp.discovery_url).json()
    assert doc["issuer"] == idp.issuer
    for endpoint in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri"):
        assert doc[endpoint].startswith(idp.issuer + "/")
    assert {"openid", "profile", "email", "groups"} <= set(doc["scopes_supported"])
    assert {"preferred_username", "name", "email", "groups"} <= set(doc["claims_supported"])
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert "end_session_endpoint" in doc


def test_config_keys_store_and_log_are_private(idp: DemoIdP, hub_client: DemoClient) -> None:
    log_in(idp, hub_client, "alice")  # the session store is written at the first login
    state = idp.config.state_dir
    for name in (CONFIG_FILE, KEYS_FILE, STORE_FILE, LOG_FILE):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600, name
        assert "alice-demo" not in (state / name).read_text(), f"a plain password in {name}"
    assert load_or_create_keys(state) == idp.config.keys
    jwks = Browser().request(f"{idp.issuer}/jwks").json()
    assert [(k["kty"], k["crv"], k["alg"]) for k in jwks["keys"]] == [("EC", "P-256", "ES256")]
    assert all("d" not in k for k in jwks["keys"]), "the private key must never be published"


def test_accounts_follow_the_policy() -> None:
    policy = load_policy(DEMO_POLICY, DEMO_TODAY)
    accounts = {a.username: a for a in accounts_from_policy(policy)}
    assert set(accounts) == {p.username for p in policy.people}
    assert accounts["alice"].groups == ("tre-researchers",)
    assert accounts["olivia"].groups == ("tre-output-checkers",)
    assert accounts["adam"].groups == ("tre-admins",)
    assert accounts["pat"].groups == ("tre-patient-reps",)
    alice: DemoAccount = accounts["alice"]
    assert verify_password(alice.password_hash, "alice-demo")
    assert not verify_password(alice.password_hash, "bob-demo")
    assert "alice-demo" not in repr(alice) and "alice-demo" not in alice.password_hash


# ---------------------------------------------------------------- logging in


@pytest.mark.parametrize(
    ("username", "groups"),
    [
        ("alice", ["tre-researchers"]),
        ("olivia", ["tre-output-checkers"]),
        ("adam", ["tre-admins"]),
        ("pat", ["tre-patient-reps"]),
    ],
)
def test_login_with_pkce_gives_username_and_groups(
    idp: DemoIdP, hub_client: DemoClient, username: str, groups: list[str]
) -> None:
    tokens = log_in(idp, hub_client, username)
    info = userinfo(tokens["access_token"], idp.issuer)
    assert info.status == 200, info.text
    claims = info.json()
    person = load_policy(DEMO_POLICY, DEMO_TODAY).person(username)
    assert person is not None
    assert claims["sub"] == username
    assert claims["preferred_username"] == username
    assert claims["groups"] == groups
    assert claims["name"] == person.name
    assert claims["email"] == person.email
    id_token = jwt_claims(tokens["id_token"])
    assert id_token["iss"] == idp.issuer
    assert id_token["aud"] == hub_client.client_id
    assert id_token["sub"] == username


def test_client_secret_basic_client_logs_in(
    idp: DemoIdP, clients: tuple[DemoClient, DemoClient]
) -> None:
    tokens = log_in(idp, clients[1], "bob")
    assert userinfo(tokens["access_token"], idp.issuer).json()["preferred_username"] == "bob"


def test_refresh_token_gives_fresh_userinfo(idp: DemoIdP, hub_client: DemoClient) -> None:
    tokens = log_in(idp, hub_client, "carla")
    assert "refresh_token" in tokens
    refreshed = token_request(
        hub_client,
        idp.issuer,
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
    )
    assert refreshed.status == 200, refreshed.text
    info = userinfo(refreshed.json()["access_token"], idp.issuer).json()
    assert info["groups"] == ["tre-researchers"]


def test_second_authorization_reuses_the_session(idp: DemoIdP, hub_client: DemoClient) -> None:
    browser, flow = Browser(), Flow.new(hub_client)
    action = login_form(browser, flow, idp.issuer)
    _, exit_url = submit(browser, action, "oscar", demo_password("oscar"), idp.issuer)
    code_from(exit_url, flow, idp.issuer)

    again = Flow.new(hub_client)
    _, exit_url = follow(browser, browser.request(again.authorize_url(idp.issuer)), idp.issuer)
    tokens = redeem(again, code_from(exit_url, again, idp.issuer), idp.issuer).json()
    assert userinfo(tokens["access_token"], idp.issuer).json()["preferred_username"] == "oscar"


# ---------------------------------------------------------------- attacks that must fail


@pytest.mark.security
@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("alice", "wrong-password"),
        ("alice", "bob-demo"),
        ("alice", ""),
        ("mallory", "mallory-demo"),
        ("", "alice-demo"),
        ("Alice", "alice-demo"),
        ('"><script>alert(1)</script>', "alice-demo"),
    ],
)
def test_bad_credentials_get_the_form_again_and_no_code(
    idp: DemoIdP, hub_client: DemoClient, username: str, password: str
) -> None:
    browser, flow = Browser(), Flow.new(hub_client)
    action = login_form(browser, flow, idp.issuer)
    answer = browser.request(action, {"username": username, "password": password})
    assert answer.status == 401
    assert answer.location is None
    assert "Unknown username or wrong password" in answer.text
    assert 'type="password"' in answer.text
    assert password == "" or password not in answer.text
    assert "<script>" not in answer.text, "the typed username must come back escaped"

    # The same sign-in may still succeed with the right password.
    _, exit_url = submit(browser, action, "alice", "alice-demo", idp.issuer)
    code_from(exit_url, flow, idp.issuer)


@pytest.mark.security
def test_unregistered_redirect_uri_is_refused_without_redirect(
    idp: DemoIdP, hub_client: DemoClient
) -> None:
    flow = Flow.new(hub_client, redirect_uri="http://127.0.0.1:9/evil/callback")
    answer = Browser().request(flow.authorize_url(idp.issuer))
    assert answer.status == 400
    assert answer.location is None
    assert "redirect_uri" in answer.text


@pytest.mark.security
def test_unknown_client_is_refused_without_redirect(idp: DemoIdP) -> None:
    stranger = DemoClient(client_id="stranger", client_secret="x" * 32, redirect_uris=(CALLBACK,))
    answer = Browser().request(Flow.new(stranger).authorize_url(idp.issuer))
    assert answer.status == 400
    assert answer.location is None
    assert "client" in answer.text


@pytest.mark.security
def test_authorization_without_pkce_is_refused(idp: DemoIdP, hub_client: DemoClient) -> None:
    flow = Flow.new(hub_client)
    answer = Browser().request(flow.authorize_url(idp.issuer, pkce=False))
    _, exit_url = follow(Browser(), answer, idp.issuer)
    assert exit_url is not None
    query = parse_qs(urlsplit(exit_url).query)
    assert query["error"] == ["invalid_request"]
    assert "code" not in query


@pytest.mark.security
def test_code_is_useless_without_the_verifier(idp: DemoIdP, hub_client: DemoClient) -> None:
    browser, flow = Browser(), Flow.new(hub_client)
    action = login_form(browser, flow, idp.issuer)
    _, exit_url = submit(browser, action, "alice", "alice-demo", idp.issuer)
    code = code_from(exit_url, flow, idp.issuer)

    wrong = Flow(hub_client, secrets.token_urlsafe(48), flow.state, flow.nonce)
    refused = redeem(wrong, code, idp.issuer)
    assert refused.status == 400
    assert refused.json()["error"] == "invalid_grant"
    # A stolen code without the verifier is useless; the client that holds it still succeeds.
    assert redeem(flow, code, idp.issuer).status == 200


@pytest.mark.security
def test_code_is_single_use(idp: DemoIdP, hub_client: DemoClient) -> None:
    browser, flow = Browser(), Flow.new(hub_client)
    action = login_form(browser, flow, idp.issuer)
    _, exit_url = submit(browser, action, "alice", "alice-demo", idp.issuer)
    code = code_from(exit_url, flow, idp.issuer)
    first = redeem(flow, code, idp.issuer)
    assert first.status == 200
    second = redeem(flow, code, idp.issuer)
    assert second.status == 400
    assert second.json()["error"] == "invalid_grant"
    # Replaying a code revokes what the first redemption gave out.
    assert userinfo(first.json()["access_token"], idp.issuer).status == 401


@pytest.mark.security
def test_wrong_client_secret_is_refused(idp: DemoIdP, hub_client: DemoClient) -> None:
    browser, flow = Browser(), Flow.new(hub_client)
    action = login_form(browser, flow, idp.issuer)
    _, exit_url = submit(browser, action, "alice", "alice-demo", idp.issuer)
    code = code_from(exit_url, flow, idp.issuer)
    impostor = hub_client.model_copy(update={"client_secret": "not-the-secret-" + "x" * 32})
    answer = redeem(Flow(impostor, flow.verifier, flow.state, flow.nonce), code, idp.issuer)
    assert answer.status == 401
    assert answer.json()["error"] == "invalid_client"


@pytest.mark.security
def test_login_form_posted_from_another_browser_gets_nothing(
    idp: DemoIdP, hub_client: DemoClient
) -> None:
    victim, flow = Browser(), Flow.new(hub_client)
    action = login_form(victim, flow, idp.issuer)
    answer = Browser().request(action, {"username": "alice", "password": "alice-demo"})
    assert answer.status == 400
    assert answer.location is None


@pytest.mark.security
def test_userinfo_needs_a_valid_token(idp: DemoIdP) -> None:
    assert userinfo("not-a-token", idp.issuer).status == 401
    assert Browser().request(f"{idp.issuer}/me").status in {400, 401}


# ---------------------------------------------------------------- restarts


@pytest.mark.slow
def test_restart_keeps_keys_sessions_and_refresh_tokens(
    tmp_path: Path, clients: tuple[DemoClient, DemoClient]
) -> None:
    _require_node()
    hub = clients[0]
    config = DemoIdPConfig.for_policy(
        load_policy(DEMO_POLICY, DEMO_TODAY), state_dir=tmp_path / "idp", clients=(hub,)
    )
    browser = Browser()
    with DemoIdP(config, install=False) as first:
        jwks = Browser().request(f"{first.issuer}/jwks").json()
        flow = Flow.new(hub)
        action = login_form(browser, flow, first.issuer)
        _, exit_url = submit(browser, action, "alice", "alice-demo", first.issuer)
        tokens = redeem(flow, code_from(exit_url, flow, first.issuer), first.issuer).json()

    again = DemoIdPConfig.for_policy(
        load_policy(DEMO_POLICY, DEMO_TODAY),
        state_dir=tmp_path / "idp",
        clients=(hub,),
        port=config.port,
    )
    assert again.keys == config.keys
    with DemoIdP(again, install=False) as second:
        assert Browser().request(f"{second.issuer}/jwks").json() == jwks
        refreshed = token_request(
            hub,
            second.issuer,
            {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        )
        assert refreshed.status == 200, refreshed.text
        # The browser's session survived too: no login form this time.
        flow = Flow.new(hub)
        _, exit_url = follow(
            browser, browser.request(flow.authorize_url(second.issuer)), second.issuer
        )
        code_from(exit_url, flow, second.issuer)
    assert "alice-demo" not in (tmp_path / "idp" / STORE_FILE).read_text()


def test_startup_failure_reports_the_log(
    tmp_path: Path, clients: tuple[DemoClient, DemoClient]
) -> None:
    _require_node()
    config = DemoIdPConfig.for_policy(
        load_policy(DEMO_POLICY, DEMO_TODAY), state_dir=tmp_path / "idp", clients=(clients[0],)
    )
    # model_copy skips validation: a bad config reaches node, which must refuse it.
    broken = config.model_copy(
        update={"keys": config.keys.model_copy(update={"cookie_keys": ("short",)})}
    )
    with pytest.raises(DemoIdPError, match="exited with code 2") as caught:
        DemoIdP(broken, install=False).start()
    assert "cookie_keys" in str(caught.value)


def test_missing_node_modules_names_the_install_command(
    tmp_path: Path, clients: tuple[DemoClient, DemoClient]
) -> None:
    _require_node()
    bare = tmp_path / "demo-idp"
    bare.mkdir()
    shutil.copy(IDP_DIR / "package-lock.json", bare)
    config = DemoIdPConfig.for_policy(
        load_policy(DEMO_POLICY, DEMO_TODAY), state_dir=tmp_path / "idp", clients=(clients[0],)
    )
    with pytest.raises(DemoIdPError, match=r"node_modules is missing.*npm ci"):
        DemoIdP(config, idp_dir=bare, install=False).start()


def test_missing_node_is_named(tmp_path: Path) -> None:
    with pytest.raises(DemoIdPError, match=r"install Node\.js"):
        node_version(str(tmp_path / "no-such-node"))
