"""Defaulting and light validation of the built-in kinds (Namespace, Service, Pod).

Meshsim simulates just enough of each for a mesh: Services get a stable
cluster IP, Pods are Running with a pod IP, and Pods in namespaces labelled
``istio-injection=enabled`` get the ``istio-proxy`` sidecar, like Istio's
injection webhook would add.
"""

from __future__ import annotations

import hashlib
from typing import Any

from .errors import FieldError, invalid, required
from .resources import NAMESPACES, PODS, SERVICES, ResourceType

ISTIO_PROXY_IMAGE = "docker.io/istio/proxyv2:1.28.0"
NODE_NAME = "meshsim-node-1"
NODE_IP = "172.18.0.2"


def _stable_ip(prefix: str, *parts: str) -> str:
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return f"{prefix}.{digest[0]}.{digest[1] % 254 + 1}"


def validate(resource: ResourceType, obj: dict[str, Any]) -> list[FieldError]:
    if resource is SERVICES:
        return _service_errors(obj.get("spec") or {})
    if resource is PODS:
        return _pod_errors(obj.get("spec") or {})
    return []


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


def _pod_defaults(
    obj: dict[str, Any], current: dict[str, Any] | None, namespace_labels: dict[str, str]
) -> None:
    meta, spec = obj["metadata"], obj.setdefault("spec", {})
    spec.setdefault("serviceAccountName", "default")
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("nodeName", NODE_NAME)
    containers = spec["containers"]
    injected = namespace_labels.get("istio-injection") == "enabled"
    if current is None and injected and all(c.get("name") != "istio-proxy" for c in containers):
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
