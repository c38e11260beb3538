"""Zero to JupyterHub values from the policy: what each workspace pod gets, and every way a
weaker pod, a wider network or a leaked secret would slip through.

The pods are rendered by KubeSpawner itself (its profile handling and `get_pod_manifest`,
configured from the values as the chart's jupyterhub_config.py does), the NetworkPolicies
as the chart's templates render them, and every object is validated offline against the
Kubernetes OpenAPI schemas bundled in kubernetes-validate. Only the Kubernetes API is
replaced: no cluster is contacted.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import hashlib
import ipaddress
import json
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import kubernetes_validate
import pytest
import yaml
from jupyterhub.app import JupyterHub
from kubernetes_asyncio.client import ApiClient
from kubespawner import KubeSpawner
from oauthenticator.generic import GenericOAuthenticator
from traitlets.config import Config

from tests.support import DEMO_POLICY, DEMO_TODAY, Edit
from tre.audit import EventKind, open_store
from tre.hub.config import allowed_ports, configure
from tre.hub.networks import ProjectNetwork
from tre.hub.plan import check_spawn
from tre.hub.spawner import CONTAINER_ENV, Refusal, pip_env, workspace_extension_env
from tre.k8s import K8sValuesError, k8s_values, k8s_values_yaml, volume_claims
from tre.k8s.spawner import NO_PERMIT, ProjectKubeSpawner
from tre.k8s.values import SERVICE_SCOPES
from tre.k8s.workspace import hub_side_env, workspace_override
from tre.policy import Policy, load_policy
from tre.settings import OidcSettings, ReviewSettings, Settings

K8S_VERSIONS = ("1.28", kubernetes_validate.utils.latest_version())
"""The chart's oldest supported Kubernetes and the newest the validator bundles."""

ISSUER = "https://id.example.org/realms/tre"
GBM_GRANTS = {
    "clinical-records",
    "gbm-mri",
    "gbm-mri-nifti",
    "gbm-variants",
    "gbm-alignments",
    "gbm-pathology",
    "gbm-single-cell",
}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        policy_dir=DEMO_POLICY, var_dir=tmp_path / "var", oidc=OidcSettings(issuer=ISSUER)
    )


@pytest.fixture
def values(settings: Settings, demo_policy: Policy) -> dict[str, Any]:
    return k8s_values(settings, demo_policy, DEMO_TODAY, image="registry.example/tre/ws:1.2")


def validate(obj: dict[str, Any]) -> None:
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)


def profiles_by_permit(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["slug"]: p for p in values["singleuser"]["profileList"]}


# -- KubeSpawner, configured as the chart configures it ----------------------------------


@pytest.fixture(autouse=True)
def no_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """KubeSpawner loads a kube config and makes an API client when created; there is no
    cluster here, and rendering a pod manifest needs neither."""
    monkeypatch.setattr("kubespawner.spawner.load_config", lambda **_: None)
    monkeypatch.setattr("kubespawner.spawner.shared_client", lambda *_, **__: None)


def chart_config(values: dict[str, Any]) -> Config:
    """What Zero to JupyterHub 4.x's jupyterhub_config.py sets from the `singleuser` and
    `hub.config` values these tests produce (the keys the generator uses)."""
    su = copy.deepcopy(values["singleuser"])
    c = Config()
    k = c.KubeSpawner
    k.common_labels = {"app": "jupyterhub", "heritage": "jupyterhub", "release": "tre"}
    k.start_timeout = su["startTimeout"]
    k.image_pull_policy = su["image"]["pullPolicy"]
    k.extra_labels = su["extraLabels"]
    k.uid = su["uid"]
    k.fs_gid = su["fsGid"]
    k.mem_limit, k.mem_guarantee = su["memory"]["limit"], su["memory"]["guarantee"]
    k.cpu_limit, k.cpu_guarantee = su["cpu"]["limit"], su["cpu"]["guarantee"]
    k.environment = su["extraEnv"]
    k.profile_list = su["profileList"]
    k.extra_pod_config = su["extraPodConfig"]
    image = su["image"]
    k.image = f"{image['name']}:{image['tag']}" if image["tag"] else image["name"]
    k.allow_privilege_escalation = su["allowPrivilegeEscalation"]
    assert su["storage"]["type"] == "none"
    k.volumes = su["storage"]["extraVolumes"]
    k.volume_mounts = su["storage"]["extraVolumeMounts"]
    assert su["cloudMetadata"]["blockWithIptables"] is False  # else: a root init container
    c.Spawner.cmd = su["cmd"]
    c.Spawner.default_url = su["defaultUrl"]
    for app, cfg in copy.deepcopy(values["hub"]["config"]).items():
        c[app].update(cfg)
    return c


def user(name: str) -> SimpleNamespace:
    return SimpleNamespace(name=name, id=7, url=f"/user/{name}/", escaped_name=name)


