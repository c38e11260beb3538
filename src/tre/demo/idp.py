"""The demo site's OpenID Connect provider (`demo-idp/`, panva's oidc-provider), run from Python.

Invariant: the provider knows exactly the people of the loaded policy, each with the OIDC groups of
their site roles and the documented demo password `<username>-demo` (stored only as a scrypt hash);
its signing and cookie keys are made once per state folder, kept there with mode 0600 and reused,
so a restart keeps sessions, refresh tokens and signatures valid.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections import deque
from pathlib import Path
from types import TracebackType
from typing import IO, Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tre.policy import Policy

IDP_DIR = Path(__file__).resolve().parents[3] / "demo-idp"
"""The Node package of the demo provider, in the source tree."""

MIN_NODE = (20, 18)
"""oidc-provider 9 needs `URL.parse` (Node 20.18); its authors support Node 22 LTS and later."""

USERNAME_CLAIM = "preferred_username"
GROUPS_CLAIM = "groups"

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_SCRYPT_LEN = 32

# Order of the P-256 group: a signing key's private scalar lies in [1, n).
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

_LOG_TAIL_LINES = 30
_SECRET_BYTES = 32


class DemoIdPError(RuntimeError):
    """The demo provider cannot be installed, configured or started; the message says why."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` with mode 0600: a temporary name first, then a rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        tmp.chmod(0o600)  # an existing tmp file keeps its old mode through O_TRUNC
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------- passwords


def demo_password(username: str) -> str:
    """The demo password of a demo account: `<username>-demo` (documented in the README)."""
    return f"{username}-demo"


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """An scrypt hash as `scrypt$N$r$p$salt$hash` (base64url), the format demo-idp verifies."""
    salt = secrets.token_bytes(16) if salt is None else salt
    derived = hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=SCRYPT_N,
        r=SCRYPT_R,
        p=SCRYPT_P,
        dklen=_SCRYPT_LEN,
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64url(salt)}${_b64url(derived)}"


def verify_password(encoded: str, password: str) -> bool:
    """Check `password` against a `hash_password` result in constant time."""
    kind, n, r, p, salt, expected = encoded.split("$")
    if kind != "scrypt":
        raise ValueError(f"not an scrypt hash: {kind!r}")
    want = _unb64url(expected)
    got = hashlib.scrypt(
        password.encode("utf-8"),
        salt=_unb64url(salt),
        n=int(n),
        r=int(r),
        p=int(p),
        dklen=len(want),
        maxmem=256 * int(n) * int(r),
    )
    return secrets.compare_digest(got, want)


# ---------------------------------------------------------------- configuration models


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


ClientId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
AuthMethod = Literal["client_secret_basic", "client_secret_post", "none"]


class DemoClient(_Model):
    """A relying party of the demo provider: JupyterHub, or a test's client."""

    client_id: ClientId
    client_secret: str | None = Field(default=None, min_length=32, repr=False)
    client_name: str | None = None
    redirect_uris: tuple[str, ...] = Field(min_length=1)
    post_logout_redirect_uris: tuple[str, ...] = ()
    token_endpoint_auth_method: AuthMethod = Field(
        default="client_secret_post",
        description="How the client authenticates at the token endpoint. The default matches "
        "OAuthenticator's `basic_auth = False`; set client_secret_basic if `basic_auth = True`.",
    )

    @field_validator("redirect_uris", "post_logout_redirect_uris")
    @classmethod
    def _web_uris(cls, uris: tuple[str, ...]) -> tuple[str, ...]:
        for uri in uris:
            parts = urlsplit(uri)
            if parts.scheme not in {"http", "https"} or not parts.netloc or parts.fragment:
                raise ValueError(f"{uri!r} is not an http(s) URL without a fragment")
        return uris

    @model_validator(mode="after")
    def _secret_unless_public(self) -> Self:
        public = self.token_endpoint_auth_method == "none"  # noqa: S105 - a method name
        if not public and self.client_secret is None:
            raise ValueError(
                f"client {self.client_id!r} authenticates with "
                f"{self.token_endpoint_auth_method} and needs a client_secret"
            )
        if public and self.client_secret is not None:
            raise ValueError(f"client {self.client_id!r} is public and takes no client_secret")
        return self


class DemoAccount(_Model):
    """A person the demo provider lets log in, with the claims it gives about them."""

    username: str = Field(min_length=1)
    name: str = Field(min_length=1)
    email: str | None = None
    groups: tuple[str, ...] = ()
    password_hash: str = Field(repr=False, pattern=r"^scrypt\$\d+\$\d+\$\d+\$[\w-]+\$[\w-]+$")


