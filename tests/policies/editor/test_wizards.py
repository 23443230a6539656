"""Each wizard's output against the real CRD schemas and cross-resource checks of the meshsim cluster."""

import pytest
import yaml

from policies import wizards
from policies.live import live_snapshot
from policies.validation import validate_text


def _form(slug, data, *, snapshot):
    return wizards.WIZARDS[slug].form_class(data, snapshot=snapshot)


def _errors(report):
    return [f.as_dict() for f in report.findings if f.level == "error"]


VALID_INPUT = {
    "traffic-shift": {"service": "bookinfo/reviews", "weight_v1": "50", "weight_v2": "50", "weight_v3": "0"},
    "timeouts-retries": {
        "service": "bookinfo/ratings",
        "timeout": "5s",
        "attempts": "3",
        "per_try_timeout": "2s",
        "retry_on": ["5xx", "reset"],
    },
    "fault-injection": {
        "service": "bookinfo/ratings",
        "delay": "2s",
        "delay_percentage": "10",
        "abort_status": "503",
        "abort_percentage": "5",
    },
    "circuit-breaker": {
        "service": "bookinfo/reviews",
        "max_connections": "100",
        "http1_max_pending_requests": "10",
        "max_requests_per_connection": "5",
        "consecutive_5xx_errors": "5",
        "interval": "30s",
        "base_ejection_time": "1m",
        "max_ejection_percent": "50",
        "subsets_from_versions": "on",
    },
    "mtls": {"scope": "bookinfo/reviews", "mode": "STRICT"},
    "access": {
        "service": "bookinfo/reviews",
        "action": "ALLOW",
        "principals": ["cluster.local/ns/bookinfo/sa/bookinfo-productpage"],
        "methods": ["GET"],
        "paths": "/reviews/*",
    },
    "jwt": {
        "service": "bookinfo/productpage",
        "issuer": "https://auth.example.com",
        "jwks_uri": "https://auth.example.com/.well-known/jwks.json",
        "audiences": "bookinfo, web",
        "require_token": "on",
        "require_paths": "/api/*",
    },
}


def test_every_wizard_is_covered():
    assert set(VALID_INPUT) == set(wizards.WIZARDS)


@pytest.mark.parametrize("slug", sorted(VALID_INPUT))
def test_wizard_output_validates_with_no_errors(slug, staging, org):
    snapshot = live_snapshot(user=org.author, environment=staging)
    form = _form(slug, VALID_INPUT[slug], snapshot=snapshot)
    assert form.is_valid(), form.errors
    text = form.to_yaml()
    documents = list(yaml.safe_load_all(text))
    assert documents[0]["kind"] == wizards.WIZARDS[slug].kind
    assert all(doc["metadata"]["namespace"] == "bookinfo" for doc in documents)
    report = validate_text(environment=staging, text=text)
    assert _errors(report) == [], text


def test_traffic_shift_rewrites_the_default_route_of_the_current_virtual_service(staging, org):
    snapshot = live_snapshot(user=org.author, environment=staging)
    form = _form("traffic-shift", VALID_INPUT["traffic-shift"], snapshot=snapshot)
    assert form.is_valid(), form.errors
    (vs,) = form.documents()
    assert (vs["metadata"]["name"], vs["metadata"]["namespace"]) == ("reviews", "bookinfo")
    assert vs["metadata"]["labels"]["app"] == "reviews"  # kept from the current revision
    assert vs["spec"]["hosts"] == ["reviews"]
    assert vs["spec"]["http"][0]["route"] == [
        {"destination": {"host": "reviews", "subset": "v1"}, "weight": 50},
        {"destination": {"host": "reviews", "subset": "v2"}, "weight": 50},
    ]


def test_traffic_shift_prefills_the_current_weights(staging, org):
    snapshot = live_snapshot(user=org.author, environment=staging)
    form = wizards.TrafficShiftForm(initial={"service": "bookinfo/reviews"}, snapshot=snapshot)
    assert [(f.label, f.initial) for f in form.weight_fields()] == [("v1", 90), ("v2", 10), ("v3", 0)]


def test_traffic_shift_weights_must_add_up_to_100(staging, org):
    snapshot = live_snapshot(user=org.author, environment=staging)
    data = {**VALID_INPUT["traffic-shift"], "weight_v1": "60", "weight_v2": "30"}
    form = _form("traffic-shift", data, snapshot=snapshot)
    assert not form.is_valid()
    assert form.non_field_errors() == ["The weights must add up to 100 (they add up to 90)."]


def test_circuit_breaker_keeps_the_subsets_of_the_current_destination_rule(staging, org):
    snapshot = live_snapshot(user=org.author, environment=staging)
    form = _form("circuit-breaker", VALID_INPUT["circuit-breaker"], snapshot=snapshot)
    assert form.is_valid(), form.errors
    (dr,) = form.documents()
    assert [s["name"] for s in dr["spec"]["subsets"]] == ["v1", "v2", "v3"]
    assert dr["spec"]["trafficPolicy"]["outlierDetection"]["baseEjectionTime"] == "1m"


def test_jwt_wizard_adds_a_deny_without_token_policy(staging, org):
    snapshot = live_snapshot(user=org.author, environment=staging)
    form = _form("jwt", VALID_INPUT["jwt"], snapshot=snapshot)
    assert form.is_valid(), form.errors
    request_auth, requirement = form.documents()
    assert request_auth["spec"]["jwtRules"][0]["audiences"] == ["bookinfo", "web"]
    assert requirement["kind"] == "AuthorizationPolicy"
    assert requirement["spec"]["action"] == "DENY"
    assert requirement["spec"]["rules"][0] == {
        "from": [{"source": {"notRequestPrincipals": ["*"]}}],
        "to": [{"operation": {"paths": ["/api/*"]}}],
    }


@pytest.mark.parametrize(
    ("slug", "changes", "field"),
    [
        ("timeouts-retries", {"timeout": "five seconds"}, "timeout"),
        ("timeouts-retries", {"timeout": "1s", "per_try_timeout": "2s"}, "per_try_timeout"),
        ("fault-injection", {"delay": "", "abort_status": ""}, "__all__"),
        ("fault-injection", {"abort_status": "99"}, "abort_status"),
        ("access", {"principals": [], "namespaces": []}, "principals"),
        ("access", {"paths": "no-slash"}, "paths"),
        ("jwt", {"jwks_uri": "http://auth.example.com/jwks"}, "jwks_uri"),
        ("mtls", {"mode": "MAYBE"}, "mode"),
        ("traffic-shift", {"service": "shop/payments"}, "service"),
    ],
)
def test_bad_input_is_reported_on_the_field(slug, changes, field, staging, org):
    snapshot = live_snapshot(user=org.author, environment=staging)
    form = _form(slug, {**VALID_INPUT[slug], **changes}, snapshot=snapshot)
    assert not form.is_valid()
    assert field in form.errors


def test_skeletons_validate_with_no_errors(staging, org):
    snapshot = live_snapshot(user=org.author, environment=staging)
    reviews = snapshot.service("bookinfo/reviews")
    for kind in wizards.PolicyKind.values:
        text = wizards.to_yaml([wizards.skeleton(kind, namespace="bookinfo", service=reviews)])
        assert _errors(validate_text(environment=staging, text=text)) == [], text
