"""Rollout gates: the signal a dry-run or ramp phase is judged on, besides the regular metrics.

A phase's ``check`` (see ``policies.rollout.strategies``) names its gate; ``judge_gate(check,
...)`` measures it over the window through the provider's ``counts`` (the same query on
Prometheus and on the meshsim fallback) and answers one ``MetricResult``:

- ``authz_dry_run`` (AuthorizationPolicy applied with ``istio.io/dry-run: "true"``): requests the
  policy would deny (``meshsim_authz_dry_run_denials_total`` of the policy) above
  ``max_shadow_denials`` (default 0) -> ``fail`` (the engine rolls back before enforcing), naming
  the denied callers; no request to the policy's workloads -> ``no_data`` (never a silent pass).
- ``authz_enforced``: the share of 403 answers of the policy's workloads above
  ``max_forbidden_rate`` (default 0) -> ``fail``.
- ``no_plaintext`` (PeerAuthentication still PERMISSIVE): plaintext requests to the workloads
  (``connection_security_policy="none"``) above ``max_plaintext_requests`` (default 0) ->
  ``inconclusive``: the gate holds (the engine waits, then pauses for a person after
  ``inconclusive_limit`` intervals) — never a rollback, PERMISSIVE harms nobody.
- ``strict``: plaintext requests refused under STRICT (``response_code="0"``,
  ``connection_security_policy="none"``) above ``max_refused_plaintext`` (default 0) -> ``fail``.

Every gate answers ``no_data`` when the workloads had no request at all in the window, and
``error`` when the provider fails. The workloads of a policy are read from its selector
(``app`` -> ``destination_app``, ``version`` -> ``destination_version``) in its namespace; without
a selector the whole namespace, or the whole mesh for the root namespace.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from policies.analysis.interval import MetricResult, Verdict
from policies.analysis.metrics import fmt
from policies.analysis.providers import MetricsProvider, ProviderError, ProviderUnavailable

AUTHZ_DRY_RUN = "authz_dry_run"
AUTHZ_ENFORCED = "authz_enforced"
NO_PLAINTEXT = "no_plaintext"
STRICT = "strict"
CHECKS = (AUTHZ_DRY_RUN, AUTHZ_ENFORCED, NO_PLAINTEXT, STRICT)

REQUESTS = "istio_requests_total"
DRY_RUN_DENIALS = "meshsim_authz_dry_run_denials_total"
ROOT_NAMESPACE = "istio-system"
UNKNOWN = "unknown"
SOURCES_SHOWN = 5

SHADOW_DENIALS = "authz-dry-run-denials"
FORBIDDEN_RATE = "authz-403-rate"
PLAINTEXT_REQUESTS = "plaintext-requests"
REFUSED_PLAINTEXT = "plaintext-refused"

# the rollout's analysis config keys of the thresholds, and their defaults
LIMITS = {
    AUTHZ_DRY_RUN: ("max_shadow_denials", 0.0),
    AUTHZ_ENFORCED: ("max_forbidden_rate", 0.0),
    NO_PLAINTEXT: ("max_plaintext_requests", 0.0),
    STRICT: ("max_refused_plaintext", 0.0),
}
_SOURCE = ("source_workload_namespace", "source_workload")


@dataclass(frozen=True)
class Subject:
    """A policy a gate watches: kind, namespace, name and its ``selector.matchLabels``."""

    kind: str
    namespace: str
    name: str
    selector: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Subject:
        return cls(
            str(data.get("kind") or ""),
            str(data["namespace"]),
            str(data.get("name") or ""),
            {str(k): str(v) for k, v in (data.get("selector") or {}).items()},
        )

    def workload_labels(self) -> dict[str, str]:
        """The ``istio_requests_total`` labels of the requests to the workloads it selects."""
        labels = {"reporter": "destination"}
        if self.namespace != ROOT_NAMESPACE:
            labels["destination_workload_namespace"] = self.namespace
        if "app" in self.selector:
            labels["destination_app"] = self.selector["app"]
        if "version" in self.selector:
            labels["destination_version"] = self.selector["version"]
        return labels

    def policy_labels(self) -> dict[str, str]:
        """The labels of its shadow denials (any dry-run policy of the namespace without a name)."""
        return {"namespace": self.namespace, **({"policy": self.name} if self.name else {})}

    def __str__(self) -> str:
        what = f"{self.namespace}/{self.name}" if self.name else f"the policies of {self.namespace}"
        return f"{self.kind} {what}".strip()


def subjects_of(
    phase_subjects: Iterable[Mapping[str, Any]] | None, workloads: Iterable[Mapping[str, str]]
) -> list[Subject]:
    """The phase's subjects; for phases stored without them, its workloads (by ``app``)."""
    found = [Subject.from_dict(s) for s in phase_subjects or []]
    if not found:
        found = [Subject("", w["namespace"], "", {"app": w["service"]}) for w in workloads]
    return found