class SigningKey(_Model):
    """The provider's ES256 signing key: the private scalar only; demo-idp derives the rest."""

    kty: Literal["EC"] = "EC"
    crv: Literal["P-256"] = "P-256"
    d: str = Field(repr=False)

    @field_validator("d")
    @classmethod
    def _scalar_in_range(cls, d: str) -> str:
        raw = _unb64url(d)
        if len(raw) != 32 or not 0 < int.from_bytes(raw, "big") < _P256_ORDER:
            raise ValueError("d must be 32 bytes, base64url, encoding an integer in [1, n)")
        return d

    @classmethod
    def generate(cls) -> SigningKey:
        scalar = secrets.randbelow(_P256_ORDER - 1) + 1
        return cls(d=_b64url(scalar.to_bytes(32, "big")))


class DemoIdPKeys(_Model):
    """Secrets that must survive restarts: cookie-signing keys and the token-signing key."""

    cookie_keys: tuple[Annotated[str, Field(min_length=32)], ...] = Field(min_length=1, repr=False)
    signing_key: SigningKey

    @classmethod
    def generate(cls) -> DemoIdPKeys:
        return cls(
            cookie_keys=(_b64url(secrets.token_bytes(_SECRET_BYTES)),),
            signing_key=SigningKey.generate(),
        )


KEYS_FILE = "keys.json"
CONFIG_FILE = "idp-config.json"
LOG_FILE = "idp.log"
STORE_FILE = "store.json"
"""Written by demo-idp itself: sessions, grants and tokens (mode 0600)."""


def load_or_create_keys(state_dir: Path) -> DemoIdPKeys:
    """The keys kept in `state_dir/keys.json`, made (mode 0600) on first use.

    A damaged file is an error, never silently replaced: replacing it would end every session.
    """
    path = state_dir / KEYS_FILE
    if path.exists():
        try:
            return DemoIdPKeys.model_validate_json(path.read_bytes())
        except ValidationError as err:
            raise DemoIdPError(
                f"{path}: not a valid demo-idp key file ({err.error_count()} errors, first: "
                f"{err.errors()[0]['msg']}); move it away to make new keys, which ends all "
                "demo sessions"
            ) from err
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    keys = DemoIdPKeys.generate()
    _write_private(path, keys.model_dump_json(indent=2) + "\n")
    return keys


def load_or_create_secret(path: Path) -> str:
    """A random secret kept in `path` (mode 0600), made on first use; e.g. a client secret."""
    if path.exists():
        secret = path.read_text(encoding="utf-8").strip()
        if len(secret) < _SECRET_BYTES:
            raise DemoIdPError(f"{path}: the secret is shorter than {_SECRET_BYTES} characters")
        return secret
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret = _b64url(secrets.token_bytes(_SECRET_BYTES))
    _write_private(path, secret + "\n")
    return secret


