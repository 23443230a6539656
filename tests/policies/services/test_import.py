"""Import from a simulated cluster over HTTP, through the kubernetes client."""

import copy

import pytest

from integrations import kubernetes as kube
from policies.choices import LiveState, RevisionSource
from policies.exceptions import ClusterError
from policies.models import AuditEvent, Policy, PolicyRevision
from policies.services.audit import audit_verify_chain
from policies.services.imports import environment_import
from tests.factories import EnvironmentFactory


@pytest.fixture
def env(db, meshsim):
    return EnvironmentFactory(name="staging", api_url=meshsim.url)


@pytest.fixture
def cfg(meshsim):
    return kube.ClusterConfig(api_url=meshsim.url)


def _live_count(cfg) -> int:
    return sum(len(kube.list_objects(cfg, kind)) for kind in kube.KINDS)


def test_import_records_every_live_object_as_a_revision(env, cfg):
    result = environment_import(environment=env)
    live = _live_count(cfg)
    assert live > 10
    assert result.seen == result.new_policies == result.new_revisions == live
    assert Policy.objects.filter(environment=env).count() == live
    reviews = Policy.objects.get(environment=env, kind="VirtualService", namespace="bookinfo", name="reviews")
    revision = reviews.current_revision
    assert (revision.number, revision.source, revision.parent) == (1, RevisionSource.IMPORT, None)
    metadata = revision.content["metadata"]
    assert (metadata["name"], metadata["namespace"]) == ("reviews", "bookinfo")
    assert set(metadata) <= {"name", "namespace", "labels", "annotations"}, "server-managed fields are dropped"
    assert reviews.live_resource_version
    assert audit_verify_chain().ok


def test_reimport_of_unchanged_objects_creates_nothing(env):
    environment_import(environment=env)
    revisions, events = PolicyRevision.objects.count(), AuditEvent.objects.count()
    again = environment_import(environment=env)
    assert (again.new_revisions, again.new_policies, again.gone) == (0, 0, 0)
    assert again.unchanged == again.seen
    assert PolicyRevision.objects.count() == revisions
    assert AuditEvent.objects.count() == events


def test_a_changed_live_object_becomes_a_new_revision_with_its_parent(env, cfg):
    environment_import(environment=env)
    live = kube.get_object(cfg, "VirtualService", "bookinfo", "reviews")
    changed = {key: copy.deepcopy(live[key]) for key in ("apiVersion", "kind", "spec")}
    changed["metadata"] = {"name": "reviews", "namespace": "bookinfo"}
    changed["spec"]["http"][0]["timeout"] = "3s"
    kube.apply_object(cfg, changed, field_manager="kubectl", force=True)

    result = environment_import(environment=env)
    assert result.new_revisions == 1
    policy = Policy.objects.get(environment=env, kind="VirtualService", name="reviews")
    current = policy.current_revision
    assert current.number == 2 and current.parent.number == 1
    assert current.content["spec"]["http"][0]["timeout"] == "3s"
    event = AuditEvent.objects.filter(action="policy.revision_created", object_id=str(policy.pk)).first()
    assert event.after["revision"] == 2 and event.before["revision"] == 1


def test_an_object_deleted_from_the_cluster_is_marked_absent(env, cfg):
    environment_import(environment=env)
    kube.delete_object(cfg, "VirtualService", "bookinfo", "reviews")
    result = environment_import(environment=env)
    assert result.gone == 1
    policy = Policy.objects.get(environment=env, kind="VirtualService", name="reviews")
    assert policy.live_state == LiveState.ABSENT
    assert policy.current_revision.number == 1  # history is kept


def test_an_unreachable_cluster_writes_nothing(db):
    env = EnvironmentFactory(name="broken", api_url="http://127.0.0.1:9")
    with pytest.raises(ClusterError, match="import from broken failed"):
        environment_import(environment=env)
    assert not Policy.objects.exists()
    assert not AuditEvent.objects.exists()


def test_an_import_in_several_chunks_records_every_object_once_with_its_audit_rows_in_order(env, cfg):
    live = _live_count(cfg)
    assert live > 3 * 3, "the seed spans more than three chunks of three"
    result = environment_import(environment=env, chunk_size=3)
    assert result.seen == result.new_policies == result.new_revisions == live
    policies = Policy.objects.filter(environment=env)
    assert policies.count() == live
    assert PolicyRevision.objects.filter(policy__environment=env).count() == live
    assert not policies.filter(current_revision__isnull=True).exists()
    by_pk = {str(p.pk): (p.kind, p.namespace, p.name) for p in policies}
    created = AuditEvent.objects.filter(action="policy.revision_created").order_by("sequence")
    assert [by_pk[e.object_id] for e in created] == sorted(by_pk.values()), "the chain holds them in import order"
    report = audit_verify_chain()
    assert report.ok and report.checked == AuditEvent.objects.count() == live + 1  # + environment.imported

    again = environment_import(environment=env, chunk_size=3)
    assert (again.new_revisions, again.new_policies, again.unchanged) == (0, 0, live)
    assert AuditEvent.objects.count() == live + 1
