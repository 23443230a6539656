"""Sidecar: one default per namespace, selectors that match pods and no pod twice, egress hosts in `ns/host` form."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator

from policies.choices import PolicyKind
from policies.validation.checks.base import Hit, check, entries, labels_text, strings
from policies.validation.context import MeshObject, ValidationContext, match_labels

SIDECAR = PolicyKind.SIDECAR
SPECIAL_NAMESPACES = frozenset({"*", ".", "~"})
NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*$")


@check("MG0801", SIDECAR)
def one_default_sidecar(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    if match_labels(obj, "workloadSelector"):
        return
    others = [
        other.ref
        for other in ctx.of_kind(SIDECAR)
        if other.namespace == obj.namespace
        and other.identity != obj.identity
        and not match_labels(other, "workloadSelector")
    ]
    if others:
        yield (
            "spec",
            f"Sidecar {', '.join(others)} already applies to the whole namespace {obj.namespace} (no "
            "workloadSelector): keep one such Sidecar per namespace, or add a workloadSelector",
        )


def egress_host_problem(host: str) -> str | None:
    namespace, slash, name = host.partition("/")
    if not slash:
        return f"it has no namespace part: write ./{host} (this namespace) or */{host} (any namespace)"
    if namespace not in SPECIAL_NAMESPACES and not NAMESPACE.match(namespace):
        return f"{namespace!r} is not a namespace: use a namespace name, *, . or ~"
    dns_name = name.removeprefix("*.") if name != "*" else "x"
    if not DNS_NAME.match(dns_name):
        return f"{name!r} is not a DNS name: use *, *.example.com or a host name"
    return None


@check("MG0802", SIDECAR)
def egress_hosts_well_formed(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    for egress_path, egress in entries(obj.spec, "egress", "spec"):
        for path, host in strings(egress, "hosts", egress_path):
            problem = egress_host_problem(host)
            if problem:
                yield path, f"egress host {host!r} is malformed: {problem}"


@check("MG0803", SIDECAR, needs_cluster=True)
def selector_matches_pods(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    selector = match_labels(obj, "workloadSelector")
    if selector and not ctx.workloads(selector, obj.namespace):
        yield (
            "spec.workloadSelector",
            f"no pod in namespace {obj.namespace} carries {labels_text(selector)}, so this "
            "Sidecar applies to nothing: correct the labels, or deploy the workload first",
        )


def _sidecars_by_pod(ctx: ValidationContext) -> dict[tuple[str, str], list[MeshObject]]:
    index: dict[tuple[str, str], list[MeshObject]] = defaultdict(list)
    for sidecar in ctx.of_kind(SIDECAR):
        selector = match_labels(sidecar, "workloadSelector")
        if selector:
            for pod in ctx.workloads(selector, sidecar.namespace):
                index[(pod.namespace, pod.name)].append(sidecar)
    return index


@check("MG0804", SIDECAR, needs_cluster=True)
def selectors_disjoint(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    selector = match_labels(obj, "workloadSelector")
    if not selector:
        return
    index = ctx.memo("sidecars-by-pod", lambda: _sidecars_by_pod(ctx))
    for pod in ctx.workloads(selector, obj.namespace):
        others = sorted(
            other.ref for other in index.get((pod.namespace, pod.name), []) if other.identity != obj.identity
        )
        if others:
            yield (
                "spec.workloadSelector",
                f"Sidecar {', '.join(others)} also selects pod {pod.namespace}/{pod.name}, "
                "and Istio applies only one of them: make the selectors disjoint or merge "
                "the Sidecars",
            )
            return


@check("MG0805", SIDECAR)
def egress_proxy_ignored(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    """istioctl's deprecation analyzer: any `egressProxy` under `outboundTrafficPolicy` (null is none)."""
    policy = obj.spec.get("outboundTrafficPolicy")
    if isinstance(policy, dict) and policy.get("egressProxy") is not None:
        yield (
            "spec.outboundTrafficPolicy.egressProxy",
            "outboundTrafficPolicy.egressProxy is deprecated and ignored: remove it, and send traffic to "
            "unknown destinations through an egress gateway instead",
        )
