"""AuthorizationPolicy, PeerAuthentication and RequestAuthentication."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from policies.choices import PolicyKind
from policies.validation.checks.base import Hit, check, entries, items, labels_text, mapping, strings, text
from policies.validation.context import ROOT_NAMESPACE, MeshObject, ValidationContext, match_labels

AUTHZ = PolicyKind.AUTHORIZATION_POLICY
PEER = PolicyKind.PEER_AUTHENTICATION
REQUEST = PolicyKind.REQUEST_AUTHENTICATION
PRINCIPAL = re.compile(r"^[^/*]+/ns/(?P<namespace>[^/*]+)/sa/[^/*]+$")
PRINCIPAL_NAMESPACE = re.compile(r"(?:^|/)ns/(?P<namespace>[^/*]+)/")
# A well-formed principal the wildcard part of `prefix*` / `*suffix` could complete.
_TEMPLATE = "x/ns/x/sa/x"
_COMPLETIONS = tuple(_TEMPLATE[i:] for i in range(len(_TEMPLATE)))
_BEGINNINGS = tuple(_TEMPLATE[:i] for i in range(1, len(_TEMPLATE) + 1))


@check("MG0601", AUTHZ, PEER, REQUEST, needs_cluster=True)
def selector_matches_workloads(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    selector = match_labels(obj)
    # Istio applies a selector in the root namespace to matching workloads of every namespace.
    scope = None if obj.namespace == ROOT_NAMESPACE else obj.namespace
    if selector and not ctx.workloads(selector, scope):
        where = "any namespace" if scope is None else f"namespace {obj.namespace}"
        message = (
            f"no pod in {where} carries {labels_text(selector)}, so the policy applies to nothing: correct the "
            "labels, or deploy the workload first"
        )
        # istioctl checks this for AuthorizationPolicy only.
        yield (
            ("spec.selector.matchLabels", message) if obj.kind == AUTHZ else ("spec.selector.matchLabels", message, "")
        )


@check("MG0611", AUTHZ, needs_cluster=True)
def namespace_has_workloads(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    if obj.namespace == ROOT_NAMESPACE or mapping(obj.spec.get("selector")):
        return
    if not ctx.workloads({}, obj.namespace):
        yield (
            "metadata.namespace",
            f"this policy has no selector, so it applies to the workloads of namespace "
            f"{obj.namespace}, which runs no pod: create it in the namespace of the workloads "
            "it is meant for, or deploy them first",
        )


def sources(obj: MeshObject) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(path, source) of every `rules[].from[].source`."""
    for rule_path, rule in entries(obj.spec, "rules", "spec"):
        for from_path, origin in entries(rule, "from", rule_path):
            source = mapping(origin.get("source"))
            if source:
                yield f"{from_path}.source", source


def _listed(source: Mapping[str, Any], path: str, *keys: str) -> Iterator[tuple[str, str]]:
    for key in keys:
        yield from strings(source, key, path)


