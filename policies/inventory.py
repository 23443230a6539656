"""Reads of the live inventory (see policies/models/inventory.py), shared by every process.

`fresh_items` answers a kind's live objects when the watcher confirmed them within
MESHGATE_INVENTORY_MAX_AGE_SECONDS, else says since when they are stale, and the caller lists the
cluster directly (and says so). Parsed snapshots are memoized per process by the watermarks'
resourceVersions: a second validation against an unchanged cluster reads one small query.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.utils import timezone

from policies.models import Environment, InventoryObject, InventoryWatermark

T = TypeVar("T")
_MEMO_SIZE = 16
_memo: dict[tuple[Any, ...], Any] = {}
_memo_lock = threading.Lock()


@dataclass(frozen=True)
class Freshness:
    """The inventory's state for some kinds of one environment."""

    watched: bool  # every kind has a watermark (the watcher ran for this environment)
    fresh: bool
    versions: tuple[tuple[str, str], ...] = ()  # (kind, resourceVersion)
    synced_at: datetime | None = None  # the oldest confirmation among the kinds

    def stale_notice(self) -> str:
        if not self.watched or self.synced_at is None:
            return "cluster state read directly: the inventory has not been synchronised"
        return f"cluster state read directly: inventory stale since {self.synced_at:%Y-%m-%d %H:%M:%S} UTC"


def freshness(environment: Environment, kinds: Iterable[str], *, max_age: float | None = None) -> Freshness:
    kinds = tuple(kinds)
    marks = {mark.kind: mark for mark in InventoryWatermark.objects.filter(environment=environment, kind__in=kinds)}
    if len(marks) < len(kinds):
        return Freshness(
            watched=bool(marks), fresh=False, synced_at=min((m.synced_at for m in marks.values()), default=None)
        )
    oldest = min(mark.synced_at for mark in marks.values())
    limit = settings.MESHGATE_INVENTORY_MAX_AGE_SECONDS if max_age is None else max_age
    return Freshness(
        watched=True,
        fresh=timezone.now() - oldest <= timedelta(seconds=limit),
        versions=tuple((kind, marks[kind].resource_version) for kind in kinds),
        synced_at=oldest,
    )


def items(environment: Environment, kind: str, *, namespace: str | None = None) -> list[dict[str, Any]]:
    """The stored (trimmed) objects of a kind, in namespace/name order."""
    rows = InventoryObject.objects.filter(environment=environment, kind=kind)
    if namespace is not None:
        rows = rows.filter(namespace=namespace)
    return list(rows.order_by("namespace", "name").values_list("content", flat=True))


def get(environment: Environment, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    return (
        InventoryObject.objects.filter(environment=environment, kind=kind, namespace=namespace, name=name)
        .values_list("content", flat=True)
        .first()
    )


def snapshot(environment: Environment, state: Freshness, key: str, build: Callable[[], T]) -> T:
    """`build()` memoized in this process for the environment at the watermarks' versions."""
    return memoized((environment.pk, key, state.versions), build)


def memoized(memo_key: tuple[Any, ...], build: Callable[[], T]) -> T:
    """`build()` memoized in this process under `memo_key` (which must change when the result would)."""
    with _memo_lock:
        if memo_key in _memo:
            return _memo[memo_key]
    value = build()
    with _memo_lock:
        if len(_memo) >= _MEMO_SIZE:
            _memo.pop(next(iter(_memo)))
        _memo[memo_key] = value
    return value
