"""The built-in guardrails: Python checks configured by a `Guardrail` row with the same key.

A check takes the object, the environment and the row's parameters and returns its violations
(empty = passes), each a short sentence naming the field, which the row's message shows as {details}.
The defaults here are what the data migration and `guardrails_seed_builtins` create.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from policies.choices import GuardrailEnforcement, PolicyKind


@dataclass(frozen=True)
class EnvironmentInfo:
    """What a guardrail knows of the target environment."""

    name: str
    production: bool


Check = Callable[[dict[str, Any], EnvironmentInfo, dict[str, Any]], list[str]]


@dataclass(frozen=True)
class Builtin:
    key: str
    name: str
    description: str
    enforcement: GuardrailEnforcement
    message: str
    check: Check
    kinds: tuple[str, ...] = ()
    production_only: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)


def _spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


# --- no-allow-all-authz ---------------------------------------------------------------------------


def _is_match_all(rule: Any) -> bool:
    """A rule with no (or only empty) from / to / when matches every request."""
    if not isinstance(rule, dict):
        return False
    return not any(rule.get(part) for part in ("from", "to", "when"))


def check_no_allow_all_authz(
    obj: dict[str, Any], environment: EnvironmentInfo, parameters: dict[str, Any]
) -> list[str]:
    """ALLOW with a rule that matches everything (`rules: [{}]`) allows all traffic. An ALLOW policy
    without rules is the opposite (it denies everything) and passes here."""
    spec = _spec(obj)
    if spec.get("action", "ALLOW") != "ALLOW":
        return []
    return [
        f"spec.rules[{index}] is empty, so the ALLOW policy matches every request"
        for index, rule in enumerate(_list(spec.get("rules")))
        if _is_match_all(rule)
    ]


# --- mtls-strict-production -----------------------------------------------------------------------


def check_mtls_strict(obj: dict[str, Any], environment: EnvironmentInfo, parameters: dict[str, Any]) -> list[str]:
    spec = _spec(obj)
    violations = []
    mtls = found if isinstance(found := spec.get("mtls"), dict) else {}
    mode = mtls.get("mode") or "UNSET"
    if mode != "STRICT":
        violations.append(f"spec.mtls.mode is {mode}, not STRICT")
    port_level = found if isinstance(found := spec.get("portLevelMtls"), dict) else {}
    for port, setting in sorted(port_level.items(), key=lambda item: str(item[0])):
        port_mode = (setting or {}).get("mode") if isinstance(setting, dict) else None
        if (port_mode or "UNSET") != "STRICT":
            violations.append(f"spec.portLevelMtls[{port}].mode is {port_mode or 'UNSET'}, not STRICT")
    return violations


# --- timeouts-within-bounds -----------------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any) -> float | None:
    """Seconds of a protobuf / Go duration such as "1.5s", "300ms" or "1m30s"; None if unreadable."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    position, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    return total if position == len(text) and position > 0 else None


def _seconds(value: float) -> str:
    return f"{value:g}s"


def check_timeouts(obj: dict[str, Any], environment: EnvironmentInfo, parameters: dict[str, Any]) -> list[str]:
    max_timeout = float(parameters.get("max_timeout_seconds", 60))
    max_retries = int(parameters.get("max_retries", 5))
    violations = []
    for index, route in enumerate(_list(_spec(obj).get("http"))):
        if not isinstance(route, dict):
            continue
        where = f"spec.http[{index}]"
        timeout = parse_duration(route.get("timeout"))
        if route.get("timeout") is not None and timeout is None:
            violations.append(f"{where}.timeout {route.get('timeout')!r} is not a duration")
        elif timeout is not None and timeout > max_timeout:
            violations.append(f"{where}.timeout is {_seconds(timeout)}, more than {_seconds(max_timeout)}")
        retries = found if isinstance(found := route.get("retries"), dict) else {}
        attempts = retries.get("attempts")
        if isinstance(attempts, int) and attempts > max_retries:
            violations.append(f"{where}.retries.attempts is {attempts}, more than {max_retries}")
        per_try = parse_duration(retries.get("perTryTimeout"))
        if timeout and per_try is not None and isinstance(attempts, int) and attempts > 0:
            if per_try * attempts > timeout:
                violations.append(
                    f"{where}.retries: {attempts} attempts × perTryTimeout {_seconds(per_try)} = "
                    f"{_seconds(per_try * attempts)}, longer than the route timeout {_seconds(timeout)}"
                )
    return violations


# --- no-wildcard-hosts ----------------------------------------------------------------------------


def _is_wildcard(host: Any) -> bool:
    return isinstance(host, str) and (host == "*" or host.startswith("*."))


