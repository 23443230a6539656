"""Cluster reachability, as seen by the last probe."""

from django.utils import timezone

from integrations import kubernetes as kube
from policies.cluster import cluster_config
from policies.models import Environment


def environment_probe(*, environment: Environment) -> bool:
    """Asks the cluster API for its version and records whether it answered.

    These are observations, not governed changes, so they are not written to the audit log.
    """
    try:
        version, error = kube.server_version(cluster_config(environment)), ""
    except kube.KubernetesError as exc:
        version, error = "", exc.message
    Environment.objects.filter(pk=environment.pk).update(
        cluster_reachable=not error,
        cluster_version=version,
        cluster_error=error[:2000],
        cluster_checked_at=timezone.now(),
    )
    return not error
