"""The drift sweep reading the live inventory (as the watcher keeps it): hashes compared in one query,
no cluster call while the inventory is fresh; the cluster's lists once it is stale."""

import pytest

from integrations import kubernetes as kube
from integrations.kubernetes.watch import WATCHED_KINDS, list_raw
from policies.choices import DraftOperation, RolloutState
from policies.cluster import cluster_config
from policies.models import AuditEvent, InventoryObject, PolicyDrift
from policies.normalize import normalize_object
from policies.services.drift import drift_detect
from policies.services.inventory import inventory_replace
from policies.services.rollouts import rollout_start
from tests.policies.drift.conftest import edit_out_of_band
from tests.policies.rollouts.helpers import REVIEWS_TO_V3, drive, passing, scheduled_change

pytestmark = pytest.mark.django_db

UNREACHABLE = "http://127.0.0.1:9"


def _sync_inventory(env) -> None:
    """What the watcher's list does: every kind's objects into the inventory, with its watermark."""
    cfg = cluster_config(env)
    for kind in WATCHED_KINDS:
        items, version = list_raw(cfg, kind)
        inventory_replace(env.pk, kind, items, version)


def _cut_off(env) -> None:
    """The cluster cannot be reached any more: only the inventory can answer."""
    env.api_url = UNREACHABLE
    env.save(update_fields=["api_url"])


@pytest.fixture
def rolled_out(ro):
    change = scheduled_change(ro, [(DraftOperation.UPDATE, REVIEWS_TO_V3)], title="reviews to v3")
    rollout = drive(rollout_start(change=change, analysis={"interval_seconds": 1}), passing)
    assert rollout.state == RolloutState.COMPLETED
    return ro


def test_drift_is_found_in_the_fresh_inventory_without_a_cluster_call(rolled_out):
    env = rolled_out.env
    _sync_inventory(env)
    api_url = env.api_url
    _cut_off(env)
    assert drift_detect(environment=env) == {
        "checked": 1,
        "drifted": 0,
        "new": 0,
        "resolved": 0,
        "errors": 0,
        "skipped": 0,
    }

    env.api_url = api_url
    env.save(update_fields=["api_url"])
    edited = edit_out_of_band(env, timeout="4s")
    _sync_inventory(env)
    _cut_off(env)
    counts = drift_detect(environment=env)
    assert (counts["checked"], counts["drifted"], counts["new"], counts["errors"]) == (1, 1, 1, 0)
    drift = PolicyDrift.objects.get()
    assert drift.live_content["spec"]["http"][0]["timeout"] == "4s"
    assert drift.live_resource_version == edited["metadata"]["resourceVersion"]
    assert drift_detect(environment=env)["new"] == 0, "notified once"
    assert AuditEvent.objects.filter(action="policy.drift_detected").count() == 1

    env.api_url = api_url
    env.save(update_fields=["api_url"])
    kube.apply_object(cluster_config(env), normalize_object(REVIEWS_TO_V3), field_manager="kubectl-edit", force=True)
    _sync_inventory(env)
    _cut_off(env)
    assert drift_detect(environment=env)["resolved"] == 1
    assert not PolicyDrift.objects.exists()


def test_inventory_rows_stored_before_their_hash_are_hashed_from_their_content(rolled_out):
    env = rolled_out.env
    edit_out_of_band(env, timeout="5s")
    _sync_inventory(env)
    InventoryObject.objects.filter(environment=env).update(content_hash="")
    _cut_off(env)
    counts = drift_detect(environment=env)
    assert (counts["drifted"], counts["new"], counts["errors"]) == (1, 1, 0)
    assert PolicyDrift.objects.get().live_content["spec"]["http"][0]["timeout"] == "5s"


def test_a_stale_inventory_is_not_trusted_the_cluster_is_listed(rolled_out, settings):
    env = rolled_out.env
    _sync_inventory(env)
    settings.MESHGATE_INVENTORY_MAX_AGE_SECONDS = 0
    edit_out_of_band(env, timeout="6s")  # after the inventory's last sync: only the cluster knows
    counts = drift_detect(environment=env)
    assert (counts["drifted"], counts["new"], counts["errors"]) == (1, 1, 0)
    assert PolicyDrift.objects.get().live_content["spec"]["http"][0]["timeout"] == "6s"
    PolicyDrift.objects.all().delete()
    _cut_off(env)
    assert drift_detect(environment=env)["errors"] == 1, "the stale inventory is not read: the list fails"
