"""Operator settings: where the site's policy and all runtime state live.

Settings are loaded once, by an explicit `load_settings(path, env)` call; nothing
reads the environment at import time. Every runtime path derives from `var_dir`,
so one folder holds a site's silos, dataset versions, keys, databases and logs.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

SETTINGS_ENV = "TRE_SETTINGS"
"""Environment variable naming the settings file, when no path is given."""

ENV_OVERRIDES: Mapping[str, str] = {
    "TRE_VAR_DIR": "var_dir",
    "TRE_POLICY_DIR": "policy_dir",
}
"""Environment variables that override single settings (for tests and the demo)."""


class SettingsError(ValueError):
    """A settings file or override is unreadable or invalid; the message says where."""


class OidcSettings(BaseModel):
    """The site's OpenID Connect provider, for JupyterHub's OAuthenticator."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str | None = Field(
        default=None,
        description="Issuer URL of the site's provider; unset: the bundled demo provider.",
    )
    client_id: str = Field(default="jupyterhub", description="The hub's OAuth client id.")
    client_secret_file: Path | None = Field(
        default=None,
        description="File holding the client secret; default var/hub/oidc-client-secret.",
    )
    authorize_url: str | None = Field(default=None, description="Default: issuer + /auth.")
    token_url: str | None = Field(default=None, description="Default: issuer + /token.")
    userdata_url: str | None = Field(default=None, description="Default: issuer + /me.")
    logout_url: str | None = Field(default=None, description="Default: issuer + /session/end.")
    demo_idp_port: int = Field(
        default=8090, ge=1, le=65535, description="Port of the bundled demo provider."
    )


class HubSettings(BaseModel):
    """JupyterHub and the workspace containers it starts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    public_url: str = Field(
        default="http://127.0.0.1:8000", description="Where people reach the hub (the proxy)."
    )
    hub_port: int = Field(
        default=8081, ge=1, le=65535, description="The hub's API port, reached by workspaces."
    )
    proxy_api_port: int = Field(
        default=8001, ge=1, le=65535, description="The proxy's API port (loopback only)."
    )
    db_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the hub database; default SQLite under var/db.",
    )
    image: str = Field(
        default="jupyter-tre/workspace:latest", description="The workspace image to start."
    )
    cpu_limit: float = Field(default=2.0, gt=0, description="Default CPUs per workspace.")
    mem_limit: str = Field(
        default="4G", pattern=r"^[1-9][0-9]*[KMGT]$", description="Default memory per workspace."
    )
    pids_limit: int = Field(default=512, ge=32, description="Process limit per workspace.")
    workspace_quota: str | None = Field(
        default=None,
        pattern=r"^[1-9][0-9]*[KMGT]$",
        description=(
            "Disk quota of each project's workspace folder (e.g. 20G): the folder becomes a "
            "file system of that size of its own; unset: no quota."
        ),
    )
    idle_timeout: int = Field(
        default=3600, ge=60, description="Seconds of inactivity before a workspace is stopped."
    )
    max_content_read_bytes: int = Field(
        default=25 << 20,
        ge=1024,
        description=(
            "Largest file the workspace's contents API sends to the browser; larger files "
            "are read by code in the kernel (audited), not downloaded."
        ),
    )
    permit_check_interval: int = Field(
        default=30, ge=5, le=60, description="Seconds between checks that stop ended permits."
    )
    backend: Literal["docker", "swarm"] = Field(
        default="docker",
        description=(
            "What starts workspaces: 'docker' (one container per workspace on this host's "
            "engine) or 'swarm' (one Docker Swarm service per workspace; see the how-to "
            "'Scale to Docker Swarm' for what the engine needs first)."
        ),
    )


class AuditSettings(BaseModel):
    """The hub-side audit service and log that every workspace writes to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    port: int = Field(
        default=8082,
        ge=1,
        le=65535,
        description="Port of the audit service, reached by workspaces on their network gateway.",
    )
    db_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the audit database; default SQLite under var/db.",
    )
    retention_days: int = Field(
        default=400,
        ge=365,
        description="Days audit records are kept (EHDS: at least one year).",
    )
    max_record_bytes: int = Field(
        default=1 << 20,
        ge=1024,
        description="Largest record (e.g. a code cell) accepted; larger ones are refused.",
    )
    confirm_timeout: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="Seconds a workspace waits for the service to confirm a record.",
    )