def hub() -> SimpleNamespace:
    """The hub as the chart runs it (its own name for itself, which workspaces never use)."""
    return SimpleNamespace(
        api_url="http://hub:8081/hub/api",
        url="http://hub:8081/hub/",
        base_url="/hub/",
        public_host="",
    )


def server(name: str) -> SimpleNamespace:
    """The hub's database row of a (named) server, as far as a spawner reads it."""
    return SimpleNamespace(name=name, display_name=name, server=None)


async def manifest(spawner: KubeSpawner) -> dict[str, Any]:
    pod = await spawner.get_pod_manifest()
    async with ApiClient() as api:
        rendered: dict[str, Any] = api.sanitize_for_serialization(pod)
    return rendered


def profile_pod(values: dict[str, Any], slug: str, username: str = "alice") -> dict[str, Any]:
    """The pod KubeSpawner makes when `username` picks profile `slug` from the values."""

    async def render() -> dict[str, Any]:
        spawner = KubeSpawner(
            _mock=True,
            config=chart_config(values),
            user=user(username),
            hub=hub(),
            orm_spawner=server(slug),
        )
        spawner.api_token = "token-of-the-server"
        spawner.user_options = {"profile": slug}
        await spawner.load_user_options()
        return await manifest(spawner)

    return asyncio.run(render())


def container(pod: dict[str, Any]) -> dict[str, Any]:
    (notebook,) = pod["spec"]["containers"]
    return notebook


def mounts_by_path(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["mountPath"]: m for m in container(pod)["volumeMounts"]}


def volumes_by_name(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in pod["spec"]["volumes"]}


REQUIRED_CONTAINER_CONTEXT = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "runAsGroup": 100,
    "privileged": False,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
REQUIRED_POD_CONTEXT = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "runAsGroup": 100,
    "fsGroup": 100,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def check_workspace_pod(pod: dict[str, Any], project: str, permit: str, grants: set[str]) -> None:
    """Everything a workspace pod must be; raises AssertionError naming what it is not."""
    validate(pod)
    spec, notebook = pod["spec"], container(pod)
    # Hardening: exactly as strong as required, whatever KubeSpawner merged in.
    for key, wanted in REQUIRED_CONTAINER_CONTEXT.items():
        assert notebook["securityContext"].get(key) == wanted, f"container {key}"
    for key, wanted in REQUIRED_POD_CONTEXT.items():
        assert spec["securityContext"].get(key) == wanted, f"pod {key}"
    assert spec["automountServiceAccountToken"] is False
    assert spec.get("enableServiceLinks") is True  # the hub's address comes from them
    for forbidden in ("hostNetwork", "hostPID", "hostIPC", "initContainers", "hostUsers"):
        assert not spec.get(forbidden), forbidden
    volumes, mounts = volumes_by_name(pod), mounts_by_path(pod)
    assert all("hostPath" not in v for v in volumes.values())
    assert volumes["tmp"]["emptyDir"]["medium"] == "Memory"
    assert mounts["/tmp"]["name"] == "tmp"
    # The project workspace, read-write, and only this project's.
    work = mounts["/home/researcher/work"]
    assert (work["name"], work.get("subPath"), work.get("readOnly")) == (
        "tre-workspaces",
        project,
        None,
    )
    # Everything else read-only, at the volume and at the mount.
    resources = mounts["/resources"]
    assert (resources["subPath"], resources["readOnly"]) == (project, True)
    for path, mount in mounts.items():
        if path in {"/tmp", "/home/researcher/work"}:
            continue
        assert mount.get("readOnly") is True, f"{path} is not mounted read-only"
        claim = volumes[mount["name"]]["persistentVolumeClaim"]
        assert claim.get("readOnly") is True, f"{path}: volume {mount['name']} is writable"
    data = {p.removeprefix("/data/"): m for p, m in mounts.items() if p.startswith("/data/")}
    assert set(data) == grants, "the /data mounts are not exactly the permit's grants"
    for dataset, mount in data.items():
        assert (mount["name"], mount["subPath"]) == ("tre-datasets", f"{project}/{dataset}/1")
    assert set(mounts) == {"/tmp", "/home/researcher/work", "/resources"} | {
        f"/data/{d}" for d in grants
    }
    labels = pod["metadata"]["labels"]
    assert labels["jupyter-tre/project"] == project
    assert labels["jupyter-tre/permit"] == permit
    assert labels["hub.jupyter.org/network-access-hub"] == "true"
    assert labels["component"] == "singleuser-server"


# -- the workspace pods ------------------------------------------------------------------


def test_each_usable_permit_is_a_profile_whose_pod_mounts_exactly_its_grants(
    values: dict[str, Any],
) -> None:
    profiles = profiles_by_permit(values)
    assert list(profiles) == ["gbm-linkage-2026", "hf-outcomes-2026"]

    gbm = profile_pod(values, "gbm-linkage-2026")
    check_workspace_pod(gbm, "gbm-linkage", "gbm-linkage-2026", GBM_GRANTS)
    limits = container(gbm)["resources"]["limits"]
    assert (float(limits["cpu"]), limits["memory"]) == (1.5, 6 * 1024**3)
    assert container(gbm)["image"] == "registry.example/tre/ws:1.2"

    hf = profile_pod(values, "hf-outcomes-2026", "carla")
    check_workspace_pod(hf, "hf-outcomes", "hf-outcomes-2026", {"clinical-records"})
    assert container(hf)["resources"]["limits"]["memory"] == 4 * 1024**3


