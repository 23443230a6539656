"""List and watch (the informer pattern) over the official client.

`run_informer` keeps a sink current with one kind of a cluster: it lists (in pages), then watches
from the list's resourceVersion with bookmarks; a watch that ends (its timeout) is resumed from the
last resourceVersion seen, and an expired one (410 Gone) starts over with a list. Lists and watch
events are read as raw JSON: no model deserialization, which is most of the cost at 10,000 objects.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from kubernetes import client as k8s
from kubernetes.watch.watch import iter_resp_lines

from integrations.kubernetes.client import ClusterConfig, _api_client, _errors
from integrations.kubernetes.exceptions import KubernetesError
from integrations.kubernetes.kinds import KINDS

PAGE_SIZE = 500
CORE_KINDS = ("Namespace", "Service", "Pod")
WATCHED_KINDS: tuple[str, ...] = (*CORE_KINDS, *KINDS)


class Gone(KubernetesError):
    """410: the resourceVersion asked for is older than the server's watch history."""


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED or BOOKMARK
    object: dict[str, Any]

    @property
    def resource_version(self) -> str:
        return str((self.object.get("metadata") or {}).get("resourceVersion") or "")


class Sink(Protocol):
    """Where an informer puts what it learns."""

    def replace(self, kind: str, items: list[dict[str, Any]], resource_version: str) -> None:
        """A full list: the kind's objects are exactly `items` as of `resource_version`."""

    def apply(self, kind: str, events: list[WatchEvent], resource_version: str) -> None:
        """Changes seen by a watch (bookmarks included: then `events` may be empty)."""


def _lister(cfg: ClusterConfig, kind: str) -> Callable[..., Any]:
    api_client = _api_client(cfg)
    core = k8s.CoreV1Api(api_client)
    match kind:
        case "Namespace":
            return core.list_namespace
        case "Service":
            return core.list_service_for_all_namespaces
        case "Pod":
            return core.list_pod_for_all_namespaces
    info = KINDS[kind]
    custom = k8s.CustomObjectsApi(api_client)

    def list_custom(**kwargs: Any) -> Any:
        return custom.list_cluster_custom_object(info.group, info.version, info.plural, **kwargs)

    return list_custom


def list_raw(cfg: ClusterConfig, kind: str, *, page_size: int = PAGE_SIZE) -> tuple[list[dict[str, Any]], str]:
    """Every object of a kind across namespaces, and the resourceVersion the list reflects."""
    lister = _lister(cfg, kind)
    items: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        options: dict[str, Any] = {"limit": page_size, "_preload_content": False}
        if token:
            options["_continue"] = token
        with _errors(cfg):
            response = lister(_request_timeout=cfg.timeout_seconds, **options)
            body = json.loads(response.data)
        items.extend(body.get("items") or [])
        meta = body.get("metadata") or {}
        token = meta.get("continue")
        if not token:
            return items, str(meta.get("resourceVersion") or "")


def watch_raw(
    cfg: ClusterConfig,
    kind: str,
    resource_version: str,
    *,
    timeout_seconds: int = 30,
) -> Iterator[WatchEvent]:
    """The events after `resource_version`, until the server ends the watch. Raises Gone on 410."""
    lister = _lister(cfg, kind)
    with _errors(cfg):
        response = lister(
            watch=True,
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=timeout_seconds,
            _preload_content=False,
            _request_timeout=(cfg.timeout_seconds, timeout_seconds + cfg.timeout_seconds),
        )
    try:
        with _errors(cfg):
            for line in iter_resp_lines(response):
                if not line.strip():
                    continue
                event = json.loads(line)
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    code = obj.get("code")
                    if code == 410:
                        raise Gone(obj.get("message") or "resource version expired", status=410)
                    raise KubernetesError(obj.get("message") or "watch failed", status=code)
                yield WatchEvent(str(event.get("type")), obj)
    finally:
        response.close()
        response.release_conn()


def run_informer(
    cfg: ClusterConfig,
    kind: str,
    sink: Sink,
    *,
    stop: threading.Event,
    resource_version: str = "",
    watch_timeout: int = 30,
    retry_seconds: float = 2.0,
    on_error: Callable[[Exception], None] | None = None,
) -> None:
    """Keep `sink` current with `kind` until `stop` is set.

    A given `resource_version` (a previous run's watermark) resumes without a list when the server
    still has the history.
    """
    version = resource_version
    while not stop.is_set():
        try:
            if not version:
                items, version = list_raw(cfg, kind)
                sink.replace(kind, items, version)
            for event in watch_raw(cfg, kind, version, timeout_seconds=watch_timeout):
                version = event.resource_version or version
                sink.apply(kind, [] if event.type == "BOOKMARK" else [event], version)
                if stop.is_set():
                    break
            else:
                sink.apply(kind, [], version)  # the watch ended on its timeout: still current
        except Gone:
            version = ""  # the history moved on: list again
        except (KubernetesError, ValueError) as exc:
            if on_error is not None:
                on_error(exc)
            stop.wait(retry_seconds)
