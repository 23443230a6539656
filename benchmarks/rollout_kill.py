"""Kills the Celery worker at many random points of a canary rollout and checks every run ends in
the same final state as without the kill (completed, live VirtualService == approved revision).

    .venv/bin/python benchmarks/rollout_kill.py [--runs 20] [--seed 1]

Each run is one case of `tests/policies/rollouts/test_worker.py::test_killing_the_worker_at_a_random_point_ends_in_the_same_state`
(real meshsim, real worker processes: the first one is SIGKILLed at a random point between 0.2 s and
4 s into the rollout, a second one is started, the reconciler — played by the test as celery beat
would — finds the rollout again). The database and broker are whatever the test settings use
(`MESHGATE_TEST_SQLITE` / `DATABASE_URL`, `CELERY_BROKER_URL`). Prints how many runs passed.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST = "tests/policies/rollouts/test_worker.py::test_killing_the_worker_at_a_random_point_ends_in_the_same_state"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    seeds = [rng.randrange(1, 1_000_000) for _ in range(args.runs)]
    env = {**os.environ, "ROLLOUT_KILL_SEEDS": ",".join(map(str, seeds))}
    command = [sys.executable, "-m", "pytest", TEST, "-q", "-p", "no:cacheprovider", "-rf"]
    print(f"{args.runs} kill points (seeds {seeds[:5]}{'...' if len(seeds) > 5 else ''})", flush=True)
    return subprocess.call(command, cwd=REPO_ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main())