def test_the_workspace_reaches_the_hub_side_by_address_and_has_terminals_off(
    values: dict[str, Any],
) -> None:
    pod = profile_pod(values, "gbm-linkage-2026")
    env = {e["name"]: e["value"] for e in container(pod)["env"]}
    assert env["JUPYTERHUB_API_URL"] == "http://$(HUB_SERVICE_HOST):8081/hub/api"
    assert env["TRE_AUDIT_URL"] == "http://$(HUB_SERVICE_HOST):8082"
    assert env["PIP_INDEX_URL"] == (
        "http://tre:$(JUPYTERHUB_API_TOKEN)@$(HUB_SERVICE_HOST):8084/simple/"
    )
    names = [e["name"] for e in container(pod)["env"]]
    # The kubelet expands only variables defined earlier in the list.
    assert names.index("JUPYTERHUB_API_TOKEN") < names.index("PIP_INDEX_URL")
    assert env["TRE_DATASETS"].split(",")[0] == "clinical-records@1"
    assert {k: env[k] for k in CONTAINER_ENV} == CONTAINER_ENV
    assert "--ServerApp.terminals_enabled=False" in container(pod)["args"]
    assert container(pod)["args"][0] == "jupyterhub-singleuser"


def test_the_k8s_workspace_gets_what_the_docker_one_gets(
    settings: Settings, demo_policy: Policy
) -> None:
    """Same hardening environment, same extension settings, same hub-side ports."""
    plan = check_spawn(demo_policy, settings, "alice", "gbm-linkage", DEMO_TODAY)
    network = ProjectNetwork(
        project_id="gbm-linkage",
        name="tre-gbm-linkage",
        id="0" * 12,
        bridge="tre-0123456789",
        subnet=ipaddress.IPv4Network("10.99.0.0/24"),
        gateway=ipaddress.IPv4Address("10.99.0.1"),
    )
    docker = {**workspace_extension_env(settings, plan, network), **pip_env(settings, network, "t")}
    k8s = hub_side_env(settings, plan)
    assert set(k8s) == set(docker)
    addresses = {"TRE_AUDIT_URL", "TRE_REVIEW_URL", "PIP_INDEX_URL", "PIP_TRUSTED_HOST"}
    for key in set(docker) - addresses:
        assert k8s[key] == docker[key], key
    egress = k8s_values(settings, demo_policy, DEMO_TODAY)["singleuser"]["networkPolicy"]
    ports = {p["port"] for rule in egress["egress"] for p in rule["ports"]}
    assert ports | {8081} == set(allowed_ports(settings))


def test_policy_text_reaches_the_pod_verbatim(
    values: dict[str, Any], settings: Settings, demo_policy: Policy
) -> None:
    """KubeSpawner formats mounts and environment with str.format, the kubelet expands
    $(VAR): a version label with braces or a dollar must arrive as written."""
    plan = check_spawn(demo_policy, settings, "carla", "hf-outcomes", DEMO_TODAY)
    odd = "v{project}$(HOME)"
    (mount,) = plan.datasets
    plan = dataclasses.replace(
        plan,
        datasets=(dataclasses.replace(mount, source=mount.source.parent / odd),),
        environment={**plan.environment, "TRE_DATASETS": f"clinical-records@{odd}"},
    )
    changed = copy.deepcopy(values)
    profile = profiles_by_permit(changed)["hf-outcomes-2026"]
    profile["kubespawner_override"] = workspace_override(settings, plan, image="ws:1")
    pod = profile_pod(changed, "hf-outcomes-2026", "carla")
    assert mounts_by_path(pod)["/data/clinical-records"]["subPath"] == (
        f"hf-outcomes/clinical-records/{odd}"
    )
    env = {e["name"]: e["value"] for e in container(pod)["env"]}
    # The kubelet turns $$ into $, so the workspace sees the label as written.
    assert env["TRE_DATASETS"] == "clinical-records@v{project}$$(HOME)"


def test_a_project_without_a_usable_permit_gets_no_profile(
    settings: Settings, site: Path, edit: Edit
) -> None:
    after_hf_expiry = date(2027, 5, 1)
    policy = load_policy(site, after_hf_expiry)
    values = k8s_values(settings, policy, after_hf_expiry)
    assert list(profiles_by_permit(values)) == ["gbm-linkage-2026"]

    edit(
        "permits.yaml",
        "    people: [alice, bob]\n",
        "    people: [alice, bob]\n    revoked: {effective: 2026-11-01, reason: Breach}\n",
    )
    policy = load_policy(site, DEMO_TODAY)
    values = k8s_values(settings, policy, DEMO_TODAY)
    assert list(profiles_by_permit(values)) == ["hf-outcomes-2026"]
    assert "gbm-linkage" not in yaml.safe_dump(values["singleuser"])


