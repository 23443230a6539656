"""CRD schema caching: per environment, re-checked at most every N seconds, replaced when the CRD changes.

The logic is tested with a fake schema source at the interface boundary (the adapter's reader), as
meshsim serves its CRDs read-only; the last test runs it against meshsim through the adapter.
"""

import textwrap

import pytest
from django.test import override_settings

from integrations.kubernetes import Unreachable
from policies.validation.cache import CrdSchema, SchemaCache, clear_memory
from policies.validation.parse import parse_bundle
from policies.validation.schema import check_document
from tests.factories import EnvironmentFactory
from tests.policies.validation.helpers import codes


def vs_schema(*route_fields: str) -> dict:
    """A VirtualService schema whose HTTP routes declare `route` plus `route_fields`."""
    fields = {name: {"type": "object", "x-kubernetes-preserve-unknown-fields": True} for name in route_fields}
    route = {"type": "object", "properties": {"route": {"type": "array"}, **fields}}
    http = {"type": "array", "items": route}
    return {"type": "object", "properties": {"spec": {"type": "object", "properties": {"http": http}}}}


OLD = vs_schema()
NEW = vs_schema("retries")
WITH_RETRIES = textwrap.dedent("""\
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: reviews, namespace: bookinfo}
    spec:
      http:
      - route: []
        retries: {attempts: 3}
    """).encode()


class FakeCluster:
    """Serves one CRD; `version` is its resourceVersion."""

    def __init__(self):
        self.version, self.schema, self.reads, self.error = "1", OLD, 0, None

    def read(self, kind: str) -> CrdSchema:
        self.reads += 1
        if self.error:
            raise self.error
        return CrdSchema(self.version, self.schema)

    def change(self, schema: dict) -> None:
        self.version, self.schema = str(int(self.version) + 1), schema


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def cluster():
    return FakeCluster()


@pytest.fixture
def clock():
    return Clock()


def schemas(cluster, clock, scope: str = "1:abc") -> SchemaCache:
    return SchemaCache(scope=scope, read=cluster.read, recheck_seconds=60, clock=clock)


def unknown_fields(schema: dict) -> list[str]:
    [doc], _ = parse_bundle([("vs.yaml", WITH_RETRIES)])
    return [finding.path for finding in check_document(doc, schema) if finding.code == "MG0203"]


def test_the_cluster_is_asked_once_within_the_recheck_interval(cluster, clock):
    cache = schemas(cluster, clock)
    assert cache.get("VirtualService") == OLD
    clock.now += 59
    assert schemas(cluster, clock).get("VirtualService") == OLD
    assert cluster.reads == 1


def test_a_changed_crd_is_picked_up_at_the_next_check(cluster, clock):
    cache = schemas(cluster, clock)
    assert unknown_fields(cache.get("VirtualService")) == ["spec.http[0].retries"]
    cluster.change(NEW)  # e.g. Istio upgraded on the cluster
    clock.now += 30
    assert unknown_fields(cache.get("VirtualService")) == ["spec.http[0].retries"], "not re-checked yet"
    clock.now += 31
    assert unknown_fields(cache.get("VirtualService")) == []
    assert cluster.reads == 2


def test_an_unchanged_resource_version_keeps_the_cached_schema(cluster, clock):
    cache = schemas(cluster, clock)
    first = cache.get("VirtualService")
    cluster.schema = NEW  # same resourceVersion: the cache may keep what it holds
    clock.now += 61
    assert cache.get("VirtualService") is first
    assert cluster.reads == 2


def test_schemas_are_shared_through_the_cache_framework(cluster, clock):
    schemas(cluster, clock).get("VirtualService")
    clear_memory()  # as another process would start
    assert schemas(cluster, clock).get("VirtualService") == OLD
    assert cluster.reads == 1


def test_environments_do_not_share_schemas(cluster, clock):
    other = FakeCluster()
    other.schema = NEW
    schemas(cluster, clock, scope="1:abc").get("VirtualService")
    assert schemas(other, clock, scope="2:def").get("VirtualService") == NEW


def test_a_failed_read_is_not_cached(cluster, clock):
    cluster.error = Unreachable("cannot reach the Kubernetes API")
    with pytest.raises(Unreachable):
        schemas(cluster, clock).get("VirtualService")
    cluster.error = None
    assert schemas(cluster, clock).get("VirtualService") == OLD
    assert cluster.reads == 2


@override_settings(MESHGATE_CRD_SCHEMA_RECHECK_SECONDS=5)
def test_the_interval_comes_from_the_settings(cluster, clock):
    cache = SchemaCache(scope="1:abc", read=cluster.read, clock=clock)
    cache.get("VirtualService")
    clock.now += 6
    cache.get("VirtualService")
    assert cluster.reads == 2


def test_validation_uses_the_cache_between_checks_of_the_cluster(db, meshsim):
    """While CRD reads fail, cached schemas keep serving until the next resourceVersion check."""
    from policies.validation import validate_text

    environment = EnvironmentFactory(name="staging", api_url=meshsim.url)
    text = WITH_RETRIES.decode()
    assert "MG0205" not in codes(validate_text(environment=environment, text=text))
    fault = {"match": {"method": "GET", "path_regex": "customresourcedefinitions"}, "status": 500}
    meshsim.admin("POST", "faults", json=fault).raise_for_status()
    assert "MG0205" not in codes(validate_text(environment=environment, text=text))
    with override_settings(MESHGATE_CRD_SCHEMA_RECHECK_SECONDS=0):
        assert "MG0205" in codes(validate_text(environment=environment, text=text))
