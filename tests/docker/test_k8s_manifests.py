"""docker/k8s/: every manifest is a well-formed object of its kind (deserialized by the official
`kubernetes` client's models and serialized back unchanged, so a misspelt field shows), RBAC is
exactly least privilege for integrations/kubernetes, and the pods run the image's start scripts
as non-root on a read-only root filesystem."""

import json
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from integrations.kubernetes.kinds import CONTEXT_KINDS, KINDS
from tests.docker import APP_DIR, DOCKER, K8S, known_env_names, script_for_command

NAMESPACE = "meshgate"
API_VERSIONS = {
    "Namespace": "v1",
    "ServiceAccount": "v1",
    "ConfigMap": "v1",
    "Secret": "v1",
    "Service": "v1",
    "Deployment": "apps/v1",
    "Job": "batch/v1",
    "ClusterRole": "rbac.authorization.k8s.io/v1",
    "ClusterRoleBinding": "rbac.authorization.k8s.io/v1",
    "Role": "rbac.authorization.k8s.io/v1",
    "RoleBinding": "rbac.authorization.k8s.io/v1",
    "NetworkPolicy": "networking.k8s.io/v1",
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
WRITE_VERBS = frozenset({"get", "list", "watch", "create", "update", "patch", "delete"})
ISTIO_PLURALS = {
    "networking.istio.io": {
        "virtualservices",
        "destinationrules",
        "gateways",
        "serviceentries",
        "sidecars",
        "workloadentries",
        "workloadgroups",
        "envoyfilters",
        "proxyconfigs",
    },
    "security.istio.io": {"authorizationpolicies", "peerauthentications", "requestauthentications"},
    "telemetry.istio.io": {"telemetries"},
    "extensions.istio.io": {"wasmplugins", "trafficextensions"},
}
GATEWAY_API_PLURALS = {"gateways", "httproutes", "grpcroutes", "referencegrants"}
MESH_CONFIG = ("istio-system", "istio")  # the one ConfigMap read, through a namespaced Role
DEPLOYMENT_SCRIPTS = {
    "meshgate-web": "start-web",
    "meshgate-worker": "start-worker",
    "meshgate-beat": "start-beat",
    "meshgate-inventory": "start-inventory",
}
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
DEV_MANIFESTS = sorted((K8S / "dev").glob("*.yaml"))


def _load(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _all(paths) -> list[dict]:
    return [doc for path in paths for doc in _load(path)]


@pytest.fixture(scope="module")
def objects() -> dict[tuple[str, str], dict]:
    found: dict[tuple[str, str], dict] = {}
    for doc in _all(MANIFESTS):
        key = (doc["kind"], doc["metadata"]["name"])
        assert key not in found, f"{key} defined twice"
        found[key] = doc
    return found


class _FakeResponse:
    """What ApiClient.deserialize reads: the body of an API server answer."""

    def __init__(self, obj: dict):
        self.data = json.dumps(obj)


_api = client.ApiClient()


def _roundtrip(doc: dict):
    """The client's model of the object, and the object serialized back from that model."""
    model = _api.deserialize(_FakeResponse(doc), f"V1{doc['kind']}")
    return model, _api.sanitize_for_serialization(model)


def _pod_specs(objects) -> dict[str, dict]:
    return {
        name: doc["spec"]["template"]["spec"] for (kind, name), doc in objects.items() if kind in ("Deployment", "Job")
    }


def _meshgate_containers(objects):
    for name, pod in _pod_specs(objects).items():
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            yield name, pod, container


# --- well-formed objects ---------------------------------------------------------------------


@pytest.mark.parametrize("path", [*MANIFESTS, *DEV_MANIFESTS], ids=lambda p: str(p.relative_to(K8S)))
def test_manifest_is_a_well_formed_object_of_its_kind(path):
    docs = _load(path)
    assert docs, f"{path.name} holds no object"
    for doc in docs:
        kind = doc["kind"]
        assert doc["apiVersion"] == API_VERSIONS[kind], f"{path.name}: {kind} {doc['apiVersion']}"
        model, back = _roundtrip(doc)
        assert type(model).__name__ == f"V1{kind}"
        # Unknown (misspelt) fields are dropped by the model, wrong types fail: the round trip
        # must give back exactly what the file says.
        assert back == doc, f"{path.name}: {kind} {doc['metadata']['name']} is not what the API would accept"
        if kind in CLUSTER_SCOPED:
            assert "namespace" not in doc["metadata"]
        elif kind in ("Role", "RoleBinding"):
            assert doc["metadata"]["namespace"] == MESH_CONFIG[0]
        else:
            assert doc["metadata"]["namespace"] == NAMESPACE


def test_kustomization_applies_every_manifest_but_the_secret_template():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert all((K8S / name).is_file() for name in listed)
    assert listed == {p.name for p in MANIFESTS} - {"secret.template.yaml"}
    assert kustomization["resources"][0] == "namespace.yaml"


def test_namespace_enforces_the_restricted_pod_security_standard(objects):
    labels = objects[("Namespace", NAMESPACE)]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


# --- RBAC ------------------------------------------------------------------------------------


def test_cluster_role_is_exactly_least_privilege(objects):
    role = objects[("ClusterRole", "meshgate")]
    granted: set[tuple[str, str, frozenset]] = set()
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, "no resourceNames / nonResourceURLs"
        for field in ("apiGroups", "resources", "verbs"):
            assert not any("*" in value for value in rule[field]), f"wildcard in {field}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.add((group, resource, frozenset(rule["verbs"])))

    listed = frozenset({"list"})
    reads = {
        ("apiextensions.k8s.io", "customresourcedefinitions", frozenset({"get", "list"})),
        # watch: the live inventory's watcher (manage.py watch_inventory)
        ("", "namespaces", frozenset({"list", "watch"})),
        ("", "services", frozenset({"list", "watch"})),
        ("", "pods", frozenset({"list", "watch"})),
        ("", "nodes", listed),
        ("", "secrets", listed),  # read as a metadata-only Table: see rbac.yaml and list_secret_metadata
        ("apps", "deployments", listed),
        *(("gateway.networking.k8s.io", plural, listed) for plural in GATEWAY_API_PLURALS),
    }
    istio = {(group, plural, WRITE_VERBS) for group, plurals in ISTIO_PLURALS.items() for plural in plurals}
    assert granted == reads | istio
    assert not any(resource == "configmaps" for _, resource, _ in granted)


def test_the_mesh_config_is_the_one_config_map_read(objects):
    role = objects[("Role", "meshgate-mesh-config")]
    assert role["metadata"]["namespace"] == MESH_CONFIG[0]
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [MESH_CONFIG[1]], "verbs": ["get"]},
    ]
    binding = objects[("RoleBinding", "meshgate-mesh-config")]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "meshgate", "namespace": NAMESPACE}]


