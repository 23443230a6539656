"""Strategies turn a change into phases: an ordered list of cluster writes, each followed by an
analysis interval (or a bake) and optionally a manual gate.

A phase is plain JSON stored on the rollout row (so a worker that restarts continues exactly):
    {"key": "w25", "label": "canary 25 %", "weight": 25, "gate": False, "analyze": True,
     "canary": True, "check": "",  "writes": [[identity, object | None], ...]}
`None` deletes the object. `check` names the signal the analysis gates the phase on (dry-run:
"authz_dry_run" then "authz_enforced"; ramp: "no_plaintext" then "strict"; see
`policies.analysis.gates`), and `subjects` the policies whose signal it reads.
The last phase always writes exactly the approved contents (promotion),
and restores any auxiliary object the strategy rewrote (e.g. the VirtualService of a
DestinationRule canary), so temporary subsets/routes are gone at the end.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, overload

from policies.choices import DraftOperation, PolicyKind, RolloutStrategy

DEFAULT_STEPS = [5, 10, 25, 50, 100]
DRY_RUN_ANNOTATION = "istio.io/dry-run"
CANARY_LABEL = "meshgate.io/canary"
CANARY_SUBSET = "meshgate-canary"

DEFAULT_STRATEGY_BY_KIND: dict[str, RolloutStrategy] = {
    PolicyKind.VIRTUAL_SERVICE: RolloutStrategy.CANARY,
    PolicyKind.DESTINATION_RULE: RolloutStrategy.CANARY,
    PolicyKind.AUTHORIZATION_POLICY: RolloutStrategy.DRY_RUN,
    PolicyKind.PEER_AUTHENTICATION: RolloutStrategy.RAMP,
}
# When a change holds several kinds: the first strategy of this list any item asks for.
_STRATEGY_PRIORITY = [RolloutStrategy.CANARY, RolloutStrategy.DRY_RUN, RolloutStrategy.RAMP, RolloutStrategy.DIRECT]


@dataclass(frozen=True)
class Item:
    """What a strategy needs of a change item."""

    identity: str
    kind: str
    namespace: str
    name: str
    operation: str
    content: dict[str, Any] | None


def identity_of(kind: str, namespace: str, name: str) -> str:
    return f"{kind}/{namespace}/{name}"


def split_identity(identity: str) -> tuple[str, str, str]:
    kind, namespace, name = identity.split("/", 2)
    return kind, namespace, name


def default_strategy(kinds: list[str]) -> str:
    wanted = {DEFAULT_STRATEGY_BY_KIND.get(kind, RolloutStrategy.DIRECT) for kind in kinds}
    return next((s for s in _STRATEGY_PRIORITY if s in wanted), RolloutStrategy.DIRECT)


def normalize_steps(steps: Any) -> list[int]:
    """`[5, 10, 25, 50, 100]` or `{"stepWeight": 20, "maxWeight": 60}` → ascending weights ending at 100."""
    if isinstance(steps, dict):
        step = int(steps.get("stepWeight") or 10)
        top = int(steps.get("maxWeight") or 100)
        weights = list(range(step, min(top, 100) + 1, step))
    else:
        weights = [int(w) for w in (steps or DEFAULT_STEPS)]
    weights = sorted({w for w in weights if 0 < w <= 100})
    if not weights or weights[-1] != 100:
        weights.append(100)
    return weights


def aux_namespaces(strategy: str, items: list[Item]) -> list[str]:
    """Namespaces whose VirtualServices `aux_identities` needs (a DR canary's routes); usually none."""
    if strategy != RolloutStrategy.CANARY or _canary_vs_item(items) is not None:
        return []
    dr = _canary_dr_item(items)
    return [dr.namespace] if dr is not None else []


def aux_identities(strategy: str, items: list[Item], virtual_services: list[dict[str, Any]]) -> list[str]:
    """Objects a strategy rewrites besides the change's items (a DR canary's VirtualServices)."""
    if not aux_namespaces(strategy, items):
        return []
    dr = _canary_dr_item(items)
    assert dr is not None and dr.content is not None  # aux_namespaces found it, with content
    host = dr.content["spec"].get("host", "")
    found = []
    for vs in virtual_services:
        meta = vs.get("metadata") or {}
        if meta.get("namespace") == dr.namespace and _routes_to(vs, host):
            found.append(identity_of(PolicyKind.VIRTUAL_SERVICE, dr.namespace, meta.get("name", "")))
    return found


def build_phases(
    *,
    strategy: str,
    items: list[Item],
    snapshot: dict[str, Any],
    steps: list[int],
    gates: Sequence[int] = (),
) -> tuple[list[dict[str, Any]], str]:
    """The phases, and a note when the strategy fell back to a plain apply (shown on the timeline)."""
    approved = [[item.identity, item.content] for item in items]
    note = ""
    if strategy == RolloutStrategy.CANARY:
        phases, note = _canary(items, snapshot, steps)
    elif strategy == RolloutStrategy.DRY_RUN:
        phases, note = _dry_run(items, snapshot)
    elif strategy == RolloutStrategy.RAMP:
        phases, note = _ramp(items, snapshot)
    elif strategy == RolloutStrategy.WAVES:
        phases = _waves(items)
    else:
        phases = []
    if not phases:
        phases = [_phase("apply", "apply", 100, approved)]
    elif strategy != RolloutStrategy.WAVES:
        phases[-1]["writes"] = _final_writes(phases, approved, snapshot)
    for index, phase in enumerate(phases):
        phase["gate"] = index in set(gates)
    return phases, note


def _phase(key: str, label: str, weight: int, writes: list, **extra: Any) -> dict[str, Any]:
    return {
        "key": key,
        "label": label,
        "weight": weight,
        "gate": False,
        "analyze": True,
        "canary": False,
        "check": "",
        "writes": writes,
        **extra,
    }


def _final_writes(phases: list[dict[str, Any]], approved: list, snapshot: dict[str, Any]) -> list:
    """Approved contents; auxiliary objects written earlier go back to their snapshot (first, so that
    routes leave a temporary subset before the subset is removed)."""
    item_ids = {identity for identity, _ in approved}
    aux = OrderedDict()
    for phase in phases:
        for identity, _ in phase["writes"]:
            if identity not in item_ids:
                aux[identity] = _plain(snapshot.get(identity))
    return [[identity, obj] for identity, obj in aux.items()] + approved


@overload
def _plain(obj: dict[str, Any]) -> dict[str, Any]: ...
@overload
def _plain(obj: dict[str, Any] | None) -> dict[str, Any] | None: ...
def _plain(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    from policies.normalize import normalize_object

    return normalize_object(obj) if obj is not None else None


# --- canary ---------------------------------------------------------------------------------------


def _canary_vs_item(items: list[Item]) -> Item | None:
    return next(
        (
            i
            for i in items
            if i.kind == PolicyKind.VIRTUAL_SERVICE and i.operation == DraftOperation.UPDATE and i.content
        ),
        None,
    )


def _canary_dr_item(items: list[Item]) -> Item | None:
    return next(
        (
            i
            for i in items
            if i.kind == PolicyKind.DESTINATION_RULE and i.operation == DraftOperation.UPDATE and i.content
        ),
        None,
    )


def _routes_to(vs: dict[str, Any], host: str) -> bool:
    for route in (vs.get("spec") or {}).get("http") or []:
        for dest in route.get("route") or []:
            if (dest.get("destination") or {}).get("host") == host:
                return True
    return False


def _others_first(items: list[Item], chosen: Item) -> list:
    return [[i.identity, i.content] for i in items if i.identity != chosen.identity]


def _canary(items: list[Item], snapshot: dict[str, Any], steps: list[int]) -> tuple[list[dict[str, Any]], str]:
    vs_item = _canary_vs_item(items)
    if vs_item is not None:
        assert vs_item.content is not None  # _canary_vs_item picks items with content
        old = _plain(snapshot.get(vs_item.identity))
        if old is None or not _same_shape(old, vs_item.content):
            return [], "not a routing change the canary can interpolate: applied directly with a bake"
        others = _others_first(items, vs_item)
        targets = _vs_targets(old, vs_item.content, vs_item.namespace)
        phases: list[dict[str, Any]] = []
        for weight in steps[:-1]:
            writes = ([*others] if not phases else []) + [
                [vs_item.identity, _interpolate_vs(old, vs_item.content, weight)]
            ]
            phases.append(_phase(f"w{weight}", f"canary {weight} %", weight, writes, canary=True, targets=targets))
        phases.append(_phase("w100", "promote 100 %", 100, [], targets=targets))
        return phases, ""
    dr_item = _canary_dr_item(items)
    if dr_item is None:
        return [], "no VirtualService or DestinationRule update to canary: applied directly with a bake"
    assert dr_item.content is not None  # _canary_dr_item picks items with content
    old_dr = _plain(snapshot.get(dr_item.identity))
    host = dr_item.content["spec"].get("host", "")
    vs_ids = [i for i in snapshot if i.startswith(f"{PolicyKind.VIRTUAL_SERVICE}/") and snapshot[i] is not None]
    if old_dr is None or not vs_ids:
        return [], f"no VirtualService routes to {host}: the DestinationRule was applied directly with a bake"
    canary_dr, renames = _dr_with_canary_subsets(old_dr, dr_item.content, [_plain(snapshot[i]) for i in vs_ids])
    others = _others_first(items, dr_item)
    service = {"namespace": dr_item.namespace, "service": host.split(".")[0]}
    targets = {"canary": {**service, "canary": True}, "stable": {**service, "canary": False}}
    phases = []
    for weight in steps[:-1]:
        writes = [*others, [dr_item.identity, canary_dr]] if not phases else []
        writes += [[i, _split_vs(_plain(snapshot[i]), host, renames, weight)] for i in vs_ids]
        phases.append(_phase(f"w{weight}", f"canary {weight} %", weight, writes, canary=True, targets=targets))
    phases.append(_phase("w100", "promote 100 %", 100, [], targets={"canary": service, "stable": service}))
    return phases, ""


def _vs_targets(old: dict[str, Any], new: dict[str, Any], namespace: str) -> dict[str, Any] | None:
    """Canary = a destination the new routes add (its subset read as the `version` label, the usual
    convention), stable = the old routes' heaviest destination; None when no subset tells them apart."""
    old_dests = [d for r in old["spec"]["http"] for d, _ in sorted(_weights(r.get("route") or []), key=lambda p: -p[1])]
    new_dests = [d for r in new["spec"]["http"] for d, _ in _weights(r.get("route") or [])]
    old_keys = {_dest_key(d) for d in old_dests}
    added = [d for d in new_dests if _dest_key(d) not in old_keys and (d.get("destination") or {}).get("subset")]
    stable = [d for d in old_dests if (d.get("destination") or {}).get("subset")]
    if not added or not stable:
        return None
    canary_dest, stable_dest = added[0]["destination"], stable[0]["destination"]
    if canary_dest.get("host") != stable_dest.get("host"):
        return None
    service = {"namespace": namespace, "service": canary_dest["host"].split(".")[0]}
    return {
        "canary": {**service, "version": canary_dest["subset"]},
        "stable": {**service, "version": stable_dest["subset"]},
    }


def _same_shape(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """A routing change: same http routes (by position and match), only their destinations differ."""
    old_http = (old.get("spec") or {}).get("http") or []
    new_http = (new.get("spec") or {}).get("http") or []
    if len(old_http) != len(new_http) or not new_http:
        return False
    strip = lambda r: {k: v for k, v in r.items() if k != "route"}  # noqa: E731
    others = lambda o: {k: v for k, v in (o.get("spec") or {}).items() if k != "http"}  # noqa: E731
    return all(strip(a) == strip(b) for a, b in zip(old_http, new_http)) and others(old) == others(new)


def _dest_key(dest: dict[str, Any]) -> str:
    import json

    return json.dumps(dest.get("destination") or {}, sort_keys=True)


def _weights(route: list[dict[str, Any]]) -> list[tuple[dict[str, Any], float]]:
    if len(route) == 1:
        return [(route[0], 100.0)]
    return [(dest, float(dest.get("weight", 0))) for dest in route]


def _mix(parts: list[tuple[dict[str, Any], float]]) -> list[dict[str, Any]]:
    """Destinations with float shares → integer weights summing to 100 (largest remainder)."""
    merged: OrderedDict[str, list] = OrderedDict()
    for dest, share in parts:
        key = _dest_key(dest)
        if key in merged:
            merged[key][1] += share
        else:
            merged[key] = [dest, share]
    entries = [(dest, share) for dest, share in merged.values() if share > 0]
    floors = [int(share) for _, share in entries]
    remainder = 100 - sum(floors)
    order = sorted(range(len(entries)), key=lambda i: entries[i][1] - floors[i], reverse=True)
    for i in order[:remainder]:
        floors[i] += 1
    result = []
    for (dest, _), weight in zip(entries, floors):
        if weight <= 0:
            continue
        out = {k: copy.deepcopy(v) for k, v in dest.items() if k != "weight"}
        out["weight"] = weight
        result.append(out)
    return result


def _interpolate_vs(old: dict[str, Any], new: dict[str, Any], weight: int) -> dict[str, Any]:
    result = copy.deepcopy(old)
    for index, (old_route, new_route) in enumerate(zip(old["spec"]["http"], new["spec"]["http"])):
        parts = [(d, w * (100 - weight) / 100) for d, w in _weights(old_route.get("route") or [])]
        parts += [(d, w * weight / 100) for d, w in _weights(new_route.get("route") or [])]
        result["spec"]["http"][index]["route"] = _mix(parts)
    return result


def _dr_with_canary_subsets(
    old: dict[str, Any],
    new: dict[str, Any],
    virtual_services: list[dict[str, Any]],
) -> tuple[dict[str, Any], dict[str, str]]:
    """The live DR plus one temporary `<subset>-canary` (or `meshgate-canary`) subset per subset the
    VirtualServices route to, each carrying the new traffic policy; {stable subset: canary subset}."""
    host = new["spec"].get("host", "")
    new_subsets = {s.get("name"): s for s in new["spec"].get("subsets") or []}
    old_subsets = {s.get("name"): s for s in old["spec"].get("subsets") or []}
    routed = []
    for vs in virtual_services:
        for route in vs["spec"].get("http") or []:
            for dest in route.get("route") or []:
                d = dest.get("destination") or {}
                if d.get("host") == host and d.get("subset", "") not in routed:
                    routed.append(d.get("subset", ""))
    result = copy.deepcopy(old)
    subsets = result["spec"].setdefault("subsets", [])
    renames: dict[str, str] = {}
    for stable in routed:
        canary_name = f"{stable}-canary" if stable else CANARY_SUBSET
        source = new_subsets.get(stable) or old_subsets.get(stable) or {}
        labels = {**(source.get("labels") or {}), CANARY_LABEL: "true"}
        policy = copy.deepcopy(source.get("trafficPolicy") or new["spec"].get("trafficPolicy"))
        subset = {"name": canary_name, "labels": labels}
        if policy:
            subset["trafficPolicy"] = policy
        subsets.append(subset)
        renames[stable] = canary_name
    return _plain(result), renames


def _split_vs(vs: dict[str, Any], host: str, renames: dict[str, str], weight: int) -> dict[str, Any]:
    result = copy.deepcopy(vs)
    for route in result["spec"].get("http") or []:
        parts = []
        for dest, share in _weights(route.get("route") or []):
            d = dest.get("destination") or {}
            if d.get("host") == host and d.get("subset", "") in renames:
                canary = copy.deepcopy(dest)
                canary["destination"] = {**d, "subset": renames[d.get("subset", "")]}
                parts += [(dest, share * (100 - weight) / 100), (canary, share * weight / 100)]
            else:
                parts.append((dest, share))
        route["route"] = _mix(parts)
    return result


# --- dry run, ramp, waves ---------------------------------------------------------------------------


def _dry_run(items: list[Item], snapshot: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    targets = [i for i in items if i.kind == PolicyKind.AUTHORIZATION_POLICY and i.content]
    if not targets:
        return [], "no AuthorizationPolicy to dry-run: applied directly with a bake"
    shadow = []
    for item in targets:
        obj = copy.deepcopy(item.content)
        assert obj is not None  # targets hold items with content
        obj.setdefault("metadata", {}).setdefault("annotations", {})[DRY_RUN_ANNOTATION] = "true"
        shadow.append([item.identity, obj])
    others = [[i.identity, i.content] for i in items if i not in targets]
    subjects = _subjects(targets)
    return [
        _phase("dry-run", "dry run (shadow denials)", 0, [*others, *shadow], check="authz_dry_run", subjects=subjects),
        _phase("enforce", "enforce (403 rate)", 100, [], check="authz_enforced", subjects=subjects),
    ], ""


def _ramp(items: list[Item], snapshot: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    targets = [
        i
        for i in items
        if i.kind == PolicyKind.PEER_AUTHENTICATION
        and i.content
        and ((i.content.get("spec") or {}).get("mtls") or {}).get("mode") == "STRICT"
    ]
    if not targets:
        return [], "no PeerAuthentication moving to STRICT: applied directly with a bake"
    permissive = []
    for item in targets:
        obj = copy.deepcopy(item.content)
        assert obj is not None  # targets hold items with content
        obj["spec"]["mtls"]["mode"] = "PERMISSIVE"
        permissive.append([item.identity, obj])
    others = [[i.identity, i.content] for i in items if i not in targets]
    subjects = _subjects(targets)
    return [
        _phase(
            "permissive",
            "PERMISSIVE (no plaintext left?)",
            0,
            [*others, *permissive],
            check="no_plaintext",
            subjects=subjects,
        ),
        _phase("strict", "STRICT", 100, [], check="strict", subjects=subjects),
    ], ""


def _subjects(items: list[Item]) -> list[dict[str, Any]]:
    """The policies a gate watches, with the workloads they select (`selector.matchLabels`; none:
    the whole namespace, or the mesh for the root namespace): the analysis reads their signals."""
    return [
        {
            "kind": i.kind,
            "namespace": i.namespace,
            "name": i.name,
            "selector": dict((((i.content or {}).get("spec") or {}).get("selector") or {}).get("matchLabels") or {}),
        }
        for i in items
    ]


def _waves(items: list[Item]) -> list[dict[str, Any]]:
    namespaces = sorted({i.namespace for i in items})
    phases = []
    for number, namespace in enumerate(namespaces, start=1):
        writes = [[i.identity, i.content] for i in items if i.namespace == namespace]
        weight = round(100 * number / len(namespaces))
        phases.append(_phase(f"wave-{namespace}", f"wave {number}: {namespace}", weight, writes))
    return phases
