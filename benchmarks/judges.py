"""Benchmark of canary analysis on the engine's own path, with the shipped defaults (not a test).

    .venv/bin/python benchmarks/judges.py [--per-family 200 --seed 1 --json out.json]

Variants of the streams (``--spikes``, ``--slowdowns``, ``--incident-intervals``) and ablations of
Meshgate's defaults (``--analysis KEY=VALUE``, ``--judge-option NAME=VALUE``) are options; without
them everything runs as shipped.

What runs is exactly what a rollout runs: the phases of a VirtualService canary from
``strategies.build_phases`` (the default steps 5, 10, 25, 50, 100 %), and per analysis interval
``an.evaluate(an.metrics_analyzer, context)`` then ``an.decide(config, state, outcome)`` with the
engine's ``DEFAULT_ANALYSIS`` (60 s intervals, one passing interval per step, failure limit 1),
the carried state handled as ``services.rollouts._analyze`` does (a new step starts its passing
streak again, the judges' evidence is kept). The metrics come over HTTP from a small server
answering the Prometheus query API (``/api/v1/query``: the ``increase`` of
``istio_requests_total`` by ``response_code`` and of ``istio_request_duration_milliseconds_bucket``
by ``le``, label matchers honoured; the counts are one interval's, so any other window than the
interval's is refused) from generated streams. That server also holds a
second cluster whose traffic is always failing: a query not scoped to its environment's cluster
would read it.

Streams, per interval: Poisson requests at the phase's weight, 5xx drawn per side, latencies
log-normal counted into Istio's buckets. Families, each with good and bad canaries, several
effect sizes, noise levels and seeds:

- ``bursty``: errors overdispersed (each side's error rate times a gamma factor per interval);
- ``heavy_tail``: heavy-tailed latency with spikes (5 % of requests three buckets slower) hitting
  both versions, in half the scenarios at the same moments, in the other half each on its own;
- ``shared_incident``: an incident raises both versions' errors (x5 or x20) and latency (x2) for 1-5
  intervals;
- ``low_traffic``: 2 req/s in all (the canary at 5 % gets 0.1 req/s), some intervals empty;
  the bad canary fails outright (every request 503);
- ``creeping``: the canary's regression grows each interval;
- ``small``: +30 % errors on a 1 % baseline, +25 % latency, p99-only +50 % (median unchanged);
- ``warmup``: the canary answers badly in the first interval after each weight change only
  (good), or that and a real regression (bad).

Normal traffic is 50-500 req/s in all (log-uniform). A bad canary is caught when the rollout
rolls back before completing; a good canary is rolled back (false rollback), paused, or
completes. Time to detect: intervals from the first analysis interval to the rollback.

Judges on the same streams (same seeds): Meshgate's defaults (the sequential judge), a
Flagger-style threshold judge (success >= 99 %, p99 <= 500 ms, at least 20 requests, rollback
after 5 failed checks, Flagger's documented ``threshold: 5``) and a Kayenta-style judge
(Mann-Whitney per interval, rollback at the first failed interval).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import numpy as np
from scipy.stats import norm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings.test")

import django  # noqa: E402

django.setup()

from integrations.meshsim.traffic import DURATION_BUCKETS_MS  # noqa: E402
from policies.choices import DraftOperation, PolicyKind, RolloutStrategy  # noqa: E402
from policies.rollout import analysis as an  # noqa: E402
from policies.rollout import strategies  # noqa: E402
from policies.services.rollouts import DEFAULT_ANALYSIS  # noqa: E402

CLUSTER, OTHER = "bench", "elsewhere"
NAMESPACE, SERVICE = "shop", "cart"
BOUNDS = np.array([*DURATION_BUCKETS_MS, math.inf])
FAMILIES = ("bursty", "heavy_tail", "shared_incident", "low_traffic", "creeping", "small", "warmup")
MAX_INTERVALS = 60  # a rollout still analysing after this many intervals counts as paused
JUDGES = {
    "meshgate": {},
    "flagger": {"judge": "threshold", "failure_limit": 5, "warmup_intervals": 0, "min_requests": 20},
    "kayenta": {"judge": "mann-whitney", "failure_limit": 1, "warmup_intervals": 0},
}


# --- the Prometheus edge ------------------------------------------------------------------------


class Edge:
    """What the Prometheus stub answers: per (cluster, version) the counts of the current interval."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.series: dict[tuple[str, str], dict[str, Any]] = {}
        self.queries = 0

    def set(self, series: dict[tuple[str, str], dict[str, Any]]) -> None:
        with self.lock:
            self.series = series

    def answer(self, promql: str) -> list[dict[str, Any]]:
        self.queries += 1
        windows = set(re.findall(r"\[(\d+)s\]", promql))
        if windows != {str(DEFAULT_ANALYSIS["interval_seconds"])}:
            raise ValueError(f"this stub holds one interval's counts; the query asks for {windows or 'no window'}")
        matchers = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', promql))
        wanted = {k: v for k, v in matchers.items() if k != "reporter"}
        by_code = "istio_requests_total" in promql
        out: dict[str, float] = {}
        with self.lock:
            for (cluster, version), data in self.series.items():
                labels = {
                    "destination_cluster": cluster,
                    "destination_version": version,
                    "destination_service_namespace": NAMESPACE,
                    "destination_service_name": SERVICE,
                }
                if any(labels.get(k, "") != v for k, v in wanted.items()):
                    continue
                source = data["codes"] if by_code else data["le"]
                for key, value in source.items():
                    out[key] = out.get(key, 0.0) + value
        label = "response_code" if by_code else "le"
        now = time.time()
        return [{"metric": {label: key}, "value": [now, repr(float(value))]} for key, value in out.items()]


