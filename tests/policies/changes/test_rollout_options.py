"""The author's rollout plan of a change: strict validation with field paths, who may set it, the
effective plan over the defaults, and approvals voided by a change of plan."""

import pytest
from django.core.exceptions import ValidationError

from policies.choices import ChangeAuditAction, ChangeState, DraftOperation, Role
from policies.exceptions import ConflictError, PermissionDeniedError
from policies.models import AuditEvent, ChangeItem, ChangeRequest
from policies.normalize import content_hash, normalize_object
from policies.rollout.strategies import DEFAULT_STEPS
from policies.services.reviews import review_approve
from policies.services.rollout_options import (
    change_set_rollout_options,
    rollout_options_clean,
    rollout_options_effective,
    rollout_phase_labels,
)
from policies.services.rollouts import DEFAULT_ANALYSIS
from tests.factories import MembershipFactory, UserFactory, grant_platform_admin, virtual_service
from tests.policies.changes.helpers import submitted_change

ERRORS_QUERY = 'sum(rate(app_errors_total{namespace="{namespace}", service="{service}"}[{interval}]))'


def change_with(org, *items: tuple[str, str, str, dict | None], state: str = ChangeState.DRAFT) -> ChangeRequest:
    """A change with (kind, namespace, operation, content) items, written directly (no cluster)."""
    change = ChangeRequest.objects.create(environment=org.env, title="plan", author=org.author, state=state)
    for position, (kind, namespace, operation, content) in enumerate(items):
        normalized = normalize_object(content) if content else None
        ChangeItem.objects.create(
            change=change,
            position=position,
            kind=kind,
            namespace=namespace,
            name=(content or {}).get("metadata", {}).get("name", f"x{position}"),
            operation=operation,
            content=normalized,
            content_hash=content_hash(normalized) if normalized else "",
        )
    return change


def vs_change(org, **kwargs) -> ChangeRequest:
    return change_with(
        org, ("VirtualService", "bookinfo", DraftOperation.UPDATE, virtual_service("reviews", "bookinfo")), **kwargs
    )


def authz(name: str, namespace: str = "bookinfo") -> dict:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"action": "ALLOW"},
    }


def errors_of(change, options) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as caught:
        rollout_options_clean(change=change, options=options)
    return caught.value.message_dict


# --- validation ------------------------------------------------------------------------------------------


def test_a_full_set_of_options_is_stored_in_its_canonical_form(org):
    change = vs_change(org)
    options = {
        "strategy": "canary",
        "steps": {"step_weight": 20, "max_weight": 60},
        "analysis": {
            "interval_seconds": 120,
            "intervals_per_step": 2,
            "failure_limit": 3,
            "no_data_limit": 4,
            "inconclusive_limit": 12,
            "judge": "mann-whitney",
            "window": "2m",
            "provider": "meshsim",
            "max_forbidden_rate": 0.01,
            "metrics": [
                "success_rate",
                {"kind": "latency_p99", "max": 300, "guard_max": None},
                {
                    "kind": "custom",
                    "name": "app-errors",
                    "query": ERRORS_QUERY,
                    "direction": "lower",
                    "max": 5,
                    "unit": "/s",
                },
            ],
        },
        "gates": [2, 0],
    }
    assert rollout_options_clean(change=change, options=options) == {
        "strategy": "canary",
        "steps": {"stepWeight": 20, "maxWeight": 60},
        "analysis": {
            "interval_seconds": 120,
            "intervals_per_step": 2,
            "failure_limit": 3,
            "no_data_limit": 4,
            "inconclusive_limit": 12,
            "judge": "mann-whitney",
            "window": "2m",
            "provider": "meshsim",
            "max_forbidden_rate": 0.01,
            "metrics": [
                {"kind": "success_rate"},
                {"kind": "latency_p99", "max": 300, "guard_max": None},
                {
                    "kind": "custom",
                    "name": "app-errors",
                    "query": ERRORS_QUERY,
                    "direction": "lower",
                    "max": 5,
                    "unit": "/s",
                },
            ],
        },
        "gates": [0, 2],
    }


