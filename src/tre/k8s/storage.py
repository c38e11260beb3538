"""Where a site's files live on Kubernetes: four PersistentVolumeClaims and the hub pod's paths.

Workspaces see the claims only through `subPath` mounts of their own project's folders
(datasets and resources read-only); only the hub pod mounts whole claims. No volume is
ever a hostPath. The settings the hub pod loads are the site's, with every path moved
to where the hub pod mounts it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tre.settings import Settings

DATASETS_CLAIM = "tre-datasets"
"""Dataset versions as ingest writes them (`settings.datasets_dir`): read-only everywhere."""
WORKSPACES_CLAIM = "tre-workspaces"
"""One read-write folder per project (`settings.workspaces_dir`)."""
RESOURCES_CLAIM = "tre-resources"
"""Project resources (`tre resources add`): read-only in workspaces."""
VAR_CLAIM = "tre-var"
"""The hub side's own state (`settings.var_dir`): audit log, review store, releases, mirror."""

POLICY_CONFIGMAP = "tre-policy"
"""The site's policy files, one key per file (`kubectl create configmap tre-policy
--from-file=<policy_dir>`)."""
OIDC_SECRET = "tre-oidc"  # noqa: S105 - the name of a Secret, not its value
OIDC_SECRET_KEY = "client-secret"  # noqa: S105
"""The Secret holding the hub's OIDC client secret; the hub reads it from $OAUTH_CLIENT_SECRET."""
SMTP_SECRET = "tre-smtp"  # noqa: S105
SMTP_SECRET_KEY = "password"  # noqa: S105
"""The Secret holding the mail server's password, when `review.smtp_password_file` is set."""

POD_ROOT = PurePosixPath("/srv/jupyter-tre")
POD_VAR_DIR = POD_ROOT / "var"
POD_POLICY_DIR = POD_ROOT / "policy"
POD_SETTINGS_FILE = PurePosixPath("/etc/jupyter-tre/settings.json")
POD_SMTP_PASSWORD = PurePosixPath("/etc/jupyter-tre/smtp/password")

CLAIM_ACCESS: Mapping[str, str] = {
    DATASETS_CLAIM: "ReadOnlyMany",
    WORKSPACES_CLAIM: "ReadWriteMany",
    RESOURCES_CLAIM: "ReadWriteMany",
    VAR_CLAIM: "ReadWriteOnce",
}
"""Resources are written by the hub (a project's empty folder) and by administrators."""

DEFAULT_CLAIM_SIZES: Mapping[str, str] = {
    DATASETS_CLAIM: "1Ti",
    WORKSPACES_CLAIM: "500Gi",
    RESOURCES_CLAIM: "200Gi",
    VAR_CLAIM: "50Gi",
}


class K8sValuesError(ValueError):
    """The settings or policy cannot be expressed safely for Kubernetes; the message says why."""


def pod_settings(settings: Settings) -> Settings:
    """The settings as the hub pod loads them: the site's values, its paths in the pod.

    Refuses settings that would put a credential into the values (a database URL with a
    password): the values are stored in a Secret by Helm, but are also read and diffed
    by people, and kept in version control by most sites.
    """
    for field, url in (
        ("hub.db_url", settings.hub.db_url),
        ("audit.db_url", settings.audit.db_url),
        ("review.db_url", settings.review.db_url),
    ):
        check_no_password(field, url)
    review = settings.review.model_copy(
        update={
            "smtp_password_file": Path(POD_SMTP_PASSWORD)
            if settings.review.smtp_password_file
            else None
        }
    )
    return settings.model_copy(
        update={
            "policy_dir": Path(POD_POLICY_DIR),
            "var_dir": Path(POD_VAR_DIR),
            # The hub reads the client secret from $OAUTH_CLIENT_SECRET (the Secret tre-oidc).
            "oidc": settings.oidc.model_copy(update={"client_secret_file": None}),
            "review": review,
            # Host paths mean nothing in the pod: their defaults are under var/ and the package.
            "mirror": settings.mirror.model_copy(update={"serverdir": None}),
            "publish": settings.publish.model_copy(update={"notebooks_dir": None}),
        }
    )


def check_no_password(field: str, url: str | None) -> None:
    """Raise `K8sValuesError` if a database URL carries a password."""
    if url is None:
        return
    parts = urlsplit(url)
    if parts.password or "password" in {k.lower() for k in parse_qs(parts.query)}:
        raise K8sValuesError(
            f"settings {field}: the URL carries a password, which would be written into the "
            "Helm values; give the URL without it and the password to the database client "
            "another way (e.g. a pgpass file from a Secret, see docs/how-to/scale-to-kubernetes.md)"
        )


def volume_claims(sizes: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The PersistentVolumeClaims the values mount, for `kubectl apply` (sizes to taste).

    Each claim must bind to a volume every node can mount (NFS, CephFS, a cloud file
    store): workspaces of one project may run on different nodes at once.
    """
    chosen = {**DEFAULT_CLAIM_SIZES, **(sizes or {})}
    return [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "jupyter-tre"}},
            "spec": {
                "accessModes": [access],
                "resources": {"requests": {"storage": chosen[name]}},
            },
        }
        for name, access in CLAIM_ACCESS.items()
    ]