def accounts_from_policy(policy: Policy) -> tuple[DemoAccount, ...]:
    """One account per person, with the groups of their roles and their demo password."""
    role_groups = policy.site.identity.role_groups
    accounts = []
    for person in policy.people:
        groups = tuple(dict.fromkeys(role_groups[r] for r in person.roles if r in role_groups))
        accounts.append(
            DemoAccount(
                username=person.username,
                name=person.name,
                email=person.email,
                groups=groups,
                password_hash=hash_password(demo_password(person.username)),
            )
        )
    return tuple(accounts)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on `host` a moment ago."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class DemoIdPConfig(_Model):
    """What `node demo-idp/server.mjs --config FILE` reads (FILE is this model as JSON)."""

    issuer: str = Field(description="Issuer URL, with no path: http://127.0.0.1:PORT.")
    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(ge=1, le=65535)
    state_dir: Path = Field(description="Keys, the config file, the log and the session store.")
    site_name: str = "Demo identity provider"
    require_pkce: bool = Field(
        default=True, description="Refuse authorization requests without an S256 code challenge."
    )
    proxy: bool = Field(default=False, description="Trust X-Forwarded-* from a TLS proxy.")
    clients: tuple[DemoClient, ...] = Field(min_length=1)
    accounts: tuple[DemoAccount, ...] = Field(min_length=1)
    keys: DemoIdPKeys

    @field_validator("issuer")
    @classmethod
    def _bare_origin(cls, issuer: str) -> str:
        parts = urlsplit(issuer)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError(f"issuer {issuer!r} must be an http(s) URL")
        if parts.path not in {"", "/"} or parts.query or parts.fragment:
            raise ValueError(f"issuer {issuer!r} must have no path, query or fragment")
        return f"{parts.scheme}://{parts.netloc}"

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        for label, names in (
            ("client_id", [c.client_id for c in self.clients]),
            ("username", [a.username for a in self.accounts]),
        ):
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ValueError(f"{label} {repeated[0]!r} is listed more than once")
        return self

    @classmethod
    def for_policy(
        cls,
        policy: Policy,
        *,
        state_dir: Path,
        clients: tuple[DemoClient, ...],
        port: int | None = None,
        host: str = "127.0.0.1",
        issuer: str | None = None,
    ) -> DemoIdPConfig:
        """The demo provider for a loaded policy: its people, keys from `state_dir`."""
        identity = policy.site.identity
        if identity.username_claim != USERNAME_CLAIM or identity.groups_claim != GROUPS_CLAIM:
            raise DemoIdPError(
                f"the demo provider sends {USERNAME_CLAIM!r} and {GROUPS_CLAIM!r}, but the site's "
                f"identity expects username_claim={identity.username_claim!r} and "
                f"groups_claim={identity.groups_claim!r}"
            )
        port = free_port(host) if port is None else port
        url_host = f"[{host}]" if ":" in host else host
        return cls(
            issuer=issuer or f"http://{url_host}:{port}",
            host=host,
            port=port,
            state_dir=state_dir,
            site_name=policy.site.name,
            clients=clients,
            accounts=accounts_from_policy(policy),
            keys=load_or_create_keys(state_dir),
        )

    def to_json(self) -> str:
        """The config file's text: secrets included, so write it only with `write`."""
        data = self.model_dump(mode="json", exclude_none=True)
        return json.dumps(data, indent=2) + "\n"

    def write(self, path: Path | None = None) -> Path:
        """Write the config file (mode 0600, atomically); default `state_dir/idp-config.json`."""
        path = self.state_dir / CONFIG_FILE if path is None else path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_private(path, self.to_json())
        return path


# ---------------------------------------------------------------- Node and npm

_NODE_HELP = (
    "install Node.js {min} or later (Node.js 22 LTS is what oidc-provider supports), "
    "e.g. `apt-get install nodejs npm` on Debian 13 or NodeSource's packages on older "
    "releases, and put `node` and `npm` on PATH"
)


def node_version(node: str = "node") -> tuple[int, int, int]:
    """The version of `node`; `DemoIdPError` naming what to install if it is missing or old."""
    help_text = _NODE_HELP.format(min=".".join(map(str, MIN_NODE)))
    path = shutil.which(node)
    if path is None:
        raise DemoIdPError(
            f"`{node}` was not found: the demo identity provider needs Node.js; " + help_text
        )
    out = subprocess.run(
        [path, "--version"], capture_output=True, text=True, check=False, timeout=30
    )
    match = re.fullmatch(r"v(\d+)\.(\d+)\.(\d+)\S*", out.stdout.strip())
    if out.returncode != 0 or match is None:
        raise DemoIdPError(f"`{path} --version` did not print a Node.js version: {help_text}")
    version = (int(match[1]), int(match[2]), int(match[3]))
    if version[:2] < MIN_NODE:
        raise DemoIdPError(f"Node.js {out.stdout.strip()} at {path} is too old: {help_text}")
    return version


def node_modules_current(idp_dir: Path = IDP_DIR) -> bool:
    """Whether `idp_dir/node_modules` was installed from the current lockfile.

    npm writes `node_modules/.package-lock.json` on every install, so its time is the install's.
    """
    lock = idp_dir / "package-lock.json"
    if not lock.is_file():
        raise DemoIdPError(f"{lock} is missing: demo-idp must ship its lockfile")
    installed = idp_dir / "node_modules" / ".package-lock.json"
    return installed.is_file() and installed.stat().st_mtime >= lock.stat().st_mtime


def install_command(idp_dir: Path = IDP_DIR) -> str:
    """The shell command that installs demo-idp's Node packages, for messages."""
    return f"npm ci --no-audit --no-fund --prefix {idp_dir}"


