"""Rollouts under cluster faults: per fault profile, concurrent good and bad canaries with a real
worker and meshsim's API fault injection; reports rollouts, outcomes, verification and time to finish.

    .venv/bin/python benchmarks/rollout_chaos.py [--seeds 3] [--seed 1] [--profiles 409,500,...]

Each run is one case of `tests/policies/rollouts/test_chaos.py::test_rollouts_stay_true_under_api_faults`
(3 canaries at once: reviews and payments good, catalog bad; steps 20/50/100 with 1 s analysis; the
kubernetes client's timeout 1.5 s). The database and broker are whatever the test settings use
(`MESHGATE_TEST_SQLITE` / `DATABASE_URL`, `CELERY_BROKER_URL`). "verified" counts rollouts whose live
VirtualService equals the approved revision (completed) or the snapshot (rolled back) at the end;
"problems" lists every acceptance breach (a rollback reported while the canary serves traffic, an
out-of-band pause nobody caused, an API 5xx, a rollout not finished).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST = "tests/policies/rollouts/test_chaos.py::test_rollouts_stay_true_under_api_faults"
PROFILES = ["409", "500", "latency", "timeout", "applied", "mixed"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profiles", default=",".join(PROFILES))
    args = parser.parse_args()
    rng = random.Random(args.seed)
    seeds = [rng.randrange(1, 1_000_000) for _ in range(args.seeds)]
    profiles = [p for p in args.profiles.split(",") if p]
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "chaos.jsonl"
        env = {**os.environ, "ROLLOUT_CHAOS_SEEDS": ",".join(map(str, seeds)), "ROLLOUT_CHAOS_REPORT": str(report)}
        command = [
            sys.executable,
            "-m",
            "pytest",
            TEST,
            "-q",
            "-p",
            "no:cacheprovider",
            "-rf",
            "-k",
            " or ".join(f"[{p}-" for p in profiles),
        ]
        print(f"{len(profiles)} profile(s) x {len(seeds)} seed(s) {seeds}", flush=True)
        code = subprocess.call(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL)
        records = [json.loads(line) for line in report.read_text().splitlines()] if report.exists() else []
    by_profile: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        by_profile[record["profile"]].append(record)
    print(
        "| profile | runs | rollouts | completed | rolled back | failed | other | verified | errors retried "
        "| API 5xx | time to finish (s, mean / max) | problems |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for profile in profiles:
        runs = by_profile.get(profile, [])
        rollouts = [r for run in runs for r in run["rollouts"]]
        states = defaultdict(int)
        for r in rollouts:
            states[r["state"]] += 1
        seconds = [run["seconds"] for run in runs] or [0.0]
        other = len(rollouts) - states["completed"] - states["rolled_back"] - states["failed"]
        print(
            f"| {profile} | {len(runs)} | {len(rollouts)} | {states['completed']} | {states['rolled_back']} | "
            f"{states['failed']} | {other} | {sum(r['verified'] for r in rollouts)}/{len(rollouts)} | "
            f"{sum(r['errors_retried'] for r in rollouts)} | {sum(run['api_5xx'] for run in runs)} | "
            f"{sum(seconds) / len(seconds):.1f} / {max(seconds):.1f} | "
            f"{sum(len(run['problems']) for run in runs)} |"
        )
    for run in records:
        for problem in run["problems"]:
            print(f"problem: {problem}")
    return code


if __name__ == "__main__":
    sys.exit(main())