class ReviewSettings(BaseModel):
    """The output-review service (airlock): its port, database, limits and e-mail."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    port: int = Field(
        default=8083,
        ge=1,
        le=65535,
        description=(
            "Port of the review service: workspaces reach its API on their network gateway, "
            "people reach its pages through the hub's proxy."
        ),
    )
    db_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the review database; default SQLite under var/db.",
    )
    max_file_bytes: int = Field(
        default=100 << 20, ge=1024, description="Largest file a release request may hold."
    )
    smtp_host: str | None = Field(
        default=None,
        description=(
            "Mail server for notifications (checkers on submission, the author on each "
            "decision); unset: no e-mail is sent."
        ),
    )
    smtp_port: int = Field(default=25, ge=1, le=65535, description="Port of the mail server.")
    smtp_starttls: bool = Field(
        default=False,
        description="Upgrade the connection with STARTTLS (the server's certificate verified).",
    )
    smtp_username: str | None = Field(
        default=None, description="User to log in to the mail server as; unset: no login."
    )
    smtp_password_file: Path | None = Field(
        default=None,
        description="File holding the mail server password (never the password itself here).",
    )
    mail_from: str = Field(
        default="jupyter-tre@localhost",
        pattern=r"^[^\r\n]+@[^\r\n]+$",
        description="Sender address of the notifications.",
    )
    public_url: str | None = Field(
        default=None,
        description=(
            "Base URL of the review pages, for the links in e-mails "
            "(e.g. https://tre.example/services/tre-review); default: hub.public_url + "
            "/services/tre-review."
        ),
    )


class MirrorSettings(BaseModel):
    """The package mirror: devpi-server on loopback behind the front workspaces reach."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        default=True,
        description=(
            "Run the mirror with the hub and point workspaces' pip at it; off: no package "
            "installs in workspaces at all."
        ),
    )
    port: int = Field(
        default=8084,
        ge=1,
        le=65535,
        description=(
            "Port of the mirror's front, reached by workspaces on their network gateway "
            "(pip's index is http://tre:<server token>@<gateway>:<port>/simple/)."
        ),
    )
    upstream_url: str = Field(
        default="https://pypi.org/simple",
        pattern=r"^https?://[^\s]+$",
        description="The upstream simple index devpi mirrors (root/pypi's mirror_url).",
    )
    serverdir: Path | None = Field(
        default=None,
        description="devpi-server's state (cached files, indexes); default var/mirror/devpi.",
    )
    request_timeout: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="Seconds the front waits for devpi to answer or to send the next chunk.",
    )
    max_file_bytes: int = Field(
        default=1 << 30,
        ge=1024,
        description="Largest package file the front passes to a workspace; larger are refused.",
    )


class PublishSettings(BaseModel):
    """The summaries service: Voila in its own container, over released outputs only."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        default=True,
        description="Run the summaries service (Voila) for patients' representatives.",
    )
    subnet: ipaddress.IPv4Network = Field(
        default=ipaddress.IPv4Network("172.31.254.0/29"),
        description=(
            "The summaries container's internal network. Fixed, so the proxy's route to it is "
            "known when the hub starts: its gateway is the host, .2 the container. Pick a "
            "subnet no other network of the host uses."
        ),
    )
    port: int = Field(
        default=8866, ge=1, le=65535, description="Port Voila listens on in its container."
    )
    refresh_seconds: int = Field(
        default=60,
        ge=5,
        le=86400,
        description="How often the published folder is rebuilt from newly released outputs.",
    )
    mem_limit: str = Field(
        default="1G", pattern=r"^[1-9][0-9]*[KMGT]$", description="Memory of the container."
    )
    cpu_limit: float = Field(default=1.0, gt=0, description="CPUs of the container.")
    notebooks_dir: Path | None = Field(
        default=None,
        description=(
            "The summary notebooks Voila renders (one per project, plus the register and "
            "the catalogue), mounted read-only; default: notebooks/summaries of jupyter-tre."
        ),
    )

    @field_validator("subnet")
    @classmethod
    def _room_for_two(cls, value: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
        if value.prefixlen > 29:
            raise ValueError(f"{value} is too small: use a /29 or larger")
        return value

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        """The host's address on the summaries network."""
        return self.subnet.network_address + 1

    @property
    def address(self) -> ipaddress.IPv4Address:
        """The summaries container's address (the proxy's route goes here)."""
        return self.subnet.network_address + 2


