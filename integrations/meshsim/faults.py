"""Fault injection: delay and/or fail chosen API requests (``/meshsim/faults``).

A rule matches requests by HTTP ``method``, Kubernetes ``verb`` (get, list, watch, create, update,
patch, apply, delete), ``resource`` (plural), ``namespace``, ``name`` and/or ``path_regex``; it hits
``count`` of them (unlimited when absent). It delays them by ``delay_ms`` and/or answers ``status``.
With ``applied: true`` the request is carried out first and only its answer is replaced: a write
that took effect but was answered with an error, or (with a delay longer than the client's timeout)
a write that took effect after the client gave up.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

VERBS = ("get", "list", "watch", "create", "update", "patch", "apply", "delete", "deletecollection")


class FaultSpecError(ValueError):
    """A fault definition is malformed."""


@dataclass(frozen=True)
class RequestFacts:
    """What the API server knows of a request before handling it (for matching)."""

    verb: str = ""
    resource: str = ""
    namespace: str = ""
    name: str = ""


def request_facts(method: str, path: str, query: dict[str, str], content_type: str) -> RequestFacts:
    """The Kubernetes verb and object a request path addresses (``/api/v1/...``, ``/apis/g/v/...``)."""
    parts = [p for p in path.split("/") if p]
    rest = parts[2:] if parts[:1] == ["api"] else parts[3:] if parts[:1] == ["apis"] else []
    namespace = ""
    if len(rest) >= 2 and rest[0] == "namespaces" and len(rest) > 2:
        namespace, rest = rest[1], rest[2:]
    resource = rest[0] if rest else ""
    name = rest[1] if len(rest) > 1 else ""
    verb = {"POST": "create", "PUT": "update", "DELETE": "delete" if name else "deletecollection"}.get(method, "")
    if method == "GET":
        verb = "get" if name else ("watch" if query.get("watch") in ("1", "true") else "list")
    elif method == "PATCH":
        verb = "apply" if content_type == "application/apply-patch+yaml" else "patch"
    return RequestFacts(verb=verb, resource=resource, namespace=namespace, name=name)


@dataclass
class FaultRule:
    """Requests matching ``method`` and ``path_regex`` are delayed, then failed with ``status``.

    ``remaining`` is how many more requests the rule hits (None: unlimited).
    """

    id: int
    method: str | None
    path_regex: re.Pattern[str] | None
    status: int | None
    delay_ms: int
    remaining: int | None
    verb: str | None = None
    resource: str | None = None
    namespace: str | None = None
    name: str | None = None
    applied: bool = False
    hits: int = 0

    def matches(self, method: str, path: str, request: RequestFacts | None = None) -> bool:
        if self.method and self.method != method:
            return False
        facts = request or RequestFacts()
        for wanted, actual in (
            (self.verb, facts.verb),
            (self.resource, facts.resource),
            (self.namespace, facts.namespace),
            (self.name, facts.name),
        ):
            if wanted is not None and wanted != actual:
                return False
        return self.path_regex is None or bool(self.path_regex.search(path))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "match": {
                "method": self.method,
                "verb": self.verb,
                "resource": self.resource,
                "namespace": self.namespace,
                "name": self.name,
                "path_regex": self.path_regex.pattern if self.path_regex else None,
            },
            "status": self.status,
            "delay_ms": self.delay_ms,
            "applied": self.applied,
            "count": self.remaining,
            "hits": self.hits,
        }


def _optional_int(spec: dict[str, Any], key: str, low: int, high: int) -> int | None:
    value = spec.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise FaultSpecError(f"{key} must be an integer between {low} and {high}")
    return value


class FaultInjector:
    """The active fault rules; the first matching rule applies to a request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._next_id = 1

    def add(self, spec: Any) -> FaultRule:
        if not isinstance(spec, dict):
            raise FaultSpecError("a fault must be a JSON object")
        match = spec.get("match") or {}
        if not isinstance(match, dict):
            raise FaultSpecError("match must be an object")
        status = _optional_int(spec, "status", 400, 599)
        delay_ms = _optional_int(spec, "delay_ms", 0, 600_000) or 0
        if status is None and delay_ms == 0:
            raise FaultSpecError("a fault needs a status, a delay_ms or both")
        try:
            regex = re.compile(match["path_regex"]) if match.get("path_regex") else None
        except re.error as exc:
            raise FaultSpecError(f"path_regex is not a valid regular expression: {exc}") from exc
        method = match.get("method")
        verb = match.get("verb")
        if verb is not None and verb not in VERBS:
            raise FaultSpecError(f"match.verb must be one of {', '.join(VERBS)}")
        for key in ("resource", "namespace", "name"):
            if match.get(key) is not None and not isinstance(match.get(key), str):
                raise FaultSpecError(f"match.{key} must be a string")
        applied = spec.get("applied", False)
        if not isinstance(applied, bool):
            raise FaultSpecError("applied must be true or false")
        with self._lock:
            rule = FaultRule(
                id=self._next_id,
                method=str(method).upper() if method and method != "*" else None,
                path_regex=regex,
                status=status,
                delay_ms=delay_ms,
                remaining=_optional_int(spec, "count", 1, 1_000_000),
                verb=verb,
                resource=match.get("resource"),
                namespace=match.get("namespace"),
                name=match.get("name"),
                applied=applied,
            )
            self._next_id += 1
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [rule.to_dict() for rule in self._rules]

    def take(self, method: str, path: str, request: RequestFacts | None = None) -> FaultRule | None:
        """The rule hitting this request, counting the hit; None when no rule matches."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, path, request):
                    rule.hits += 1
                    if rule.remaining is not None:
                        rule.remaining -= 1
                        if rule.remaining == 0:
                            self._rules.remove(rule)
                    return rule
        return None
