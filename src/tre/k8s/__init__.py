"""Kubernetes: Zero to JupyterHub values and a KubeSpawner that asks the policy, like Docker's.

The same `check_spawn` decides every workspace; this package only says it in Kubernetes'
words. `tre.k8s.spawner` needs the `k8s` extra (KubeSpawner); the values need only the hub's.
"""

from .storage import K8sValuesError, pod_settings, volume_claims
from .values import k8s_values, k8s_values_yaml
from .workspace import profile_list, workspace_override

__all__ = [
    "K8sValuesError",
    "k8s_values",
    "k8s_values_yaml",
    "pod_settings",
    "profile_list",
    "volume_claims",
    "workspace_override",
]