def serve(edge: Edge) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            params = parse_qs(self.rfile.read(length).decode())
            try:
                result, status = edge.answer(params.get("query", [""])[0]), 200
                answer = {"status": "success", "data": {"resultType": "vector", "result": result}}
            except ValueError as exc:
                status, answer = 400, {"status": "error", "errorType": "bad_data", "error": str(exc)}
            body = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


# --- scenarios ------------------------------------------------------------------------------------


@dataclass
class Scenario:
    family: str
    bad: bool
    effect: str
    rps: float
    base_error: float
    median_ms: float
    sigma: float
    seed: int
    error_factor: float = 1.0
    latency_factor: float = 1.0
    sigma_extra: float = 0.0  # widens the canary's latency (p99 up, median unchanged)
    creep: float = 0.0  # the canary's regression grows by this per interval
    creep_on: str = "errors"
    dispersion_shape: float = 0.0  # bursty: gamma shape of the per-interval error factor
    spike_chance: float = 0.0  # heavy tail: chance per interval of a spike on both versions
    separate_spikes: bool = False  # ... or on each version on its own (a slow pod, not a slow dependency)
    slowdown_chance: float = 0.0  # chance per interval that one version's whole latency doubles (on its own)
    incident: tuple[int, int] = (-1, -1)  # shared incident: first interval, length
    incident_factor: float = 1.0
    warmup_factor: float = 1.0  # the canary's errors in the first interval after a weight change
    empty_chance: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def draw(
    family: str, index: int, seed: int, *, spikes: str = "mixed", incident_intervals: tuple[int, int] = (1, 5),
    slowdowns: float = 0.0,
) -> Scenario:  # fmt: skip
    rng = np.random.default_rng([seed, FAMILIES.index(family), index])
    bad = index % 2 == 1
    rps = math.exp(rng.uniform(math.log(50), math.log(500)))
    base = float(rng.choice([0.005, 0.01, 0.02]))
    median, sigma = float(rng.choice([20, 50, 120])), float(rng.choice([0.4, 0.6, 0.8]))
    s = Scenario(family, bad, "good", rps, base, median, sigma, int(rng.integers(1 << 30)))
    pick = int(rng.integers(3))
    if family == "bursty":
        s.dispersion_shape = float(rng.choice([1.5, 4.0]))
        if bad:
            s.error_factor = (1.5, 2.0, 3.0)[pick]
            s.effect = f"errors x{s.error_factor:g}"
    elif family == "heavy_tail":
        s.sigma = float(rng.choice([0.8, 1.1]))
        s.spike_chance = float(rng.choice([0.1, 0.3]))
        s.separate_spikes = {"shared": False, "separate": True}.get(spikes, bool(rng.random() < 0.5))
        s.slowdown_chance = slowdowns
        if bad:
            s.latency_factor = (1.25, 1.5, 2.0)[pick]
            s.effect = f"latency x{s.latency_factor:g}"
    elif family == "shared_incident":
        s.incident = (int(rng.integers(0, 8)), int(rng.integers(incident_intervals[0], incident_intervals[1] + 1)))
        s.incident_factor = float(rng.choice([5.0, 20.0]))
        if bad:
            s.error_factor, s.latency_factor = ((2.0, 1.0), (1.0, 1.5), (3.0, 1.0))[pick]
            s.effect = f"errors x{s.error_factor:g}" if s.error_factor != 1 else f"latency x{s.latency_factor:g}"
    elif family == "low_traffic":
        s.rps = 2.0
        s.empty_chance = float(rng.choice([0.0, 0.1]))
        if bad:
            s.error_factor, s.effect = 1.0 / base, "outright failure"
    elif family == "creeping":
        s.creep = (0.1, 0.2, 0.4)[pick] if bad else 0.0
        s.creep_on = "errors" if rng.random() < 0.5 else "latency"
        if bad:
            s.effect = f"{s.creep_on} +{s.creep:.0%} per interval"
    elif family == "small":
        s.base_error = 0.01
        if bad:
            if pick == 0:
                s.error_factor, s.effect = 1.3, "errors x1.3"
            elif pick == 1:
                s.latency_factor, s.effect = 1.25, "latency x1.25"
            else:
                s.sigma_extra, s.effect = math.log(1.5) / norm.ppf(0.99), "p99-only +50%"
    elif family == "warmup":
        s.warmup_factor = float(rng.choice([10.0, 30.0]))
        if bad:
            s.error_factor, s.effect = 2.0, "errors x2"
    return s


