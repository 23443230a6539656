"""The domain's one way to the cluster adapter: an Environment becomes a ClusterConfig.

Views and the API never import `integrations`: the adapter's errors and kind table they need
(to answer a cluster error with a 502, to name a kind's apiVersion) are re-exported here.
"""

from django.conf import settings

from integrations.kubernetes import ClusterConfig, KubernetesError, NotFound, kind_info
from policies.choices import ClusterAuth
from policies.models import Environment

__all__ = ["ClusterConfig", "KubernetesError", "NotFound", "cluster_config", "kind_info"]


def cluster_config(environment: Environment) -> ClusterConfig:
    timeout = settings.MESHGATE_KUBE_TIMEOUT_SECONDS
    if environment.auth_mode == ClusterAuth.IN_CLUSTER:
        return ClusterConfig(in_cluster=True, timeout_seconds=timeout)
    if environment.auth_mode == ClusterAuth.KUBECONFIG:
        return ClusterConfig(
            kubeconfig_path=environment.kubeconfig_path,
            kubeconfig_context=environment.kubeconfig_context,
            timeout_seconds=timeout,
        )
    return ClusterConfig(
        api_url=environment.api_url,
        token=environment.api_token or "",
        ca_certificate=environment.ca_certificate,
        verify_tls=environment.verify_tls,
        timeout_seconds=timeout,
    )
