"""The domain's one way to the cluster adapter: an Environment becomes a ClusterConfig."""
from django.conf import settings

from integrations.kubernetes import ClusterConfig
from policies.choices import ClusterAuth
from policies.models import Environment


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