def test_errors_name_their_field_paths(org):
    change = vs_change(org)
    errors = errors_of(
        change,
        {
            "strategy": "canary",
            "color": "blue",
            "steps": [10, 5, 100],
            "analysis": {
                "interval_seconds": 0,
                "failure_limit": "2",
                "judge": "coin",
                "window": "soon",
                "state": {},
                "metrics": [
                    {"kind": "success_rate", "min": 1.5},
                    {
                        "kind": "custom",
                        "name": "e",
                        "direction": "lower",
                        "max": 1,
                        "query": "rate(x{namespace={namespace}}[5m])",
                    },
                    {"kind": "latency_p99", "max": 200, "min": 1},
                    {"kind": "custom", "name": "f", "query": "up", "max": 1},
                    {"kind": "custom", "name": "g", "query": "up", "direction": "lower"},
                ],
            },
            "gates": [7],
        },
    )
    assert set(errors) == {
        "color",
        "steps[1]",
        "analysis.interval_seconds",
        "analysis.failure_limit",
        "analysis.judge",
        "analysis.window",
        "analysis.state",
        "analysis.metrics[0].min",
        "analysis.metrics[1].query",
        "analysis.metrics[2].min",
        "analysis.metrics[3].direction",
        "analysis.metrics[4]",
        "gates[0]",
    }
    assert errors["steps[1]"] == ["weights must increase: 5 comes after 10"]
    assert errors["analysis.interval_seconds"] == ["must be from 5 to 86400, not 0"]
    assert errors["analysis.metrics[1].query"] == [
        '{namespace} must be inside a quoted label value, e.g. "{namespace}"'
    ]
    assert errors["gates[0]"][0].startswith("phase 7 does not exist: this plan has 5 phases (0 to 4: canary 5 %,")


@pytest.mark.parametrize(
    ("steps", "path", "message"),
    [
        ([5, 10, 50], "steps[2]", "the last step must be 100 (all traffic), not 50"),
        ([0, 100], "steps[0]", "must be from 1 to 100, not 0"),
        ([10, 10.5, 100], "steps[1]", "a whole number from 1 to 100, not 10.5"),
        ([], "steps", "a list of weights ending at 100"),
        ({"maxWeight": 50}, "steps.stepWeight", "required"),
        ({"stepWeight": 30, "maxWeight": 20}, "steps.maxWeight", "must be at least stepWeight (30), not 20"),
        ({"stepWeight": 20, "top": 1}, "steps.top", "unknown"),
    ],
)
def test_steps_follow_the_engines_rules(org, steps, path, message):
    errors = errors_of(vs_change(org), {"steps": steps})
    assert errors[path][0].startswith(message)


def test_steps_only_for_a_canary_and_a_strategy_must_fit_the_kinds(org):
    change = change_with(org, ("AuthorizationPolicy", "bookinfo", DraftOperation.CREATE, authz("allow-reviews")))
    errors = errors_of(change, {"strategy": "canary", "steps": [50, 100]})
    assert errors["strategy"] == [
        ("canary shifts traffic for an update of a VirtualService or DestinationRule; this change has none")
    ]
    assert set(errors) == {"strategy"}
    # the default for an AuthorizationPolicy is dry_run: no steps
    assert errors_of(change, {"steps": [50, 100]})["steps"] == [
        "only the canary strategy uses steps; this change rolls out with dry_run"
    ]
    assert errors_of(change, {"strategy": "ramp"})["strategy"] == [
        "ramp moves a PeerAuthentication to STRICT; this change has none"
    ]
    assert errors_of(change, {"strategy": "blue-green"})["strategy"] == [
        "one of canary, dry_run, ramp, waves, direct, not 'blue-green'"
    ]
    assert rollout_options_clean(change=change, options={"strategy": "direct", "gates": [0]}) == {
        "strategy": "direct",
        "gates": [0],
    }
    assert errors_of(change, {"strategy": "direct", "gates": [1]})["gates[0]"] == [
        "phase 1 does not exist: this plan has 1 phase (0 to 0: apply)"
    ]