def interval_counts(s: Scenario, rng: np.random.Generator, *, weight: int, t: int, first: bool) -> dict:
    """One interval's series: canary and stable in our cluster, and a failing other cluster."""
    seconds = DEFAULT_ANALYSIS["interval_seconds"]
    empty = s.empty_chance and rng.random() < s.empty_chance
    incident = s.incident[0] <= t < s.incident[0] + s.incident[1]
    spike = s.spike_chance and rng.random() < s.spike_chance
    series = {}
    for version, share in (("v2", weight / 100), ("v1", 1 - weight / 100)):
        canary = version == "v2"
        if s.separate_spikes:
            spike = rng.random() < s.spike_chance
        n = 0 if empty else int(rng.poisson(s.rps * share * seconds))
        p = s.base_error
        if s.dispersion_shape:
            p *= rng.gamma(s.dispersion_shape, 1 / s.dispersion_shape)
        if incident:
            p *= s.incident_factor
        median, sigma = s.median_ms * (2.0 if incident else 1.0), s.sigma
        if s.slowdown_chance and rng.random() < s.slowdown_chance:
            median *= 2.0
        if canary:
            p *= s.error_factor
            median *= s.latency_factor
            sigma += s.sigma_extra
            if s.creep:
                grow = 1 + s.creep * (t + 1)
                if s.creep_on == "errors":
                    p *= grow
                else:
                    median *= 1 + (grow - 1) / 2
            if first and s.warmup_factor > 1:
                p *= s.warmup_factor
                median *= 3
        errors = int(rng.binomial(n, min(p, 1.0)))
        probs = np.diff(np.concatenate([[0.0], norm.cdf((np.log(BOUNDS[:-1]) - math.log(median)) / sigma), [1.0]]))
        buckets = rng.multinomial(n, probs)
        if spike and n:
            slow = rng.binomial(buckets, 0.05)
            buckets = buckets - slow
            for i in np.nonzero(slow)[0]:  # 5 % of the requests three buckets slower
                buckets[min(i + 3, len(buckets) - 1)] += slow[i]
        cumulative = np.cumsum(buckets)
        series[(CLUSTER, version)] = {
            "codes": {"200": float(n - errors), "503": float(errors)} if n else {},
            "le": (
                {
                    ("+Inf" if math.isinf(b) else repr(float(b))): float(c)
                    for b, c in zip(BOUNDS, cumulative, strict=True)
                }
                if n
                else {}
            ),
        }
    # another cluster (the other environment) where every request of both versions fails, slowly
    for version in ("v1", "v2"):
        n = 3000.0
        series[(OTHER, version)] = {
            "codes": {"503": n},
            "le": {("+Inf" if math.isinf(b) else repr(float(b))): (n if b >= 5000 else 0.0) for b in BOUNDS},
        }
    return series


