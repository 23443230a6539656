"""Promotion carries the change's edit (base → new) onto the target's current revision: a three-way merge."""

from __future__ import annotations

import copy

import pytest

from policies.choices import ChangeState, DraftOperation, PolicyKind
from policies.exceptions import ApplicationError
from policies.merge import three_way
from policies.models import ChangeItem, ChangeRequest, NamespaceOwnership
from policies.normalize import content_hash, normalize_object
from policies.services.changes import change_item_update, change_submit, item_text
from policies.services.plans import plan_compute
from policies.services.promotion import change_promote
from tests.factories import EnvironmentFactory, make_policy
from tests.policies.changes.helpers import cluster_org  # noqa: F401 - fixture


def _dr(traffic_policy: dict) -> dict:
    return normalize_object(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": "reviews", "namespace": "bookinfo", "labels": {"app": "reviews"}},
            "spec": {
                "host": "reviews",
                "subsets": [{"name": f"v{n}", "labels": {"version": f"v{n}"}} for n in (1, 2, 3)],
                "trafficPolicy": traffic_policy,
            },
        }
    )


BASE = _dr({"tls": {"mode": "ISTIO_MUTUAL"}, "loadBalancer": {"simple": "ROUND_ROBIN"}})
NEW = _dr({"loadBalancer": {"simple": "LEAST_REQUEST"}})  # the change: drop tls, another balancer


def _completed_in_dev(org) -> ChangeRequest:
    dev = EnvironmentFactory(name="dev", order=1)
    NamespaceOwnership.objects.create(environment=dev, namespace="bookinfo", team=org.team_a)
    policy = make_policy(
        environment=dev, namespace="bookinfo", name="reviews", kind=PolicyKind.DESTINATION_RULE, content=BASE
    )
    change = ChangeRequest.objects.create(
        environment=dev, title="Drop tls", author=org.author, state=ChangeState.COMPLETED
    )
    ChangeItem.objects.create(
        change=change,
        kind=PolicyKind.DESTINATION_RULE,
        namespace="bookinfo",
        name="reviews",
        policy=policy,
        operation=DraftOperation.UPDATE,
        base_revision=policy.current_revision,
        content=NEW,
        content_hash=content_hash(NEW),
    )
    return change


def _target(org, traffic_policy: dict) -> None:
    make_policy(
        environment=org.env,
        namespace="bookinfo",
        name="reviews",
        kind=PolicyKind.DESTINATION_RULE,
        content=_dr(traffic_policy),
    )


def test_what_the_target_has_and_the_change_does_not_touch_is_kept(cluster_org):
    org = cluster_org
    _target(
        org,
        {
            "tls": {"mode": "ISTIO_MUTUAL"},
            "loadBalancer": {"simple": "ROUND_ROBIN"},
            "connectionPool": {"tcp": {"maxConnections": 100}},
        },
    )  # prod's own field
    promoted = change_promote(actor=org.author, change=_completed_in_dev(org))
    assert promoted.promotion_conflicts == []
    content = promoted.items.get().content
    assert content["spec"]["trafficPolicy"] == {
        "connectionPool": {"tcp": {"maxConnections": 100}},
        "loadBalancer": {"simple": "LEAST_REQUEST"},
    }
    assert promoted.state == ChangeState.IN_REVIEW


def test_a_conflicting_edit_is_reported_not_applied_and_blocks_until_resolved(cluster_org):
    org = cluster_org
    _target(org, {"tls": {"mode": "ISTIO_MUTUAL"}, "loadBalancer": {"simple": "RANDOM"}})  # prod chose RANDOM
    promoted = change_promote(actor=org.author, change=_completed_in_dev(org))
    assert promoted.promotion_conflicts == [
        {
            "identity": "DestinationRule/bookinfo/reviews",
            "item": "DestinationRule bookinfo/reviews",
            "path": "spec.trafficPolicy.loadBalancer.simple",
            "base": "ROUND_ROBIN",
            "target": "RANDOM",
            "change": "LEAST_REQUEST",
        }
    ]
    item = promoted.items.get()
    assert item.content["spec"]["trafficPolicy"] == {"loadBalancer": {"simple": "RANDOM"}}  # tls edit applied
    assert promoted.state == ChangeState.DRAFT
    with pytest.raises(ApplicationError, match="promotion conflict"):
        change_submit(actor=org.author, change=promoted)
    # the conflict is the item's MG0908 error, at the field, and it blocks the plan
    (mg0908,) = [f for f in item.findings if f["code"] == "MG0908"]
    assert mg0908["level"] == "error" and mg0908["path"] == "spec.trafficPolicy.loadBalancer.simple"
    assert "'RANDOM'" in mg0908["message"] and "'LEAST_REQUEST'" in mg0908["message"]
    assert item.error_count == 1
    plan = plan_compute(change=promoted)
    assert plan.status == "error"
    assert [f["code"] for f in plan.items.get().findings if f["level"] == "error"] == ["MG0908"]
    # the author resolves it by editing the item
    resolved = copy.deepcopy(item.content)
    resolved["spec"]["trafficPolicy"]["loadBalancer"]["simple"] = "LEAST_REQUEST"
    change_item_update(author=org.author, item=item, text=item_text(ChangeItem(content=resolved, source_text="")))
    promoted = change_submit(actor=org.author, change=ChangeRequest.objects.get(pk=promoted.pk))
    assert promoted.state == ChangeState.IN_REVIEW and promoted.promotion_conflicts == []
    assert not [f for f in promoted.items.get().findings if f["code"] == "MG0908"]
    assert not [f for f in plan_compute(change=promoted).items.get().findings if f["code"] == "MG0908"]


def test_a_per_environment_override_is_applied_on_promotion(cluster_org):
    org = cluster_org
    _target(org, {"tls": {"mode": "ISTIO_MUTUAL"}, "loadBalancer": {"simple": "ROUND_ROBIN"}})
    org.env.promotion_overrides = {
        "DestinationRule/bookinfo/reviews": {
            "spec": {"trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 7}}}}
        }
    }
    org.env.save(update_fields=["promotion_overrides"])
    promoted = change_promote(actor=org.author, change=_completed_in_dev(org))
    item = promoted.items.get()
    assert item.content["spec"]["trafficPolicy"]["connectionPool"] == {"tcp": {"maxConnections": 7}}
    assert "override applied" in item.message


def test_three_way_merge_rules():
    merged, conflicts = three_way(
        base={"a": 1, "b": {"c": 2}, "keep": 0},
        new={"a": 2, "b": {}, "keep": 0},
        target={"a": 1, "b": {"c": 3}, "keep": 5, "mine": True},
    )
    assert merged == {"a": 2, "b": {"c": 3}, "keep": 5, "mine": True}
    assert [(c.path, c.base, c.target, c.change) for c in conflicts] == [("b.c", 2, 3, None)]