def limit(check: str, config: Mapping[str, Any]) -> float:
    key, default = LIMITS[check]
    value = config.get(key)
    return default if value is None or value == "" else float(value)


def judge_gate(
    check: str,
    *,
    provider: MetricsProvider,
    subjects: Sequence[Subject],
    window: str,
    config: Mapping[str, Any] | None = None,
) -> MetricResult:
    """The gate ``check`` of the phase over ``window``; ``config`` holds the limits (``LIMITS``)."""
    if check not in CHECKS:
        raise ValueError(f"unknown gate {check!r}")
    gate = _GATES[check]
    maximum = limit(check, config or {})
    if not subjects:
        result = MetricResult(
            gate.name, Verdict.NO_DATA, f"{gate.name}: no policy to watch", threshold=f"<= {fmt(maximum)}"
        )
    else:
        try:
            result = gate.judge(provider, subjects, window, maximum)
        except ProviderError as exc:
            kind = "unavailable" if isinstance(exc, ProviderUnavailable) else "query error"
            result = MetricResult(
                gate.name,
                Verdict.ERROR,
                f"{gate.name}: metrics provider {kind}: {exc}",
                threshold=f"<= {fmt(maximum)}",
                detail={"error": str(exc), "kind": kind},
            )
    return replace(result, threshold_max=maximum)  # every gate is a maximum


# measuring -----------------------------------------------------------------------------------


def _scopes(subjects: Sequence[Subject]) -> list[dict[str, str]]:
    """Distinct workload selections (two policies on the same workloads count them once)."""
    found: list[dict[str, str]] = []
    for subject in subjects:
        labels = subject.workload_labels()
        if labels not in found:
            found.append(labels)
    return found


def _requests(
    provider: MetricsProvider,
    subjects: Sequence[Subject],
    window: str,
    by: Sequence[str],
    **extra: str,
) -> dict[tuple[str, ...], float]:
    total: dict[tuple[str, ...], float] = {}
    for labels in _scopes(subjects):
        found = provider.counts(REQUESTS, {**labels, **extra}, by=by, window=window)
        for key, value in found.items():
            total[key] = total.get(key, 0.0) + value
    return total


def _traffic(provider: MetricsProvider, subjects: Sequence[Subject], window: str) -> float:
    return sum(_requests(provider, subjects, window, ()).values())


def count(value: float) -> str:
    """A count as a person reads it (Prometheus extrapolates ``increase``: 119.6 -> 120)."""
    return f"{value:.0f}" if value >= 1 else fmt(value)


def source_name(namespace: str, workload: str, principal: str = "") -> str:
    if workload in ("", UNKNOWN) and namespace in ("", UNKNOWN):
        who = "callers without a sidecar (source unknown)"
    else:
        who = f"{namespace}/{workload}"
    return f"{who} as {principal}" if principal not in ("", UNKNOWN) else who