def test_waves_gates_count_the_namespaces(org):
    change = change_with(
        org,
        ("AuthorizationPolicy", "bookinfo", DraftOperation.CREATE, authz("a")),
        ("AuthorizationPolicy", "shop", DraftOperation.CREATE, authz("b", "shop")),
    )
    assert rollout_options_clean(change=change, options={"strategy": "waves", "gates": [1]})["gates"] == [1]
    assert "gates[0]" in errors_of(change, {"strategy": "waves", "gates": [2]})


def test_options_must_be_an_object_and_nulls_mean_the_default(org):
    change = vs_change(org)
    assert errors_of(change, ["canary"]) == {"options": ["an object with any of strategy, steps, analysis, gates"]}
    assert rollout_options_clean(change=change, options={"strategy": None, "analysis": {"judge": None}}) == {}


def test_a_custom_metric_is_checked_like_the_engine_builds_it(org):
    change = vs_change(org)
    errors = errors_of(
        change,
        {
            "analysis": {
                "metrics": [
                    {"kind": "custom", "query": ERRORS_QUERY, "direction": "lower", "max": 1},
                    {
                        "kind": "custom",
                        "name": "a",
                        "query": 'rate(x{v="{version}"}["{interval}"])',
                        "direction": "lower",
                        "max": 1,
                    },
                    {"kind": "custom", "name": "b", "query": ERRORS_QUERY, "direction": "lower", "min": 5, "max": 1},
                    {"kind": "custom", "name": "b", "query": ERRORS_QUERY, "direction": "up", "max": 1},
                    {"kind": "custom", "name": "c", "query": ERRORS_QUERY, "direction": "lower", "max": 1, "weight": 2},
                    {"kind": "success_rate"},
                    {"kind": "success_rate"},
                ]
            }
        },
    )
    assert errors["analysis.metrics[0].name"][0].startswith("required")
    assert errors["analysis.metrics[1].query"] == ["{interval} must be outside quotes, e.g. [{interval}]"]
    assert errors["analysis.metrics[2].min"] == ["min 5 is above max 1"]
    assert errors["analysis.metrics[3].direction"] == ["one of higher, lower, not 'up'"]
    assert errors["analysis.metrics[4].weight"][0].startswith("not a setting of a custom metric")
    assert errors["analysis.metrics[6].name"] == [
        ("'request-success-rate' is already the name of metrics[5]: names must differ")
    ]


# --- effective options -----------------------------------------------------------------------------------


def test_the_effective_plan_is_the_defaults_without_options(org):
    change = vs_change(org)
    assert rollout_options_effective(change) == {
        "strategy": "canary",
        "steps": DEFAULT_STEPS,
        "analysis": DEFAULT_ANALYSIS,
        "gates": [],
    }
    authz_change = change_with(org, ("AuthorizationPolicy", "bookinfo", DraftOperation.CREATE, authz("a")))
    assert rollout_options_effective(authz_change)["strategy"] == "dry_run"


def test_the_effective_plan_merges_the_options_over_the_defaults(org):
    change = vs_change(org)
    change_set_rollout_options(
        actor=org.author,
        change=change,
        options={
            "steps": {"stepWeight": 25},
            "analysis": {"failure_limit": 2, "metrics": [{"kind": "success_rate", "min": 0.995}]},
            "gates": [3],
        },
    )
    change.refresh_from_db()
    effective = rollout_options_effective(change)
    assert effective == {
        "strategy": "canary",
        "steps": [25, 50, 75, 100],
        "analysis": {**DEFAULT_ANALYSIS, "failure_limit": 2, "metrics": [{"kind": "success_rate", "min": 0.995}]},
        "gates": [3],
    }
    assert rollout_phase_labels(strategy="canary", steps=effective["steps"], items=[]) == [
        "canary 25 %",
        "canary 50 %",
        "canary 75 %",
        "promote 100 %",
    ]
    effective["analysis"]["metrics"].append({"kind": "latency_p99"})  # a copy: the stored options stay
    assert change.rollout_options["analysis"]["metrics"] == [{"kind": "success_rate", "min": 0.995}]


# --- who, when, and what it does to approvals ------------------------------------------------------------


