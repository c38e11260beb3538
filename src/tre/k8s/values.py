"""Zero to JupyterHub (chart 4.x) values for a site, generated from its settings and policy.

The values hold no secret: the OIDC client secret, the chart's own tokens and any
database password stay in Kubernetes Secrets. Workspaces reach only the hub's API and
the hub-side services (audit, review, package mirror) on the hub pod, by pod selector;
no DNS, no cluster address, no internet. The profile list is a menu: the hub-side
spawner (`tre.k8s.spawner.ProjectKubeSpawner`) asks `check_spawn` again at every start.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import yaml

import tre
from tre.hub.config import MIRROR_SERVICE, oidc_urls
from tre.hub.quota import WORKSPACE_GID, WORKSPACE_UID
from tre.hub.roles import (
    REVIEW_CHECK,
    REVIEW_CUSTOM_SCOPES,
    REVIEW_READ,
    REVIEW_SERVICE,
    REVIEW_SUBMIT,
    SUMMARIES_SERVICE,
    allowed_groups,
    load_roles,
)
from tre.hub.spawner import CONTAINER_ENV
from tre.policy import Policy
from tre.resources import resources_dir
from tre.settings import Settings

from .storage import (
    DATASETS_CLAIM,
    OIDC_SECRET,
    OIDC_SECRET_KEY,
    POD_POLICY_DIR,
    POD_SETTINGS_FILE,
    POD_SMTP_PASSWORD,
    POD_VAR_DIR,
    POLICY_CONFIGMAP,
    RESOURCES_CLAIM,
    SMTP_SECRET,
    SMTP_SECRET_KEY,
    VAR_CLAIM,
    WORKSPACES_CLAIM,
    K8sValuesError,
    pod_settings,
)
from .workspace import (
    CONTAINER_SECURITY_CONTEXT,
    HUB_API_PORT,
    HUB_HOST,
    NETWORK_ACCESS_HUB,
    POD_SECURITY_CONTEXT,
    TMP_SIZE,
    literal,
    profile_list,
)

SPAWNER_CLASS = "tre.k8s.spawner.ProjectKubeSpawner"
HUB_IMAGE = "jupyter-tre/k8s-hub"
"""The hub image: the chart's k8s-hub with jupyter-tre[hub,k8s] installed (see the how-to)."""
PERMIT_WATCH_SERVICE = "permit-watch"
SUMMARIES_LABELS = {"app.kubernetes.io/name": "tre-summaries"}
"""Labels of the summaries deployment's pods (not generated here), which the proxy may reach."""
PORT_NAMES = {"audit": "tre-audit", "review": "tre-review", "mirror": "tre-mirror"}

ALL_EGRESS_CLOSED = {
    "cloudMetadataServer": False,
    "dnsPortsCloudMetadataServer": False,
    "dnsPortsKubeSystemNamespace": False,
    "dnsPortsPrivateIPs": False,
    "nonPrivateIPs": False,
    "privateIPs": False,
}
"""Zero to JupyterHub's egress shortcuts, every one off."""

SERVICE_SCOPES: dict[str, list[str]] = {
    PERMIT_WATCH_SERVICE: ["list:users", "read:users", "read:servers", "delete:servers"],
    # Read each server's user_options (its project); tokens identify themselves.
    "tre-audit": ["read:servers"],
    REVIEW_SERVICE: ["read:servers"],
    MIRROR_SERVICE: ["read:servers"],
}
"""The hub-side services' roles, as `tre.hub.config.configure` gives them on Docker (the
idle culler's comes with the chart's `cull`)."""


