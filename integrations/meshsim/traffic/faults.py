"""Runtime fault profiles (``POST /meshsim/traffic/faults``): their spec and its validation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .spec import TrafficSpecError
from .workloads import ServiceInfo, Target, Workload


@dataclass
class TrafficFault:
    """A runtime fault on a service's version, subset, canary traffic or all of it."""

    id: int
    namespace: str
    service: str
    version: str | None
    subset: str | None
    canary: bool | None
    source: str | None
    error_rate: float
    status: int
    extra_latency_ms: float
    policy: dict[str, str] | None
    active: bool = True

    def matches(self, service: ServiceInfo, target: Target, workload: Workload, source: Workload) -> bool:
        return (
            self.active
            and (self.namespace, self.service) == service.key
            and (self.version is None or self.version == workload.version)
            and (self.subset is None or self.subset == target.subset)
            and (self.canary is None or self.canary == target.canary)
            and (self.source is None or self.source in (source.app, source.name))
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "namespace": self.namespace,
            "service": self.service,
            "version": self.version,
            "subset": self.subset,
            "canary": self.canary,
            "source": self.source,
            "error_rate": self.error_rate,
            "status": self.status,
            "extra_latency_ms": self.extra_latency_ms,
            "policy": self.policy,
            "active": self.active,
        }


def _text(spec: dict[str, Any], key: str, required: bool = False) -> str | None:
    value = spec.get(key)
    if value is None:
        if required:
            raise TrafficSpecError(f"{key} is required")
        return None
    if not isinstance(value, str) or not value:
        raise TrafficSpecError(f"{key} must be a non-empty string")
    return value


def _number(spec: dict[str, Any], key: str, low: float, high: float, default: float) -> float:
    value = spec.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high:
        raise TrafficSpecError(f"{key} must be a number between {low:g} and {high:g}")
    return float(value)


def parse_fault(spec: Any, fault_id: int) -> TrafficFault:
    if not isinstance(spec, dict):
        raise TrafficSpecError("a traffic fault must be a JSON object")
    known = {
        "service",
        "namespace",
        "version",
        "subset",
        "canary",
        "source",
        "error_rate",
        "status",
        "extra_latency_ms",
        "policy",
    }
    unknown = sorted(set(spec) - known)
    if unknown:
        raise TrafficSpecError(f"unknown fields: {', '.join(unknown)}")
    canary = spec.get("canary")
    if canary is not None and not isinstance(canary, bool):
        raise TrafficSpecError("canary must be true or false")
    if sum(spec.get(k) is not None for k in ("version", "subset", "canary")) > 1:
        raise TrafficSpecError("give at most one of version, subset and canary")
    status = spec.get("status", 503)
    if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599:
        raise TrafficSpecError("status must be an integer between 400 and 599")
    policy = spec.get("policy")
    if policy is not None:
        if not isinstance(policy, dict) or not all(
            isinstance(policy.get(k), str) and policy.get(k) for k in ("kind", "name")
        ):
            raise TrafficSpecError("policy must be an object with kind, name (and namespace)")
        policy = {k: str(v) for k, v in policy.items() if k in ("kind", "namespace", "name", "spec_sha256")}
    fault = TrafficFault(
        id=fault_id,
        namespace=_text(spec, "namespace") or "default",
        service=_text(spec, "service", required=True) or "",
        version=_text(spec, "version"),
        subset=_text(spec, "subset"),
        canary=canary,
        source=_text(spec, "source"),
        error_rate=_number(spec, "error_rate", 0, 1, 0),
        status=status,
        extra_latency_ms=_number(spec, "extra_latency_ms", 0, 3_600_000, 0),
        policy=policy,
    )
    if fault.error_rate == 0 and fault.extra_latency_ms == 0:
        raise TrafficSpecError("a traffic fault needs an error_rate, an extra_latency_ms or both")
    return fault


# the model -------------------------------------------------------------------------------------