# --- the engine's path ----------------------------------------------------------------------------


def phases() -> list[dict[str, Any]]:
    def vs(subset: str) -> dict[str, Any]:
        return {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": SERVICE, "namespace": NAMESPACE},
            "spec": {
                "hosts": [SERVICE],
                "http": [{"route": [{"destination": {"host": SERVICE, "subset": subset}, "weight": 100}]}],
            },
        }

    identity = strategies.identity_of(PolicyKind.VIRTUAL_SERVICE, NAMESPACE, SERVICE)
    item = strategies.Item(
        identity=identity,
        kind=PolicyKind.VIRTUAL_SERVICE,
        namespace=NAMESPACE,
        name=SERVICE,
        operation=DraftOperation.UPDATE,
        content=vs("v2"),
    )
    found, note = strategies.build_phases(
        strategy=RolloutStrategy.CANARY,
        items=[item],
        snapshot={identity: vs("v1")},
        steps=strategies.normalize_steps(None),
    )
    assert not note, note
    return [{k: v for k, v in phase.items() if k != "writes"} for phase in found]


def run(s: Scenario, edge: Edge, url: str, overrides: dict[str, Any], plan: list[dict[str, Any]]) -> tuple[str, int]:
    """("rolled_back" | "completed" | "paused", intervals analysed)."""
    rng = np.random.default_rng(s.seed)
    config = {**DEFAULT_ANALYSIS, **overrides}
    state: dict[str, Any] = {}
    t = 0
    for index, phase in enumerate(plan):
        run_index = 0
        while True:
            if t >= MAX_INTERVALS:
                return "paused", t
            edge.set(interval_counts(s, rng, weight=phase["weight"], t=t, first=run_index == 0))
            context = an.AnalysisContext(
                rollout_id=0,
                environment_id=0,
                prometheus_url=url,
                strategy="canary",
                phase=phase,
                interval_index=run_index,
                interval_seconds=float(config["interval_seconds"]),
                config={**config, "state": state},
                workloads=[{"namespace": NAMESPACE, "service": SERVICE}],
                cluster_labels={"destination_cluster": CLUSTER},
                last_phase=index == len(plan) - 1,
                phases_left=len(plan) - 1 - index,
            )
            outcome = an.evaluate(an.metrics_analyzer, context)
            if outcome.verdict == an.ERROR:
                raise RuntimeError(outcome.reason)
            action, _, state = an.decide(config, state, outcome)
            t += 1
            run_index += 1
            if action == "rollback":
                return "rolled_back", t
            if action == "pause":
                return "paused", t
            if action == "advance":
                state = {**state, "successes_in_row": 0}
                break
    return "completed", t


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    good = [r for r in rows if not r["bad"]]
    bad = [r for r in rows if r["bad"]]
    caught = [r for r in bad if r["end"] == "rolled_back"]
    doubled = [r for r in caught if r["effect"] in ("errors x2", "latency x2", "outright failure")]
    return {
        "good": len(good),
        "bad": len(bad),
        "caught": len(caught) / len(bad) if bad else None,
        "false_rollback": sum(r["end"] == "rolled_back" for r in good) / len(good) if good else None,
        "paused": sum(r["end"] == "paused" for r in good) / len(good) if good else None,
        "completed": sum(r["end"] == "completed" for r in good) / len(good) if good else None,
        "ttd_median": statistics.median(r["t"] for r in caught) if caught else None,
        # what the care costs: intervals a good canary took to complete (median, 90th percentile)
        "good_t_median": statistics.median(r["t"] for r in good if r["end"] == "completed")
        if any(r["end"] == "completed" for r in good)
        else None,
        "good_t_p90": float(np.percentile([r["t"] for r in good if r["end"] == "completed"], 90))
        if any(r["end"] == "completed" for r in good)
        else None,
        "ttd_2x_median": statistics.median(r["t"] for r in doubled) if doubled else None,
        "by_effect": {
            effect: sum(r["end"] == "rolled_back" for r in bad if r["effect"] == effect)
            / max(1, sum(r["effect"] == effect for r in bad))
            for effect in sorted({r["effect"] for r in bad})
        },
    }