def test_a_dataset_the_permit_does_not_grant_is_not_mounted(
    settings: Settings, site: Path, edit: Edit
) -> None:
    edit("permits.yaml", '      - {dataset: gbm-variants, version: "1"}\n', "")
    values = k8s_values(settings, load_policy(site, DEMO_TODAY), DEMO_TODAY)
    pod = profile_pod(values, "gbm-linkage-2026")
    check_workspace_pod(pod, "gbm-linkage", "gbm-linkage-2026", GBM_GRANTS - {"gbm-variants"})
    with pytest.raises(AssertionError, match="exactly the permit's grants"):
        check_workspace_pod(pod, "gbm-linkage", "gbm-linkage-2026", GBM_GRANTS)


@pytest.mark.security
@pytest.mark.parametrize(
    ("tamper", "complaint"),
    [
        (lambda o: o["volume_mounts"][3].pop("readOnly"), "is not mounted read-only"),
        (
            lambda o: o["volumes"][3]["persistentVolumeClaim"].pop("readOnly"),
            "volume tre-datasets is writable",
        ),
        (
            lambda o: o["container_security_context"].update(readOnlyRootFilesystem=False),
            "container readOnlyRootFilesystem",
        ),
        (
            lambda o: o["container_security_context"].update(capabilities={"add": ["NET_RAW"]}),
            "container capabilities",
        ),
        (
            lambda o: o["container_security_context"].update(allowPrivilegeEscalation=True),
            "container allowPrivilegeEscalation",
        ),
        (lambda o: o["pod_security_context"].update(fsGroup=0), "pod fsGroup"),
        (lambda o: o["pod_security_context"].update(seccompProfile={"type": "Unconfined"}), "pod"),
        (
            lambda o: o["container_security_context"].update(runAsUser=0),
            "container runAsUser",
        ),
    ],
)
def test_the_pod_check_catches_a_weaker_workspace(
    values: dict[str, Any], tamper: Any, complaint: str
) -> None:
    """The check above is what guards the values: each weakening must trip it."""
    weaker = copy.deepcopy(values)
    override = profiles_by_permit(weaker)["gbm-linkage-2026"]["kubespawner_override"]
    tamper(override)
    pod = profile_pod(weaker, "gbm-linkage-2026")
    with pytest.raises(AssertionError, match=complaint):
        check_workspace_pod(pod, "gbm-linkage", "gbm-linkage-2026", GBM_GRANTS)


def test_profile_overrides_and_hub_config_name_real_traits(values: dict[str, Any]) -> None:
    """A misspelt trait would be ignored by traitlets, silently: every key must exist."""
    classes = {
        "JupyterHub": JupyterHub,
        "GenericOAuthenticator": GenericOAuthenticator,
        "Spawner": KubeSpawner,
        "KubeSpawner": KubeSpawner,
        "ProjectKubeSpawner": ProjectKubeSpawner,
    }
    for section, cfg in values["hub"]["config"].items():
        traits = classes[section].class_traits(config=True)
        assert set(cfg) <= set(traits), (section, set(cfg) - set(traits))
    spawner_traits = KubeSpawner.class_traits(config=True)
    for profile in values["singleuser"]["profileList"]:
        assert set(profile["kubespawner_override"]) <= set(spawner_traits)


# -- the network -------------------------------------------------------------------------

PRIVATE = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
METADATA = "169.254.169.254/32"
DNS = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]


def chart_pods(component: str) -> dict[str, Any]:
    return {"podSelector": {"matchLabels": {"app": "jupyterhub", "component": component}}}


def allow_rules(allow: dict[str, bool]) -> list[dict[str, Any]]:
    """The chart's jupyterhub.networkPolicy.renderEgressRules for `egressAllowRules`."""
    rules: list[dict[str, Any]] = []
    if allow["dnsPortsCloudMetadataServer"]:
        rules.append({"ports": DNS, "to": [{"ipBlock": {"cidr": METADATA}}]})
    if allow["dnsPortsKubeSystemNamespace"]:
        ns = {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}
        rules.append({"ports": DNS, "to": [{"namespaceSelector": ns}]})
    if allow["dnsPortsPrivateIPs"]:
        rules.append({"ports": DNS, "to": [{"ipBlock": {"cidr": c}} for c in PRIVATE]})
    if allow["nonPrivateIPs"]:
        block = {"cidr": "0.0.0.0/0", "except": [*PRIVATE, METADATA]}
        rules.append({"to": [{"ipBlock": block}]})
    if allow["privateIPs"]:
        rules.append({"to": [{"ipBlock": {"cidr": c}} for c in PRIVATE]})
    if allow["cloudMetadataServer"]:
        rules.append({"to": [{"ipBlock": {"cidr": METADATA}}]})
    return rules


