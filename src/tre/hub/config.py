"""JupyterHub configuration for a site, set from its settings and policy.

`configure(c, settings)` only sets values; `jupyterhub_config.py` calls it and
nothing else. Every value here is a decision with a reason, written beside it.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tre.policy import load_policy
from tre.settings import Settings

from .firewall import Ruleset, compute_rules, host_has_ipv6
from .roles import (
    REVIEW_CHECK,
    REVIEW_CUSTOM_SCOPES,
    REVIEW_READ,
    REVIEW_SERVICE,
    REVIEW_SUBMIT,
    SUMMARIES_SERVICE,
    allowed_groups,
    load_roles,
)

REPO = Path(__file__).resolve().parents[3]
PROXY_COMMAND = REPO / "proxy" / "node_modules" / ".bin" / "configurable-http-proxy"


SPAWNERS = {
    "docker": "tre.hub.spawner.ProjectSpawner",
    # A subclass of ProjectSpawner: the `c.ProjectSpawner` and `c.DockerSpawner` values
    # below apply to it as well.
    "swarm": "tre.swarm.spawner.ProjectSwarmSpawner",
}
"""The spawner class for each `hub.backend`."""


def allowed_ports(settings: Settings) -> list[int]:
    """Ports on its network gateway that a workspace may reach: the hub API, the audit
    service, the review service's API and the package mirror's front (when enabled).
    Everything else on the host is closed to workspaces."""
    ports = [settings.hub.hub_port, settings.audit.port, settings.review.port]
    return [*ports, settings.mirror.port] if settings.mirror.enabled else ports


def firewall_rules(settings: Settings) -> Ruleset:
    return compute_rules(allowed_ports(settings), ipv6=host_has_ipv6())


def oidc_urls(settings: Settings) -> dict[str, str]:
    """Endpoints of the OIDC provider (oidc-provider's paths unless the site sets its own)."""
    oidc = settings.oidc
    issuer = (oidc.issuer or f"http://127.0.0.1:{oidc.demo_idp_port}").rstrip("/")
    return {
        "issuer": issuer,
        "authorize_url": oidc.authorize_url or f"{issuer}/auth",
        "token_url": oidc.token_url or f"{issuer}/token",
        "userdata_url": oidc.userdata_url or f"{issuer}/me",
        "logout_url": oidc.logout_url or f"{issuer}/session/end",
    }


def client_secret(settings: Settings) -> str:
    """The hub's OIDC client secret, created (mode 0600) on first use for the demo provider."""
    path = settings.oidc.client_secret_file or settings.hub_dir / "oidc-client-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(secrets.token_urlsafe(32) + "\n", encoding="utf-8")
        tmp.chmod(0o600)
        tmp.replace(path)
    return path.read_text(encoding="utf-8").strip()


def configure(c: Any, settings: Settings) -> None:
    """Set every JupyterHub value the TRE depends on."""
    policy = load_policy(settings.policy_dir)
    hub = settings.hub
    settings.hub_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    settings.db_dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    # Where the hub listens. Workspaces reach the API on their network's gateway;
    # the host firewall allows them that port and nothing else.
    c.JupyterHub.bind_url = hub.public_url
    c.JupyterHub.hub_bind_url = f"http://0.0.0.0:{hub.hub_port}"
    c.JupyterHub.hub_connect_url = f"http://127.0.0.1:{hub.hub_port}"  # the proxy, on this host
    c.JupyterHub.db_url = hub.db_url or f"sqlite:///{settings.db_dir / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(settings.hub_dir / "jupyterhub_cookie_secret")
    c.JupyterHub.pid_file = str(settings.hub_dir / "jupyterhub.pid")
    c.ConfigurableHTTPProxy.command = [str(PROXY_COMMAND)]
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{hub.proxy_api_port}"
    c.ConfigurableHTTPProxy.pid_file = str(settings.hub_dir / "proxy.pid")

    # Identity: the site's OIDC provider; groups from the token decide roles.
    urls = oidc_urls(settings)
    c.JupyterHub.authenticator_class = "generic-oauth"
    c.GenericOAuthenticator.client_id = settings.oidc.client_id
    c.GenericOAuthenticator.client_secret = client_secret(settings)
    c.GenericOAuthenticator.oauth_callback_url = f"{hub.public_url}/hub/oauth_callback"
    c.GenericOAuthenticator.authorize_url = urls["authorize_url"]
    c.GenericOAuthenticator.token_url = urls["token_url"]
    c.GenericOAuthenticator.userdata_url = urls["userdata_url"]
    c.GenericOAuthenticator.logout_redirect_url = urls["logout_url"]
    c.GenericOAuthenticator.scope = ["openid", "profile", "email", "groups"]
    c.GenericOAuthenticator.username_claim = policy.site.identity.username_claim
    c.GenericOAuthenticator.manage_groups = True
    c.GenericOAuthenticator.auth_state_groups_key = (
        f"oauth_user.{policy.site.identity.groups_claim}"
    )
    c.GenericOAuthenticator.allowed_groups = allowed_groups(policy.site.identity)
    c.GenericOAuthenticator.admin_groups = set()  # no one gets JupyterHub's admin role
    c.GenericOAuthenticator.enable_auth_state = False

    # Workspaces: one named server per project, started by the project spawner.
    c.JupyterHub.spawner_class = SPAWNERS[hub.backend]
    c.ProjectSpawner.tre_settings_file = str(settings_file_for(settings))
    c.JupyterHub.allow_named_servers = True
    c.JupyterHub.named_server_limit_per_user = max(1, len(policy.projects))
    c.JupyterHub.default_url = "/hub/home"
    c.DockerSpawner.remove = True  # a restart must never reuse a container's old mounts
    c.DockerSpawner.pull_policy = "never"  # images are built here; no registry is trusted
    c.DockerSpawner.name_template = "tre-{username}--{servername}"
    c.Spawner.http_timeout = 60
    c.Spawner.start_timeout = 120
    # A workspace's token carries the review scopes its user holds (the hub keeps only
    # those), so the review service can tell a researcher's workspace from anyone else's.
    c.Spawner.server_token_scopes = [
        "users:activity!user",
        "access:servers!server",
        REVIEW_SUBMIT,
        REVIEW_READ,
    ]
    c.JupyterHub.custom_scopes = REVIEW_CUSTOM_SCOPES

    # Idle workspaces are stopped; the project workspace folder is kept.
    c.JupyterHub.services = [
        {
            "name": "idle-culler",
            "command": [
                sys.executable,
                "-m",
                "tre.lifeline",  # ends with the hub, as our own services do
                "jupyterhub_idle_culler",
                f"--timeout={hub.idle_timeout}",
            ],
        },
        {
            "name": "permit-watch",
            "command": [sys.executable, "-m", "tre.hub.permit_watch"],
            "environment": {"TRE_SETTINGS": str(settings_file_for(settings))},
        },
        {
            # Workspaces write each execution and save here first. No `url`: the service
            # is reached on the project networks' gateways only, never through the proxy.
            "name": "tre-audit",
            "command": [sys.executable, "-m", "tre.audit.service"],
            "environment": {"TRE_SETTINGS": str(settings_file_for(settings))},
        },
        {
            # The airlock: people reach its pages through the proxy (HubOAuth), workspaces
            # its API on their gateway. Its OAuth tokens carry the review scopes the person
            # holds and nothing else.
            "name": REVIEW_SERVICE,
            "url": f"http://127.0.0.1:{settings.review.port}",
            "command": [sys.executable, "-m", "tre.review.web"],
            "environment": {"TRE_SETTINGS": str(settings_file_for(settings))},
            "oauth_no_confirm": True,
            "oauth_client_allowed_scopes": [REVIEW_SUBMIT, REVIEW_CHECK, REVIEW_READ],
        },
    ]
    if settings.mirror.enabled:
        # pip in each workspace reaches its front on the gateway with the server's token;
        # devpi itself listens on a unix socket only the service can use.
        c.JupyterHub.services.append(
            {
                "name": MIRROR_SERVICE,
                "command": [sys.executable, "-m", "tre.mirror"],
                "environment": {
                    "TRE_SETTINGS": str(settings_file_for(settings)),
                    # The hub hands services a bare environment; devpi reaches the upstream
                    # index through the host's proxy and trusts the host's CA bundle.
                    **upstream_env(os.environ),
                },
            }
        )
    if settings.publish.enabled:
        # Voila over released outputs, in a container of its own on a fixed address; this
        # process on the host builds what it may show and keeps the container running.
        c.JupyterHub.services.append(
            {
                "name": SUMMARIES_SERVICE,
                "url": f"http://{settings.publish.address}:{settings.publish.port}",
                "command": [sys.executable, "-m", "tre.publish.summaries"],
                "environment": {"TRE_SETTINGS": str(settings_file_for(settings))},
                "oauth_no_confirm": True,
            }
        )
    c.JupyterHub.load_roles = [
        *load_roles(policy.site.identity),
        {
            "name": "idle-culler",
            "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
            "services": ["idle-culler"],
        },
        {
            "name": "permit-watch",
            "scopes": ["list:users", "read:users", "read:servers", "delete:servers"],
            "services": ["permit-watch"],
        },
        {
            # Reads each server's user_options (its project); tokens identify themselves.
            "name": "tre-audit",
            "scopes": ["read:servers"],
            "services": ["tre-audit"],
        },
        {
            # Like tre-audit: reads each server's user_options (its project).
            "name": REVIEW_SERVICE,
            "scopes": ["read:servers"],
            "services": [REVIEW_SERVICE],
        },
    ]
    if settings.mirror.enabled:
        c.JupyterHub.load_roles.append(
            {"name": MIRROR_SERVICE, "scopes": ["read:servers"], "services": [MIRROR_SERVICE]}
        )


MIRROR_SERVICE = "tre-mirror"

UPSTREAM_ENV = (
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "NO_PROXY",
    "https_proxy",
    "http_proxy",
    "no_proxy",
)
"""What the mirror needs from the hub's environment to reach the upstream index."""


def upstream_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The host's CA bundle and proxy settings, as far as they are set."""
    return {k: environ[k] for k in UPSTREAM_ENV if environ.get(k)}


def settings_file_for(settings: Settings) -> Path:
    """The settings as a file the spawner and services can load (written by the hub)."""
    path = settings.hub_dir / "settings.json"
    text = settings.model_dump_json(indent=2)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return path
