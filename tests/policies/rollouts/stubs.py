"""Analyzers for the worker process (chosen with MESHGATE_ROLLOUT_ANALYZER): deterministic verdicts."""

import os

from policies.rollout import analysis as an


def env_scripted(context):
    """Fails from the weight in ROLLOUT_STUB_FAIL_AT_WEIGHT (unset: always passes)."""
    fail_at = os.environ.get("ROLLOUT_STUB_FAIL_AT_WEIGHT")
    if fail_at and context.phase["weight"] >= int(fail_at):
        return an.Outcome(
            an.FAIL, "stub failure", metric="stub", observed=context.phase["weight"], threshold=int(fail_at)
        )
    return an.Outcome(an.PASS, "stub: healthy")


def chaos_scripted(context):
    """A bad canary for the services in ROLLOUT_STUB_BAD_SERVICES (comma-separated): fails from the
    weight in ROLLOUT_STUB_FAIL_AT_WEIGHT (default 50); every other canary passes."""
    bad = {s for s in os.environ.get("ROLLOUT_STUB_BAD_SERVICES", "").split(",") if s}
    fail_at = int(os.environ.get("ROLLOUT_STUB_FAIL_AT_WEIGHT") or 50)
    if bad & {w["service"] for w in context.workloads} and context.phase["weight"] >= fail_at:
        return an.Outcome(
            an.FAIL, "stub failure: bad canary", metric="stub", observed=context.phase["weight"], threshold=fail_at
        )
    return an.Outcome(an.PASS, "stub: healthy")