def network_policies(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The NetworkPolicies chart 4.x renders from these values (its netpol templates)."""
    su = values["singleuser"]["networkPolicy"]
    hub = values["hub"]["networkPolicy"]
    proxy = values["proxy"]["chp"]["networkPolicy"]

    def policy(name: str, component: str, ingress: list[Any], egress: list[Any]) -> dict:
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": name},
            "spec": {
                "podSelector": chart_pods(component)["podSelector"],
                "policyTypes": ["Ingress", "Egress"],
                "ingress": ingress,
                "egress": egress,
            },
        }

    def labelled(label: str) -> dict[str, Any]:
        return {"podSelector": {"matchLabels": {label: "true"}}}

    return {
        "singleuser": policy(
            "singleuser",
            "singleuser-server",
            [
                {
                    "ports": [{"port": "notebook-port"}],
                    "from": [labelled("hub.jupyter.org/network-access-singleuser")],
                },
                *su["ingress"],
            ],
            [
                {"to": [chart_pods("hub")], "ports": [{"port": 8081}]},
                {"to": [chart_pods("proxy")], "ports": [{"port": 8000}]},
                {"to": [chart_pods("autohttps")], "ports": [{"port": 8080}, {"port": 8443}]},
                *allow_rules(su["egressAllowRules"]),
                *su["egress"],
            ],
        ),
        "hub": policy(
            "hub",
            "hub",
            [
                {"ports": [{"port": "http"}], "from": [labelled(NETWORK_ACCESS_HUB)]},
                *hub["ingress"],
            ],
            [
                {"to": [chart_pods("proxy")], "ports": [{"port": 8001}]},
                {"to": [chart_pods("singleuser-server")], "ports": [{"port": 8888}]},
                *allow_rules(hub["egressAllowRules"]),
            ],
        ),
        "proxy": policy(
            "proxy",
            "proxy",
            [
                {"ports": [{"port": "http"}, {"port": "https"}]},
                {
                    "ports": [{"port": "http"}],
                    "from": [labelled("hub.jupyter.org/network-access-proxy-http")],
                },
                {
                    "ports": [{"port": "api"}],
                    "from": [labelled("hub.jupyter.org/network-access-proxy-api")],
                },
            ],
            [
                {"to": [chart_pods("hub")], "ports": [{"port": 8081}]},
                {"to": [chart_pods("singleuser-server")], "ports": [{"port": 8888}]},
                *allow_rules(proxy["egressAllowRules"]),
                *proxy["egress"],
            ],
        ),
    }


NETWORK_ACCESS_HUB = "hub.jupyter.org/network-access-hub"


def check_workspace_egress(policy: dict[str, Any]) -> None:
    """Workspaces reach chart pods (hub, proxy) by selector and nothing else: no address
    block, no other namespace, no DNS, no rule without a destination."""
    for rule in policy["spec"]["egress"]:
        assert rule.get("to"), f"an egress rule without a destination allows everything: {rule}"
        for peer in rule["to"]:
            assert set(peer) == {"podSelector"}, f"egress beyond the release's pods: {peer}"
            assert peer["podSelector"]["matchLabels"]["app"] == "jupyterhub"
        assert rule.get("ports"), f"an egress rule without ports allows every port: {rule}"
        assert all(p.get("port") != 53 for p in rule["ports"]), "DNS is open"


def test_network_policies_are_valid_and_close_the_workspaces_in(
    values: dict[str, Any], settings: Settings
) -> None:
    policies = network_policies(values)
    for policy in policies.values():
        validate(policy)
    check_workspace_egress(policies["singleuser"])
    hub_side = {
        (p["port"])
        for rule in policies["singleuser"]["spec"]["egress"]
        if rule["to"] == [chart_pods("hub")]
        for p in rule["ports"]
    }
    assert hub_side == set(allowed_ports(settings))
    # The hub lets workspaces in on exactly those ports; the proxy reaches the review pages.
    hub_ingress = policies["hub"]["spec"]["ingress"]
    from_workspaces = [r for r in hub_ingress if chart_pods("singleuser-server") in r["from"]]
    assert {p["port"] for r in from_workspaces for p in r["ports"]} == hub_side - {8081}
    # The hub and the proxy never reach the cloud metadata server; the proxy nothing outside.
    for name in ("hub", "proxy"):
        cidrs = {
            peer["ipBlock"]["cidr"]
            for rule in policies[name]["spec"]["egress"]
            for peer in rule.get("to", [])
            if "ipBlock" in peer and not rule.get("ports")
        }
        assert METADATA not in cidrs, name
    assert not any(
        "ipBlock" in peer and not rule.get("ports")
        for rule in policies["proxy"]["spec"]["egress"]
        for peer in rule["to"]
    )


@pytest.mark.security
@pytest.mark.parametrize(
    "opening",
    [
        "nonPrivateIPs",
        "privateIPs",
        "cloudMetadataServer",
        "dnsPortsKubeSystemNamespace",
        "dnsPortsPrivateIPs",
        "dnsPortsCloudMetadataServer",
    ],
)
def test_any_egress_shortcut_opened_for_workspaces_is_caught(
    values: dict[str, Any], opening: str
) -> None:
    assert values["singleuser"]["networkPolicy"]["egressAllowRules"][opening] is False
    opened = copy.deepcopy(values)
    opened["singleuser"]["networkPolicy"]["egressAllowRules"][opening] = True
    with pytest.raises(AssertionError):
        check_workspace_egress(network_policies(opened)["singleuser"])


@pytest.mark.security
def test_a_hand_written_egress_rule_to_anywhere_is_caught(values: dict[str, Any]) -> None:
    opened = copy.deepcopy(values)
    opened["singleuser"]["networkPolicy"]["egress"].append({"ports": [{"port": 443}]})
    with pytest.raises(AssertionError, match="without a destination"):
        check_workspace_egress(network_policies(opened)["singleuser"])


# -- the hub pod, its Service, the claims -----------------------------------------------


def test_the_hub_pod_fragment_service_and_claims_are_valid(values: dict[str, Any]) -> None:
    hub = values["hub"]
    env = [
        {"name": name, "value": v} if isinstance(v, str) else {"name": name, **v}
        for name, v in hub["extraEnv"].items()
    ]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "hub", "labels": {"app": "jupyterhub", "component": "hub"}},
        "spec": {
            "securityContext": hub["podSecurityContext"],
            "volumes": [
                *hub["extraVolumes"],
                {"name": "files", "secret": {"secretName": "hub"}},
            ],
            "containers": [
                {
                    "name": "hub",
                    "image": f"{hub['image']['name']}:{hub['image']['tag']}",
                    "securityContext": hub["containerSecurityContext"],
                    "env": env,
                    "volumeMounts": [
                        *hub["extraVolumeMounts"],
                        {
                            "name": "files",
                            "mountPath": hub["extraFiles"]["tre-settings"]["mountPath"],
                            "subPath": "tre-settings",
                        },
                    ],
                }
            ],
        },
    }
    validate(pod)
    mounts = {m["mountPath"]: m for m in hub["extraVolumeMounts"]}
    assert mounts["/srv/jupyter-tre/var/datasets"]["readOnly"] is True
    assert all("hostPath" not in v for v in hub["extraVolumes"])
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "hub"},
        "spec": {
            "selector": {"app": "jupyterhub", "component": "hub"},
            "ports": [
                {"name": "hub", "port": 8081, "targetPort": "http", "protocol": "TCP"},
                *hub["service"]["extraPorts"],
            ],
        },
    }
    validate(service)
    for claim in volume_claims():
        validate(claim)
    assert [c["metadata"]["name"] for c in volume_claims()] == [
        "tre-datasets",
        "tre-workspaces",
        "tre-resources",
        "tre-var",
    ]


def test_the_hub_pod_loads_the_sites_settings_at_its_own_paths(
    values: dict[str, Any], settings: Settings
) -> None:
    text = values["hub"]["extraFiles"]["tre-settings"]["stringData"]
    pod = Settings.model_validate_json(text)
    assert pod.var_dir == Path("/srv/jupyter-tre/var")
    assert pod.policy_dir == Path("/srv/jupyter-tre/policy")
    assert pod.audit == settings.audit
    assert pod.hub == settings.hub
    assert values["hub"]["extraEnv"]["TRE_SETTINGS"] == "/etc/jupyter-tre/settings.json"
    for name, service in values["hub"]["services"].items():
        if "command" in service:
            assert service["environment"] == {"TRE_SETTINGS": "/etc/jupyter-tre/settings.json"}
            assert service["command"][:2] == ["python3", "-m"], name


def test_the_hub_has_the_docker_hubs_roles_scopes_and_services(
    values: dict[str, Any], settings: Settings, demo_policy: Policy
) -> None:
    c = Config()
    configure(c, settings)
    docker_roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    docker_roles.pop("idle-culler")  # the chart's `cull` brings its own, equally scoped
    k8s_roles = values["hub"]["loadRoles"]
    assert set(k8s_roles) == set(docker_roles)
    for name, role in docker_roles.items():
        assert {"name": name, **k8s_roles[name]} == role, name
    assert set(SERVICE_SCOPES) <= set(docker_roles)
    hub_config = values["hub"]["config"]
    assert hub_config["JupyterHub"]["custom_scopes"] == c.JupyterHub.custom_scopes
    assert hub_config["Spawner"]["server_token_scopes"] == c.Spawner.server_token_scopes
    docker_services = {s["name"] for s in c.JupyterHub.services} - {"idle-culler"}
    assert set(values["hub"]["services"]) == docker_services
    assert values["cull"]["timeout"] == settings.hub.idle_timeout
    oauth = hub_config["GenericOAuthenticator"]
    for key in ("client_id", "authorize_url", "token_url", "userdata_url", "allowed_groups"):
        assert oauth[key] == (
            sorted(c.GenericOAuthenticator[key])
            if key == "allowed_groups"
            else c.GenericOAuthenticator[key]
        ), key


# -- secrets -----------------------------------------------------------------------------


@pytest.mark.security
def test_no_secret_reaches_the_values(tmp_path: Path, demo_policy: Policy) -> None:
    client_secret = tmp_path / "oidc-client-secret"
    client_secret.write_text("oidc-9f8e7d6c5b4a-secret\n", encoding="utf-8")
    smtp_password = tmp_path / "smtp-password"
    smtp_password.write_text("smtp-0a1b2c3d-password\n", encoding="utf-8")
    settings = Settings(
        policy_dir=DEMO_POLICY,
        var_dir=tmp_path / "var",
        oidc=OidcSettings(issuer=ISSUER, client_secret_file=client_secret),
        review=ReviewSettings(smtp_host="mail.example", smtp_password_file=smtp_password),
    )
    text = k8s_values_yaml(settings, demo_policy, DEMO_TODAY)
    assert "oidc-9f8e7d6c5b4a-secret" not in text
    assert "smtp-0a1b2c3d-password" not in text
    assert str(tmp_path) not in text  # no host path either
    values = yaml.safe_load(text)
    hub = values["hub"]
    assert hub["extraEnv"]["OAUTH_CLIENT_SECRET"] == {
        "valueFrom": {"secretKeyRef": {"name": "tre-oidc", "key": "client-secret"}}
    }
    assert "client_secret" not in hub["config"]["GenericOAuthenticator"]
    pod = json.loads(hub["extraFiles"]["tre-settings"]["stringData"])
    assert pod["oidc"]["client_secret_file"] is None
    assert pod["review"]["smtp_password_file"] == "/etc/jupyter-tre/smtp/password"
    assert {"name": "tre-smtp", "mountPath": "/etc/jupyter-tre/smtp", "readOnly": True} in hub[
        "extraVolumeMounts"
    ]
    for service in hub["services"].values():
        assert "apiToken" not in service and "api_token" not in service


@pytest.mark.security
@pytest.mark.parametrize(
    ("field", "url"),
    [
        ("hub.db_url", "postgresql+psycopg://hub:pa55-word-x@db.example/hub"),
        ("audit.db_url", "postgresql+psycopg://audit@db.example/audit?password=pa55-word-x"),
        ("review.db_url", "postgresql://review:pa55-word-x@db.example/review"),
    ],
)
def test_a_database_url_with_a_password_is_refused(
    tmp_path: Path, demo_policy: Policy, field: str, url: str
) -> None:
    section, key = field.split(".")
    base = Settings(policy_dir=DEMO_POLICY, var_dir=tmp_path, oidc=OidcSettings(issuer=ISSUER))
    settings = base.model_copy(
        update={section: getattr(base, section).model_copy(update={key: url})}
    )
    with pytest.raises(K8sValuesError, match=rf"settings {field}: the URL carries a password") as e:
        k8s_values(settings, demo_policy, DEMO_TODAY)
    assert "pa55-word-x" not in str(e.value)


def test_a_password_less_database_url_is_used(tmp_path: Path, demo_policy: Policy) -> None:
    base = Settings(policy_dir=DEMO_POLICY, var_dir=tmp_path, oidc=OidcSettings(issuer=ISSUER))
    url = "postgresql+psycopg://hub@db.example/hub?sslmode=verify-full"
    settings = base.model_copy(update={"hub": base.hub.model_copy(update={"db_url": url})})
    assert k8s_values(settings, demo_policy, DEMO_TODAY)["hub"]["db"] == {
        "type": "postgres",
        "url": url,
    }


def test_the_demo_identity_provider_is_refused(tmp_path: Path, demo_policy: Policy) -> None:
    settings = Settings(policy_dir=DEMO_POLICY, var_dir=tmp_path)
    with pytest.raises(K8sValuesError, match=r"settings oidc\.issuer: not set"):
        k8s_values(settings, demo_policy, DEMO_TODAY)


def test_the_yaml_reads_back_as_the_values_without_anchors(
    settings: Settings, demo_policy: Policy
) -> None:
    text = k8s_values_yaml(settings, demo_policy, DEMO_TODAY, image="ws@sha256:" + "a" * 64)
    assert "&id" not in text
    assert text.startswith("# Zero to JupyterHub values for site 'demo'")
    values = yaml.safe_load(text)
    assert values == k8s_values(settings, demo_policy, DEMO_TODAY, image="ws@sha256:" + "a" * 64)
    assert values["singleuser"]["image"]["name"] == "ws@sha256:" + "a" * 64
    assert values["singleuser"]["image"]["tag"] == ""


@pytest.mark.parametrize(
    ("image", "name", "tag"),
    [
        ("jupyter-tre/workspace:latest", "jupyter-tre/workspace", "latest"),
        ("registry.example:5000/tre/ws", "registry.example:5000/tre/ws", "latest"),
        ("registry.example:5000/tre/ws:2026.11", "registry.example:5000/tre/ws", "2026.11"),
    ],
)
def test_image_references_are_split_as_the_chart_joins_them(
    settings: Settings, demo_policy: Policy, image: str, name: str, tag: str
) -> None:
    values = k8s_values(settings, demo_policy, DEMO_TODAY, image=image)
    assert values["singleuser"]["image"] | {"pullPolicy": "x"} == {
        "name": name,
        "tag": tag,
        "pullPolicy": "x",
    }


# -- the hub-side spawner ----------------------------------------------------------------


def seal_hf_dataset(settings: Settings) -> None:
    """A sealed version folder for hf-outcomes' clinical records (what ingest writes)."""
    folder = settings.datasets_dir / "hf-outcomes" / "clinical-records" / "1"
    folder.mkdir(parents=True)
    (folder / "admissions.csv").write_text("id,age\n1,70\n", encoding="utf-8")
    digest = hashlib.sha256((folder / "admissions.csv").read_bytes()).hexdigest()
    manifest = {"files": [{"path": "admissions.csv", "sha256": digest}]}
    (folder / "MANIFEST.json").write_text(json.dumps(manifest), encoding="utf-8")


def project_spawner(
    values: dict[str, Any], settings: Settings, username: str, name: str
) -> ProjectKubeSpawner:
    settings_file = settings.var_dir.parent / "settings.json"
    settings_file.parent.mkdir(parents=True, exist_ok=True)
    settings_file.write_text(settings.model_dump_json(), encoding="utf-8")
    config = chart_config(values)
    config.ProjectKubeSpawner.tre_settings_file = str(settings_file)
    spawner = ProjectKubeSpawner(
        _mock=True, config=config, user=user(username), hub=hub(), orm_spawner=server(name)
    )
    spawner.api_token = "token-of-the-server"
    return spawner


def test_the_spawner_builds_the_pod_from_the_plan_as_the_profile_does(
    values: dict[str, Any], settings: Settings
) -> None:
    seal_hf_dataset(settings)
    spawner = project_spawner(values, settings, "carla", "hf-outcomes")
    # A stale or forged form cannot widen anything: the plan replaces what it set.
    spawner.user_options = {"profile": "hf-outcomes-2026", "project": "hf-outcomes"}
    spawner.volumes = [{"name": "host", "hostPath": {"path": "/"}}]

    async def render() -> dict[str, Any]:
        await spawner.load_user_options()
        return await manifest(spawner)

    pod = asyncio.run(render())
    check_workspace_pod(pod, "hf-outcomes", "hf-outcomes-2026", {"clinical-records"})
    expected = profile_pod(values, "hf-outcomes-2026", "carla")
    assert pod["spec"]["volumes"] == expected["spec"]["volumes"]
    assert container(pod)["volumeMounts"] == container(expected)["volumeMounts"]
    assert container(pod)["securityContext"] == container(expected)["securityContext"]
    workspace = settings.workspaces_dir / "hf-outcomes"
    assert (workspace.stat().st_uid, workspace.stat().st_gid) == (1000, 100)
    assert workspace.stat().st_mode & 0o7777 == 0o2770
    (requested,) = open_store(settings).show(kind=EventKind.spawn_requested)
    assert (requested.actor, requested.project, requested.permit) == (
        "carla",
        "hf-outcomes",
        "hf-outcomes-2026",
    )


@pytest.mark.security
@pytest.mark.parametrize(
    ("username", "name", "options", "reason"),
    [
        ("carla", "gbm-linkage", {"profile": "gbm-linkage-2026"}, "not a member"),
        ("bob", "hf-outcomes", {"profile": "gbm-linkage-2026"}, "can only be started for"),
        ("olivia", "", {}, "choose a project"),
        ("carla", "hf-outcomes", {}, "is not available right now"),
    ],
)
def test_the_spawner_refuses_what_the_policy_does_not_allow(
    values: dict[str, Any],
    settings: Settings,
    username: str,
    name: str,
    options: dict[str, str],
    reason: str,
) -> None:
    spawner = project_spawner(values, settings, username, name)
    spawner.user_options = options
    with pytest.raises(Refusal, match=reason) as refused:
        asyncio.run(spawner.load_user_options())
    assert refused.value.status_code == 403
    (record,) = open_store(settings).show(kind=EventKind.spawn_refused)
    assert record.actor == username


def test_the_spawn_form_offers_each_person_only_their_permits(
    values: dict[str, Any], settings: Settings
) -> None:
    def form(username: str) -> str:
        spawner = project_spawner(values, settings, username, "")
        return asyncio.run(spawner.options_form(spawner))

    alice, bob, olivia = form("alice"), form("bob"), form("olivia")
    assert "gbm-linkage-2026" in alice and "hf-outcomes-2026" not in alice
    assert "gbm-linkage-2026" in bob and "hf-outcomes-2026" in bob
    assert olivia == NO_PERMIT
    spawner = project_spawner(values, settings, "bob", "")
    assert spawner.options_from_form({"profile": ["hf-outcomes-2026"]}) == {
        "profile": "hf-outcomes-2026",
        "project": "hf-outcomes",
    }