def test_only_the_author_or_an_admin_sets_the_plan(org):
    change = vs_change(org)
    for user in (org.approver, org.other, org.outsider):
        with pytest.raises(PermissionDeniedError):
            change_set_rollout_options(actor=user, change=change, options={"strategy": "direct"})
    admin = UserFactory(username="ada")
    MembershipFactory(team=org.security, user=admin, role=Role.ADMIN)
    admin = grant_platform_admin(admin)
    change_set_rollout_options(actor=admin, change=change, options={"strategy": "direct"})
    change.refresh_from_db()
    assert change.rollout_options == {"strategy": "direct"}
    event = AuditEvent.objects.filter(action=ChangeAuditAction.CHANGE_ROLLOUT_OPTIONS_UPDATED).get()
    assert event.actor_name == "ada" and event.object_id == str(change.pk)
    assert event.before == {"rollout_options": {}} and event.after == {"rollout_options": {"strategy": "direct"}}


@pytest.mark.parametrize("state", [ChangeState.ROLLING_OUT, ChangeState.COMPLETED, ChangeState.REJECTED])
def test_the_plan_is_fixed_once_the_rollout_starts(org, state):
    change = vs_change(org, state=state)
    with pytest.raises(ConflictError, match="cannot change the rollout plan of a change that is in state"):
        change_set_rollout_options(actor=org.author, change=change, options={"strategy": "direct"})


def test_changing_the_plan_after_an_approval_voids_it_and_returns_to_review(cluster_org):
    org = cluster_org
    change = submitted_change(org)
    review = review_approve(reviewer=org.approver, change=change)
    change.refresh_from_db()
    assert change.state == ChangeState.APPROVED

    change_set_rollout_options(actor=org.author, change=change, options={"analysis": {"failure_limit": 2}})

    change.refresh_from_db()
    review.refresh_from_db()
    assert change.state == ChangeState.IN_REVIEW and change.approved_at is None
    assert review.voided_at is not None
    assert review.voided_reason == "the rollout plan was changed by alice after this approval"
    actions = list(
        AuditEvent.objects.filter(object_id=str(change.pk)).order_by("sequence").values_list("action", flat=True)
    )
    assert actions[-3:] == [
        ChangeAuditAction.CHANGE_ROLLOUT_OPTIONS_UPDATED,
        ChangeAuditAction.REVIEW_VOIDED,
        ChangeAuditAction.CHANGE_BACK_TO_REVIEW,
    ]

    # the approver approves the new plan; setting the same options again changes nothing
    review_approve(reviewer=org.approver, change=change)
    change_set_rollout_options(actor=org.author, change=change, options={"analysis": {"failure_limit": 2}})
    change.refresh_from_db()
    assert change.state == ChangeState.APPROVED
    assert AuditEvent.objects.filter(action=ChangeAuditAction.CHANGE_ROLLOUT_OPTIONS_UPDATED).count() == 1


def test_webhooks_are_checked_by_the_engines_rules(org):
    change = vs_change(org)
    hook = {"name": "load-test", "phase": "step", "url": "https://tests.example/run", "gate": True}
    cleaned = rollout_options_clean(change=change, options={"analysis": {"webhooks": [hook], "webhook_attempts": 5}})
    assert cleaned == {"analysis": {"webhooks": [hook], "webhook_attempts": 5}}
    errors = errors_of(change, {"analysis": {"webhooks": [hook, {**hook, "name": "b", "url": "ftp://x"}]}})
    assert errors == {"analysis.webhooks[1].url": ["must be an http:// or https:// URL"]}


def test_the_judges_power_knobs_are_options_checked_and_reach_the_judge(org):
    from policies.rollout.analysis import make_judge

    change = vs_change(org)
    errors = errors_of(change, {"analysis": {"judge_power_ratio": 1.0, "judge_power_wait_intervals": -1}})
    assert "analysis.judge_power_ratio" in errors and "analysis.judge_power_wait_intervals" in errors
    cleaned = rollout_options_clean(
        change=change, options={"analysis": {"judge_power_ratio": 1.5, "judge_power_wait_intervals": 0}}
    )
    judge = make_judge(cleaned["analysis"])
    assert (judge.power_ratio, judge.power_wait_intervals) == (1.5, 0)
    defaults = make_judge({})
    assert (defaults.power_ratio, defaults.power_wait_intervals) == (1.3, 20)
