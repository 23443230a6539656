"""The run-level rule: what a rollout does after each analysis interval.

``decide(policy, state, result) -> Decision(action, reason, state)``; the caller stores
``decision.state`` (``to_dict`` / ``from_dict``) with the rollout and acts:

- ``rollback``: ``failure_limit`` failed intervals (in total, as Flagger and Argo count);
- ``advance``: ``required_successes`` passing intervals in a row (next step / promote);
- ``pause``: ``no_data_limit`` no-data/error intervals in a row (no traffic, empty query,
  metrics backend down), or ``inconclusive_limit`` undecided ones in a row, or
  ``both_bad_limit`` intervals in a row where stable breaches the guard rail as much as the
  canary (a shared incident: the canary is not blamed), or ``accumulate_limit`` intervals in
  a row still gathering evidence (warm-up, not enough traffic yet): a person looks.
  A provider outage alone NEVER rolls back and never counts as a pass;
- ``wait``: analyse another interval.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any

from policies.analysis.interval import IntervalResult, Verdict


class Action(StrEnum):
    WAIT = "wait"
    ADVANCE = "advance"
    ROLLBACK = "rollback"
    PAUSE = "pause"


@dataclass(frozen=True)
class AnalysisPolicy:
    failure_limit: int = 1
    required_successes: int = 1
    no_data_limit: int = 3
    inconclusive_limit: int = 10
    both_bad_limit: int = 10  # a shared incident of a few minutes holds the step, a longer one asks a person
    accumulate_limit: int = 120

    def __post_init__(self) -> None:
        for name in (
            "failure_limit",
            "required_successes",
            "no_data_limit",
            "inconclusive_limit",
            "both_bad_limit",
            "accumulate_limit",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")


@dataclass(frozen=True)
class AnalysisState:
    intervals: int = 0
    failures: int = 0
    successes_in_row: int = 0
    no_data_in_row: int = 0
    inconclusive_in_row: int = 0
    both_bad_in_row: int = 0
    accumulating_in_row: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> AnalysisState:
        data = data or {}
        return cls(**{k: int(data.get(k, 0)) for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    state: AnalysisState


def decide(policy: AnalysisPolicy, state: AnalysisState, result: IntervalResult) -> Decision:
    state = replace(state, intervals=state.intervals + 1)
    verdict = result.verdict
    if verdict == Verdict.FAIL:
        state = replace(
            state,
            failures=state.failures + 1,
            successes_in_row=0,
            no_data_in_row=0,
            inconclusive_in_row=0,
            both_bad_in_row=0,
            accumulating_in_row=0,
        )
        count = f"{state.failures} of {policy.failure_limit} failed intervals"
        if state.failures >= policy.failure_limit:
            return Decision(Action.ROLLBACK, f"roll back ({count}): {result.reason}", state)
        return Decision(Action.WAIT, f"failed interval ({count}): {result.reason}", state)
    if verdict == Verdict.PASS:
        state = replace(
            state,
            successes_in_row=state.successes_in_row + 1,
            no_data_in_row=0,
            inconclusive_in_row=0,
            both_bad_in_row=0,
            accumulating_in_row=0,
        )
        count = f"{state.successes_in_row} of {policy.required_successes} passing intervals"
        if state.successes_in_row >= policy.required_successes:
            return Decision(Action.ADVANCE, f"advance ({count}): {result.reason}", state)
        return Decision(Action.WAIT, f"passed ({count}): {result.reason}", state)
    if verdict in (Verdict.NO_DATA, Verdict.ERROR):
        state = replace(
            state,
            successes_in_row=0,
            no_data_in_row=state.no_data_in_row + 1,
            inconclusive_in_row=0,
        )
        what = "metrics provider error" if verdict == Verdict.ERROR else "no data"
        count = f"{state.no_data_in_row} of {policy.no_data_limit} in a row"
        if state.no_data_in_row >= policy.no_data_limit:
            return Decision(Action.PAUSE, f"paused for a person: {what} ({count}): {result.reason}", state)
        return Decision(Action.WAIT, f"waiting: {what} ({count}): {result.reason}", state)
    if result.both_bad:
        state = replace(
            state, successes_in_row=0, no_data_in_row=0, accumulating_in_row=0,
            both_bad_in_row=state.both_bad_in_row + 1,
        )  # fmt: skip
        count = f"{state.both_bad_in_row} of {policy.both_bad_limit} in a row"
        if state.both_bad_in_row >= policy.both_bad_limit:
            return Decision(
                Action.PAUSE,
                f"paused for a person: stable is as bad as the canary ({count}), the canary is "
                f"not blamed: {result.reason}", state,
            )  # fmt: skip
        return Decision(Action.WAIT, f"both versions bad ({count}): {result.reason}", state)
    if result.accumulating:
        state = replace(
            state, successes_in_row=0, no_data_in_row=0, both_bad_in_row=0,
            accumulating_in_row=state.accumulating_in_row + 1,
        )  # fmt: skip
        count = f"{state.accumulating_in_row} of {policy.accumulate_limit} in a row"
        if state.accumulating_in_row >= policy.accumulate_limit:
            return Decision(
                Action.PAUSE, f"paused for a person: still gathering evidence ({count}): "
                f"{result.reason}", state,
            )  # fmt: skip
        return Decision(Action.WAIT, f"gathering evidence ({count}): {result.reason}", state)
    state = replace(
        state,
        successes_in_row=0,
        no_data_in_row=0,
        both_bad_in_row=0,
        accumulating_in_row=0,
        inconclusive_in_row=state.inconclusive_in_row + 1,
    )
    count = f"{state.inconclusive_in_row} of {policy.inconclusive_limit} in a row"
    if state.inconclusive_in_row >= policy.inconclusive_limit:
        return Decision(Action.PAUSE, f"paused for a person: inconclusive ({count}): {result.reason}", state)
    return Decision(Action.WAIT, f"inconclusive ({count}): {result.reason}", state)
