"""Gateways against what the cluster runs: their TLS Secrets (names and types only); and the Kubernetes
Gateway API: selectors on a Kubernetes Gateway's pods, `targetRefs` that name nothing."""

from __future__ import annotations

from collections.abc import Iterator

from policies.choices import PolicyKind
from policies.validation.checks.base import (
    Hit,
    check,
    entries,
    items,
    mapping,
    strings,
    text,
)
from policies.validation.context import (
    MeshObject,
    ValidationContext,
    Workload,
    match_labels,
)

K = PolicyKind
GATEWAY_API_GROUP = "gateway.networking.k8s.io"
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"
# Secret types that can hold a server certificate (Istio reads tls.crt/tls.key, or cert/key).
CERTIFICATE_SECRET_TYPES = frozenset({"kubernetes.io/tls", "Opaque", "istio.io/key-and-cert", ""})
NO_CREDENTIAL_MODES = frozenset({"PASSTHROUGH", "ISTIO_MUTUAL", "AUTO_PASSTHROUGH"})
TARGET_REF_KINDS = (
    K.AUTHORIZATION_POLICY,
    K.REQUEST_AUTHENTICATION,
    K.TELEMETRY,
    K.WASM_PLUGIN,
    K.TRAFFIC_EXTENSION,
    K.ENVOY_FILTER,
    K.PEER_AUTHENTICATION,
)


def gateway_pods(obj: MeshObject, ctx: ValidationContext) -> list[Workload]:
    selector = mapping(obj.spec.get("selector"))
    return ctx.workloads({str(k): str(v) for k, v in selector.items()}) if selector else []


def _credentials(obj: MeshObject) -> Iterator[tuple[str, str, dict]]:
    """(path, credential name, server) of every TLS server that reads a Secret."""
    for server_path, server in entries(obj.spec, "servers", "spec"):
        tls = mapping(server.get("tls"))
        if text(tls.get("mode")).upper() in NO_CREDENTIAL_MODES:
            continue
        name = text(tls.get("credentialName"))
        if name:
            yield f"{server_path}.tls.credentialName", name, dict(server)
        for path, listed in strings(tls, "credentialNames", f"{server_path}.tls"):
            yield path, listed, dict(server)


@check("MG1101", K.GATEWAY, needs_cluster=True)
def credential_exists(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    if not ctx.secrets_read:
        return
    namespaces = sorted({pod.namespace for pod in gateway_pods(obj, ctx)})
    for path, name, _ in _credentials(obj):
        if "://" in name:  # sds:// and kubernetes-gateway:// references are resolved elsewhere
            continue
        for namespace in namespaces:
            secret = ctx.secret(namespace, name)
            if secret is None:
                yield (
                    path,
                    (
                        f"credential {name!r} not found: there is no Secret {name} in namespace {namespace}, "
                        "where the gateway pods run; create the TLS Secret there or correct the name"
                    ),
                )
            elif secret.type not in CERTIFICATE_SECRET_TYPES:
                yield (
                    path,
                    (
                        f"Secret {namespace}/{name} is of type {secret.type}, which holds no server "
                        "certificate: use a kubernetes.io/tls Secret"
                    ),
                )


@check("MG1102", K.AUTHORIZATION_POLICY, K.REQUEST_AUTHENTICATION, K.TELEMETRY, K.WASM_PLUGIN, needs_cluster=True)
def selector_not_on_gateway_api_pods(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    selector = match_labels(obj)
    if not selector:
        return
    gateways = sorted(
        {
            pod.labels[GATEWAY_NAME_LABEL]
            for pod in ctx.workloads(dict(selector), obj.namespace)
            if GATEWAY_NAME_LABEL in pod.labels
        }
    )
    for gateway in gateways:
        yield (
            "spec.selector",
            (
                f"the selector picks the pods of Kubernetes Gateway {obj.namespace}/{gateway}: use "
                f"`targetRefs: [{{group: {GATEWAY_API_GROUP}, kind: Gateway, name: {gateway}}}]` instead"
            ),
        )


def _target_refs(obj: MeshObject) -> Iterator[tuple[str, dict]]:
    single = mapping(obj.spec.get("targetRef"))
    if single:
        yield "spec.targetRef", dict(single)
    for index, ref in enumerate(items(obj.spec.get("targetRefs"))):
        if isinstance(ref, dict):
            yield f"spec.targetRefs[{index}]", ref


@check("MG1103", *TARGET_REF_KINDS, needs_cluster=True)
def target_refs_exist(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    for path, ref in _target_refs(obj):
        kind, group, name = text(ref.get("kind")), text(ref.get("group")), text(ref.get("name"))
        namespace = text(ref.get("namespace")) or obj.namespace
        if not name:
            continue
        if kind == "Gateway" and group == GATEWAY_API_GROUP:
            found = ctx.gateway_api_gateway(namespace, name) is not None
        elif kind == "Service" and group in ("", "core"):
            found = any(service.name == name for service in ctx.services_in(namespace))
        elif kind == "ServiceEntry" and group == "networking.istio.io":
            found = ctx.get(K.SERVICE_ENTRY, namespace, name) is not None
        else:
            continue
        if not found:
            yield (
                f"{path}.name",
                (
                    f"{kind} {namespace}/{name} not found, so this {obj.kind} applies to nothing: "
                    "correct the reference or create the target"
                ),
            )