def sources(counts: Mapping[tuple[str, ...], float]) -> str:
    """``bookinfo/reviews-v2 (120), bookinfo/reviews-v3 (80)``: the biggest first."""
    ordered = sorted(((v, k) for k, v in counts.items() if v > 0), key=lambda p: (-p[0], p[1]))
    shown = [f"{source_name(*key)} ({count(value)})" for value, key in ordered[:SOURCES_SHOWN]]
    if len(ordered) > SOURCES_SHOWN:
        shown.append(f"{len(ordered) - SOURCES_SHOWN} more")
    return ", ".join(shown)


def _names(subjects: Sequence[Subject]) -> str:
    return ", ".join(str(s) for s in subjects)


def _workloads(subjects: Sequence[Subject]) -> str:
    parts = []
    for subject in subjects:
        where = "the mesh" if subject.namespace == ROOT_NAMESPACE else subject.namespace
        app = subject.selector.get("app")
        parts.append(f"{where}/{app}" if app else f"every workload of {where}")
    return ", ".join(dict.fromkeys(parts))


def _no_traffic(name: str, subjects: Sequence[Subject], window: str, maximum: float, what: str) -> MetricResult:
    return MetricResult(
        name,
        Verdict.NO_DATA,
        f"{name}: no requests to {_workloads(subjects)} in the last {window}: nothing shows {what}",
        threshold=f"<= {fmt(maximum)}",
    )


# the gates -----------------------------------------------------------------------------------


def _shadow_denials(
    provider: MetricsProvider, subjects: Sequence[Subject], window: str, maximum: float
) -> MetricResult:
    by = (*_SOURCE, "source_principal")
    denied: dict[tuple[str, ...], float] = {}
    for subject in subjects:
        found = provider.counts(DRY_RUN_DENIALS, subject.policy_labels(), by=by, window=window)
        for key, value in found.items():
            denied[key] = denied.get(key, 0.0) + value
    total = sum(denied.values())
    threshold = f"<= {fmt(maximum)}"
    detail = {"denied": {"/".join(k): v for k, v in denied.items() if v > 0}}
    if total > maximum:
        return MetricResult(
            SHADOW_DENIALS,
            Verdict.FAIL,
            f"{DRY_RUN_DENIALS}: {count(total)} requests in the last {window} that the dry-run "
            f"{_names(subjects)} would deny (max {fmt(maximum)}), from {sources(denied)}",
            total,
            threshold=threshold,
            detail=detail,
        )
    traffic = _traffic(provider, subjects, window)
    if traffic <= 0:
        return _no_traffic(SHADOW_DENIALS, subjects, window, maximum, "whether the policy would deny a caller")
    return MetricResult(
        SHADOW_DENIALS,
        Verdict.PASS,
        f"{SHADOW_DENIALS}: {count(total)} shadow denials by {_names(subjects)} over "
        f"{count(traffic)} requests in the last {window} (max {fmt(maximum)})",
        total,
        threshold=threshold,
        detail={**detail, "requests": traffic},
    )


def _forbidden_rate(
    provider: MetricsProvider, subjects: Sequence[Subject], window: str, maximum: float
) -> MetricResult:
    found = _requests(provider, subjects, window, ("response_code", *_SOURCE))
    total = sum(found.values())
    threshold = f"<= {fmt(maximum)}"
    if total <= 0:
        return _no_traffic(FORBIDDEN_RATE, subjects, window, maximum, "whether the enforced policy denies a caller")
    forbidden = {key[1:]: v for key, v in found.items() if key[0] == "403" and v > 0}
    denied = sum(forbidden.values())
    rate = denied / total
    detail = {"forbidden": denied, "requests": total}
    of = f"{count(denied)} of {count(total)} requests to {_workloads(subjects)}"
    what, passed = f"{of} in the last {window}", f"{of} answered 403 in the last {window}"
    if rate > maximum:
        return MetricResult(
            FORBIDDEN_RATE,
            Verdict.FAIL,
            f'{FORBIDDEN_RATE} {fmt(rate)} > {fmt(maximum)}: {REQUESTS}{{response_code="403"}} '
            f"{what} under {_names(subjects)}, from {sources(forbidden)}",
            rate,
            threshold=threshold,
            detail=detail,
        )
    return MetricResult(
        FORBIDDEN_RATE,
        Verdict.PASS,
        f"{FORBIDDEN_RATE} {fmt(rate)}: {passed}",
        rate,
        threshold=threshold,
        detail=detail,
    )


