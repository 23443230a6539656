"""CRD schemas per environment and kind, kept in Django's cache.

The cluster is asked again at most every `recheck_seconds` (setting
`MESHGATE_CRD_SCHEMA_RECHECK_SECONDS`, default 60). When the CRD's resourceVersion is unchanged the
cached schema is kept; when it changed, the new schema replaces it. Schemas are stored under their
resourceVersion, so processes share them, and each process also keeps the ones it uses in memory
(a schema is large: unpickling it on every validation would cost more than validating).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache

DEFAULT_RECHECK_SECONDS = 60.0
SCHEMA_TIMEOUT_SECONDS = 24 * 3600
MEMORY_ENTRIES = 64
KEY_PREFIX = "meshgate:validation:crd"

Schema = dict[str, Any]


@dataclass(frozen=True)
class CrdSchema:
    resource_version: str
    schema: Schema


SchemaReader = Callable[[str], CrdSchema]
"""Reads one kind's schema from the cluster; raises the adapter's errors."""


class _Memory:
    """A small, thread-safe LRU of schemas by cache key."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[str, Schema] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Schema | None:
        with self._lock:
            schema = self._items.get(key)
            if schema is not None:
                self._items.move_to_end(key)
            return schema

    def put(self, key: str, schema: Schema) -> None:
        with self._lock:
            self._items[key] = schema
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_memory = _Memory(MEMORY_ENTRIES)


def recheck_seconds_setting() -> float:
    return float(getattr(settings, "MESHGATE_CRD_SCHEMA_RECHECK_SECONDS", DEFAULT_RECHECK_SECONDS))


class SchemaCache:
    """The schemas of one cluster (`scope`: environment id plus a digest of how it is reached)."""

    def __init__(
        self,
        *,
        scope: str,
        read: SchemaReader,
        recheck_seconds: float | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.scope = scope
        self.read = read
        self.recheck_seconds = recheck_seconds_setting() if recheck_seconds is None else recheck_seconds
        self.clock = clock

    def get(self, kind: str) -> Schema:
        """The kind's schema; reads the cluster when not cached or due for a resourceVersion check."""
        state_key = f"{KEY_PREFIX}:{self.scope}:{kind}"
        state = cache.get(state_key)
        now = self.clock()
        if state and now - state["checked_at"] < self.recheck_seconds:
            schema = self._stored(kind, state["resource_version"])
            if schema is not None:
                return schema
        fresh = self.read(kind)
        if self._stored(kind, fresh.resource_version) is None:
            self._store(kind, fresh)
        cache.set(state_key, {"resource_version": fresh.resource_version, "checked_at": now}, timeout=None)
        return self._stored(kind, fresh.resource_version) or fresh.schema

    def _schema_key(self, kind: str, resource_version: str) -> str:
        return f"{KEY_PREFIX}:{self.scope}:{kind}:{resource_version}"

    def _stored(self, kind: str, resource_version: str) -> Schema | None:
        key = self._schema_key(kind, resource_version)
        schema = _memory.get(key)
        if schema is None:
            schema = cache.get(key)
            if schema is not None:
                _memory.put(key, schema)
        return schema

    def _store(self, kind: str, fresh: CrdSchema) -> None:
        key = self._schema_key(kind, fresh.resource_version)
        cache.set(key, fresh.schema, timeout=SCHEMA_TIMEOUT_SECONDS)
        _memory.put(key, fresh.schema)


def clear_memory() -> None:
    """Forget the in-process copies (tests; Django's cache is cleared with `cache.clear()`)."""
    _memory.clear()
