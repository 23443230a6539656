"""The Kubernetes Gateway API CRDs' CEL rules, as meshsim enforces them on a dryRun=All create through the
official client: per kind (Gateway, HTTPRoute, GRPCRoute, BackendTLSPolicy, GatewayClass), an object
breaking each rule is refused with a 422 naming the rule's field and message, and the valid object the
cases start from is accepted. A test checks that the cases cover every rule message of the CRD file.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from integrations.kubernetes import cel
from tests.fixtures.meshsim import REPO_ROOT

GATEWAY_CRDS = REPO_ROOT.parent / "shared" / "reference" / "gateway-api" / "standard-install.yaml"
GROUP, VERSION, NAMESPACE = "gateway.networking.k8s.io", "v1", "bookinfo"
PLURALS = {
    "Gateway": "gateways",
    "HTTPRoute": "httproutes",
    "GRPCRoute": "grpcroutes",
    "BackendTLSPolicy": "backendtlspolicies",
    "GatewayClass": "gatewayclasses",
}


@cache
def rule_messages() -> dict[str, set[str]]:
    """kind -> the messages of its served v1 rules, read from the CRD file."""
    found: dict[str, set[str]] = {}
    for doc in yaml.safe_load_all(GATEWAY_CRDS.read_text()):
        if not doc or doc.get("kind") != "CustomResourceDefinition":
            continue
        for version in doc["spec"]["versions"]:
            if version["name"] == VERSION and version.get("served"):
                messages = {rule.message for _, _, rule in cel.iter_rules(version["schema"]["openAPIV3Schema"])}
                found.setdefault(doc["spec"]["names"]["kind"], set()).update(messages)
    return found


def full(kind: str, beginning: str) -> str:
    """The one rule message of `kind` that starts with `beginning` (long messages quote their regexes)."""
    [message] = [m for m in rule_messages()[kind] if m.startswith(beginning)]
    return message


# --- valid objects the cases start from -----------------------------------------------------------

LISTENER = {"name": "http", "port": 80, "protocol": "HTTP"}
GATEWAY = {"gatewayClassName": "istio", "listeners": [LISTENER]}
BACKEND = {"name": "reviews", "port": 9080}
HTTP_ROUTE = {
    "parentRefs": [{"name": "public"}],
    "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}], "backendRefs": [BACKEND]}],
}
GRPC_ROUTE = {
    "parentRefs": [{"name": "public"}],
    "rules": [{"matches": [{"method": {"service": "shop.Cart", "method": "Add"}}], "backendRefs": [BACKEND]}],
}
BACKEND_TLS = {
    "targetRefs": [{"group": "", "kind": "Service", "name": "reviews"}],
    "validation": {"hostname": "reviews.example.com", "wellKnownCACertificates": "System"},
}
VALID = {"Gateway": GATEWAY, "HTTPRoute": HTTP_ROUTE, "GRPCRoute": GRPC_ROUTE, "BackendTLSPolicy": BACKEND_TLS}

# One valid value per filter type, to set a filter's field under another type.
FILTER_FIELDS = {
    "CORS": ("cors", {"allowOrigins": ["https://shop.example.com"]}),
    "RequestHeaderModifier": ("requestHeaderModifier", {"set": [{"name": "x-team", "value": "shop"}]}),
    "ResponseHeaderModifier": ("responseHeaderModifier", {"add": [{"name": "x-team", "value": "shop"}]}),
    "RequestMirror": ("requestMirror", {"backendRef": {"name": "mirror", "port": 80}}),
    "RequestRedirect": ("requestRedirect", {"statusCode": 301}),
    "URLRewrite": ("urlRewrite", {"hostname": "api.example.com"}),
    "ExtensionRef": ("extensionRef", {"group": "example.com", "kind": "Filter", "name": "f"}),
}
FILTER_PATHS = {"ReplaceFullPath": "replaceFullPath", "ReplacePrefixMatch": "replacePrefixMatch"}
GRPC_FILTERS = ("RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror", "ExtensionRef")


def a_filter(kind: str, of: str | None = None) -> dict[str, Any]:
    """A filter of type `kind` carrying the field of type `of` (its own when None)."""
    name, value = FILTER_FIELDS[of or kind]
    return {"type": kind, name: copy.deepcopy(value)}


@dataclass
class Case:
    name: str
    kind: str
    spec: dict[str, Any]
    field: str
    message: str
    also: list[tuple[str, str]] = field(default_factory=list)  # other causes the object rightly has

    def __str__(self) -> str:
        return self.name


def with_rule(base: dict[str, Any], **rule: Any) -> dict[str, Any]:
    """`base` with its first rule replaced by `rule`."""
    spec = copy.deepcopy(base)
    spec["rules"] = [rule]
    return spec


def http_rule(**rule: Any) -> dict[str, Any]:
    return with_rule(HTTP_ROUTE, **rule)


def path_match(value: str, type_: str = "PathPrefix") -> dict[str, Any]:
    return http_rule(matches=[{"path": {"type": type_, "value": value}}], backendRefs=[BACKEND])


def gateway(**spec: Any) -> dict[str, Any]:
    return {**copy.deepcopy(GATEWAY), **spec}


def https(tls: dict[str, Any] | None, protocol: str = "HTTPS", **extra: Any) -> dict[str, Any]:
    listener: dict[str, Any] = {"name": "secure", "port": 443, "protocol": protocol, "hostname": "a.example.com"}
    if tls is not None:
        listener["tls"] = tls
    return {**listener, **extra}


CERT = {"certificateRefs": [{"name": "shop-tls"}]}
SAME_PARENT = [{"name": "public", "namespace": NAMESPACE}, {"name": "public", "namespace": NAMESPACE}]
# The same parent twice, once with a sectionName: both must name one (or neither).
HALF_SECTIONS = [SAME_PARENT[0], {**SAME_PARENT[1], "sectionName": "http"}]
SAME_SECTION = [{**ref, "sectionName": "http"} for ref in SAME_PARENT]
TOO_MANY_MATCHES = [
    {"matches": [{"headers": [{"name": f"x-{r}-{m}", "value": "1"}]} for m in range(50)]} for r in range(3)
]


def _gateway_cases() -> list[Case]:
    k = "Gateway"
    ip, host = {"type": "IPAddress", "value": "10.0.0.1"}, {"type": "Hostname", "value": "gw.example.com"}
    return [
        Case(
            "ip-addresses-unique", k, gateway(addresses=[ip, ip]), "spec.addresses", "IPAddress values must be unique"
        ),
        Case(
            "hostname-addresses-unique",
            k,
            gateway(addresses=[host, host]),
            "spec.addresses",
            "Hostname values must be unique",
        ),
        Case(
            "hostname-address-characters",
            k,
            gateway(addresses=[{"type": "Hostname", "value": "Bad_Host"}]),
            "spec.addresses[0]",
            full(k, "Hostname value must be empty or contain only valid characters"),
        ),
        Case(
            "infrastructure-label-key",
            k,
            gateway(infrastructure={"labels": {"bad key": "x"}}),
            "spec.infrastructure.labels",
            full(k, "Label keys must be in the form"),
        ),
        Case(
            "infrastructure-label-prefix-length",
            k,
            gateway(infrastructure={"labels": {"a" * 253 + "/team": "x"}}),
            "spec.infrastructure.labels",
            full(k, "If specified, the label key's prefix must be a DNS subdomain not longer than 253"),
        ),
        Case(
            "infrastructure-annotation-key",
            k,
            gateway(infrastructure={"annotations": {"bad key": "x"}}),
            "spec.infrastructure.annotations",
            full(k, "Annotation keys must be in the form"),
        ),
        Case(
            "infrastructure-annotation-prefix-length",
            k,
            gateway(infrastructure={"annotations": {"a" * 253 + "/team": "x"}}),
            "spec.infrastructure.annotations",
            full(k, "If specified, the annotation key's prefix must be a DNS subdomain not longer than 253"),
        ),
        Case(
            "no-tls-for-http",
            k,
            gateway(listeners=[{**LISTENER, "tls": {"mode": "Terminate", **CERT}}]),
            "spec.listeners",
            "tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']",
        ),
        Case(
            "https-terminates",
            k,
            gateway(listeners=[https({"mode": "Passthrough"})]),
            "spec.listeners",
            "tls mode must be Terminate for protocol HTTPS",
        ),
        Case(
            "tls-mode-set",
            k,
            gateway(listeners=[https(None, "TLS")]),
            "spec.listeners",
            "tls mode must be set for protocol TLS",
        ),
        Case(
            "no-hostname-for-tcp",
            k,
            gateway(listeners=[{"name": "db", "port": 5432, "protocol": "TCP", "hostname": "db.example.com"}]),
            "spec.listeners",
            "hostname must not be specified for protocols ['TCP', 'UDP']",
        ),
        Case(
            "listener-names-unique",
            k,
            gateway(listeners=[LISTENER, {**LISTENER, "port": 8080}]),
            "spec.listeners",
            "Listener name must be unique within the Gateway",
            also=[("spec.listeners[1]", 'Duplicate value: {"name":"http"}')],  # listType map, keyed by name
        ),
        Case(
            "listener-port-protocol-hostname-unique",
            k,
            gateway(listeners=[LISTENER, {**LISTENER, "name": "http-2"}]),
            "spec.listeners",
            "Combination of port, protocol and hostname must be unique for each listener",
        ),
        Case(
            "terminate-needs-certificates",
            k,
            gateway(listeners=[https({"mode": "Terminate", "certificateRefs": [], "options": {}})]),
            "spec.listeners[0].tls",
            "certificateRefs or options must be specified when mode is Terminate",
        ),
        # Neither field present: the rule reads an absent field, an evaluation error (the first one of ||).
        Case(
            "terminate-without-either-field",
            k,
            gateway(listeners=[https({"mode": "Terminate"})]),
            "spec.listeners[0].tls",
            "no such key: certificateRefs evaluating rule: certificateRefs or options must be specified when mode "
            "is Terminate",
        ),
        Case(
            "frontend-ports-unique",
            k,
            gateway(
                listeners=[https({"mode": "Terminate", **CERT})],
                tls={
                    "frontend": {
                        "default": {
                            "validation": {"caCertificateRefs": [{"name": "ca", "kind": "ConfigMap", "group": ""}]}
                        },
                        "perPort": [
                            {
                                "port": 443,
                                "tls": {
                                    "validation": {"caCertificateRefs": [{"name": p, "kind": "ConfigMap", "group": ""}]}
                                },
                            }
                            for p in ("ca-a", "ca-b")
                        ],
                    }
                },
            ),
            "spec.tls.frontend.perPort",
            "Port for TLS configuration must be unique within the Gateway",
            also=[("spec.tls.frontend.perPort[1]", 'Duplicate value: {"port":443}')],  # listType map, keyed by port
        ),
    ]


def _route_cases(kind: str, base: dict[str, Any], filter_types: tuple[str, ...]) -> list[Case]:
    """The rules HTTPRoute and GRPCRoute share: parentRefs, total matches, Service ports, filters."""

    def spec(**changes: Any) -> dict[str, Any]:
        return {**copy.deepcopy(base), **changes}

    rule = base["rules"][0]
    cases = [
        Case(
            "section-name-required",
            kind,
            spec(parentRefs=HALF_SECTIONS),
            "spec.parentRefs",
            full(kind, "sectionName must be specified when parentRefs includes 2 or more"),
        ),
        Case(
            "section-name-unique",
            kind,
            spec(parentRefs=SAME_SECTION),
            "spec.parentRefs",
            full(kind, "sectionName must be unique when parentRefs includes 2 or more"),
        ),
        Case(
            "total-matches",
            kind,
            spec(
                rules=TOO_MANY_MATCHES
                if kind == "HTTPRoute"
                else [
                    {"matches": [{"method": {"service": "shop.Cart", "method": f"M{r}x{m}"}} for m in range(50)]}
                    for r in range(3)
                ]
            ),
            "spec.rules",
            full(kind, "While 16 rules and 64 matches per rule are allowed"),
        ),
        Case(
            "service-port-required",
            kind,
            with_rule(base, matches=rule["matches"], backendRefs=[{"name": "reviews"}]),
            "spec.rules[0].backendRefs[0]",
            "Must have port for Service reference",
        ),
    ]
    for where, holder in (("rule", "spec.rules[0].filters"), ("backend", "spec.rules[0].backendRefs[0].filters")):

        def filtered(filters: list[dict[str, Any]], where: str = where) -> dict[str, Any]:
            if where == "rule":
                return with_rule(base, matches=rule["matches"], filters=filters)
            return with_rule(base, matches=rule["matches"], backendRefs=[{**BACKEND, "filters": filters}])

        for type_ in filter_types:
            name = FILTER_FIELDS[type_][0]
            other = next(t for t in filter_types if t != type_)
            cases.append(
                Case(
                    f"{where}-{type_}-field-required",
                    kind,
                    filtered([{"type": type_}]),
                    f"{holder}[0]",
                    f"filter.{name} must be specified for {type_} filter.type",
                )
            )
            cases.append(
                Case(
                    f"{where}-{type_}-field-only-for-its-type",
                    kind,
                    filtered([{**a_filter(other), name: FILTER_FIELDS[type_][1]}]),
                    f"{holder}[0]",
                    f"filter.{name} must be nil if the filter.type is not {type_}",
                )
            )
            if type_ not in ("RequestMirror", "ExtensionRef"):
                cases.append(
                    Case(
                        f"{where}-{type_}-not-repeated",
                        kind,
                        filtered([a_filter(type_), a_filter(type_)]),
                        holder,
                        f"{type_} filter cannot be repeated",
                    )
                )
        mirror = {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "mirror", "port": 80}}}
        cases += [
            Case(
                f"{where}-mirror-percent-or-fraction",
                kind,
                filtered(
                    [
                        {
                            **mirror,
                            "requestMirror": {**mirror["requestMirror"], "percent": 10, "fraction": {"numerator": 1}},
                        }
                    ]
                ),
                f"{holder}[0].requestMirror",
                "Only one of percent or fraction may be specified in HTTPRequestMirrorFilter",
            ),
            Case(
                f"{where}-mirror-fraction",
                kind,
                filtered(
                    [
                        {
                            **mirror,
                            "requestMirror": {
                                **mirror["requestMirror"],
                                "fraction": {"numerator": 3, "denominator": 2},
                            },
                        }
                    ]
                ),
                f"{holder}[0].requestMirror.fraction",
                "numerator must be less than or equal to denominator",
            ),
        ]
        if kind == "HTTPRoute":
            cases += _http_filter_cases(where, holder, filtered)
    return cases


def _http_filter_cases(
    where: str, holder: str, filtered: Callable[[list[dict[str, Any]]], dict[str, Any]]
) -> list[Case]:
    k = "HTTPRoute"
    cases = [
        Case(
            f"{where}-redirect-or-rewrite",
            k,
            filtered([a_filter("RequestRedirect"), a_filter("URLRewrite")]),
            holder,
            full(k, "May specify either httpRouteFilterRequestRedirect or httpRouteFilterRequestRewrite"),
        ),
    ]
    for field_name, label in (("allowOrigins", "origins"), ("allowMethods", "methods"), ("allowHeaders", "methods")):
        values = {
            "allowOrigins": ["*", "https://a.example.com"],
            "allowMethods": ["*", "GET"],
            "allowHeaders": ["*", "x-a"],
        }
        title = field_name[0].upper() + field_name[1:]
        cases.append(
            Case(
                f"{where}-cors-{field_name}-wildcard-alone",
                k,
                filtered([{"type": "CORS", "cors": {field_name: values[field_name]}}]),
                f"{holder}[0].cors.{field_name}",
                f"{title} cannot contain '*' alongside other {label}",
            )
        )
    for type_, value in (("ReplaceFullPath", "replaceFullPath"), ("ReplacePrefixMatch", "replacePrefixMatch")):
        other = "ReplacePrefixMatch" if type_ == "ReplaceFullPath" else "ReplaceFullPath"
        redirect_path = f"{holder}[0].requestRedirect.path"
        cases += [
            Case(
                f"{where}-redirect-{type_}-needs-its-value",
                k,
                filtered([{"type": "RequestRedirect", "requestRedirect": {"path": {"type": type_}}}]),
                redirect_path,
                f"{value} must be specified when type is set to '{type_}'",
            ),
            Case(
                f"{where}-redirect-{value}-needs-its-type",
                k,
                filtered(
                    [
                        {
                            "type": "RequestRedirect",
                            "requestRedirect": {"path": {"type": other, value: "/x", FILTER_PATHS[other]: "/y"}},
                        }
                    ]
                ),
                redirect_path,
                f"type must be '{type_}' when {value} is set",
            ),
        ]
    return cases


def _http_route_cases() -> list[Case]:
    k = "HTTPRoute"
    prefix = {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2"}
    exact = [{"path": {"type": "Exact", "value": "/api"}}]
    redirect = {"type": "RequestRedirect", "requestRedirect": {"path": prefix}}
    rewrite = {"type": "URLRewrite", "urlRewrite": {"path": prefix}}
    cases = [
        Case(
            "redirect-without-backends",
            k,
            http_rule(
                matches=HTTP_ROUTE["rules"][0]["matches"], filters=[a_filter("RequestRedirect")], backendRefs=[BACKEND]
            ),
            "spec.rules[0]",
            "RequestRedirect filter must not be used together with backendRefs",
        ),
        Case(
            "redirect-prefix-needs-one-prefix-match",
            k,
            http_rule(matches=exact, filters=[redirect]),
            "spec.rules[0]",
            full(k, "When using RequestRedirect filter with path.replacePrefixMatch"),
        ),
        Case(
            "rewrite-prefix-needs-one-prefix-match",
            k,
            http_rule(matches=exact, filters=[rewrite], backendRefs=[BACKEND]),
            "spec.rules[0]",
            full(k, "When using URLRewrite filter with path.replacePrefixMatch"),
        ),
        Case(
            "backend-redirect-prefix-needs-one-prefix-match",
            k,
            http_rule(matches=exact, backendRefs=[{**BACKEND, "filters": [redirect]}]),
            "spec.rules[0]",
            full(k, "Within backendRefs, when using RequestRedirect filter with path.replacePrefixMatch"),
        ),
        Case(
            "backend-rewrite-prefix-needs-one-prefix-match",
            k,
            http_rule(matches=exact, backendRefs=[{**BACKEND, "filters": [rewrite]}]),
            "spec.rules[0]",
            full(k, "Within backendRefs, When using URLRewrite filter with path.replacePrefixMatch"),
        ),
        Case(
            "timeouts-order",
            k,
            http_rule(
                matches=HTTP_ROUTE["rules"][0]["matches"],
                backendRefs=[BACKEND],
                timeouts={"request": "1s", "backendRequest": "2s"},
            ),
            "spec.rules[0].timeouts",
            "backendRequest timeout cannot be longer than request timeout",
        ),
        Case(
            "path-absolute",
            k,
            path_match("api"),
            "spec.rules[0].matches[0].path",
            "value must be an absolute path and start with '/' when type one of ['Exact', 'PathPrefix']",
        ),
        Case(
            "path-type",
            k,
            path_match("/api", "Glob"),
            "spec.rules[0].matches[0].path",
            "type must be one of ['Exact', 'PathPrefix', 'RegularExpression']",
            also=[
                (
                    "spec.rules[0].matches[0].path.type",
                    'Unsupported value: "Glob": supported values: "Exact", "PathPrefix", "RegularExpression"',
                )
            ],
        ),
        Case(
            "path-characters",
            k,
            path_match("/a b"),
            "spec.rules[0].matches[0].path",
            full(k, "must only contain valid characters"),
        ),
    ]
    for bad, what in (
        ("/a//b", "contain '//'"),
        ("/a/./b", "contain '/./'"),
        ("/a/../b", "contain '/../'"),
        ("/a%2fb", "contain '%2f'"),
        ("/a%2Fb", "contain '%2F'"),
        ("/a#b", "contain '#'"),
        ("/a/..", "end with '/..'"),
        ("/a/.", "end with '/.'"),
    ):
        cases.append(
            Case(
                f"path-{what}",
                k,
                path_match(bad, "Exact"),
                "spec.rules[0].matches[0].path",
                f"must not {what} when type one of ['Exact', 'PathPrefix']",
                # '#' is not a path character either.
                also=[
                    ("spec.rules[0].matches[0].path", 'Invalid value: "object": ' + full(k, "must only contain valid"))
                ]
                if bad == "/a#b"
                else [],
            )
        )
    return cases + _route_cases(k, HTTP_ROUTE, tuple(FILTER_FIELDS))


def _grpc_route_cases() -> list[Case]:
    k = "GRPCRoute"

    def method(**value: Any) -> dict[str, Any]:
        return with_rule(GRPC_ROUTE, matches=[{"method": value}], backendRefs=[BACKEND])

    where = "spec.rules[0].matches[0].method"
    return [
        Case(
            "service-or-method",
            k,
            method(type="Exact"),
            where,
            "One or both of 'service' or 'method' must be specified",
        ),
        Case(
            "service-characters",
            k,
            method(service="1shop.Cart"),
            where,
            full(k, "service must only contain valid characters"),
        ),
        Case(
            "method-characters",
            k,
            method(method="Add-Item"),
            where,
            full(k, "method must only contain valid characters"),
        ),
        *_route_cases(k, GRPC_ROUTE, GRPC_FILTERS),
    ]


def _backend_tls_cases() -> list[Case]:
    k = "BackendTLSPolicy"

    def validation(**changes: Any) -> dict[str, Any]:
        spec = copy.deepcopy(BACKEND_TLS)
        spec["validation"] = {"hostname": "reviews.example.com", **changes}
        return spec

    ca = [{"group": "", "kind": "ConfigMap", "name": "ca"}]
    sans = "spec.validation.subjectAltNames[0]"
    return [
        Case(
            "section-name-required",
            k,
            {
                **copy.deepcopy(BACKEND_TLS),
                "targetRefs": [
                    {"group": "", "kind": "Service", "name": "reviews"},
                    {"group": "", "kind": "Service", "name": "reviews", "sectionName": "https"},
                ],
            },
            "spec.targetRefs",
            full(k, "sectionName must be specified when targetRefs includes 2 or more"),
        ),
        Case(
            "section-name-unique",
            k,
            {
                **copy.deepcopy(BACKEND_TLS),
                "targetRefs": [{"group": "", "kind": "Service", "name": "reviews", "sectionName": "https"}] * 2,
            },
            "spec.targetRefs",
            full(k, "sectionName must be unique when targetRefs includes 2 or more"),
        ),
        Case(
            "not-both-ca-sources",
            k,
            validation(caCertificateRefs=ca, wellKnownCACertificates="System"),
            "spec.validation",
            "must not contain both CACertificateRefs and WellKnownCACertificates",
        ),
        Case(
            "one-ca-source",
            k,
            validation(),
            "spec.validation",
            "must specify either CACertificateRefs or WellKnownCACertificates",
        ),
        Case(
            "san-hostname-required",
            k,
            validation(wellKnownCACertificates="System", subjectAltNames=[{"type": "Hostname"}]),
            sans,
            "SubjectAltName element must contain Hostname, if Type is set to Hostname",
        ),
        Case(
            "san-hostname-only-for-hostname",
            k,
            validation(
                wellKnownCACertificates="System",
                subjectAltNames=[{"type": "URI", "uri": "spiffe://a/b", "hostname": "a"}],
            ),
            sans,
            "SubjectAltName element must not contain Hostname, if Type is not set to Hostname",
        ),
        Case(
            "san-uri-required",
            k,
            validation(wellKnownCACertificates="System", subjectAltNames=[{"type": "URI"}]),
            sans,
            "SubjectAltName element must contain URI, if Type is set to URI",
        ),
        Case(
            "san-uri-only-for-uri",
            k,
            validation(
                wellKnownCACertificates="System",
                subjectAltNames=[{"type": "Hostname", "hostname": "a.example.com", "uri": "spiffe://a/b"}],
            ),
            sans,
            "SubjectAltName element must not contain URI, if Type is not set to URI",
        ),
    ]


CASES = [*_gateway_cases(), *_http_route_cases(), *_grpc_route_cases(), *_backend_tls_cases()]
# Rules a create cannot reach: status is the status subresource's (a create or update of the object
# drops it, as kube-apiserver does).
UNREACHABLE = {("Gateway", full("Gateway", "Hostname value must only contain valid characters"))}


def body(kind: str, spec: dict[str, Any], name: str = "case") -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if kind != "GatewayClass":
        metadata["namespace"] = NAMESPACE
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": metadata, "spec": spec}


def dry_run_create(custom: client.CustomObjectsApi, kind: str, spec: dict[str, Any]) -> list[tuple[str, str]]:
    """The (field, message) causes of meshsim's 422; [] when it accepts the object."""
    try:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURALS[kind], body(kind, spec), dry_run="All"
        )
    except ApiException as exc:
        assert exc.status == 422, exc.body
        causes = json.loads(exc.body)["details"]["causes"]
        return [(cause["field"], cause["message"]) for cause in causes]
    return []


