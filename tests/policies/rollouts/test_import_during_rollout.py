"""Re-importing the cluster while a rollout is half-way: the canary objects it is writing are not
recorded as revisions (nor marked absent); the import says it left them to the rollout."""

from policies.choices import DraftOperation, RolloutState
from policies.models import Policy, PolicyRevision
from policies.services.imports import environment_import
from policies.services.rollouts import rollout_start
from tests.policies.rollouts.helpers import (
    REVIEWS_TO_V3,
    drive,
    live,
    passing,
    scheduled_change,
)

REVIEWS = "VirtualService/bookinfo/reviews"


def test_import_leaves_the_objects_of_an_active_rollout_alone(ro):
    reviews = Policy.objects.get(environment=ro.env, kind="VirtualService", namespace="bookinfo", name="reviews")
    before = reviews.current_revision
    change = scheduled_change(ro, [(DraftOperation.UPDATE, REVIEWS_TO_V3)])
    rollout = drive(
        rollout_start(change=change, steps=[10, 50, 100], analysis={"interval_seconds": 60}),
        passing,
        until=lambda r: r.current_weight == 10 and r.step_stage == "analyze",
    )
    assert rollout.state == RolloutState.RUNNING and REVIEWS in rollout.observed
    routes = live(ro.env, "VirtualService", "bookinfo", "reviews")["spec"]["http"][0]["route"]
    assert 10 in [route.get("weight") for route in routes]  # half-way: 10 % to the canary
    revisions = PolicyRevision.objects.count()

    result = environment_import(environment=ro.env)

    assert result.in_rollout == [REVIEWS]
    assert result.new_revisions == 0 and PolicyRevision.objects.count() == revisions
    reviews.refresh_from_db()
    assert reviews.current_revision == before

    done = drive(rollout, passing)
    assert done.state == RolloutState.COMPLETED
    assert environment_import(environment=ro.env).in_rollout == []
