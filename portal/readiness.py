from concurrent.futures import ThreadPoolExecutor

from integrations import kubernetes as kube
from policies.cluster import cluster_config
from policies.models import Environment
from portal.celery import app


def check_broker() -> dict:
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
        return {"ok": True}
    except Exception as exc:  # noqa: BLE001 - kombu raises many transport-specific errors
        return {"ok": False, "error": str(exc)}


def _check_cluster(environment: Environment) -> dict:
    cfg = cluster_config(environment)
    try:
        return {"ok": True, "version": kube.server_version(cfg), "api": cfg.describe()}
    except kube.KubernetesError as exc:
        return {"ok": False, "error": exc.message, "api": cfg.describe()}


def check_clusters() -> dict[str, dict]:
    environments = list(Environment.objects.all())
    if not environments:
        return {}
    with ThreadPoolExecutor(max_workers=min(8, len(environments))) as pool:
        results = pool.map(_check_cluster, environments)
    return {env.name: result for env, result in zip(environments, results, strict=True)}
