import pytest

from policies.guardrails.builtin import (
    BUILTINS,
    EnvironmentInfo,
    check_mtls_strict,
    check_no_allow_all_authz,
    check_no_wildcard_hosts,
    check_timeouts,
    check_weights_sum_100,
    parse_duration,
)

PROD = EnvironmentInfo("prod", True)
DEFAULTS = BUILTINS["timeouts-within-bounds"].parameters


def authz(spec):
    return {"kind": "AuthorizationPolicy", "metadata": {"name": "a", "namespace": "ns"}, "spec": spec}


def vs(spec):
    return {"kind": "VirtualService", "metadata": {"name": "v", "namespace": "ns"}, "spec": spec}


@pytest.mark.parametrize(
    ("spec", "violations"),
    [
        ({"rules": [{}]}, 1),
        ({"action": "ALLOW", "rules": [{"from": [{"source": {"principals": ["a"]}}]}, {}]}, 1),
        ({"rules": [{"from": [], "to": []}]}, 1),
        ({}, 0),  # ALLOW without rules denies everything
        ({"action": "ALLOW"}, 0),
        ({"action": "DENY", "rules": [{}]}, 0),
        ({"rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}, 0),
    ],
)
def test_no_allow_all_authz(spec, violations):
    assert len(check_no_allow_all_authz(authz(spec), PROD, {})) == violations


def test_mtls_strict_checks_mode_and_port_level():
    ok = {
        "kind": "PeerAuthentication",
        "spec": {"mtls": {"mode": "STRICT"}, "portLevelMtls": {"8080": {"mode": "STRICT"}}},
    }
    assert check_mtls_strict(ok, PROD, {}) == []
    permissive = {
        "kind": "PeerAuthentication",
        "spec": {"mtls": {"mode": "PERMISSIVE"}, "portLevelMtls": {"9000": {"mode": "DISABLE"}}},
    }
    assert check_mtls_strict(permissive, PROD, {}) == [
        "spec.mtls.mode is PERMISSIVE, not STRICT",
        "spec.portLevelMtls[9000].mode is DISABLE, not STRICT",
    ]
    assert check_mtls_strict({"kind": "PeerAuthentication", "spec": {}}, PROD, {}) == [
        "spec.mtls.mode is UNSET, not STRICT"
    ]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10s", 10),
        ("1.5s", 1.5),
        ("300ms", 0.3),
        ("1m30s", 90),
        ("2h", 7200),
        ("0s", 0),
        ("abc", None),
        ("10", None),
        ("", None),
        (None, None),
        (5, None),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_timeouts_within_bounds():
    good = vs({"http": [{"timeout": "10s", "retries": {"attempts": 3, "perTryTimeout": "2s"}}]})
    assert check_timeouts(good, PROD, DEFAULTS) == []
    bad = vs(
        {
            "http": [
                {"timeout": "90s"},
                {"timeout": "5s", "retries": {"attempts": 8, "perTryTimeout": "2s"}},
                {"timeout": "soon"},
            ]
        }
    )
    assert check_timeouts(bad, PROD, DEFAULTS) == [
        "spec.http[0].timeout is 90s, more than 60s",
        "spec.http[1].retries.attempts is 8, more than 5",
        "spec.http[1].retries: 8 attempts × perTryTimeout 2s = 16s, longer than the route timeout 5s",
        "spec.http[2].timeout 'soon' is not a duration",
    ]
    # Parameters set the bounds.
    assert check_timeouts(vs({"http": [{"timeout": "90s"}]}), PROD, {"max_timeout_seconds": 120}) == []


def test_no_wildcard_hosts():
    assert check_no_wildcard_hosts(vs({"hosts": ["*"]}), PROD, {}) == [
        "spec.hosts[0] is '*', a wildcard applied inside the mesh"
    ]
    assert check_no_wildcard_hosts(vs({"hosts": ["*.example.com"], "gateways": ["mesh", "gw"]}), PROD, {})
    assert check_no_wildcard_hosts(vs({"hosts": ["*.example.com"], "gateways": ["istio-system/gw"]}), PROD, {}) == []
    assert check_no_wildcard_hosts(vs({"hosts": ["reviews"]}), PROD, {}) == []
    dr = {"kind": "DestinationRule", "spec": {"host": "*.local"}}
    assert check_no_wildcard_hosts(dr, PROD, {}) == ["spec.host is '*.local', a wildcard"]
    gateway = {"kind": "Gateway", "spec": {"servers": [{"hosts": ["*"]}]}}
    assert check_no_wildcard_hosts(gateway, PROD, {}) == []


def test_weights_sum_100():
    two = [
        {"destination": {"host": "r", "subset": "v1"}, "weight": 90},
        {"destination": {"host": "r", "subset": "v2"}, "weight": 10},
    ]
    assert check_weights_sum_100(vs({"http": [{"route": two}]}), PROD, {}) == []
    assert check_weights_sum_100(vs({"http": [{"route": [{"destination": {"host": "r"}}]}]}), PROD, {}) == []
    bad = [{"destination": {"host": "r"}, "weight": 90}, {"destination": {"host": "r"}, "weight": 5}]
    missing = [{"destination": {"host": "r"}}, {"destination": {"host": "s"}}]
    result = check_weights_sum_100(
        vs({"http": [{"route": bad}], "tcp": [{"route": missing}], "tls": [{"route": two}]}), PROD, {}
    )
    assert result == [
        "spec.http[0].route weights add up to 95, not 100",
        "spec.tcp[0].route weights add up to 0, not 100",
    ]


def test_every_builtin_has_sane_defaults():
    assert set(BUILTINS) == {
        "no-allow-all-authz",
        "mtls-strict-production",
        "timeouts-within-bounds",
        "no-wildcard-hosts",
        "weights-sum-100",
    }
    assert BUILTINS["no-allow-all-authz"].enforcement == "hard_mandatory"
    assert BUILTINS["weights-sum-100"].enforcement == "hard_mandatory"
    assert BUILTINS["mtls-strict-production"].production_only
