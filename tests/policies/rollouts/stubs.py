"""Analyzers for the worker process (chosen with MESHGATE_ROLLOUT_ANALYZER): deterministic verdicts."""
import os

from policies.rollout import analysis as an


def env_scripted(context):
    """Fails from the weight in ROLLOUT_STUB_FAIL_AT_WEIGHT (unset: always passes)."""
    fail_at = os.environ.get("ROLLOUT_STUB_FAIL_AT_WEIGHT")
    if fail_at and context.phase["weight"] >= int(fail_at):
        return an.Outcome(an.FAIL, "stub failure", metric="stub", observed=context.phase["weight"],
                          threshold=int(fail_at))
    return an.Outcome(an.PASS, "stub: healthy")
