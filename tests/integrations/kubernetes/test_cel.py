"""CRD validation rules (x-kubernetes-validations) against the real Istio and Gateway API CRDs.

Every rule family of the Istio CRD file (grouped by what it checks, i.e. by its message) has a
manifest that breaks it and a near miss that must pass; a test checks that the table covers every
message in the file, so a new Istio rule shows up here. Gateway API families are checked the same
way on a selection. The evaluator's semantics (library functions, errors, transition rules,
messageExpression / reason / fieldPath, cost limits) are tested on hand-written schemas.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from integrations.kubernetes import cel, cellib
from integrations.kubernetes.structural import validate_custom_object

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "reference"
ISTIO_CRDS = SHARED / "istio" / "crd-all.gen.yaml"
GATEWAY_CRDS = SHARED / "gateway-api" / "standard-install.yaml"


@cache
def crds(path: Path = ISTIO_CRDS) -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc.get("kind") == "CustomResourceDefinition":
            for version in doc["spec"]["versions"]:
                found[(doc["spec"]["names"]["kind"], version["name"])] = version["schema"]["openAPIV3Schema"]
    return found


def rule_messages(kind: str, version: str, spec: dict[str, Any], path: Path = ISTIO_CRDS) -> list[str]:
    obj = {"apiVersion": "x/" + version, "kind": kind, "metadata": {"name": "n", "namespace": "ns"}, "spec": spec}
    outcome = validate_custom_object(obj, crds(path)[(kind, version)])
    return [f"{error.field}: {error.detail}" for error in outcome.rule_errors]


EP = {"address": "10.0.0.1"}
TLS = {"mode": "SIMPLE"}
# (family, kind, version, breaks it, near miss, "field: message")
ISTIO_FAMILIES = [
    (
        "one-of-targetRefs-selector",
        "AuthorizationPolicy",
        "v1",
        {"selector": {"matchLabels": {"app": "a"}}, "targetRefs": [{"kind": "Service", "group": "", "name": "a"}]},
        {"targetRefs": [{"kind": "Service", "group": "", "name": "a"}]},
        "spec: only one of targetRefs or selector can be set",
    ),
    (
        "one-of-wasm-lua",
        "TrafficExtension",
        "v1alpha1",
        {},
        {"lua": {"inlineCode": "x"}},
        "spec: exactly one of wasm or lua must be set",
    ),
    (
        "label-key-wildcard",
        "DestinationRule",
        "v1",
        {"host": "a", "workloadSelector": {"matchLabels": {"app*": "a"}}},
        {"host": "a", "workloadSelector": {"matchLabels": {"app": "a"}}},
        "spec.workloadSelector.matchLabels: wildcard not allowed in label key match",
    ),
    (
        "label-key-empty",
        "DestinationRule",
        "v1",
        {"host": "a", "workloadSelector": {"matchLabels": {"": "a"}}},
        {"host": "a", "workloadSelector": {"matchLabels": {"a": ""}}},
        "spec.workloadSelector.matchLabels: key must not be empty",
    ),
    (
        "label-value-wildcard",
        "DestinationRule",
        "v1",
        {"host": "a", "workloadSelector": {"matchLabels": {"app": "*"}}},
        {"host": "a", "workloadSelector": {"matchLabels": {"app": "a-b"}}},
        "spec.workloadSelector.matchLabels[app]: wildcard not allowed in label value match",
    ),
    (
        "cross-namespace-ref",
        "AuthorizationPolicy",
        "v1",
        {"targetRefs": [{"kind": "Service", "group": "", "name": "a", "namespace": "other"}]},
        {"targetRefs": [{"kind": "Service", "group": "", "name": "a", "namespace": ""}]},
        "spec.targetRefs[0].namespace: cross namespace referencing is not currently supported",
    ),
    (
        "wasm-url-scheme",
        "WasmPlugin",
        "v1alpha1",
        {"url": "ftp://example.com/a.wasm"},
        {"url": "oci://ghcr.io/a/b:1"},
        "spec.url: url must have schema one of [http, https, file, oci]",
    ),
    (
        "env-value-host",
        "WasmPlugin",
        "v1alpha1",
        {"url": "oci://a/b", "vmConfig": {"env": [{"name": "A", "valueFrom": "HOST", "value": "x"}]}},
        {"url": "oci://a/b", "vmConfig": {"env": [{"name": "A", "valueFrom": "INLINE", "value": "x"}]}},
        "spec.vmConfig.env[0]: value may only be set when valueFrom is INLINE",
    ),
    (
        "duration-min-1ms",
        "VirtualService",
        "v1",
        {"http": [{"timeout": "500us"}]},
        {"http": [{"timeout": "1ms"}]},
        "spec.http[0].timeout: must be a valid duration greater than 1ms",
    ),
    (
        "duration-syntax",
        "DestinationRule",
        "v1",
        {"host": "a", "trafficPolicy": {"connectionPool": {"http": {"idleTimeout": "1d"}}}},
        {"host": "a", "trafficPolicy": {"connectionPool": {"http": {"idleTimeout": "1h30m"}}}},
        'spec.trafficPolicy.connectionPool.http.idleTimeout: time: unknown unit "d" in duration "1d" evaluating rule: '
        "must be a valid duration greater than 1ms",
    ),
    (
        "one-of-targetRefs-workloadSelector",
        "EnvoyFilter",
        "v1alpha3",
        {"workloadSelector": {"labels": {"a": "b"}}, "targetRefs": [{"kind": "Gateway", "group": "x", "name": "a"}]},
        {"workloadSelector": {"labels": {"a": "b"}}},
        "spec: only one of targetRefs or workloadSelector can be set",
    ),
    (
        "waypoint-match-context",
        "EnvoyFilter",
        "v1alpha3",
        {"configPatches": [{"match": {"context": "SIDECAR_INBOUND", "waypoint": {}}}]},
        {"configPatches": [{"match": {"context": "WAYPOINT", "waypoint": {}}}]},
        "spec.configPatches[0].match: only support waypointMatch when context is WAYPOINT",
    ),
    (
        "port-range",
        "ServiceEntry",
        "v1",
        {"hosts": ["a.example.com"], "ports": [{"number": 0, "name": "http", "protocol": "HTTP"}]},
        {"hosts": ["a.example.com"], "ports": [{"number": 65535, "name": "http", "protocol": "HTTP"}]},
        "spec.ports[0].number: port must be between 1-65535",
    ),
    (
        "selector-value-wildcard",
        "Sidecar",
        "v1",
        {"workloadSelector": {"labels": {"app": "a*"}}},
        {"workloadSelector": {"labels": {"app": "a"}}},
        "spec.workloadSelector.labels[app]: wildcard is not supported in selector",
    ),
    (
        "tls-credentialNames-tlsCertificates",
        "Gateway",
        "v1",
        {
            "servers": [
                {
                    "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                    "hosts": ["*"],
                    "tls": {**TLS, "credentialNames": ["a"], "tlsCertificates": [{"serverCertificate": "/c"}]},
                }
            ]
        },
        {
            "servers": [
                {
                    "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                    "hosts": ["*"],
                    "tls": {**TLS, "credentialNames": ["a"]},
                }
            ]
        },
        "spec.servers[0].tls: only one of credentialNames or tlsCertificates can be set",
    ),
    (
        "tls-credentialName-credentialNames",
        "Gateway",
        "v1",
        {
            "servers": [
                {
                    "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                    "hosts": ["*"],
                    "tls": {**TLS, "credentialName": "a", "credentialNames": ["b"]},
                }
            ]
        },
        {
            "servers": [
                {
                    "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                    "hosts": ["*"],
                    "tls": {**TLS, "credentialName": "a"},
                }
            ]
        },
        "spec.servers[0].tls: only one of credentialName or credentialNames can be set",
    ),
    (
        "tls-credentialName-tlsCertificates",
        "Sidecar",
        "v1",
        {
            "ingress": [
                {
                    "port": {"number": 8443, "name": "https", "protocol": "HTTPS"},
                    "tls": {**TLS, "credentialNames": ["a"], "tlsCertificates": [{"serverCertificate": "/c"}]},
                }
            ]
        },
        {
            "ingress": [
                {
                    "port": {"number": 8443, "name": "https", "protocol": "HTTPS"},
                    "tls": {**TLS, "tlsCertificates": [{"serverCertificate": "/c"}]},
                }
            ]
        },
        "spec.ingress[0].tls: only one of credentialName or tlsCertificates can be set",
    ),
    (
        "se-selector-or-endpoints",
        "ServiceEntry",
        "v1",
        {
            "hosts": ["a.example.com"],
            "resolution": "STATIC",
            "workloadSelector": {"labels": {"a": "b"}},
            "endpoints": [EP],
        },
        {"hosts": ["a.example.com"], "resolution": "STATIC", "endpoints": [EP]},
        "spec: only one of WorkloadSelector or Endpoints can be set",
    ),
    (
        "se-cidr-resolution",
        "ServiceEntry",
        "v1",
        {"hosts": ["a.example.com"], "addresses": ["10.0.0.0/24"], "resolution": "DNS"},
        {"hosts": ["a.example.com"], "addresses": ["10.0.0.0/24"], "resolution": "STATIC", "endpoints": [EP]},
        "spec: CIDR addresses are allowed only for NONE/STATIC resolution types",
    ),
    (
        "se-none-endpoints",
        "ServiceEntry",
        "v1",
        {"hosts": ["a.example.com"], "endpoints": [EP]},
        {"hosts": ["a.example.com"], "resolution": "STATIC", "endpoints": [EP]},
        "spec: NONE mode cannot set endpoints",
    ),
    (
        "se-dns-round-robin",
        "ServiceEntry",
        "v1",
        {"hosts": ["a.example.com"], "resolution": "DNS_ROUND_ROBIN", "endpoints": [EP, {"address": "10.0.0.2"}]},
        {"hosts": ["a.example.com"], "resolution": "DNS_ROUND_ROBIN", "endpoints": [EP]},
        "spec: DNS_ROUND_ROBIN mode cannot have multiple endpoints",
    ),
    ("address-required", "WorkloadEntry", "v1", {"labels": {"a": "b"}}, {"network": "n1"}, "spec: Address is required"),
    (
        "uds-ports",
        "WorkloadEntry",
        "v1",
        {"address": "unix:///var/run/a.sock", "ports": {"http": 80}},
        {"address": "unix:///var/run/a.sock"},
        "spec: UDS may not include ports",
    ),
    (
        "uds-absolute",
        "WorkloadEntry",
        "v1",
        {"address": "unix://var/a.sock"},
        {"address": "unix://@abstract"},
        "spec.address: UDS must be an absolute path or abstract socket",
    ),
    (
        "uds-dir",
        "WorkloadGroup",
        "v1",
        {"template": {"address": "unix:///var/run/"}},
        {"template": {"address": "unix:///var/run"}},
        "spec.template.address: UDS may not be a dir",
    ),
    (
        "port-name",
        "WorkloadEntry",
        "v1",
        {"address": "10.0.0.1", "ports": {"http_1": 80}},
        {"address": "10.0.0.1", "ports": {"http-1": 80}},
        "spec.ports: port name must be valid",
    ),
    (
        "port-map-range",
        "ServiceEntry",
        "v1",
        {
            "hosts": ["a.example.com"],
            "resolution": "STATIC",
            "endpoints": [{"address": "10.0.0.1", "ports": {"http": 0}}],
        },
        {
            "hosts": ["a.example.com"],
            "resolution": "STATIC",
            "endpoints": [{"address": "10.0.0.1", "ports": {"http": 1}}],
        },
        "spec.endpoints[0].ports[http]: port must be between 1-65535",
    ),
    (
        "host-wildcard",
        "ServiceEntry",
        "v1",
        {"hosts": ["*"]},
        {"hosts": ["*.example.com"]},
        "spec.hosts[0]: hostname cannot be wildcard",
    ),
    (
        "port-duplicate",
        "ServiceEntry",
        "v1",
        {
            "hosts": ["a.example.com"],
            "ports": [{"number": 80, "name": "a", "protocol": "HTTP"}, {"number": 80, "name": "b", "protocol": "TCP"}],
        },
        {
            "hosts": ["a.example.com"],
            "ports": [{"number": 80, "name": "a", "protocol": "HTTP"}, {"number": 81, "name": "b", "protocol": "TCP"}],
        },
        "spec.ports: port number cannot be duplicated",
    ),
    (
        "probe-scheme",
        "WorkloadGroup",
        "v1",
        {"template": {}, "probe": {"httpGet": {"port": 80, "scheme": "GRPC"}}},
        {"template": {}, "probe": {"httpGet": {"port": 80, "scheme": "HTTPS"}}},
        "spec.probe.httpGet.scheme: scheme must be one of [HTTP, HTTPS]",
    ),
    (
        "service-accounts-exclusive",
        "AuthorizationPolicy",
        "v1",
        {"rules": [{"from": [{"source": {"serviceAccounts": ["ns/sa"], "namespaces": ["ns"]}}]}]},
        {"rules": [{"from": [{"source": {"serviceAccounts": ["ns/sa"]}}, {"source": {"namespaces": ["ns"]}}]}]},
        "spec.rules[0].from[0].source: Cannot set serviceAccounts with namespaces or principals",
    ),
    (
        "port-level-mtls-selector",
        "PeerAuthentication",
        "v1",
        {"portLevelMtls": {"8080": {"mode": "DISABLE"}}},
        {"selector": {"matchLabels": {"app": "a"}}, "portLevelMtls": {"8080": {"mode": "DISABLE"}}},
        "spec: portLevelMtls requires selector",
    ),
    (
        "port-level-mtls-range",
        "PeerAuthentication",
        "v1",
        {"selector": {"matchLabels": {"app": "a"}}, "portLevelMtls": {"0": {"mode": "DISABLE"}}},
        {"selector": {"matchLabels": {"app": "a"}}, "portLevelMtls": {"65535": {"mode": "DISABLE"}}},
        "spec.portLevelMtls: port must be between 1-65535",
    ),
    (
        "jwks-exclusive",
        "RequestAuthentication",
        "v1",
        {"jwtRules": [{"issuer": "i", "jwks": "{}", "jwksUri": "https://a/keys"}]},
        {"jwtRules": [{"issuer": "i", "jwksUri": "https://a/keys"}]},
        "spec.jwtRules[0]: only one of jwks or jwksUri can be set",
    ),
    (
        "jwks-uri-scheme",
        "RequestAuthentication",
        "v1",
        {"jwtRules": [{"issuer": "i", "jwksUri": "ftp://a/keys"}]},
        {"jwtRules": [{"issuer": "i", "jwksUri": "http://a:8080/keys"}]},
        "spec.jwtRules[0].jwksUri: url must have scheme http:// or https://",
    ),
    (
        "tag-upsert-value",
        "Telemetry",
        "v1",
        {"metrics": [{"overrides": [{"tagOverrides": {"a": {"operation": "UPSERT", "value": ""}}}]}]},
        {"metrics": [{"overrides": [{"tagOverrides": {"a": {"operation": "UPSERT", "value": "x"}}}]}]},
        "spec.metrics[0].overrides[0].tagOverrides[a]: value must be set when operation is UPSERT",
    ),
    (
        "tag-remove-value",
        "Telemetry",
        "v1",
        {"metrics": [{"overrides": [{"tagOverrides": {"a": {"operation": "REMOVE", "value": "x"}}}]}]},
        {"metrics": [{"overrides": [{"tagOverrides": {"a": {"operation": "REMOVE"}}}]}]},
        "spec.metrics[0].overrides[0].tagOverrides[a]: value must not be set when operation is REMOVE",
    ),
]


@pytest.mark.parametrize(
    ("family", "kind", "version", "bad", "near", "expected"), ISTIO_FAMILIES, ids=[row[0] for row in ISTIO_FAMILIES]
)
def test_istio_rule_family_refuses_the_manifest_and_accepts_the_near_miss(family, kind, version, bad, near, expected):
    assert expected in rule_messages(kind, version, bad)
    assert rule_messages(kind, version, near) == []


def test_the_families_cover_every_rule_message_of_the_istio_crds():
    messages = {rule.message for schema in crds().values() for _, _, rule in cel.iter_rules(schema)}
    covered = {expected.partition(": ")[2] for *_, expected in ISTIO_FAMILIES}
    assert messages - covered == set()
    assert len(messages) >= 30


def test_every_rule_of_both_crd_files_compiles():
    texts = {
        rule.rule
        for path in (ISTIO_CRDS, GATEWAY_CRDS)
        for schema in crds(path).values()
        for _, _, rule in cel.iter_rules(schema)
    }
    assert len(texts) > 100
    failures = []
    for text in texts:
        try:
            cellib.compile_program(text)
        except cellib.CompileError as exc:
            failures.append(f"{text}: {exc}")
    assert failures == []


GW_LISTENER = {"name": "http", "port": 80, "protocol": "HTTP"}
GATEWAY_FAMILIES = [
    (
        "listener-names-unique",
        "Gateway",
        {"gatewayClassName": "istio", "listeners": [GW_LISTENER, GW_LISTENER]},
        {"gatewayClassName": "istio", "listeners": [GW_LISTENER, {**GW_LISTENER, "name": "http2", "port": 81}]},
        "spec.listeners: Listener name must be unique within the Gateway",
    ),
    (
        "tls-for-tcp",
        "Gateway",
        {
            "gatewayClassName": "istio",
            "listeners": [{"name": "t", "port": 9000, "protocol": "TCP", "tls": {"mode": "Passthrough"}}],
        },
        {"gatewayClassName": "istio", "listeners": [{"name": "t", "port": 9000, "protocol": "TCP"}]},
        "spec.listeners: tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']",
    ),
    (
        "path-starts-with-slash",
        "HTTPRoute",
        {"rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "api"}}]}]},
        {"rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}]}]},
        "spec.rules[0].matches[0].path: value must be an absolute path and start with '/' when type one of "
        "['Exact', 'PathPrefix']",
    ),
    (
        "filter-type-field",
        "HTTPRoute",
        {"rules": [{"filters": [{"type": "RequestRedirect"}]}]},
        {"rules": [{"filters": [{"type": "RequestRedirect", "requestRedirect": {"statusCode": 301}}]}]},
        "spec.rules[0].filters[0]: filter.requestRedirect must be specified for RequestRedirect filter.type",
    ),
    (
        "timeouts-order",
        "HTTPRoute",
        {"rules": [{"timeouts": {"request": "1s", "backendRequest": "2s"}}]},
        {"rules": [{"timeouts": {"request": "2s", "backendRequest": "1s"}}]},
        "spec.rules[0].timeouts: backendRequest timeout cannot be longer than request timeout",
    ),
    (
        "grpc-service-name",
        "GRPCRoute",
        {"rules": [{"matches": [{"method": {"service": "1bad", "method": "Get"}}]}]},
        {"rules": [{"matches": [{"method": {"service": "pkg.Service", "method": "Get"}}]}]},
        "spec.rules[0].matches[0].method: service must only contain valid characters (matching "
        "^(?i)\\.?[a-z_][a-z_0-9]*(\\.[a-z_][a-z_0-9]*)*$)",
    ),
]


@pytest.mark.parametrize(
    ("family", "kind", "bad", "near", "expected"), GATEWAY_FAMILIES, ids=[row[0] for row in GATEWAY_FAMILIES]
)
def test_gateway_api_rule_family(family, kind, bad, near, expected):
    assert expected in rule_messages(kind, "v1", bad, GATEWAY_CRDS)
    assert rule_messages(kind, "v1", near, GATEWAY_CRDS) == []


# --- semantics on hand-written schemas -----------------------------------------------------------


def _schema(rules: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"type": "object", "properties": {"spec": {"type": "object", "x-kubernetes-validations": rules, **spec}}}


def _errors(schema: dict[str, Any], spec: Any, old: Any = None) -> list[Any]:
    obj = {"apiVersion": "g/v1", "kind": "K", "metadata": {"name": "n"}, "spec": spec}
    old_obj = {**obj, "spec": old} if old is not None else None
    return validate_custom_object(obj, schema, old=old_obj).rule_errors


SPEC_FIELDS = {"x-kubernetes-preserve-unknown-fields": True}


def test_failure_is_reported_as_the_api_server_words_it():
    [error] = _errors(_schema([{"rule": "self.a < 3", "message": "a too large"}], **SPEC_FIELDS), {"a": 4})
    assert error.message() == 'spec: Invalid value: "object": a too large'
    assert error.cause() == {
        "reason": "FieldValueInvalid",
        "message": 'Invalid value: "object": a too large',
        "field": "spec",
    }


def test_without_message_the_rule_is_quoted():
    [error] = _errors(_schema([{"rule": "self.a < 3"}], **SPEC_FIELDS), {"a": 4})
    assert error.detail == "failed rule: self.a < 3"


def test_reason_field_path_and_message_expression():
    rule = {
        "rule": "self.a < 3",
        "reason": "FieldValueForbidden",
        "fieldPath": ".a",
        "messageExpression": "'a is ' + string(self.a) + ', at most 2'",
    }
    [error] = _errors(_schema([rule], **SPEC_FIELDS), {"a": 4})
    assert (error.type.reason, error.field, error.detail) == ("FieldValueForbidden", "spec.a", "a is 4, at most 2")
    assert error.message() == "spec.a: Forbidden: a is 4, at most 2"


def test_a_failing_message_expression_falls_back_to_the_message():
    rule = {"rule": "false", "message": "static", "messageExpression": "self.missing"}
    [error] = _errors(_schema([rule], **SPEC_FIELDS), {"a": 1})
    assert error.detail == "static"


def test_runtime_errors_are_reported_with_the_rule():
    [error] = _errors(_schema([{"rule": "self.a.startsWith('x')", "message": "m"}], **SPEC_FIELDS), {"b": 1})
    assert error.detail == "no such key: a evaluating rule: m"


def test_transition_rules_run_on_update_only():
    schema = _schema([{"rule": "self.a == oldSelf.a", "message": "a is immutable"}], **SPEC_FIELDS)
    assert _errors(schema, {"a": 1}) == []  # create: skipped, as the API server does
    assert _errors(schema, {"a": 1}, old={"a": 1}) == []
    [error] = _errors(schema, {"a": 2}, old={"a": 1})
    assert error.detail == "a is immutable"


def test_optional_old_self_runs_on_create_too():
    rule = {
        "rule": "!oldSelf.hasValue() || self.a >= oldSelf.value().a",
        "message": "a may only grow",
        "optionalOldSelf": True,
    }
    schema = _schema([rule], **SPEC_FIELDS)
    assert _errors(schema, {"a": 1}) == []
    assert [e.detail for e in _errors(schema, {"a": 1}, old={"a": 2})] == ["a may only grow"]


def test_transition_rules_correlate_list_map_items_by_key():
    items = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "port": {"type": "integer"}},
        "x-kubernetes-validations": [{"rule": "self.port == oldSelf.port", "message": "port is immutable"}],
    }
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "ports": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["name"],
                        "items": items,
                    }
                },
            }
        },
    }
    old = {"ports": [{"name": "a", "port": 1}, {"name": "b", "port": 2}]}
    assert _errors(schema, {"ports": [{"name": "b", "port": 2}, {"name": "c", "port": 9}]}, old=old) == []
    [error] = _errors(schema, {"ports": [{"name": "b", "port": 3}]}, old=old)
    assert error.field == "spec.ports[0]"


def test_escaped_property_names():
    schema = _schema(
        [{"rule": "self.__namespace__ == 'a' && self.x__dash__y == 1", "message": "m"}],
        properties={"namespace": {"type": "string"}, "x-y": {"type": "integer"}},
    )
    assert _errors(schema, {"namespace": "a", "x-y": 1}) == []
    assert len(_errors(schema, {"namespace": "b", "x-y": 1})) == 1


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("'abc'.substring(1) == 'bc' && 'abc'.substring(0, 1) == 'a'", True),
        ("'a/b/c'.split('/') == ['a', 'b', 'c'] && 'a/b/c'.split('/', 2) == ['a', 'b/c']", True),
        ("'Hello'.lowerAscii() == 'hello' && 'hi'.upperAscii() == 'HI' && '  x '.trim() == 'x'", True),
        ("'aXbX'.replace('X', '-') == 'a-b-' && 'abc'.indexOf('c') == 2 && 'abca'.lastIndexOf('a') == 3", True),
        ("['a', 'b'].join('-') == 'a-b' && 'abc'.charAt(1) == 'b'", True),
        ("[1, 2, 3].isSorted() && [1, 2].sum() == 3 && [3, 1].min() == 1 && [3, 1].max() == 3", True),
        ("'abc123'.find('[0-9]+') == '123' && 'a1b2'.findAll('[0-9]') == ['1', '2']", True),
        ("'aaa'.matches('^a+$') && !'ab'.matches('^a+$')", True),
        (
            "isURL('https://example.com:8443/p?q=1') && url('https://example.com:8443/p').getHost() == 'example.com:8443'",
            True,
        ),
        (
            "url('https://example.com:8443/p').getHostname() == 'example.com' && "
            "url('https://example.com:8443/p').getPort() == '8443' && url('http://a/b/c').getEscapedPath() == '/b/c'",
            True,
        ),
        ("!isURL('example.com/x') && isURL('/relative/path')", True),
        ("isIP('10.0.0.1') && isIP('2001:db8::1') && !isIP('10.0.0.256') && ip('10.0.0.1').family() == 4", True),
        ("isCIDR('10.0.0.0/8') && cidr('10.0.0.0/8').containsIP('10.1.2.3') && !isCIDR('10.0.0.0')", True),
        ("cidr('10.0.0.0/8').containsCIDR('10.1.0.0/16') && cidr('10.0.0.0/8').prefixLength() == 8", True),
        ("ip('127.0.0.1').isLoopback() && ip('0.0.0.0').isUnspecified() && ip('8.8.8.8').isGlobalUnicast()", True),
        ("quantity('1Gi').compareTo(quantity('1000Mi')) > 0 && quantity('500m').isLessThan(quantity('1'))", True),
        ("isQuantity('250Mi') && !isQuantity('250MB') && quantity('2k').asInteger() == 2000", True),
        ("duration('1h30m') == duration('90m') && duration('1.5s') > duration('1500ms') == false", True),
        ("duration('300ms') < duration('1s') && duration('-1s') < duration('0')", True),
        ("1 == 1.0 && 1 != true && 7 / 2 == 3 && -7 / 2 == -3 && -7 % 3 == -1", True),
        ("[1, 2].exists_one(x, x > 1) && [1, 2].filter(x, x > 1) == [2] && [1, 2].map(x, x * 2) == [2, 4]", True),
        ("{'a': 1}.all(k, k == 'a') && 'a' in {'a': 1} && 2 in [1, 2]", True),
        ("false && (1 / 0 == 1)", False),
        ("true || (1 / 0 == 1)", True),
        ('r"a\\d" == "a\\\\d" && """x""" == "x"', True),
    ],
)
def test_library_functions(expression, expected):
    value, _ = cellib.compile_program(expression).evaluate({}, 10_000)
    assert value is expected


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ("1 / 0 == 0", "division by zero"),
        ("[1][3] == 1", "index out of bounds: 3"),
        ("9223372036854775807 + 1 > 0", "integer overflow"),
        ("duration('5') > duration('1s')", 'time: invalid duration "5"'),
        ("duration('1d') > duration('1s')", 'time: unknown unit "d" in duration "1d"'),
        # When both sides of || (or &&) fail, the left one's error is the result, as in cel-go.
        ("{}.a > 0 || {}.b > 0", "no such key: a"),
        ("{}.a > 0 && {}.b > 0", "no such key: a"),
        ("'abc'.substring(2, 5) == ''", "index out of range: 5"),
        ("'a' < 1", "no such overload"),
        ("url('not a url').getScheme() == ''", "URL parse error"),
    ],
)
def test_runtime_errors(expression, error):
    with pytest.raises(cellib.CelError, match=error.replace("(", r"\(").replace("[", r"\[")):
        cellib.compile_program(expression).evaluate({}, 10_000)


def test_regular_expressions_are_re2():
    # RE2 has no backreferences or lookarounds (Go's regexp neither): such a pattern is an error.
    with pytest.raises(cellib.CelError, match="invalid regular expression"):
        cellib.compile_program("'aa'.matches('(a)\\\\1')").evaluate({}, 100)
    # and it runs in linear time: a catastrophic-backtracking pattern for Python's re is instant.
    value, _ = cellib.compile_program(
        "('a' * 1).matches('^(a+)+$')".replace("('a' * 1)", "'" + "a" * 5000 + "!'")
    ).evaluate({}, 100)
    assert value is False


def test_a_rule_over_its_cost_limit_is_refused(monkeypatch):
    monkeypatch.setattr(cel, "PER_CALL_LIMIT", 5_000)
    schema = _schema(
        [{"rule": "self.items.all(a, self.items.all(b, a == b || a != b))", "message": "m"}], **SPEC_FIELDS
    )
    [error] = _errors(schema, {"items": list(range(200))})
    assert "call cost exceeds limit for rule: m" in error.detail
    assert _errors(schema, {"items": list(range(10))}) == []


def test_an_object_over_its_cost_budget_stops_the_remaining_rules():
    rule = {"rule": "self.all(a, self.all(b, a == b || a != b))", "message": "m"}
    items = {"type": "array", "items": {"type": "integer"}, "x-kubernetes-validations": [rule]}
    schema = {
        "type": "object",
        "properties": {"spec": {"type": "object", "properties": {f"l{i}": items for i in range(8)}}},
    }
    spec = {f"l{i}": list(range(300)) for i in range(8)}
    errors = validate_custom_object({"spec": spec}, schema).rule_errors
    assert [e.detail for e in errors][-1] == (
        "validation failed due to running out of cost budget, no further validation rules will be run"
    )
    assert len(errors) == 1


# --- timestamps and format-typed values ------------------------------------------------------------


@pytest.mark.parametrize(
    "expression",
    [
        "timestamp('2024-03-05T10:00:00Z') == timestamp('2024-03-05T12:00:00+02:00')",
        "timestamp('2024-03-05T10:00:00.5Z') > timestamp('2024-03-05T10:00:00Z')",
        "timestamp('2024-03-05T10:00:00Z') - timestamp('2024-03-05T09:00:00Z') == duration('1h')",
        "timestamp('2024-03-05T10:00:00Z') + duration('90m') == timestamp('2024-03-05T11:30:00Z')",
        "duration('1h') + timestamp('2024-03-05T10:00:00Z') == timestamp('2024-03-05T11:00:00Z')",
        "timestamp('2024-03-05T10:00:00Z') - duration('24h') == timestamp('2024-03-04T10:00:00Z')",
        "string(timestamp('2024-03-05T12:00:00.250+02:00')) == '2024-03-05T10:00:00.25Z'",
        "int(timestamp('1970-01-01T00:01:00Z')) == 60 && timestamp(60) == timestamp('1970-01-01T00:01:00Z')",
        "timestamp('2024-03-05T23:30:00Z').getFullYear() == 2024 && timestamp('2024-03-05T23:30:00Z').getMonth() == 2",
        "timestamp('2024-03-05T23:30:00Z').getDate() == 5 && timestamp('2024-03-05T23:30:00Z').getDayOfMonth() == 4",
        "timestamp('2024-03-03T10:00:00Z').getDayOfWeek() == 0 && timestamp('2024-01-01T00:00:00Z').getDayOfYear() == 0",
        "timestamp('2024-03-05T23:30:00Z').getHours() == 23 && timestamp('2024-03-05T23:30:00Z').getHours('+02:00') == 1",
        "timestamp('2024-03-05T23:30:00Z').getDate('Europe/Paris') == 6",
        "timestamp('2024-03-05T10:20:30.456Z').getMinutes() == 20 && timestamp('2024-03-05T10:20:30.456Z')"
        ".getSeconds() == 30 && timestamp('2024-03-05T10:20:30.456Z').getMilliseconds() == 456",
        "string(duration('90m')) == '5400s' && string(duration('1.5s')) == '1.5s'",
        "duration('90m').getHours() == 1 && duration('90m').getMinutes() == 90",
    ],
)
def test_timestamp_library(expression):
    value, _ = cellib.compile_program(expression).evaluate({}, 10_000)
    assert value is True


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ("timestamp('2024-03-05 10:00:00Z') > timestamp(0)", "timestamp conversion error"),
        ("timestamp('2024-02-30T10:00:00Z') > timestamp(0)", "timestamp conversion error"),
        ("timestamp('9999-12-31T23:59:59Z') + duration('1s') > timestamp(0)", "timestamp overflow"),
        ("timestamp(0) < duration('1s')", "no such overload"),
        ("timestamp(0).getHours('Mars/Olympus') == 0", "unknown time zone"),
    ],
)
def test_timestamp_errors(expression, error):
    with pytest.raises(cellib.CelError, match=error):
        cellib.compile_program(expression).evaluate({}, 10_000)


def _typed_schema(fmt: str, rule: str) -> dict[str, Any]:
    field = {"type": "string", "format": fmt, "x-kubernetes-validations": [{"rule": rule, "message": "refused"}]}
    return {"type": "object", "properties": {"spec": {"type": "object", "properties": {"v": field}}}}


@pytest.mark.parametrize(
    ("fmt", "rule", "accepted", "refused"),
    [
        # format: duration is a CEL duration, parsed as go-openapi's strfmt parses it.
        ("duration", "self <= duration('1h')", ["30m", "45 minutes", "1hour", "3600s"], ["2h", "3 days", "1w"]),
        # format: date-time is a CEL timestamp (strfmt's layouts: RFC 3339, no-colon offsets, local time as UTC).
        (
            "date-time",
            "self >= timestamp('2024-01-01T00:00:00Z')",
            ["2024-01-01T00:00:00Z", "2024-01-01T02:00:00.000+0200", "2024-06-01T00:00:00", "2024-06-01 08:00:00"],
            ["2023-12-31T23:59:59Z", "2024-01-01T01:00:00+02:00", "2023-06-01T00:00"],
        ),
        # format: date is a timestamp at midnight UTC.
        ("date", "self.getDayOfWeek() != 0", ["2024-03-04"], ["2024-03-03"]),
        # format: byte is the decoded bytes.
        ("byte", "size(self) <= 3", ["YWJj", ""], ["YWJjZA=="]),
    ],
)
def test_format_typed_values_are_cel_values(fmt, rule, accepted, refused):
    schema = _typed_schema(fmt, rule)
    for value in accepted:
        assert _errors(schema, {"v": value}) == [], value
    for value in refused:
        assert [e.message() for e in _errors(schema, {"v": value})] == ['spec.v: Invalid value: "string": refused'], (
            value
        )


@pytest.mark.parametrize(
    ("fmt", "value", "error"),
    [
        ("duration", "soon", "Invalid duration soon: unable to parse soon as duration"),
        ("date-time", "2024-13-01T00:00:00Z", "Invalid date-time formatted string 2024-13-01T00:00:00Z"),
        ("date-time", "2024-03-05T10:00:00+25:00", "Invalid date-time formatted string 2024-03-05T10:00:00+25:00"),
        ("date", "2024-02-30", "Invalid date formatted string 2024-02-30"),
        ("date", "2024/03/04", "Invalid date formatted string 2024/03/04"),
        ("byte", "not base64!", "Invalid byte formatted string not base64!"),
    ],
)
def test_an_unparsable_typed_value_is_an_evaluation_error(fmt, value, error):
    [found] = _errors(_typed_schema(fmt, "true"), {"v": value})
    assert found.message() == f'spec.v: Invalid value: "string": {error} evaluating rule: refused'


def test_a_nested_typed_value_read_by_a_rule_is_typed_and_its_error_is_the_rules():
    rule = {"rule": "self.end - self.start <= duration('1h')", "message": "window longer than 1h"}
    times = {"type": "string", "format": "date-time"}
    schema = _schema([rule], properties={"start": times, "end": times})
    assert _errors(schema, {"start": "2024-01-01T00:00:00Z", "end": "2024-01-01T01:00:00+00:00"}) == []
    [too_long] = _errors(schema, {"start": "2024-01-01T00:00:00Z", "end": "2024-01-01T03:00:00+01:00"})
    assert too_long.message() == 'spec: Invalid value: "object": window longer than 1h'
    [broken] = _errors(schema, {"start": "yesterday", "end": "2024-01-01T01:00:00Z"})
    assert "Invalid date-time formatted string yesterday evaluating rule: window longer than 1h" in broken.message()


def test_a_transition_rule_compares_typed_old_and_new_values():
    times = {"type": "string", "format": "date-time"}
    schema = _schema(
        [{"rule": "self.start == oldSelf.start", "message": "start is immutable"}], properties={"start": times}
    )
    # The same instant written with another offset is the same value.
    assert _errors(schema, {"start": "2024-01-01T01:00:00+01:00"}, old={"start": "2024-01-01T00:00:00Z"}) == []
    assert len(_errors(schema, {"start": "2024-01-01T02:00:00+01:00"}, old={"start": "2024-01-01T00:00:00Z"})) == 1