def k8s_values(
    settings: Settings, policy: Policy, today: date, *, image: str | None = None
) -> dict[str, Any]:
    """Zero to JupyterHub values for the site; profiles for the permits usable `today`.

    `image` is the workspace image as the cluster pulls it (default `settings.hub.image`);
    pin it by digest where the registry allows. Raises `K8sValuesError` when a setting
    cannot be expressed without a secret or without the site's own identity provider.
    """
    if settings.oidc.issuer is None:
        raise K8sValuesError(
            "settings oidc.issuer: not set, so the hub would use the bundled demo provider, "
            "which does not run on Kubernetes; give the site's OpenID Connect issuer"
        )
    pod = pod_settings(settings)
    workspace_image = image or settings.hub.image
    return {
        # Plain object names (hub, proxy-public, ...): the services' URLs below use them.
        "fullnameOverride": "",
        "hub": _hub(settings, policy, pod),
        "proxy": _proxy(settings),
        "singleuser": _singleuser(settings, policy, pod, today, workspace_image),
        "scheduling": {
            # The cluster's own scheduler places workspaces; nothing of ours decides.
            "userScheduler": {"enabled": False},
            "podPriority": {"enabled": False},
            "userPlaceholder": {"enabled": False},
        },
        # Workspace images are pulled when a workspace starts; no DaemonSet runs them ahead.
        "prePuller": {"hook": {"enabled": False}, "continuous": {"enabled": False}},
        "cull": {
            "enabled": True,
            "users": False,
            "removeNamedServers": False,
            "timeout": settings.hub.idle_timeout,
            "every": min(600, max(60, settings.hub.idle_timeout // 6)),
            "maxAge": 0,
        },
        "debug": {"enabled": False},
    }


def k8s_values_yaml(
    settings: Settings, policy: Policy, today: date, *, image: str | None = None
) -> str:
    """`k8s_values` as a YAML document for `helm upgrade --install ... --values`."""
    values = k8s_values(settings, policy, today, image=image)
    header = (
        f"# Zero to JupyterHub values for site '{policy.site.id}', generated by "
        f"`tre k8s values` (jupyter-tre {tre.__version__}).\n"
        f"# Profiles list the permits usable on {today.isoformat()}: generate again when a "
        "permit is granted, ends or is revoked.\n"
        "# The hub checks the policy at every start regardless. No secret is in this file.\n"
    )
    return header + yaml.dump(
        values, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100
    )


class _Dumper(yaml.SafeDumper):
    """Plain YAML for people to read and diff: no anchors, multi-line text as blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


# -- selectors and ports ---------------------------------------------------------------


def _pods(component: str) -> dict[str, Any]:
    """Pods of this chart release's `component` (hub, proxy, singleuser-server)."""
    return {"podSelector": {"matchLabels": {"app": "jupyterhub", "component": component}}}


def hub_side_ports(settings: Settings) -> dict[str, int]:
    """Ports of the hub-side services on the hub pod that workspaces reach (besides the
    hub's API, which the chart opens): as `tre.hub.config.allowed_ports` on Docker."""
    ports = {"audit": settings.audit.port, "review": settings.review.port}
    return {**ports, "mirror": settings.mirror.port} if settings.mirror.enabled else ports


def _tcp(*ports: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": p} for p in ports]


# -- hub ---------------------------------------------------------------------------------


def _hub(settings: Settings, policy: Policy, pod: Settings) -> dict[str, Any]:
    ports = hub_side_ports(settings)
    env_file = {"TRE_SETTINGS": str(POD_SETTINGS_FILE)}
    volumes: list[dict[str, Any]] = [
        {"name": VAR_CLAIM, "persistentVolumeClaim": {"claimName": VAR_CLAIM}},
        # The spawner verifies each dataset version against its manifest before mounting it.
        {
            "name": DATASETS_CLAIM,
            "persistentVolumeClaim": {"claimName": DATASETS_CLAIM, "readOnly": True},
        },
        # The spawner creates a project's workspace and resources folders (as on Docker).
        {"name": WORKSPACES_CLAIM, "persistentVolumeClaim": {"claimName": WORKSPACES_CLAIM}},
        {"name": RESOURCES_CLAIM, "persistentVolumeClaim": {"claimName": RESOURCES_CLAIM}},
        {"name": "tre-policy", "configMap": {"name": POLICY_CONFIGMAP}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": VAR_CLAIM, "mountPath": str(POD_VAR_DIR)},
        {"name": DATASETS_CLAIM, "mountPath": str(pod.datasets_dir), "readOnly": True},
        {"name": WORKSPACES_CLAIM, "mountPath": str(pod.workspaces_dir)},
        {"name": RESOURCES_CLAIM, "mountPath": str(resources_dir(pod))},
        {"name": "tre-policy", "mountPath": str(POD_POLICY_DIR), "readOnly": True},
    ]
    if settings.review.smtp_password_file:
        volumes.append(
            {
                "name": "tre-smtp",
                "secret": {
                    "secretName": SMTP_SECRET,
                    "items": [{"key": SMTP_SECRET_KEY, "path": POD_SMTP_PASSWORD.name}],
                    "defaultMode": 0o440,
                },
            }
        )
        mounts.append(
            {"name": "tre-smtp", "mountPath": str(POD_SMTP_PASSWORD.parent), "readOnly": True}
        )
    return {
        "image": {"name": HUB_IMAGE, "tag": tre.__version__},
        "db": _hub_db(settings),
        "allowNamedServers": True,
        "namedServerLimitPerUser": max(1, len(policy.projects)),
        "config": _hub_config(settings, policy),
        "services": _services(settings, env_file),
        "loadRoles": _load_roles(settings, policy),
        "extraEnv": {
            **env_file,
            # GenericOAuthenticator reads its client secret from here: never in the values.
            "OAUTH_CLIENT_SECRET": {
                "valueFrom": {"secretKeyRef": {"name": OIDC_SECRET, "key": OIDC_SECRET_KEY}}
            },
        },
        "extraFiles": {
            "tre-settings": {
                "mountPath": str(POD_SETTINGS_FILE),
                "stringData": pod.model_dump_json(indent=2),
            }
        },
        "extraVolumes": volumes,
        "extraVolumeMounts": mounts,
        # The hub runs as 1000 in group 100, so it can hand a new project folder to the
        # workspaces' user and group (1000:100) without root.
        "podSecurityContext": {
            "runAsNonRoot": True,
            "fsGroup": WORKSPACE_GID,
            "fsGroupChangePolicy": "OnRootMismatch",
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containerSecurityContext": {
            "runAsUser": WORKSPACE_UID,
            "runAsGroup": 1000,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
        "service": {
            # Workspaces reach the hub-side services at the hub Service's address.
            "extraPorts": [
                {
                    "name": PORT_NAMES[name],
                    "port": port,
                    "targetPort": port,
                    "protocol": "TCP",
                }
                for name, port in ports.items()
            ],
        },
        "networkPolicy": {
            "enabled": True,
            "ingress": [
                {
                    "from": [_pods("singleuser-server"), _pods("hub")],
                    "ports": _tcp(*ports.values()),
                },
                # People reach the review pages through the proxy.
                {"from": [_pods("proxy")], "ports": _tcp(settings.review.port)},
            ],
            # The hub side is trusted: it talks to the Kubernetes API, the identity provider
            # and (the mirror) the upstream package index. Never the cloud metadata server.
            "egressAllowRules": {
                "cloudMetadataServer": False,
                "dnsPortsCloudMetadataServer": True,
                "dnsPortsKubeSystemNamespace": True,
                "dnsPortsPrivateIPs": True,
                "nonPrivateIPs": True,
                "privateIPs": True,
            },
            "interNamespaceAccessLabels": "ignore",
            "allowedIngressPorts": [],
        },
    }


def _hub_db(settings: Settings) -> dict[str, Any]:
    url = settings.hub.db_url
    if url is None:
        return {"type": "sqlite-pvc"}
    scheme = url.split(":", 1)[0]
    kind = next((k for k in ("postgres", "mysql") if scheme.startswith(k)), "other")
    return {"type": kind, "url": url}


def _hub_config(settings: Settings, policy: Policy) -> dict[str, Any]:
    urls = oidc_urls(settings)
    identity = policy.site.identity
    return {
        "JupyterHub": {
            "authenticator_class": "generic-oauth",
            "spawner_class": SPAWNER_CLASS,
            "default_url": "/hub/home",
            "custom_scopes": REVIEW_CUSTOM_SCOPES,
        },
        "GenericOAuthenticator": {
            "client_id": settings.oidc.client_id,
            "oauth_callback_url": f"{settings.hub.public_url}/hub/oauth_callback",
            "authorize_url": urls["authorize_url"],
            "token_url": urls["token_url"],
            "userdata_url": urls["userdata_url"],
            "logout_redirect_url": urls["logout_url"],
            "scope": ["openid", "profile", "email", "groups"],
            "username_claim": identity.username_claim,
            "manage_groups": True,
            "auth_state_groups_key": f"oauth_user.{identity.groups_claim}",
            "allowed_groups": sorted(allowed_groups(identity)),
            "admin_groups": [],  # no one gets JupyterHub's admin role
            "enable_auth_state": False,
        },
        "Spawner": {
            # A workspace's token carries the review scopes its user holds, as on Docker.
            "server_token_scopes": [
                "users:activity!user",
                "access:servers!server",
                REVIEW_SUBMIT,
                REVIEW_READ,
            ],
            "http_timeout": 60,
            "disable_user_config": True,
        },
        "KubeSpawner": {
            # Workspaces resolve no names: they reach the hub at its Service's cluster IP.
            "hub_connect_url": f"http://{HUB_HOST}:{HUB_API_PORT}",
            "gid": WORKSPACE_GID,
            "privileged": False,
            "container_security_context": dict(CONTAINER_SECURITY_CONTEXT),
            "pod_security_context": dict(POD_SECURITY_CONTEXT),
            "automount_service_account_token": False,
        },
        "ProjectKubeSpawner": {"tre_settings_file": str(POD_SETTINGS_FILE)},
    }


def _services(settings: Settings, env: dict[str, str]) -> dict[str, Any]:
    """Managed services run in the hub pod, as on Docker they run beside the hub."""
    services: dict[str, Any] = {
        PERMIT_WATCH_SERVICE: {
            "command": ["python3", "-m", "tre.hub.permit_watch"],
            "environment": env,
        },
        # No url: workspaces reach it on the hub Service, never through the proxy.
        "tre-audit": {"command": ["python3", "-m", "tre.audit.service"], "environment": env},
        REVIEW_SERVICE: {
            "url": f"http://hub:{settings.review.port}",
            "command": ["python3", "-m", "tre.review.web"],
            "environment": env,
            "oauth_no_confirm": True,
            "oauth_client_allowed_scopes": [REVIEW_SUBMIT, REVIEW_CHECK, REVIEW_READ],
        },
    }
    if settings.mirror.enabled:
        services[MIRROR_SERVICE] = {"command": ["python3", "-m", "tre.mirror"], "environment": env}
    if settings.publish.enabled:
        # Voila runs in a deployment of its own (not generated: see the how-to); the hub
        # only routes to it and logs people in.
        services[SUMMARIES_SERVICE] = {
            "url": f"http://{SUMMARIES_SERVICE}:{settings.publish.port}",
            "oauth_no_confirm": True,
        }
    return services


def _load_roles(settings: Settings, policy: Policy) -> dict[str, Any]:
    roles: dict[str, Any] = {}
    for role in load_roles(policy.site.identity):
        roles[role["name"]] = {k: v for k, v in role.items() if k != "name"}
    for service, scopes in SERVICE_SCOPES.items():
        if service == MIRROR_SERVICE and not settings.mirror.enabled:
            continue
        roles[service] = {"scopes": scopes, "services": [service]}
    return roles


# -- proxy ------------------------------------------------------------------------------


def _proxy(settings: Settings) -> dict[str, Any]:
    egress: list[dict[str, Any]] = [{"to": [_pods("hub")], "ports": _tcp(settings.review.port)}]
    if settings.publish.enabled:
        egress.append(
            {
                "to": [{"podSelector": {"matchLabels": dict(SUMMARIES_LABELS)}}],
                "ports": _tcp(settings.publish.port),
            }
        )
    return {
        "chp": {
            "networkPolicy": {
                "enabled": True,
                "egress": egress,
                # The proxy resolves the services' names; it reaches nothing outside.
                "egressAllowRules": {
                    **ALL_EGRESS_CLOSED,
                    "dnsPortsCloudMetadataServer": True,
                    "dnsPortsKubeSystemNamespace": True,
                    "dnsPortsPrivateIPs": True,
                },
                "interNamespaceAccessLabels": "ignore",
            }
        }
    }


# -- single-user servers ---------------------------------------------------------------


def _split_image(image: str) -> dict[str, str]:
    """The chart's name and tag; a digest stays in the name (the chart adds no empty tag)."""
    if "@" in image:
        return {"name": image, "tag": ""}
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:  # no tag, or the colon belonged to a registry's port
        return {"name": image, "tag": "latest"}
    return {"name": name, "tag": tag}


def _singleuser(
    settings: Settings, policy: Policy, pod: Settings, today: date, image: str
) -> dict[str, Any]:
    hub = settings.hub
    return {
        "image": {**_split_image(image), "pullPolicy": "IfNotPresent"},
        "cmd": ["jupyterhub-singleuser"],
        "defaultUrl": "/lab",
        "uid": WORKSPACE_UID,
        "fsGid": WORKSPACE_GID,
        "allowPrivilegeEscalation": False,
        "cpu": {"limit": hub.cpu_limit, "guarantee": hub.cpu_limit},
        "memory": {"limit": hub.mem_limit, "guarantee": hub.mem_limit},
        # Nothing is mounted but /tmp until a profile (a permit) says which project.
        "storage": {
            "type": "none",
            "extraVolumes": [
                {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": TMP_SIZE}}
            ],
            "extraVolumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108
        },
        "extraEnv": {k: literal(v) for k, v in CONTAINER_ENV.items()},
        "extraLabels": {NETWORK_ACCESS_HUB: "true"},
        "extraPodConfig": {"enableServiceLinks": True},
        # The network policy below blocks the metadata server; the chart's iptables init
        # container would need root and NET_ADMIN in every workspace pod.
        "cloudMetadata": {"blockWithIptables": False},
        "networkPolicy": {
            "enabled": True,
            "ingress": [],
            "egress": [{"to": [_pods("hub")], "ports": _tcp(*hub_side_ports(settings).values())}],
            "egressAllowRules": dict(ALL_EGRESS_CLOSED),
            "interNamespaceAccessLabels": "ignore",
            "allowedIngressPorts": [],
        },
        "startTimeout": 120,
        "profileList": profile_list(pod, policy, today, image=image),
    }
