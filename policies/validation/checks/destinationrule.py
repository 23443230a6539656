"""DestinationRule: host, subsets, overlapping rules, and TLS settings against PeerAuthentication."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from policies.choices import PolicyKind
from policies.validation.checks.base import Hit, check, entries, labels_text, mapping, text
from policies.validation.checks.hosts import (
    export_scopes,
    host_registry,
    lookup_scopes,
    not_visible_message,
    unknown_host_message,
    visible_together,
)
from policies.validation.context import (
    MeshObject,
    Service,
    ValidationContext,
    Workload,
    fqdn,
    match_labels,
    mtls_mode_of,
)

DR = PolicyKind.DESTINATION_RULE


def _host(obj: MeshObject) -> str:
    host = text(obj.spec.get("host"))
    return "" if not host or "*" in host else fqdn(host, obj.namespace)


@check("MG0401", DR, needs_cluster=True)
def host_exists(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    # As istioctl: the host as seen from the rule's exportTo namespaces; a wildcard host needs a ServiceEntry
    # wildcard host covering it.
    written = text(obj.spec.get("host"))
    if not written:
        return
    host = fqdn(written, obj.namespace)
    registry = host_registry(ctx)
    if registry.resolve(host, lookup_scopes(obj), obj.namespace) is not None:
        return
    hidden = registry.hidden(host)
    if hidden:
        yield "spec.host", not_visible_message(written, hidden, obj.namespace, what="host")
    elif "*" in written:
        yield (
            "spec.host",
            f"no ServiceEntry host covers the wildcard host {written!r}, so istioctl finds no service "
            "for the rule: declare the hosts with a ServiceEntry, or name a Service",
        )
    else:
        yield "spec.host", unknown_host_message(written, obj.namespace, ctx, what="host")


@check("MG0402", DR)
def subset_names_distinct(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    first: dict[str, str] = {}
    for path, subset in entries(obj.spec, "subsets", "spec"):
        name = text(subset.get("name"))
        if name and name in first:
            yield (
                f"{path}.name",
                f"subset name {name!r} is already used by {first[name]}: give every subset a distinct name",
            )
        first.setdefault(name, path)


@check("MG0403", DR, needs_cluster=True)
def subsets_select_pods(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    service = ctx.services.get(_host(obj))
    if service is None or not service.selector:
        return
    for path, subset in entries(obj.spec, "subsets", "spec"):
        labels = mapping(subset.get("labels"))
        if labels and not ctx.service_workloads(service, labels):
            # istioctl reports a subset only when no pod of any namespace carries its labels.
            istio_code = None if not ctx.workloads(labels) else ""
            message = _no_pods_message(text(subset.get("name")), labels, service, ctx)
            yield (f"{path}.labels", message) if istio_code is None else (f"{path}.labels", message, istio_code)


def _no_pods_message(name: str, labels: Mapping[str, str], service: Service, ctx: ValidationContext) -> str:
    pods = ctx.service_workloads(service)
    seen = {key: sorted({pod.labels[key] for pod in pods if key in pod.labels}) for key in labels}
    carried = "; ".join(f"{key}: {', '.join(values)}" for key, values in seen.items() if values)
    hint = f" (its pods carry {carried})" if carried else ""
    return (
        f"subset {name!r} selects no pod of Service {service.namespace}/{service.name}: no running pod has "
        f"{labels_text(labels)}{hint}; correct the labels or deploy that version first"
    )


@check("MG0404", DR)
def one_rule_per_host(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    host = _host(obj)
    if not host or match_labels(obj, "workloadSelector"):
        return
    scopes = export_scopes(obj.spec.get("exportTo"), obj.namespace)
    others = [
        rule.ref
        for rule in ctx.destination_rules_exactly_for(host)
        if rule.namespace == obj.namespace
        and rule.identity != obj.identity
        and not match_labels(rule, "workloadSelector")
        and visible_together(scopes, export_scopes(rule.spec.get("exportTo"), rule.namespace))
    ]
    if others:
        yield (
            "spec.host",
            f"DestinationRule {', '.join(others)} also applies to {obj.spec['host']} in namespace "
            f"{obj.namespace}, and Istio merges them in no defined order: keep one DestinationRule "
            "per host",
        )


# --- server certificate verification ----------------------------------------------------------------

ORIGINATING = frozenset({"SIMPLE", "MUTUAL"})


def _unverified(tls: Mapping[str, Any], obj: MeshObject) -> str:
    """The TLS mode when it originates TLS without a CA to verify the server with, else ""."""
    mode = text(tls.get("mode"))
    if mode not in ORIGINATING or text(tls.get("caCertificates")):
        return ""
    if text(tls.get("credentialName")) and match_labels(obj, "workloadSelector"):
        return ""  # a gateway's credential carries its CA
    return mode


@check("MG0407", DR)
def server_verified(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    mode = _unverified(mapping(mapping(obj.spec.get("trafficPolicy")).get("tls")), obj)
    if mode:
        yield (
            "spec.trafficPolicy.tls",
            f"tls.mode {mode} originates TLS to {text(obj.spec.get('host'))} without "
            "caCertificates, so the server's certificate is not verified: set "
            "tls.caCertificates",
        )


@check("MG0408", DR)
def server_verified_per_port(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    for path, setting in entries(mapping(obj.spec.get("trafficPolicy")), "portLevelSettings", "spec.trafficPolicy"):
        mode = _unverified(mapping(setting.get("tls")), obj)
        if mode:
            port = mapping(setting.get("port")).get("number")
            yield (
                f"{path}.tls",
                f"tls.mode {mode} originates TLS to {text(obj.spec.get('host'))} port {port} "
                "without caCertificates, so the server's certificate is not verified: set "
                "tls.caCertificates",
            )


# --- TLS against PeerAuthentication ---------------------------------------------------------------


@dataclass(frozen=True)
class DisabledTls:
    """A place where a DestinationRule sends plain text, and the modes of the workloads it reaches."""

    path: str
    service: Service
    modes: list[tuple[str, MeshObject | None]]

    @property
    def strict(self) -> MeshObject | None:
        return next((policy for mode, policy in self.modes if mode == "STRICT"), None)

    @property
    def target(self) -> str:
        return f"{self.service.namespace}/{self.service.name}"


def _tls_mode(traffic_policy: Mapping) -> str:
    return text(mapping(traffic_policy.get("tls")).get("mode"))


def disabled_tls(obj: MeshObject, ctx: ValidationContext) -> Iterator[DisabledTls]:
    """Every `tls.mode: DISABLE` of the rule (top level and per subset) towards a Service of the cluster."""
    service = ctx.services.get(_host(obj))
    if service is None:
        return
    places: list[tuple[str, Mapping]] = []
    if _tls_mode(mapping(obj.spec.get("trafficPolicy"))) == "DISABLE":
        places.append(("spec.trafficPolicy.tls.mode", {}))
    for path, subset in entries(obj.spec, "subsets", "spec"):
        if _tls_mode(mapping(subset.get("trafficPolicy"))) == "DISABLE":
            places.append((f"{path}.trafficPolicy.tls.mode", mapping(subset.get("labels"))))
    for path, labels in places:
        workloads = ctx.service_workloads(service, labels) or [
            Workload(service.namespace, "", {**service.selector, **labels})  # none running: the Service's intent
        ]
        yield DisabledTls(path, service, [ctx.mtls_mode(workload) for workload in workloads])


def _policy_name(policy: MeshObject | None) -> str:
    return f"PeerAuthentication {policy.ref}" if policy else "the mesh default"


@check("MG0405", DR, needs_cluster=True)
def tls_not_disabled_towards_strict(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    for place in disabled_tls(obj, ctx):
        if place.strict is not None:
            yield (
                place.path,
                f"tls.mode DISABLE sends plain text to {place.target}, but {_policy_name(place.strict)} "
                "requires STRICT mTLS there, so every request fails: use ISTIO_MUTUAL or remove the "
                "tls setting",
            )


@check("MG0405", PolicyKind.PEER_AUTHENTICATION, needs_cluster=True)
def strict_not_against_disabled_tls(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    if mtls_mode_of(obj) != "STRICT":
        return
    every_place = ctx.memo(
        "disabled-tls", lambda: [(rule, place) for rule in ctx.of_kind(DR) for place in disabled_tls(rule, ctx)]
    )
    for rule, place in every_place:
        if place.strict is not None and place.strict.identity == obj.identity:
            yield (
                "spec.mtls.mode",
                f"STRICT mTLS breaks DestinationRule {rule.ref}, which disables TLS towards "
                f"{place.target}: change that rule to ISTIO_MUTUAL first, or keep PERMISSIVE",
            )
            return


@check("MG0406", DR, needs_cluster=True)
def tls_disabled_towards_permissive(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    for place in disabled_tls(obj, ctx):
        permissive = [policy for mode, policy in place.modes if mode == "PERMISSIVE"]
        if place.strict is None and permissive:
            policy = next((policy for policy in permissive if policy is not None), None)
            yield (
                place.path,
                f"tls.mode DISABLE sends plain text to {place.target}, which accepts it "
                f"({_policy_name(policy)} is PERMISSIVE): use ISTIO_MUTUAL unless plain text is "
                "intended",
            )