def ensure_node_modules(idp_dir: Path = IDP_DIR, *, node: str = "node", npm: str = "npm") -> bool:
    """Run `npm ci` in `idp_dir` if its node_modules is missing or older than the lockfile.

    Returns whether it installed. This reaches the npm registry: tests call `DemoIdP` with
    `install=False` and expect `make` to have installed beforehand.
    """
    node_version(node)
    if node_modules_current(idp_dir):
        return False
    npm_path = shutil.which(npm)
    if npm_path is None:
        raise DemoIdPError(
            f"`{npm}` was not found, and {idp_dir}/node_modules needs installing: "
            + _NODE_HELP.format(min=".".join(map(str, MIN_NODE)))
        )
    out = subprocess.run(
        [npm_path, "ci", "--no-audit", "--no-fund"],
        cwd=idp_dir,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if out.returncode != 0:
        tail = "\n".join((out.stdout + out.stderr).splitlines()[-_LOG_TAIL_LINES:])
        raise DemoIdPError(f"`npm ci` in {idp_dir} failed (exit {out.returncode}):\n{tail}")
    return True


# ---------------------------------------------------------------- the process


def _no_proxy_opener() -> urllib.request.OpenerDirector:
    # The provider is on loopback; an HTTP_PROXY from the environment must not be used.
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


class DemoIdP:
    """The demo provider as a child process: `with DemoIdP(config) as idp: ...`.

    `start` writes the config into the state folder, starts node, and returns once the discovery
    document answers with the configured issuer; `stop` terminates node, then kills it.
    """

    def __init__(
        self,
        config: DemoIdPConfig,
        *,
        idp_dir: Path = IDP_DIR,
        node: str = "node",
        npm: str = "npm",
        install: bool = True,
        startup_timeout: float = 30.0,
    ) -> None:
        self.config = config
        self.idp_dir = idp_dir
        self.node = node
        self.npm = npm
        self.install = install
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def issuer(self) -> str:
        return self.config.issuer

    @property
    def url(self) -> str:
        """Where this machine reaches the provider (the issuer, unless behind a proxy)."""
        host = self.config.host
        if host in {"0.0.0.0", "::"}:  # noqa: S104 - the address listened on, not bound here
            host = "127.0.0.1"
        return f"http://{f'[{host}]' if ':' in host else host}:{self.config.port}"

    @property
    def discovery_url(self) -> str:
        return f"{self.url}/.well-known/openid-configuration"

    @property
    def log_path(self) -> Path:
        return self.config.state_dir / LOG_FILE

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines of the node log, for error messages."""
        if not self.log_path.exists():
            return "(no log written)"
        with self.log_path.open(encoding="utf-8", errors="replace") as handle:
            return "".join(deque(handle, maxlen=lines)).rstrip() or "(log is empty)"

    @property
    def pid(self) -> int | None:
        """Process id of the running node process, for supervisors that outlive this object."""
        return self._process.pid if self._process is not None else None

    def detach(self) -> None:
        """Leave node running after this object is gone (its pid is in `pid` until then)."""
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def start(self) -> None:
        if self._process is not None:
            raise DemoIdPError("the demo identity provider is already started")
        if self.install:
            ensure_node_modules(self.idp_dir, node=self.node, npm=self.npm)
        else:
            node_version(self.node)
            if not node_modules_current(self.idp_dir):
                raise DemoIdPError(
                    f"{self.idp_dir}/node_modules is missing or older than the lockfile: "
                    f"run `{install_command(self.idp_dir)}`"
                )
        node = shutil.which(self.node)
        assert node is not None  # node_version found it
        config_path = self.config.write()
        # The log names the people who log in: private, like the rest of the state folder.
        self._log = os.fdopen(
            os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab"
        )
        self._process = subprocess.Popen(
            [node, str(self.idp_dir / "server.mjs"), "--config", str(config_path)],
            cwd=self.idp_dir,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_until_ready(self) -> None:
        opener = _no_proxy_opener()
        deadline = time.monotonic() + self.startup_timeout
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            assert self._process is not None
            code = self._process.poll()
            if code is not None:
                raise DemoIdPError(
                    f"the demo identity provider exited with code {code} while starting; "
                    f"the end of {self.log_path}:\n{self.log_tail()}"
                )
            try:
                with opener.open(self.discovery_url, timeout=2) as response:
                    issuer = json.load(response).get("issuer")
                if issuer != self.config.issuer:
                    raise DemoIdPError(
                        f"{self.discovery_url} answered with issuer {issuer!r}, "
                        f"not {self.config.issuer!r}: another provider holds the port?"
                    )
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError) as err:
                last_error = str(err)
            time.sleep(0.1)
        raise DemoIdPError(
            f"the demo identity provider did not answer {self.discovery_url} within "
            f"{self.startup_timeout:g} s ({last_error}); the end of {self.log_path}:\n"
            f"{self.log_tail()}"
        )

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate node (SIGTERM), then kill it if it has not exited within `timeout`."""
        process, self._process = self._process, None
        try:
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout)
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
