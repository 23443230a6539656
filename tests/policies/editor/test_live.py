"""policies.live: what the wizards may offer a user, read from the cluster and current revisions."""

from integrations import kubernetes as kube
from policies import live
from policies.live import Subset


def test_snapshot_of_the_users_namespaces(staging, org):
    snapshot = live.live_snapshot(user=org.author, environment=staging)
    assert snapshot.error == ""
    assert snapshot.namespaces == ["bookinfo"]
    assert [s.key for s in snapshot.services] == [
        "bookinfo/details",
        "bookinfo/productpage",
        "bookinfo/ratings",
        "bookinfo/reviews",
    ]
    reviews = snapshot.service("bookinfo/reviews")
    assert reviews.versions == ("v1", "v2", "v3")
    assert reviews.service_accounts == ("bookinfo-reviews",)
    assert [(p.number, p.name) for p in reviews.ports] == [(9080, "http")]
    assert reviews.selector_labels == {"app": "reviews"}
    assert reviews.subsets == tuple(Subset(f"v{n}", (("version", f"v{n}"),)) for n in (1, 2, 3))
    assert ("shop", "payments") in snapshot.service_accounts  # callers from anywhere in the cluster
    assert {"bookinfo", "shop", "istio-system"} <= set(snapshot.cluster_namespaces)
    assert snapshot.virtual_service_for(reviews)["metadata"]["name"] == "reviews"
    assert snapshot.destination_rule_for(reviews)["spec"]["host"] == "reviews"
    assert snapshot.virtual_service_for(snapshot.service("bookinfo/details")) is None


def test_no_namespaces_no_reads(staging, org, monkeypatch):
    monkeypatch.setattr(kube, "list_services", lambda *a, **k: (_ for _ in ()).throw(AssertionError("read")))
    snapshot = live.live_snapshot(user=org.outsider, environment=staging)
    assert (snapshot.namespaces, snapshot.services) == ([], [])


def test_the_cluster_is_read_once_per_few_seconds(staging, org, monkeypatch):
    calls = []
    real = kube.list_services
    monkeypatch.setattr(kube, "list_services", lambda cfg, **kw: calls.append(1) or real(cfg, **kw))
    live.live_snapshot(user=org.author, environment=staging)
    live.live_snapshot(user=org.approver, environment=staging)
    assert len(calls) == 1


def test_an_unreachable_cluster_gives_an_empty_inventory_and_a_message(org):
    snapshot = live.live_snapshot(user=org.author, environment=org.env)  # a closed port
    assert snapshot.services == []
    assert "did not answer" in snapshot.error


def test_hosts_name_the_same_service_in_every_spelling():
    assert live._same_host("reviews", "reviews", "bookinfo")
    assert live._same_host("reviews.bookinfo", "reviews", "bookinfo")
    assert live._same_host("reviews.bookinfo.svc.cluster.local", "reviews", "bookinfo")
    assert not live._same_host("reviews.shop.svc.cluster.local", "reviews", "bookinfo")
    assert not live._same_host("reviews.example.com", "reviews", "bookinfo")
