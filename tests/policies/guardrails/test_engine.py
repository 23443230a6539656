import pytest

from policies.choices import GuardrailEnforcement, GuardrailOutcome
from policies.guardrails.builtin import EnvironmentInfo
from policies.guardrails.engine import blocking_results, guardrails_evaluate, render_message
from policies.models import Guardrail, GuardrailOverride

ALLOW_ALL = {
    "apiVersion": "security.istio.io/v1",
    "kind": "AuthorizationPolicy",
    "metadata": {"name": "open", "namespace": "shop"},
    "spec": {"rules": [{}]},
}
PERMISSIVE = {
    "kind": "PeerAuthentication",
    "metadata": {"name": "default", "namespace": "shop"},
    "spec": {"mtls": {"mode": "PERMISSIVE"}},
}
SPLIT = {
    "kind": "VirtualService",
    "metadata": {"name": "reviews", "namespace": "bookinfo"},
    "spec": {
        "hosts": ["reviews"],
        "http": [
            {
                "timeout": "5s",
                "route": [
                    {"destination": {"host": "reviews", "subset": "v1"}, "weight": 80},
                    {"destination": {"host": "reviews", "subset": "v2"}, "weight": 10},
                ],
            }
        ],
    },
}


def by_key(results):
    return {(r.builtin_key or r.name, r.object): r for r in results}


def test_builtins_run_on_matching_kinds_only(builtins, prod):
    results = guardrails_evaluate(environment=prod, objects=[ALLOW_ALL, SPLIT])
    keys = {(r.builtin_key, r.object) for r in results}
    assert keys == {
        ("no-allow-all-authz", "AuthorizationPolicy shop/open"),
        ("weights-sum-100", "VirtualService bookinfo/reviews"),
        ("timeouts-within-bounds", "VirtualService bookinfo/reviews"),
        ("no-wildcard-hosts", "VirtualService bookinfo/reviews"),
    }
    results = by_key(results)
    allow_all = results[("no-allow-all-authz", "AuthorizationPolicy shop/open")]
    assert allow_all.outcome == GuardrailOutcome.FAILED
    assert allow_all.message == (
        "AuthorizationPolicy shop/open allows all traffic: spec.rules[0] is empty, so the "
        "ALLOW policy matches every request"
    )
    weights = results[("weights-sum-100", "VirtualService bookinfo/reviews")]
    assert not weights.passed and "add up to 90, not 100" in weights.message
    assert results[("timeouts-within-bounds", "VirtualService bookinfo/reviews")].passed


def test_production_only_guardrails_skip_other_environments(builtins, prod, staging):
    assert [r.builtin_key for r in guardrails_evaluate(environment=prod, objects=[PERMISSIVE])] == [
        "mtls-strict-production"
    ]
    assert guardrails_evaluate(environment=staging, objects=[PERMISSIVE]) == []
    # An EnvironmentInfo works too (e.g. for a target that is not a row yet).
    assert guardrails_evaluate(environment=EnvironmentInfo("x", True), objects=[PERMISSIVE])


def test_disabled_guardrails_do_not_run(builtins, prod):
    Guardrail.objects.filter(builtin_key="no-allow-all-authz").update(enabled=False)
    assert guardrails_evaluate(environment=prod, objects=[ALLOW_ALL]) == []


def test_cel_guardrails_and_their_errors(no_guardrails, prod):
    passes = Guardrail.objects.create(
        name="has hosts",
        expression="size(object.spec.hosts) > 0",
        message="no hosts",
        enforcement=GuardrailEnforcement.ADVISORY,
    )
    fails = Guardrail.objects.create(
        name="no v2",
        message="{object} in {environment} routes to {subset}",
        expression='object.spec.http.all(r, r.route.all(d, d.destination.subset != "v2"))',
        parameters={"subset": "v2"},
        enforcement=GuardrailEnforcement.SOFT_MANDATORY,
    )
    broken = Guardrail.objects.create(
        name="broken",
        expression="object.spec.nope == 1",
        message="m",
        enforcement=GuardrailEnforcement.HARD_MANDATORY,
        kinds=["VirtualService"],
    )
    results = {r.name: r for r in guardrails_evaluate(environment=prod, objects=[SPLIT])}
    assert results["has hosts"].outcome == GuardrailOutcome.PASSED and results["has hosts"].message == ""
    assert results["no v2"].outcome == GuardrailOutcome.FAILED
    assert results["no v2"].message == "VirtualService bookinfo/reviews in prod routes to v2"
    assert results["broken"].outcome == GuardrailOutcome.ERROR
    assert "no such member" in results["broken"].error
    # Hard first, then soft, then advisory.
    assert [r.name for r in guardrails_evaluate(environment=prod, objects=[SPLIT])] == ["broken", "no v2", "has hosts"]
    assert {passes.pk, fails.pk, broken.pk} == {r.guardrail_id for r in results.values()}


def test_blocking_results_respect_enforcement_and_overrides(no_guardrails, prod, admin_user):
    hard = Guardrail.objects.create(
        name="hard", expression="false", message="m", enforcement=GuardrailEnforcement.HARD_MANDATORY
    )
    soft = Guardrail.objects.create(
        name="soft", expression="false", message="m", enforcement=GuardrailEnforcement.SOFT_MANDATORY
    )
    Guardrail.objects.create(name="advice", expression="false", message="m", enforcement=GuardrailEnforcement.ADVISORY)
    Guardrail.objects.create(
        name="soft error", expression="object.x", message="m", enforcement=GuardrailEnforcement.SOFT_MANDATORY
    )
    results = guardrails_evaluate(environment=prod, objects=[SPLIT])
    assert {r.name for r in blocking_results(results)} == {"hard", "soft", "soft error"}

    override = GuardrailOverride.objects.create(
        guardrail=soft,
        subject_type="changeitem",
        subject_id="1",
        content_hash="abc",
        reason="accepted risk for the demo",
        admin=admin_user,
    )
    assert {r.name for r in blocking_results(results, overrides=[override], content_hash="abc")} == {
        "hard",
        "soft error",
    }
    # The content changed: the override is void.
    assert {r.name for r in blocking_results(results, overrides=[override], content_hash="def")} == {
        "hard",
        "soft",
        "soft error",
    }
    # Ids work too; a hard guardrail is never overridable.
    assert {r.name for r in blocking_results(results, overrides=[soft.pk, hard.pk])} == {"hard", "soft error"}


def test_render_message_only_fills_known_names():
    assert render_message("{object} {missing} {object.__class__} {{x}}", {"object": "VS a/b"}) == (
        "VS a/b {missing} {object.__class__} {{x}}"
    )


@pytest.mark.parametrize("bad", [None, "text", 3, {"kind": 5}])
def test_objects_without_a_kind_are_skipped(builtins, prod, bad):
    assert guardrails_evaluate(environment=prod, objects=[bad]) == []
