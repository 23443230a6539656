"""Benchmark of the canary judges on simulated metric streams (not a test).

    .venv/bin/python benchmarks/judges.py [--scenarios 600 --seed 1 --json out.json]

Model (meshsim's traffic model, ``integrations/meshsim/traffic.py``, vectorised): per 30 s
analysis interval each side draws a Poisson number of requests (rate x interval x rate
noise), binomial 5xx errors, and log-normal latencies from a meshsim ``ResponseModel``
(median / p99 of a demo-mesh service, ``scenarios.DEMO``) counted into Istio's duration
buckets (``DURATION_BUCKETS_MS``), i.e. exactly what Prometheus returns for an interval:
ok / error counts and bucket counts.

Scenario classes (drawn independently per scenario):
- traffic: "low" canary 0.5-2 rps, "high" canary 20-200 rps (log-uniform); the stable side
  gets 1x, 3x or 9x the canary's rate (canary weight 50 / 25 / 10 %);
- base error rate 0.5 %, 1 % or 2 %; latency model of a random demo service/version;
- noise: "none", or "shared" (each interval the error rate of BOTH sides is multiplied by a
  log-normal factor, sigma 0.3, and the rate by one of sigma 0.2: a downstream blip or a
  traffic wave that hits canary and stable alike);
- canary: "good" (same as stable), "errors x2" and "latency x1.5" (the targets: doubled
  error rate; every latency x 1.5 so p99 +50 %), plus other effect sizes reported apart:
  "errors x1.5", "errors x3", "latency x1.25", "latency x2";
- onset: the regression starts at the beginning of interval 0-3 (uniform); a rollout
  analyses until ``onset + HORIZON`` intervals (HORIZON = 10 intervals = 5 minutes), and a
  bad canary counts as caught if rolled back within those 10 intervals after onset. Good
  canaries run 10-13 intervals; any rollback of one is a false rollback.

Detectable: a bad canary is "detectable" when a perfect judge, knowing the onset and
seeing every post-onset request as Prometheus exports it (ok / error counts, latency
bucket counts), would catch it with >= 99 % probability in a one-sided test at alpha 0.01:
expected z >= z_0.99 + z_0.99 = 4.65, where z is that of the two proportions for errors,
and for latency the log shift times the square root of the Fisher information the bucket
counts carry about it (an unbucketed log-normal would give ln(1.5) / sigma per request).
Low-traffic canaries are
mostly not detectable in 5 minutes by any judge; they are reported separately.

Judges, on the same streams: ours (``MannWhitneyJudge``, window of the last 4 intervals,
rollback at the first failed interval), Flagger-style (``ThresholdJudge`` success >= 99 %,
p99 <= 500 ms each interval, rollback after ``--flagger-threshold`` failed checks) and Argo
Rollouts-style (``FailureLimitJudge``, rollback once failures > ``--argo-failure-limit``).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import norm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from integrations.meshsim.scenarios import DEMO
from integrations.meshsim.traffic import DURATION_BUCKETS_MS
from policies.analysis.judges import (
    Distribution,
    FailureLimitJudge,
    MannWhitneyJudge,
    Outcome,
    ThresholdJudge,
    observe,
)
from policies.analysis.metrics import latency_p99, success_rate

INTERVAL_S = 30
HORIZON = 10
Z_DETECTABLE = 2 * norm.ppf(0.99)
TARGET_CLASSES = ("errors x2", "latency x1.5")
CLASSES = (  # (name, share, error factor, latency factor)
    ("good", 0.40, 1.0, 1.0),
    ("errors x2", 0.20, 2.0, 1.0),
    ("latency x1.5", 0.20, 1.0, 1.5),
    ("errors x1.5", 0.05, 1.5, 1.0),
    ("errors x3", 0.05, 3.0, 1.0),
    ("latency x1.25", 0.05, 1.0, 1.25),
    ("latency x2", 0.05, 1.0, 2.0),
)
BOUNDS = np.array([*DURATION_BUCKETS_MS, math.inf])
MODELS = sorted(set(DEMO.responses.values()), key=lambda m: (m.median_ms, m.p99_ms))
METRICS = (success_rate(min=0.99), latency_p99(max=500.0))


@dataclass
class Scenario:
    index: int
    kind: str
    traffic: str
    canary_rps: float
    stable_rps: float
    base_error: float
    median_ms: float
    sigma: float
    noise: str
    onset: int
    length: int
    error_factor: float
    latency_factor: float
    detectable: bool = False


def draw(index: int, rng: np.random.Generator) -> Scenario:
    shares = np.array([c[1] for c in CLASSES])
    pick = rng.choice(len(CLASSES), p=shares / shares.sum())
    kind, _, error_factor, latency_factor = CLASSES[pick]
    traffic = "low" if rng.random() < 0.5 else "high"
    if traffic == "low":
        canary = rng.uniform(0.5, 2.0)
    else:
        canary = math.exp(rng.uniform(math.log(20), math.log(200)))
    model = MODELS[rng.integers(len(MODELS))]
    onset = int(rng.integers(0, 4))
    scenario = Scenario(
        index, kind, traffic, canary, canary * float(rng.choice([1, 3, 9])),
        float(rng.choice([0.005, 0.01, 0.02])), model.median_ms, model.sigma,
        "shared" if rng.random() < 0.5 else "none", onset, onset + HORIZON,
        error_factor, latency_factor,
    )
    scenario.detectable = kind != "good" and oracle_z(scenario) >= Z_DETECTABLE
    return scenario


def oracle_z(s: Scenario) -> float:
    """Expected z of a perfect fixed-sample test on all post-onset requests."""
    n_c, n_s = s.canary_rps * INTERVAL_S * HORIZON, s.stable_rps * INTERVAL_S * HORIZON
    if s.error_factor != 1.0:
        p0, p1 = s.base_error, min(1.0, s.base_error * s.error_factor)
        return (p1 - p0) / math.sqrt(p0 * (1 - p0) / n_s + p1 * (1 - p1) / n_c)
    # latency: what Prometheus exports is bucket counts, so the perfect judge's information
    # per request is the Fisher information of the bucket probabilities about a log shift
    # (<= 1 / sigma^2, the information of an unbucketed log-normal latency)
    theta, h = math.log(s.median_ms), 1e-4
    probs = bucket_probabilities(s.median_ms, s.sigma)
    slope = (bucket_probabilities(math.exp(theta + h), s.sigma)
             - bucket_probabilities(math.exp(theta - h), s.sigma)) / (2 * h)
    keep = probs > 1e-12
    information = float(np.sum(slope[keep] ** 2 / probs[keep]))
    return math.log(s.latency_factor) * math.sqrt(information) / math.sqrt(1 / n_c + 1 / n_s)


def bucket_probabilities(median_ms: float, sigma: float) -> np.ndarray:
    cdf = norm.cdf((np.log(BOUNDS[:-1]) - math.log(median_ms)) / sigma)
    return np.diff(np.concatenate([[0.0], cdf, [1.0]]))


def stream(
    s: Scenario, rng: np.random.Generator
) -> list[dict[str, tuple[Distribution, Distribution]]]:
    """Per interval: {metric name: (canary samples, stable samples)}."""
    base_probs = bucket_probabilities(s.median_ms, s.sigma)
    slow_probs = bucket_probabilities(s.median_ms * s.latency_factor, s.sigma)
    intervals = []
    for i in range(s.length):
        rate_noise = rng.lognormal(0, 0.2) if s.noise == "shared" else 1.0
        error_noise = rng.lognormal(0, 0.3) if s.noise == "shared" else 1.0
        bad = s.kind != "good" and i >= s.onset
        sides = []
        for rps, is_canary in ((s.canary_rps, True), (s.stable_rps, False)):
            n = int(rng.poisson(rps * INTERVAL_S * rate_noise))
            p = s.base_error * error_noise * (s.error_factor if bad and is_canary else 1.0)
            errors = int(rng.binomial(n, min(p, 1.0)))
            probs = slow_probs if bad and is_canary else base_probs
            buckets = rng.multinomial(n, probs)
            keep = buckets > 0
            latency = Distribution(
                tuple(BOUNDS[keep].tolist()), tuple(buckets[keep].astype(float).tolist())
            )
            sides.append((Distribution.outcomes(n - errors, errors), latency))
        (c_ok, c_lat), (s_ok, s_lat) = sides
        intervals.append({METRICS[0].name: (c_ok, s_ok), METRICS[1].name: (c_lat, s_lat)})
    return intervals


def run_judge(judge, intervals, rollback_after: int) -> int | None:
    """The interval index (0-based) at which the judge rolls back, or None."""
    state: dict[str, dict] = {m.name: {} for m in METRICS}
    failed = 0
    for i in range(len(intervals)):
        window = intervals[max(0, i + 1 - judge.window_intervals) : i + 1]
        outcomes = []
        for metric in METRICS:
            canary = Distribution.merge(w[metric.name][0] for w in window)
            stable = Distribution.merge(w[metric.name][1] for w in window)
            verdict = judge.judge(
                metric, observe(metric, canary, stable), metrics_count=len(METRICS),
                state=state[metric.name],
            )
            state[metric.name] = verdict.state
            outcomes.append(verdict.outcome)
        if Outcome.FAIL in outcomes:
            failed += 1
            if failed >= rollback_after:
                return i
    return None


def pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:5.1f}% ({part}/{whole})" if whole else "    n/a"


def summarize(name: str, scenarios: list[Scenario], rollbacks: dict[int, int | None]) -> dict:
    def caught(s: Scenario) -> bool:
        at = rollbacks[s.index]
        return at is not None and at >= s.onset and at - s.onset < HORIZON

    good = [s for s in scenarios if s.kind == "good"]
    false = sum(1 for s in good if rollbacks[s.index] is not None)
    bad = [s for s in scenarios if s.kind != "good"]
    early = sum(1 for s in bad if rollbacks[s.index] is not None and rollbacks[s.index] < s.onset)
    out: dict = {"judge": name, "false_rollbacks": false, "good": len(good),
                 "false_rollback_rate": false / len(good) if good else None,
                 "bad_rolled_back_before_onset": early, "classes": {}}
    for kind, *_ in CLASSES[1:]:
        members = [s for s in bad if s.kind == kind]
        detectable = [s for s in members if s.detectable]
        times = [rollbacks[s.index] - s.onset + 1 for s in detectable if caught(s)]
        out["classes"][kind] = {
            "scenarios": len(members),
            "caught": sum(1 for s in members if caught(s)),
            "detectable": len(detectable),
            "caught_detectable": len(times),
            "median_intervals": statistics.median(times) if times else None,
            "p90_intervals": float(np.percentile(times, 90)) if times else None,
        }
    target = [s for s in bad if s.kind in TARGET_CLASSES and s.detectable]
    times = [rollbacks[s.index] - s.onset + 1 for s in target if caught(s)]
    out["target"] = {
        "detectable": len(target), "caught": len(times),
        "rate": len(times) / len(target) if target else None,
        "all": sum(1 for s in bad if s.kind in TARGET_CLASSES),
        "caught_all": sum(1 for s in bad if s.kind in TARGET_CLASSES and caught(s)),
        "median_intervals": statistics.median(times) if times else None,
        "p90_intervals": float(np.percentile(times, 90)) if times else None,
    }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", type=int, default=600)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--flagger-threshold", type=int, default=5)
    parser.add_argument("--argo-failure-limit", type=int, default=2)
    parser.add_argument("--alpha", type=float, default=MannWhitneyJudge.alpha)
    parser.add_argument("--window", type=int, default=MannWhitneyJudge.window_intervals)
    parser.add_argument("--effect-floor", type=float, default=MannWhitneyJudge.effect_floor)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    started = time.monotonic()
    scenarios = [draw(i, rng) for i in range(args.scenarios)]
    judges = {
        "ours (mann-whitney)": (MannWhitneyJudge(
            alpha=args.alpha, window_intervals=args.window, effect_floor=args.effect_floor), 1),
        f"flagger (threshold={args.flagger_threshold})": (ThresholdJudge(), args.flagger_threshold),
        f"argo (failureLimit={args.argo_failure_limit})": (
            FailureLimitJudge(failure_limit=args.argo_failure_limit), 1),
    }
    rollbacks: dict[str, dict[int, int | None]] = {name: {} for name in judges}
    for s in scenarios:
        intervals = stream(s, rng)
        for name, (judge, after) in judges.items():
            rollbacks[name][s.index] = run_judge(judge, intervals, after)
    results = [summarize(name, scenarios, rollbacks[name]) for name in judges]
    print_table(args, scenarios, results, time.monotonic() - started)
    if args.json:
        args.json.write_text(json.dumps({
            "scenarios": args.scenarios, "seed": args.seed, "interval_s": INTERVAL_S,
            "horizon_intervals": HORIZON, "results": results,
            "scenario_list": [s.__dict__ for s in scenarios],
        }, indent=2, default=float))
    return 0


def _t(value: float | None) -> str:
    return "   -" if value is None else f"{value:4.1f} ({value * INTERVAL_S:4.0f}s)"


def print_table(args, scenarios: list[Scenario], results: list[dict], elapsed: float) -> None:
    kinds = {k: sum(1 for s in scenarios if s.kind == k) for k, *_ in CLASSES}
    print(f"{len(scenarios)} scenarios (seed {args.seed}), interval {INTERVAL_S}s, "
          f"horizon {HORIZON} intervals after onset; {elapsed:.0f}s")
    print("  " + ", ".join(f"{k}: {n}" for k, n in kinds.items()))
    print()
    header = f"{'judge':28} {'false rollbacks (good)':>24} {'caught, target classes':>26} " \
             f"{'(all incl. undetectable)':>26} {'median TTD':>13} {'p90 TTD':>13}"
    print(header)
    print("-" * len(header))
    for r in results:
        t = r["target"]
        print(f"{r['judge']:28} {pct(r['false_rollbacks'], r['good']):>24} "
              f"{pct(t['caught'], t['detectable']):>26} {pct(t['caught_all'], t['all']):>26} "
              f"{_t(t['median_intervals']):>13} {_t(t['p90_intervals']):>13}")
    print()
    print(
        "Per class: caught among detectable | caught among all | "
        "median / p90 intervals to detect"
    )
    for kind, *_ in CLASSES[1:]:
        print(f"  {kind}")
        for r in results:
            c = r["classes"][kind]
            print(f"    {r['judge']:28} {pct(c['caught_detectable'], c['detectable']):>20} | "
                  f"{pct(c['caught'], c['scenarios']):>20} | "
                  f"{_t(c['median_intervals'])} / {_t(c['p90_intervals'])}")
    print()
    print(f"Detectable = a perfect test on all post-onset requests, as Prometheus exports them "
          f"(counts, latency buckets), has >= 99 % power at alpha 0.01 (expected z >= "
          f"{Z_DETECTABLE:.2f}).\nTTD counts intervals from onset (1 = the first interval after "
          f"onset), over the detectable target-class canaries each judge caught.\nA rollback "
          f"before onset counts as not caught; bad canaries rolled back before onset: "
          + ", ".join(f"{r['judge']} {r['bad_rolled_back_before_onset']}" for r in results)
          + ".")


if __name__ == "__main__":
    sys.exit(main())
