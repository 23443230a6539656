"""List and watch against meshsim over HTTP, through the official client."""

from __future__ import annotations

import copy
import threading
from typing import Any

import pytest

from integrations import kubernetes as kube
from integrations.kubernetes.watch import Gone, WatchEvent, list_raw, run_informer, watch_raw

RATINGS = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "DestinationRule",
    "metadata": {"name": "ratings-watch", "namespace": "bookinfo"},
    "spec": {"host": "ratings", "subsets": [{"name": "v1", "labels": {"version": "v1"}}]},
}


@pytest.fixture
def cfg(meshsim):
    return kube.ClusterConfig(api_url=meshsim.url, timeout_seconds=5)


def test_list_pages_through_every_object_and_gives_the_resource_version(cfg):
    pods, version = list_raw(cfg, "Pod", page_size=2)
    assert len(pods) > 2 and int(version) > 0
    assert len({(p["metadata"]["namespace"], p["metadata"]["name"]) for p in pods}) == len(pods)
    assert pods == list_raw(cfg, "Pod")[0]


def test_watch_from_a_list_sees_added_modified_deleted_and_bookmarks(cfg):
    _, version = list_raw(cfg, "DestinationRule")
    kube.apply_object(cfg, RATINGS)
    changed = copy.deepcopy(RATINGS)
    changed["spec"]["subsets"].append({"name": "v2", "labels": {"version": "v2"}})
    kube.apply_object(cfg, changed)
    kube.delete_object(cfg, "DestinationRule", "bookinfo", "ratings-watch")
    events = list(watch_raw(cfg, "DestinationRule", version, timeout_seconds=2))
    changes = [(e.type, e.object["metadata"]["name"]) for e in events if e.type != "BOOKMARK"]
    assert changes == [("ADDED", "ratings-watch"), ("MODIFIED", "ratings-watch"), ("DELETED", "ratings-watch")]
    assert [len(e.object["spec"]["subsets"]) for e in events[:2]] == [1, 2]
    versions = [int(e.resource_version) for e in events]
    assert versions == sorted(versions) and versions[0] > int(version)
    assert events[-1].type == "BOOKMARK", "an idle watch that asked for bookmarks gets them"


def test_an_expired_resource_version_is_410_gone(cfg, meshsim):
    _, version = list_raw(cfg, "VirtualService")
    kube.apply_object(cfg, {**RATINGS, "kind": "DestinationRule"})
    meshsim.reset()  # the history is gone with the objects
    with pytest.raises(Gone) as caught:
        list(watch_raw(cfg, "VirtualService", version, timeout_seconds=2))
    assert caught.value.status == 410 and "too old resource version" in caught.value.message


class Recorder:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.lists = 0
        self.bookmarks = 0  # calls without a change: a bookmark moved the version
        self.version = ""
        self.changed = threading.Condition()

    def replace(self, kind: str, items: list[dict[str, Any]], resource_version: str) -> None:
        with self.changed:
            self.lists += 1
            self.objects = {(i["metadata"]["namespace"], i["metadata"]["name"]): i for i in items}
            self.version = resource_version
            self.changed.notify_all()

    def apply(self, kind: str, events: list[WatchEvent], resource_version: str) -> None:
        with self.changed:
            self.bookmarks += not events
            for event in events:
                key = (event.object["metadata"]["namespace"], event.object["metadata"]["name"])
                if event.type == "DELETED":
                    self.objects.pop(key, None)
                else:
                    self.objects[key] = event.object
            self.version = resource_version
            self.changed.notify_all()

    def wait(self, predicate: Any, timeout: float = 60) -> None:
        with self.changed:
            assert self.changed.wait_for(predicate, timeout), f"not reached; have {sorted(self.objects)}"


def test_the_informer_follows_changes_and_lists_again_after_410(cfg, meshsim):
    sink, stop = Recorder(), threading.Event()
    thread = threading.Thread(
        target=run_informer,
        args=(cfg, "DestinationRule", sink),
        kwargs={"stop": stop, "watch_timeout": 2, "retry_seconds": 0.2},
    )
    thread.start()
    try:
        sink.wait(lambda: sink.lists == 1)
        seeded = set(sink.objects)
        kube.apply_object(cfg, RATINGS)
        sink.wait(lambda: ("bookinfo", "ratings-watch") in sink.objects)
        assert sink.lists == 1, "a change arrives by the watch, not a new list"
        meshsim.reset()  # the seed again, without ratings-watch, and a history the watch cannot resume
        sink.wait(lambda: sink.lists == 2)
        assert set(sink.objects) == seeded
        before, bookmarks = sink.version, sink.bookmarks
        sink.wait(lambda: sink.bookmarks > bookmarks)
        assert int(sink.version) >= int(before), "bookmarks keep the version moving"
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