@pytest.mark.parametrize("kind", sorted(VALID))
def test_the_valid_object_of_each_kind_is_accepted(custom, kind):
    assert dry_run_create(custom, kind, VALID[kind]) == []


@pytest.mark.parametrize("case", CASES, ids=str)
def test_an_object_breaking_a_rule_is_refused_with_its_field_and_message(custom, case):
    causes = dry_run_create(custom, case.kind, case.spec)
    rule_causes = [cause for cause in causes if cause not in case.also]
    assert sorted(set(causes) - set(rule_causes)) == sorted(case.also), causes
    assert len(rule_causes) == 1, causes
    [(found_field, found_message)] = rule_causes
    assert found_field == case.field
    assert found_message.startswith("Invalid value: ") and found_message.endswith(f'": {case.message}'), found_message


def test_a_gateway_class_controller_name_is_immutable(custom):
    created = body("GatewayClass", {"controllerName": "istio.io/gateway-controller"}, name="shop")
    stored = custom.create_cluster_custom_object(GROUP, VERSION, "gatewayclasses", created)
    created["metadata"]["resourceVersion"] = stored["metadata"]["resourceVersion"]
    changed = {**created, "spec": {"controllerName": "example.com/other"}}
    with pytest.raises(ApiException) as refused:
        custom.replace_cluster_custom_object(GROUP, VERSION, "gatewayclasses", "shop", changed, dry_run="All")
    assert refused.value.status == 422
    [cause] = json.loads(refused.value.body)["details"]["causes"]
    assert cause["field"] == "spec.controllerName" and cause["message"].endswith(": Value is immutable")
    same = {**created, "spec": {"controllerName": "istio.io/gateway-controller", "description": "Istio"}}
    custom.replace_cluster_custom_object(GROUP, VERSION, "gatewayclasses", "shop", same, dry_run="All")


def test_the_cases_cover_every_rule_message_of_the_crd_file():
    covered = {(case.kind, case.message) for case in CASES} | {("GatewayClass", "Value is immutable")}
    every = {(kind, message) for kind, messages in rule_messages().items() for message in messages}
    assert sorted(every - covered - UNREACHABLE) == []
    assert len(every) > 90
