"""The traffic model's vocabulary: its settings, label sets, Istio match rules and spec readers."""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from typing import Any

from ..scenarios import ResponseModel
from ..store import Obj

TICK_S = 0.25
MAX_ADVANCE_S = 3600.0
MAX_CATCH_UP_TICKS = 40
REPRESENTATIVES = 256  # latencies sampled individually per group; beyond, weighted samples
DURATION_BUCKETS_MS = (
    0.5,
    1,
    5,
    10,
    25,
    50,
    100,
    250,
    500,
    1000,
    2500,
    5000,
    10000,
    30000,
    60000,
    300000,
    600000,
    1800000,
    3600000,
)
BASE_LABELS = (
    "reporter",
    "source_workload",
    "source_canonical_service",
    "source_canonical_revision",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_service_name",
    "destination_service_namespace",
    "destination_cluster",
    "request_protocol",
    "grpc_response_status",
    "connection_security_policy",
    "destination_canary",
)
ISTIO_LABELS = (*BASE_LABELS, "response_code", "response_flags")
DRY_RUN_LABELS = (
    "namespace",
    "policy",
    "source_workload",
    "source_workload_namespace",
    "source_principal",
    "destination_workload",
    "destination_workload_namespace",
    "destination_cluster",
)
EJECTION_LABELS = (
    "destination_service_namespace",
    "destination_service_name",
    "destination_version",
    "destination_subset",
)

VIRTUAL_SERVICES = "networking.istio.io/virtualservices"
DESTINATION_RULES = "networking.istio.io/destinationrules"
AUTHORIZATION_POLICIES = "security.istio.io/authorizationpolicies"
PEER_AUTHENTICATIONS = "security.istio.io/peerauthentications"
DRY_RUN_ANNOTATION = "istio.io/dry-run"
CANARY_LABEL = "meshgate.io/canary"
CANARY_SUBSETS_ANNOTATION = "meshgate.io/canary-subsets"
UNKNOWN = "unknown"
TRUST_DOMAIN = "cluster.local"

# Latency (ms) of answers that never reach the application.
LOCAL_REPLY_MS = {"FI": 0.0, "UO": 0.2, "UF": 1.0, "NR": 0.1, "NC": 0.1, "UH": 0.1, "403": 0.8}

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_DURATION_MS = {"ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_DEPLOYMENT_POD = re.compile(r"^(?P<workload>.+)-[a-z0-9]{6,10}-[a-z0-9]{5}$")
_FORTY_BIT = 2**32 - 1  # Envoy's "unlimited" circuit breaker default


class TrafficSpecError(ValueError):
    """A traffic admin request (fault, rate, advance) is malformed."""


# sampling --------------------------------------------------------------------------------------


class Sampler:
    """Poisson, binomial and log-normal draws from one seeded ``random.Random``.

    Large counts use the normal approximation (no numpy here).
    """

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def poisson(self, lam: float) -> int:
        if lam <= 0:
            return 0
        if lam < 30:
            limit, k, product = math.exp(-lam), 0, self.rng.random()
            while product > limit:
                k += 1
                product *= self.rng.random()
            return k
        return max(0, round(self.rng.gauss(lam, math.sqrt(lam))))

    def binomial(self, n: int, p: float) -> int:
        if n <= 0 or p <= 0:
            return 0
        if p >= 1:
            return n
        if n < 64:
            return sum(1 for _ in range(n) if self.rng.random() < p)
        mean, var = n * p, n * p * (1 - p)
        if var < 9:  # skewed: exact draws are still cheap enough
            return sum(1 for _ in range(n) if self.rng.random() < p)
        return min(n, max(0, round(self.rng.gauss(mean, math.sqrt(var)))))

    def multinomial(self, n: int, weights: list[float]) -> list[int]:
        total = sum(weights)
        counts = [0] * len(weights)
        if n <= 0 or total <= 0:
            return counts
        remaining, rest = n, total
        for index, weight in enumerate(weights):
            if remaining == 0:
                break
            if index == len(weights) - 1 or rest <= weight:
                counts[index] = remaining
                break
            drawn = self.binomial(remaining, weight / rest)
            counts[index] = drawn
            remaining -= drawn
            rest -= weight
        return counts

    def lognormal(self, model: ResponseModel) -> float:
        return self.rng.lognormvariate(model.mu, model.sigma)


# small parsers ---------------------------------------------------------------------------------


def parse_duration_ms(value: Any, default: float | None = None) -> float | None:
    """Istio durations (``"1.5s"``, ``"100ms"``, ``"1m30s"``) in milliseconds."""
    if value is None or value == "":
        return default
    if isinstance(value, int | float):
        return float(value) * 1000
    text = str(value).strip()
    parts = _DURATION.findall(text)
    if not parts or "".join(f"{n}{u}" for n, u in parts) != text:
        return default
    return sum(float(n) * _DURATION_MS[u] for n, u in parts)


def _percentage(spec: dict[str, Any]) -> float:
    """A fault's probability: ``percentage.value`` (0-100), legacy ``percent``, else 100 %."""
    percentage = spec.get("percentage")
    if isinstance(percentage, dict) and isinstance(percentage.get("value"), int | float):
        return min(max(float(percentage["value"]) / 100, 0.0), 1.0)
    if isinstance(spec.get("percent"), int | float):
        return min(max(float(spec["percent"]) / 100, 0.0), 1.0)
    return 1.0


def _int_setting(spec: Any, key: str, default: int) -> int:
    value = spec.get(key) if isinstance(spec, dict) else None
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def _istio_match(pattern: Any, value: str) -> bool:
    """Istio's AuthorizationPolicy string match: exact, ``prefix*``, ``*suffix``, ``*``."""
    pattern = str(pattern)
    if pattern == "*":
        return value != ""
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1]) and value != ""
    if pattern.startswith("*"):
        return value.endswith(pattern[1:]) and value != ""
    return value == pattern


def _string_match(spec: Any, value: str) -> bool:
    """A VirtualService StringMatch (``exact``/``prefix``/``regex``)."""
    if not isinstance(spec, dict):
        return False
    if "exact" in spec:
        return value == spec["exact"]
    if "prefix" in spec:
        return value.startswith(str(spec["prefix"]))
    if "regex" in spec:
        try:
            return re.fullmatch(str(spec["regex"]), value) is not None
        except re.error:
            return False
    return True


def _labels_match(selector: Any, labels: dict[str, str]) -> bool:
    if not isinstance(selector, dict):
        return True
    return all(labels.get(str(k)) == str(v) for k, v in selector.items())


def _meta(obj: Obj) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _annotation(obj: Obj, key: str) -> str | None:
    value = (_meta(obj).get("annotations") or {}).get(key)
    return None if value is None else str(value)


def spec_sha256(obj: Obj) -> str:
    """The hash a policy-scoped fault compares with: sha256 of the canonical JSON spec."""
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata", "status")}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _is_canary_name(name: str) -> bool:
    return name == "canary" or name.endswith("-canary")


# topology --------------------------------------------------------------------------------------


def local_reply_ms(flags: str) -> float:
    """How long the sidecar takes to answer a request itself (fault, overflow, denial), by its flags."""
    return LOCAL_REPLY_MS.get(flags, 0.1)
