"""Fault injection: delay and/or fail chosen API requests (``/meshsim/faults``)."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any


class FaultSpecError(ValueError):
    """A fault definition is malformed."""


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

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method != method:
            return False
        return self.path_regex is None or bool(self.path_regex.search(path))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "match": {
                "method": self.method,
                "path_regex": self.path_regex.pattern if self.path_regex else None,
            },
            "status": self.status,
            "delay_ms": self.delay_ms,
            "count": self.remaining,
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
        with self._lock:
            rule = FaultRule(
                id=self._next_id,
                method=str(method).upper() if method and method != "*" else None,
                path_regex=regex,
                status=status,
                delay_ms=delay_ms,
                remaining=_optional_int(spec, "count", 1, 1_000_000),
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

    def take(self, method: str, path: str) -> FaultRule | None:
        """The rule hitting this request, counting the hit; None when no rule matches."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, path):
                    if rule.remaining is not None:
                        rule.remaining -= 1
                        if rule.remaining == 0:
                            self._rules.remove(rule)
                    return rule
        return None