def _plaintext(provider: MetricsProvider, subjects: Sequence[Subject], window: str, maximum: float) -> MetricResult:
    found = _requests(provider, subjects, window, ("connection_security_policy", *_SOURCE))
    total = sum(found.values())
    threshold = f"<= {fmt(maximum)}"
    if total <= 0:
        return _no_traffic(PLAINTEXT_REQUESTS, subjects, window, maximum, "whether plaintext callers are left")
    plain = {key[1:]: v for key, v in found.items() if key[0] == "none" and v > 0}
    plaintext = sum(plain.values())
    detail = {"plaintext": plaintext, "requests": total}
    if plaintext > maximum:
        return MetricResult(
            PLAINTEXT_REQUESTS,
            Verdict.INCONCLUSIVE,
            f"{count(plaintext)} plaintext requests from {sources(plain)} in the last {window}; "
            f'STRICT would break them ({REQUESTS}{{connection_security_policy="none"}} to '
            f"{_workloads(subjects)}, max {fmt(maximum)})",
            plaintext,
            threshold=threshold,
            detail=detail,
        )
    return MetricResult(
        PLAINTEXT_REQUESTS,
        Verdict.PASS,
        f"{PLAINTEXT_REQUESTS}: {count(plaintext)} of {count(total)} requests to "
        f"{_workloads(subjects)} in plaintext in the last {window}",
        plaintext,
        threshold=threshold,
        detail=detail,
    )


def _refused_plaintext(
    provider: MetricsProvider, subjects: Sequence[Subject], window: str, maximum: float
) -> MetricResult:
    found = _requests(provider, subjects, window, ("response_code", "connection_security_policy", *_SOURCE))
    total = sum(found.values())
    threshold = f"<= {fmt(maximum)}"
    if total <= 0:
        return _no_traffic(REFUSED_PLAINTEXT, subjects, window, maximum, "whether STRICT refuses a caller")
    refused = {key[2:]: v for key, v in found.items() if key[:2] == ("0", "none") and v > 0}
    failures = sum(refused.values())
    detail = {"refused": failures, "requests": total}
    if failures > maximum:
        return MetricResult(
            REFUSED_PLAINTEXT,
            Verdict.FAIL,
            f'{REQUESTS}{{response_code="0",connection_security_policy="none"}}: {count(failures)} '
            f"plaintext requests from {sources(refused)} refused under STRICT by "
            f"{_names(subjects)} in the last {window} (max {fmt(maximum)})",
            failures,
            threshold=threshold,
            detail=detail,
        )
    return MetricResult(
        REFUSED_PLAINTEXT,
        Verdict.PASS,
        f"{REFUSED_PLAINTEXT}: {count(failures)} of {count(total)} requests to "
        f"{_workloads(subjects)} refused in the last {window}",
        failures,
        threshold=threshold,
        detail=detail,
    )


@dataclass(frozen=True)
class _Gate:
    name: str
    judge: Any


_GATES = {
    AUTHZ_DRY_RUN: _Gate(SHADOW_DENIALS, _shadow_denials),
    AUTHZ_ENFORCED: _Gate(FORBIDDEN_RATE, _forbidden_rate),
    NO_PLAINTEXT: _Gate(PLAINTEXT_REQUESTS, _plaintext),
    STRICT: _Gate(REFUSED_PLAINTEXT, _refused_plaintext),
}

__all__ = [
    "AUTHZ_DRY_RUN",
    "AUTHZ_ENFORCED",
    "CHECKS",
    "LIMITS",
    "NO_PLAINTEXT",
    "STRICT",
    "Subject",
    "judge_gate",
    "subjects_of",
]