def check_no_wildcard_hosts(obj: dict[str, Any], environment: EnvironmentInfo, parameters: dict[str, Any]) -> list[str]:
    """Wildcard hosts belong on Gateways and on VirtualServices bound only to gateways; in the mesh
    they capture traffic for every matching service."""
    spec = _spec(obj)
    kind = obj.get("kind")
    if kind == PolicyKind.VIRTUAL_SERVICE:
        gateways = [g for g in _list(spec.get("gateways")) if isinstance(g, str)]
        if gateways and "mesh" not in gateways:
            return []  # bound to gateways only
        hosts = _list(spec.get("hosts"))
        return [
            f"spec.hosts[{i}] is {h!r}, a wildcard applied inside the mesh"
            for i, h in enumerate(hosts)
            if _is_wildcard(h)
        ]
    if kind == PolicyKind.DESTINATION_RULE:
        host = spec.get("host")
        return [f"spec.host is {host!r}, a wildcard"] if _is_wildcard(host) else []
    if kind == PolicyKind.SERVICE_ENTRY:
        hosts = _list(spec.get("hosts"))
        return [f"spec.hosts[{i}] is {h!r}, a wildcard" for i, h in enumerate(hosts) if _is_wildcard(h)]
    return []


# --- weights-sum-100 ------------------------------------------------------------------------------


def check_weights_sum_100(obj: dict[str, Any], environment: EnvironmentInfo, parameters: dict[str, Any]) -> list[str]:
    """Every http / tcp / tls route with more than one destination splits exactly 100 % (a missing
    weight counts as 0, as Istio reads it)."""
    violations = []
    spec = _spec(obj)
    for section in ("http", "tcp", "tls"):
        for index, route in enumerate(_list(spec.get(section))):
            destinations = _list(route.get("route")) if isinstance(route, dict) else []
            if len(destinations) < 2:
                continue
            weights = [d.get("weight", 0) if isinstance(d, dict) else 0 for d in destinations]
            total = sum(w for w in weights if isinstance(w, (int, float)) and not isinstance(w, bool))
            if total != 100:
                violations.append(f"spec.{section}[{index}].route weights add up to {total:g}, not 100")
    return violations


BUILTINS: dict[str, Builtin] = {
    b.key: b
    for b in (
        Builtin(
            key="no-allow-all-authz",
            name="No allow-all AuthorizationPolicy",
            description="An ALLOW AuthorizationPolicy must not contain a rule that matches every request "
            "(rules: [{}]). An ALLOW policy without rules denies everything and passes.",
            enforcement=GuardrailEnforcement.HARD_MANDATORY,
            message="{object} allows all traffic: {details}",
            check=check_no_allow_all_authz,
            kinds=(PolicyKind.AUTHORIZATION_POLICY,),
        ),
        Builtin(
            key="mtls-strict-production",
            name="mTLS STRICT in production",
            description="PeerAuthentication in production environments sets mode STRICT, also per port.",
            enforcement=GuardrailEnforcement.SOFT_MANDATORY,
            message="{object} must enforce mutual TLS in {environment}: {details}",
            check=check_mtls_strict,
            kinds=(PolicyKind.PEER_AUTHENTICATION,),
            production_only=True,
        ),
        Builtin(
            key="timeouts-within-bounds",
            name="Timeouts and retries within bounds",
            description="HTTP route timeouts at most max_timeout_seconds, retry attempts at most max_retries, "
            "and attempts × perTryTimeout within the route timeout.",
            enforcement=GuardrailEnforcement.SOFT_MANDATORY,
            message="{object}: {details}",
            check=check_timeouts,
            kinds=(PolicyKind.VIRTUAL_SERVICE,),
            parameters={"max_timeout_seconds": 60, "max_retries": 5},
        ),
        Builtin(
            key="no-wildcard-hosts",
            name="No wildcard hosts in the mesh",
            description="Hosts '*' or '*.domain' only on Gateways and on VirtualServices bound to gateways only.",
            enforcement=GuardrailEnforcement.SOFT_MANDATORY,
            message="{object} uses a wildcard host: {details}",
            check=check_no_wildcard_hosts,
            kinds=(PolicyKind.VIRTUAL_SERVICE, PolicyKind.DESTINATION_RULE, PolicyKind.SERVICE_ENTRY),
        ),
        Builtin(
            key="weights-sum-100",
            name="Route weights add up to 100",
            description="Every http, tcp and tls route with more than one destination splits exactly 100 %.",
            enforcement=GuardrailEnforcement.HARD_MANDATORY,
            message="{object}: {details}",
            check=check_weights_sum_100,
            kinds=(PolicyKind.VIRTUAL_SERVICE,),
        ),
    )
}
