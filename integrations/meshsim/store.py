"""Thread-safe object store with a global resourceVersion and write events.

The store knows nothing about Kubernetes semantics: it keeps JSON objects per
resource key (``group/plural``), stamps ``metadata.resourceVersion`` from a
single monotonically increasing counter (like etcd's revision) and notifies
listeners of every committed write. Listeners are the extension point for
persistence (``DebouncedSaver``) and later for a traffic model or watch.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Obj = dict[str, Any]
EventType = Literal["ADDED", "MODIFIED", "DELETED"]
STATE_FORMAT = 1
HISTORY_EVENTS = int(os.environ.get("MESHSIM_WATCH_HISTORY", "20000"))


@dataclass(frozen=True)
class Event:
    """A committed write: the resource key and the object as stored (after the write)."""

    type: EventType
    resource: str
    object: Obj
    revision: int = 0


Listener = Callable[[Event], None]


def _identity(obj: Obj) -> tuple[str, str]:
    meta = obj["metadata"]
    return (meta.get("namespace", ""), meta["name"])


class Store:
    """Objects by resource key and (namespace, name). All methods are atomic.

    Callers that read-modify-write hold ``store.lock`` (re-entrant) around the
    whole sequence so that resourceVersion preconditions hold.
    """

    def __init__(self, history: int = HISTORY_EVENTS) -> None:
        self.lock = threading.RLock()
        self._objects: dict[str, dict[tuple[str, str], Obj]] = {}
        self._revision = 0
        self._listeners: list[Listener] = []
        # The watch cache: the latest events (like etcd's compacted history). A watch from a
        # resourceVersion older than `_compacted` cannot be served: 410 Gone.
        self._history: deque[Event] = deque(maxlen=history)
        self._compacted = 0
        self.changed = threading.Condition(self.lock)

    @property
    def revision(self) -> int:
        with self.lock:
            return self._revision

    def subscribe(self, listener: Listener) -> None:
        with self.lock:
            self._listeners.append(listener)

    def get(self, resource: str, namespace: str, name: str) -> Obj | None:
        with self.lock:
            found = self._objects.get(resource, {}).get((namespace, name))
            return copy.deepcopy(found) if found is not None else None

    def list_objects(self, resource: str, namespace: str | None = None) -> list[Obj]:
        """Objects sorted by namespace and name, optionally of one namespace only."""
        with self.lock:
            objects = self._objects.get(resource, {})
            return [copy.deepcopy(objects[key]) for key in sorted(objects) if namespace is None or key[0] == namespace]

    def put(self, resource: str, obj: Obj) -> Obj:
        """Store ``obj`` with a new resourceVersion; returns the stored copy."""
        with self.lock:
            self._revision += 1
            stored = copy.deepcopy(obj)
            stored["metadata"]["resourceVersion"] = str(self._revision)
            bucket = self._objects.setdefault(resource, {})
            event: EventType = "MODIFIED" if _identity(stored) in bucket else "ADDED"
            bucket[_identity(stored)] = stored
            self._emit(Event(event, resource, stored, self._revision))
            return copy.deepcopy(stored)

    def remove(self, resource: str, namespace: str, name: str) -> Obj | None:
        with self.lock:
            removed = self._objects.get(resource, {}).pop((namespace, name), None)
            if removed is not None:
                self._revision += 1
                removed["metadata"]["resourceVersion"] = str(self._revision)
                self._emit(Event("DELETED", resource, removed, self._revision))
            return removed

    def namespaced_keys(self, namespace: str) -> list[tuple[str, str]]:
        """(resource, name) of every object in a namespace."""
        with self.lock:
            return [
                (resource, name)
                for resource, bucket in self._objects.items()
                for (ns, name) in bucket
                if ns == namespace
            ]

    def clear(self) -> None:
        """Drop every object without events: watches from before now must re-list (410 Gone)."""
        with self.lock:
            self._objects.clear()
            self._forget_history()

    def _forget_history(self) -> None:
        # a revision of its own: a watch at any earlier one (even one running now) gets 410 Gone
        self._revision += 1
        self._history.clear()
        self._compacted = self._revision

    def events_since(self, revision: int, resource: str) -> list[Event] | None:
        """The events of `resource` after `revision`, oldest first; None if compacted away."""
        with self.lock:
            if self._history.maxlen and len(self._history) == self._history.maxlen:
                self._compacted = max(self._compacted, self._history[0].revision - 1)
            if revision < self._compacted:
                return None
            if not self._history or self._history[-1].revision <= revision:
                return []
            return [copy.deepcopy(e) for e in self._history if e.revision > revision and e.resource == resource]

    def wait_for_change(self, revision: int, timeout_s: float) -> None:
        """Block until the store's revision passes `revision` or `timeout_s` pass."""
        with self.changed:
            if self._revision <= revision:
                self.changed.wait(timeout_s)

    def items(self) -> list[tuple[str, Obj]]:
        """(resource key, object) of every stored object."""
        with self.lock:
            return [
                (resource, copy.deepcopy(obj))
                for resource in sorted(self._objects)
                for _, obj in sorted(self._objects[resource].items())
            ]

    def restore(self, items: Iterable[tuple[str, Obj]], revision: int) -> None:
        """Put objects back verbatim (keeping their resourceVersions), without events."""
        with self.lock:
            for resource, obj in items:
                self._objects.setdefault(resource, {})[_identity(obj)] = copy.deepcopy(obj)
            self._revision = max(self._revision, revision)
            self._forget_history()

    def _emit(self, event: Event) -> None:
        self._history.append(event)
        self.changed.notify_all()
        for listener in self._listeners:
            listener(event)


def write_atomically(path: Path, text: str) -> None:
    """Write to a temporary file beside ``path``, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_state(path: Path, name: str, revision: int, objects: list[Obj]) -> None:
    state = {"format": STATE_FORMAT, "name": name, "resourceVersion": revision, "objects": objects}
    write_atomically(path, json.dumps(state, indent=1, sort_keys=True))


def load_state(path: Path) -> tuple[int, list[Obj]]:
    """(resourceVersion, objects) of a state file written by ``save_state``."""
    state = json.loads(path.read_text(encoding="utf-8"))
    if state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path}: unsupported meshsim state format {state.get('format')!r}")
    return int(state["resourceVersion"]), list(state["objects"])


class DebouncedSaver:
    """Calls ``save`` once, ``delay_s`` after the first of a burst of writes."""

    def __init__(self, save: Callable[[], object], delay_s: float = 0.2) -> None:
        self._save = save
        self._delay_s = delay_s
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def __call__(self, event: Event) -> None:
        with self._lock:
            if self._timer is None:
                self._timer = threading.Timer(self._delay_s, self.flush)
                self._timer.daemon = True
                self._timer.start()

    def flush(self) -> None:
        """Save now (cancelling a pending save)."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        self._save()