def test_the_adapter_reads_the_mesh_config_the_role_grants():
    from policies.validation.context import MESH_CONFIG_MAP, ROOT_NAMESPACE

    assert (ROOT_NAMESPACE, MESH_CONFIG_MAP) == MESH_CONFIG


def test_cluster_role_covers_exactly_the_kinds_the_adapter_governs():
    adapter = {(kind.group, kind.plural) for kind in KINDS.values()}
    assert adapter == {(group, plural) for group, plurals in ISTIO_PLURALS.items() for plural in plurals}
    assert {kind.plural for kind in CONTEXT_KINDS.values()} == GATEWAY_API_PLURALS


def test_binding_gives_the_role_to_the_service_account(objects):
    binding = objects[("ClusterRoleBinding", "meshgate")]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "meshgate"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "meshgate", "namespace": NAMESPACE}]
    assert ("ServiceAccount", "meshgate") in objects


def test_only_pods_that_call_the_cluster_api_get_a_token(objects):
    assert objects[("ServiceAccount", "meshgate")]["automountServiceAccountToken"] is False
    pods = _pod_specs(objects)
    for name, pod in pods.items():
        assert pod["serviceAccountName"] == "meshgate", name
    mounted = {name for name, pod in pods.items() if pod.get("automountServiceAccountToken")}
    assert mounted == {"meshgate-web", "meshgate-worker", "meshgate-inventory"}


# --- workloads -------------------------------------------------------------------------------


def test_deployments_run_the_start_scripts(objects):
    deployments = {name for kind, name in objects if kind == "Deployment"}
    assert deployments == set(DEPLOYMENT_SCRIPTS)
    for name, script in DEPLOYMENT_SCRIPTS.items():
        (container,) = objects[("Deployment", name)]["spec"]["template"]["spec"]["containers"]
        path = script_for_command(container["command"])
        assert path == DOCKER / script, f"{name} runs {container['command']}"
        assert path.is_file() and path.stat().st_mode & 0o111


def test_one_image_everywhere(objects):
    images = {container["image"] for _, _, container in _meshgate_containers(objects)}
    assert images == {"meshgate:0.1.0"}