def _number(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def _judge_defaults(options: dict[str, Any]) -> None:
    """Ablation: the sequential judge the engine builds starts from these values instead of its own."""
    if not options:
        return
    from policies.analysis.sequential import SequentialJudge

    unknown = set(options) - {f.name for f in dataclasses.fields(SequentialJudge)}
    if unknown:
        raise SystemExit(f"--judge-option: no such setting {sorted(unknown)}")
    built = SequentialJudge.__init__

    def init(self: SequentialJudge, *a: Any, **kw: Any) -> None:
        built(self, *a, **{**options, **kw})

    SequentialJudge.__init__ = init  # type: ignore[method-assign]
    print(f"ablation: the sequential judge with {options}", flush=True)


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-family", type=int, default=200, help="scenarios per family (half good)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--judges", default=",".join(JUDGES))
    parser.add_argument("--json", type=Path)
    # variants of the streams and ablations of Meshgate's judge (the figures of the README say which
    # ones they use; without these options everything runs as shipped)
    parser.add_argument("--spikes", choices=("mixed", "shared", "separate"), default="mixed",
                        help="heavy tail: spikes at the same moments on both versions, each on its own, or half each")  # fmt: skip
    parser.add_argument("--slowdowns", type=float, default=0.0,
                        help="heavy tail: chance per interval that one version's whole latency doubles")  # fmt: skip
    parser.add_argument("--incident-intervals", default="1-5", help="shared incidents last this many intervals")
    parser.add_argument("--analysis", action="append", default=[], metavar="KEY=VALUE",
                        help="Meshgate: an analysis setting of the rollout (e.g. both_bad_limit=3)")  # fmt: skip
    parser.add_argument("--judge-option", action="append", default=[], metavar="NAME=VALUE",
                        help="Meshgate: a default of the sequential judge (e.g. beyond_one_interval=0)")  # fmt: skip
    args = parser.parse_args(argv)
    low, _, high = args.incident_intervals.partition("-")
    incident_range = (int(low), int(high or low))
    overrides = dict(JUDGES)
    overrides["meshgate"] = {
        **JUDGES["meshgate"],
        **{k: _number(v) for k, v in (a.split("=", 1) for a in args.analysis)},
    }
    _judge_defaults({k: _number(v) for k, v in (a.split("=", 1) for a in args.judge_option)})
    edge = Edge()
    server, url = serve(edge)
    plan = phases()
    started = time.time()
    results: dict[str, dict[str, Any]] = {}
    try:
        for family in args.families.split(","):
            scenarios = [draw(family, i, args.seed, spikes=args.spikes, incident_intervals=incident_range,
                              slowdowns=args.slowdowns) for i in range(args.per_family)]  # fmt: skip
            for judge in args.judges.split(","):
                rows = []
                for s in scenarios:
                    end, t = run(s, edge, url, overrides[judge], plan)
                    rows.append({"bad": s.bad, "effect": s.effect, "end": end, "t": t})
                results.setdefault(family, {})[judge] = summarize(rows)
                r = results[family][judge]
                print(
                    f"{family:16} {judge:9} caught {pct(r['caught']):>8}  false rollback "
                    f"{pct(r['false_rollback']):>7}  paused {pct(r['paused']):>7}  "
                    f"ttd {r['ttd_median']}  ttd 2x {r['ttd_2x_median']}  good completes in "
                    f"{r['good_t_median']} (p90 {r['good_t_p90']})  {r['by_effect']}",
                    flush=True,
                )
    finally:
        server.shutdown()
    elapsed = time.time() - started
    print(f"\n{edge.queries} Prometheus queries in {elapsed:.0f} s\n")
    print("| family | judge | bad caught | good rolled back | good paused | median intervals to detect (2x) |")
    print("|---|---|---|---|---|---|")
    for family, judges in results.items():
        for judge, r in judges.items():
            ttd = "—" if r["ttd_median"] is None else f"{r['ttd_median']:g}"
            ttd2 = "" if r["ttd_2x_median"] is None else f" ({r['ttd_2x_median']:g})"
            print(
                f"| {family} | {judge} | {pct(r['caught'])} | {pct(r['false_rollback'])} | "
                f"{pct(r['paused'])} | {ttd}{ttd2} |"
            )
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
