"""Defaulting and light validation of the built-in kinds.

Meshsim simulates just enough of each for a mesh: Services get a stable
cluster IP, Pods are Running with a pod IP, and Pods in namespaces labelled
``istio-injection=enabled`` (or ``istio.io/rev``) get the ``istio-proxy`` sidecar, like Istio's
injection webhook would add, unless annotated or labelled ``sidecar.istio.io/inject: "false"``.
Deployments are stored with a settled status (meshsim runs no controllers: their Pods are
seeded alongside them), Nodes are Ready, Secrets default to type Opaque and their data must be
base64, ConfigMaps hold strings.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import uuid
from typing import Any

from .errors import FieldError, invalid, required
from .resources import (
    CONFIG_MAPS,
    DEPLOYMENTS,
    NAMESPACES,
    NODES,
    PODS,
    SECRETS,
    SERVICES,
    ResourceType,
)

ISTIO_PROXY_IMAGE = "docker.io/istio/proxyv2:1.28.0"
NODE_NAME = "meshsim-node-1"
NODE_IP = "172.18.0.2"


def _stable_ip(prefix: str, *parts: str) -> str:
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return f"{prefix}.{digest[0]}.{digest[1] % 254 + 1}"


def _uuid(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "meshsim/" + "/".join(parts)))


def validate(resource: ResourceType, obj: dict[str, Any]) -> list[FieldError]:
    if resource is SERVICES:
        return _service_errors(obj.get("spec") or {})
    if resource is PODS:
        return _pod_errors(obj.get("spec") or {})
    if resource is DEPLOYMENTS:
        return _deployment_errors(obj.get("spec") or {})
    if resource is SECRETS:
        return _secret_errors(obj)
    if resource is CONFIG_MAPS:
        return _config_map_errors(obj)
    return []


def _deployment_errors(spec: dict[str, Any]) -> list[FieldError]:
    selector = (spec.get("selector") or {}).get("matchLabels") if isinstance(spec.get("selector"), dict) else None
    if not isinstance(selector, dict) or not selector:
        return [required("spec.selector")]
    template: dict[str, Any] = spec["template"] if isinstance(spec.get("template"), dict) else {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    if any(labels.get(key) != value for key, value in selector.items()):
        return [invalid("spec.template.metadata.labels", labels, "`selector` does not match template `labels`")]
    return [
        FieldError(error.type, f"spec.template.{error.field}", error.value, error.detail)
        for error in _pod_errors(template.get("spec") or {})
    ]


def _secret_errors(obj: dict[str, Any]) -> list[FieldError]:
    errors = []
    data = obj.get("data") or {}
    if not isinstance(data, dict):
        return [invalid("data", data, "must be a map of keys to base64-encoded values")]
    for key, value in data.items():
        try:
            base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError):
            errors.append(invalid(f"data[{key}]", "<value omitted>", "illegal base64 data"))
    if obj.get("type") == "kubernetes.io/tls":
        keys = set(data) | set(obj.get("stringData") or {})
        errors.extend(required(f"data[{key}]") for key in ("tls.crt", "tls.key") if key not in keys)
    return errors


def _config_map_errors(obj: dict[str, Any]) -> list[FieldError]:
    data = obj.get("data") or {}
    if not isinstance(data, dict):
        return [invalid("data", data, "must be a map of keys to strings")]
    return [
        invalid(f"data[{key}]", value, "must be a string") for key, value in data.items() if not isinstance(value, str)
    ]


def _service_errors(spec: dict[str, Any]) -> list[FieldError]:
    ports = spec.get("ports")
    if not isinstance(ports, list) or not ports:
        return [required("spec.ports")]
    errors = []
    for index, port in enumerate(ports):
        path = f"spec.ports[{index}].port"
        number = port.get("port") if isinstance(port, dict) else None
        if number is None:
            errors.append(required(path))
        elif not isinstance(number, int) or not 1 <= number <= 65535:
            errors.append(invalid(path, number, "must be between 1 and 65535, inclusive"))
    return errors


def _pod_errors(spec: dict[str, Any]) -> list[FieldError]:
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        return [required("spec.containers")]
    errors = []
    for index, container in enumerate(containers):
        for key in ("name", "image"):
            if not isinstance(container, dict) or not container.get(key):
                errors.append(required(f"spec.containers[{index}].{key}"))
    return errors


def apply_defaults(
    resource: ResourceType,
    obj: dict[str, Any],
    current: dict[str, Any] | None,
    namespace_labels: dict[str, str],
) -> None:
    """Fill server-set fields in place; ``current`` is the stored object on update."""
    if resource is NAMESPACES:
        _namespace_defaults(obj)
    elif resource is SERVICES:
        _service_defaults(obj, current)
    elif resource is PODS:
        _pod_defaults(obj, current, namespace_labels)
    elif resource is DEPLOYMENTS:
        _deployment_defaults(obj)
    elif resource is NODES:
        _node_defaults(obj)
    elif resource is SECRETS:
        _secret_defaults(obj)


def _deployment_defaults(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault(
        "strategy", {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
    )
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    replicas = spec["replicas"]
    obj["status"] = {
        "observedGeneration": 1,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
        "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}],
    }


def _node_defaults(obj: dict[str, Any]) -> None:
    meta = obj["metadata"]
    labels = meta.setdefault("labels", {})
    labels.setdefault("kubernetes.io/hostname", meta["name"])
    labels.setdefault("kubernetes.io/os", "linux")
    obj.setdefault(
        "status",
        {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            "addresses": [
                {"type": "InternalIP", "address": _stable_ip("172.18", meta["name"])},
                {"type": "Hostname", "address": meta["name"]},
            ],
            "nodeInfo": {
                "architecture": "amd64",
                "bootID": _uuid("boot", meta["name"]),
                "containerRuntimeVersion": "containerd://2.0.5",
                "kernelVersion": "6.12.0",
                "kubeProxyVersion": "v1.33.0",
                "kubeletVersion": "v1.33.0",
                "machineID": _uuid("machine", meta["name"]),
                "operatingSystem": "linux",
                "osImage": "Debian GNU/Linux 13 (trixie)",
                "systemUUID": _uuid("system", meta["name"]),
            },
        },
    )


def _secret_defaults(obj: dict[str, Any]) -> None:
    obj.setdefault("type", "Opaque")
    string_data = obj.pop("stringData", None)
    if isinstance(string_data, dict):
        data = obj.setdefault("data", {})
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()


def _namespace_defaults(obj: dict[str, Any]) -> None:
    meta = obj["metadata"]
    meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
    obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    obj.setdefault("status", {"phase": "Active"})


def _service_defaults(obj: dict[str, Any], current: dict[str, Any] | None) -> None:
    meta, spec = obj["metadata"], obj.setdefault("spec", {})
    previous = (current or {}).get("spec", {})
    cluster_ip = previous.get("clusterIP") or _stable_ip("10.96", meta["namespace"], meta["name"])
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("clusterIP", cluster_ip)
    spec.setdefault("clusterIPs", [spec["clusterIP"]])
    spec.setdefault("sessionAffinity", "None")
    spec.setdefault("ipFamilies", ["IPv4"])
    for port in spec.get("ports", []):
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port["port"])
    obj.setdefault("status", {"loadBalancer": {}})


def _pod_defaults(obj: dict[str, Any], current: dict[str, Any] | None, namespace_labels: dict[str, str]) -> None:
    meta, spec = obj["metadata"], obj.setdefault("spec", {})
    spec.setdefault("serviceAccountName", "default")
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("nodeName", NODE_NAME)
    containers = spec["containers"]
    injected = namespace_labels.get("istio-injection") == "enabled" or (
        "istio.io/rev" in namespace_labels and namespace_labels.get("istio-injection") != "disabled"
    )
    opted_out = "false" in (
        (meta.get("annotations") or {}).get("sidecar.istio.io/inject"),
        (meta.get("labels") or {}).get("sidecar.istio.io/inject"),
    )
    if current is None and injected and not opted_out and all(c.get("name") != "istio-proxy" for c in containers):
        containers.append({"name": "istio-proxy", "image": ISTIO_PROXY_IMAGE})
        meta.setdefault("annotations", {})["sidecar.istio.io/status"] = (
            '{"containers":["istio-proxy"],"revision":"default"}'
        )
    pod_ip = _stable_ip("10.244", meta["namespace"], meta["name"])
    obj.setdefault(
        "status",
        {
            "phase": "Running",
            "hostIP": NODE_IP,
            "podIP": pod_ip,
            "podIPs": [{"ip": pod_ip}],
            "qosClass": "BestEffort",
            "startTime": meta["creationTimestamp"],
            "conditions": [
                {"type": condition, "status": "True"}
                for condition in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
            ],
        },
    )