@check("MG0602", AUTHZ, needs_cluster=True)
def source_namespaces_exist(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    for source_path, source in sources(obj):
        for path, namespace in _listed(source, source_path, "namespaces", "notNamespaces"):
            if not _namespace_matches(namespace, ctx):
                problem = (
                    f"no namespace matches {namespace!r}"
                    if "*" in namespace
                    else f"namespace {namespace!r} does not exist"
                )
                yield path, f"{problem}, so this never matches: correct the name"


def _namespace_matches(pattern: str, ctx: ValidationContext) -> bool:
    """istioctl's reading: `*` any, `*suffix`, `prefix*`, otherwise the name (case-insensitive)."""
    if ctx.live is None or pattern == "*":
        return True
    if pattern.startswith("*"):
        return any(name.endswith(pattern[1:]) for name in ctx.live.namespaces)
    if pattern.endswith("*"):
        return any(name.startswith(pattern[:-1]) for name in ctx.live.namespaces)
    lowered = pattern.lower()
    return any(name.lower() == lowered for name in ctx.live.namespaces)


def principal_problem(principal: str) -> str | None:
    """Why a principal can never match a workload identity, or None when it is well formed."""
    if principal == "*":
        return None
    if principal.startswith("spiffe://"):
        return f"drop the spiffe:// prefix: write {principal.removeprefix('spiffe://')!r}"
    core = principal.removeprefix("*") if principal.startswith("*") else principal.removesuffix("*")
    if "*" in core:
        return "a * may only stand at the start or the end"
    if principal.startswith("*"):
        well_formed = any(PRINCIPAL.match(start + core) for start in _BEGINNINGS)
    elif principal.endswith("*"):
        well_formed = any(PRINCIPAL.match(core + rest) for rest in _COMPLETIONS)
    else:
        well_formed = bool(PRINCIPAL.match(core))
    return None if well_formed else "write it as <trust-domain>/ns/<namespace>/sa/<service-account>"


def _principals(obj: MeshObject) -> Iterator[tuple[str, str]]:
    for source_path, source in sources(obj):
        yield from _listed(source, source_path, "principals", "notPrincipals")


@check("MG0603", AUTHZ)
def principals_well_formed(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    for path, principal in _principals(obj):
        problem = principal_problem(principal)
        if problem:
            yield path, f"principal {principal!r} never matches: {problem}, e.g. cluster.local/ns/bookinfo/sa/reviews"


@check("MG0604", AUTHZ, needs_cluster=True)
def principal_namespaces_exist(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    for path, principal in _principals(obj):
        found = PRINCIPAL_NAMESPACE.search(principal) if principal_problem(principal) is None else None
        if found and not ctx.namespace_exists(found["namespace"]):
            yield (
                path,
                f"principal {principal!r} names namespace {found['namespace']!r}, which does not exist, "
                "so it never matches: correct the namespace",
            )


def _action(obj: MeshObject) -> str:
    return text(obj.spec.get("action")) or "ALLOW"


@check("MG0605", AUTHZ)
def allow_rules_not_empty(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    if _action(obj) != "ALLOW":
        return
    for path, rule in entries(obj.spec, "rules", "spec"):
        if not rule:
            yield (
                path,
                (
                    f"{path} is empty, so this ALLOW policy allows every request: add from/to/when conditions, "
                    "or remove the rule"
                ),
            )


@check("MG0606", AUTHZ)
def deny_has_rules(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    if _action(obj) == "DENY" and not items(obj.spec.get("rules")):
        yield (
            "spec.action",
            "this DENY policy has no rules, so it denies nothing: add rules, or use an ALLOW policy "
            "without rules to deny every request",
        )


@check("MG0607", PEER)
def port_level_mtls_has_selector(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    if mapping(obj.spec.get("portLevelMtls")) and not match_labels(obj):
        yield (
            "spec.portLevelMtls",
            "portLevelMtls needs a workload selector, which this policy lacks: add "
            "selector.matchLabels, or move the setting to mtls",
        )


@check("MG0608", PEER)
def one_namespace_wide_policy(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    if match_labels(obj):
        return
    others = [
        policy.ref
        for policy in ctx.peer_authentications(obj.namespace)
        if policy.identity != obj.identity and not match_labels(policy)
    ]
    if others:
        scope = "mesh-wide" if obj.namespace == ROOT_NAMESPACE else f"namespace-wide for {obj.namespace}"
        yield (
            "spec",
            f"PeerAuthentication {', '.join(others)} is already {scope} (no selector): Istio uses only the "
            "oldest; keep one policy without selector per namespace, or add a selector",
        )


@check("MG0609", REQUEST)
def jwks_over_https(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    for path, rule in entries(obj.spec, "jwtRules", "spec"):
        uri = text(rule.get("jwksUri"))
        if uri and not uri.lower().startswith("https://"):
            yield f"{path}.jwksUri", f"jwksUri {uri!r} is not https, so its keys can be tampered with: use an https URL"


@check("MG0610", REQUEST)
def issuer_present(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    for path, rule in entries(obj.spec, "jwtRules", "spec"):
        if not text(rule.get("issuer")):
            yield f"{path}.issuer", f"{path} has no issuer, so it accepts no token: set issuer to the tokens' iss claim"


BLOCKED_CIDRS_ENV = "BLOCKED_CIDRS_IN_JWKS_URIS"
ISTIOD_LABEL = ("app", "istiod")
NAMES_SHOWN = 5


@check("MG0612", REQUEST, needs_cluster=True)
def jwks_fetches_restricted(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    """istioctl's BlockedCIDRsAnalyzer: once RequestAuthentications exist, every Deployment labelled
    app=istiod whose containers set no non-empty BLOCKED_CIDRS_IN_JWKS_URIS is reported, once; here on the
    bundle's first RequestAuthentication. No istiod Deployment (or Deployments not readable): nothing."""
    reported: set[tuple[str, str]] = ctx.memo("MG0612.reported", set)
    names = sorted(policy.ref for policy in ctx.of_kind(REQUEST))
    shown = ", ".join(names[:NAMES_SHOWN]) + (
        f", and {len(names) - NAMES_SHOWN} more" if len(names) > NAMES_SHOWN else ""
    )
    key, value = ISTIOD_LABEL
    for deployment in ctx.deployments or ():
        if deployment.labels.get(key) != value or BLOCKED_CIDRS_ENV in deployment.env_set:
            continue
        if (deployment.namespace, deployment.name) in reported:
            continue
        reported.add((deployment.namespace, deployment.name))
        yield (
            "metadata.name",
            f"istiod (Deployment {deployment.namespace}/{deployment.name}) has no {BLOCKED_CIDRS_ENV} but "
            f"{len(names)} RequestAuthentication resource(s) exist ({shown}), so istiod fetches any jwksUri: set "
            f"{BLOCKED_CIDRS_ENV} on istiod to keep JWKS fetches away from internal networks",
        )