def test_beat_is_a_single_replica_replaced_not_rolled(objects):
    spec = objects[("Deployment", "meshgate-beat")]["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}


def test_web_probes(objects):
    pod = objects[("Deployment", "meshgate-web")]["spec"]["template"]["spec"]
    (web,) = pod["containers"]
    ports = {port["name"]: port["containerPort"] for port in web["ports"]}
    assert ports == {"http": 8000}
    paths = {probe: web[probe]["httpGet"]["path"] for probe in ("startupProbe", "livenessProbe", "readinessProbe")}
    # readiness: only what the web process needs; an unreachable cluster must not take the pods out of service
    assert paths == {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz?scope=local"}
    allowed = objects[("ConfigMap", "meshgate")]["data"]["DJANGO_ALLOWED_HOSTS"].split(",")
    for probe in paths:
        get = web[probe]["httpGet"]
        assert get["port"] == "http"
        # Django answers 400 to a Host it does not allow, and the kubelet sends the pod's IP.
        (host,) = [h["value"] for h in get["httpHeaders"] if h["name"] == "Host"]
        assert host in allowed


def test_service_targets_the_web_port(objects):
    service = objects[("Service", "meshgate-web")]["spec"]
    web = objects[("Deployment", "meshgate-web")]["spec"]["template"]
    assert service["selector"].items() <= web["metadata"]["labels"].items()
    (port,) = service["ports"]
    assert port["targetPort"] == "http"


def test_containers_run_as_non_root_on_a_read_only_root_filesystem(objects):
    for name, pod, container in _meshgate_containers(objects):
        where = f"{name}/{container['name']}"
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["runAsUser"] != 0, where
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True, where
        assert context["readOnlyRootFilesystem"] is True, where
        assert context["allowPrivilegeEscalation"] is False, where
        assert context["capabilities"] == {"drop": ["ALL"]}, where
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
        for path in ("/tmp", str(APP_DIR / "var")):
            assert path in mounts, f"{where}: nothing writable at {path}"
            assert "emptyDir" in volumes[mounts[path]], where


def test_containers_have_requests_and_a_memory_limit(objects):
    for name, _, container in _meshgate_containers(objects):
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), name
        assert "memory" in resources["limits"], name


def test_containers_take_their_settings_from_the_config_map_and_secret(objects):
    known = known_env_names()
    for name, _, container in _meshgate_containers(objects):
        sources = {(k, ref["name"]) for source in container["envFrom"] for k, ref in source.items()}
        assert sources == {("configMapRef", "meshgate"), ("secretRef", "meshgate")}, name
        extra = {variable["name"] for variable in container.get("env", [])}
        assert extra <= known, f"{name} sets {sorted(extra - known)}, which nothing reads"
    assert ("ConfigMap", "meshgate") in objects and ("Secret", "meshgate") in objects


def test_config_map_and_secret_hold_only_variables_the_code_reads(objects):
    known = known_env_names()
    for kind, field in (("ConfigMap", "data"), ("Secret", "stringData")):
        unknown = set(objects[(kind, "meshgate")][field]) - known
        assert not unknown, f"{kind} sets {sorted(unknown)}, which nothing reads"


def test_secret_is_a_template_without_secrets(objects):
    secret = objects[("Secret", "meshgate")]
    assert "data" not in secret, "base64 data in a template hides what it holds"
    values = secret["stringData"]
    assert {"DJANGO_SECRET_KEY", "MESHGATE_FIELD_ENCRYPTION_KEY", "DATABASE_URL", "CELERY_BROKER_URL"} <= set(values)
    # Empty: applied unchanged, production settings refuse to start instead of running with them.
    assert values["DJANGO_SECRET_KEY"] == "" and values["MESHGATE_FIELD_ENCRYPTION_KEY"] == ""
    assert values["MESHGATE_METRICS_TOKEN"] == ""
    assert ":CHANGE_ME@" in values["DATABASE_URL"]


def test_migration_job(objects):
    job = objects[("Job", "meshgate-migrate")]["spec"]
    pod = job["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["python", "manage.py", "migrate", "--noinput"]
    assert pod["restartPolicy"] == "Never"
    assert job["template"]["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"


def test_web_and_worker_wait_for_the_migrations(objects):
    for name in ("meshgate-web", "meshgate-worker"):
        (init,) = objects[("Deployment", name)]["spec"]["template"]["spec"]["initContainers"]
        assert init["command"] == ["python", "manage.py", "migrate", "--check", "--noinput"], name


def test_network_policy_admits_only_http_to_web(objects):
    deny = objects[("NetworkPolicy", "meshgate-deny-ingress")]["spec"]
    allow = objects[("NetworkPolicy", "meshgate-web-allow-http")]["spec"]
    assert deny["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "meshgate"}}
    assert deny["policyTypes"] == ["Ingress"] and "ingress" not in deny
    assert allow["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "web"
    assert allow["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]


def test_dev_backing_services_are_outside_the_network_policy():
    """The throwaway PostgreSQL and Redis share the namespace: the deny-ingress policy must not
    select them, or Meshgate could not reach its own database."""
    for doc in _all(DEV_MANIFESTS):
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"] != "meshgate"
        if doc["kind"] == "Deployment":
            labels = doc["spec"]["template"]["metadata"]["labels"]
            assert labels["app.kubernetes.io/name"] != "meshgate"
            assert doc["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