class Settings(BaseModel):
    """Operator settings for one site."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy_dir: Path = Field(
        default=Path("policies/demo"),
        description="Folder with the site's policy YAML files (datasets, projects, permits, ...).",
    )
    var_dir: Path = Field(
        default=Path("var"),
        description="Folder holding all runtime state; see the README for its layout.",
    )

    hub: HubSettings = Field(default_factory=HubSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    review: ReviewSettings = Field(default_factory=ReviewSettings)
    mirror: MirrorSettings = Field(default_factory=MirrorSettings)
    publish: PublishSettings = Field(default_factory=PublishSettings)
    oidc: OidcSettings = Field(default_factory=OidcSettings)

    @property
    def hub_dir(self) -> Path:
        """The hub's own state: cookie secret, OIDC client secret, proxy token."""
        return self.var_dir / "hub"

    @property
    def silos_dir(self) -> Path:
        """Hospital source exports ("silos") that ingest reads; never mounted anywhere."""
        return self.var_dir / "silos"

    @property
    def datasets_dir(self) -> Path:
        """Immutable pseudonymised dataset versions written by ingest."""
        return self.var_dir / "datasets"

    @property
    def keys_dir(self) -> Path:
        """Pseudonym key material (ingest host only, mode 0700)."""
        return self.var_dir / "keys"

    @property
    def db_dir(self) -> Path:
        """SQLite databases of the hub and the services (the embedded default)."""
        return self.var_dir / "db"

    @property
    def logs_dir(self) -> Path:
        """Service logs and the append-only audit log."""
        return self.var_dir / "logs"

    @property
    def workspaces_dir(self) -> Path:
        """One read-write folder per project, shared by its members."""
        return self.var_dir / "workspaces"

    @property
    def publish_dir(self) -> Path:
        """What the summaries service may read: builds of released outputs, the register and
        the catalogue (`current` names the newest); nothing else is mounted into it."""
        return self.var_dir / "publish"

    @property
    def releases_dir(self) -> Path:
        """The review service's immutable copies of submitted and released outputs."""
        return self.var_dir / "releases"


def load_settings(path: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Load settings from `path` (or `$TRE_SETTINGS`), then apply environment overrides.

    Relative paths in a settings file are taken relative to the file's folder, so
    a site can keep its settings beside its policy.
    """
    env = os.environ if env is None else env
    if path is None and env.get(SETTINGS_ENV):
        path = Path(env[SETTINGS_ENV])
    values: dict[str, Any] = {}
    if path is not None:
        values = _read_settings_file(path)
        for field in ("policy_dir", "var_dir"):
            if isinstance(values.get(field), str):
                values[field] = _anchor(Path(values[field]), path.parent)
    for var, field in ENV_OVERRIDES.items():
        if env.get(var):
            values[field] = _anchor(Path(env[var]), Path.cwd())
    try:
        settings = Settings.model_validate(values)
    except ValidationError as exc:
        where = str(path) if path is not None else "environment"
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        allowed = ", ".join(Settings.model_fields)
        raise SettingsError(f"{where}: {problems} (allowed settings: {allowed})") from exc
    return settings.model_copy(
        update={
            "policy_dir": _anchor(settings.policy_dir, Path.cwd()),
            "var_dir": _anchor(settings.var_dir, Path.cwd()),
        }
    )


def _read_settings_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read settings file: {exc.strerror}") from exc
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path}: not valid YAML: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise SettingsError(
            f"{path}: expected a mapping of setting: value, got {type(loaded).__name__}"
        )
    return dict(loaded)


def _anchor(p: Path, base: Path) -> Path:
    return p if p.is_absolute() else (base / p)
