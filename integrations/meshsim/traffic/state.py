"""What the parts of the traffic model share: the state `TrafficModel` owns, declared once so the
routing and exposition halves mixed into it are typed against the same attributes."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..scenarios import Scenario
from .spec import DURATION_BUCKETS_MS, Sampler

if TYPE_CHECKING:
    from ..cluster import Cluster
    from .faults import TrafficFault
    from .workloads import Flow, Topology


@dataclass
class _Series:
    count: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS_MS) + 1))
    total_ms: float = 0.0


@dataclass
class _Ejection:
    until: float = 0.0
    times: int = 0
    streak: int = 0


class ModelState:
    """Attributes only (set by `TrafficModel.__init__` and `_reset_state`)."""

    cluster: Cluster
    seed: int
    scenario: Scenario
    lock: threading.RLock
    _dirty: bool
    _topology: Topology | None
    _flows: list[Flow]
    _faults: list[TrafficFault]
    _next_fault_id: int
    _rates: dict[tuple[str, str, str | None], float]
    sampler: Sampler
    clock_s: float
    _series: dict[tuple[tuple[str, ...], str, str], _Series]
    _dry_run: dict[tuple[str, ...], int]
    _ejections: dict[tuple[str, tuple[str, str]], _Ejection]
    _requests_by_version: dict[tuple[str, str, str], int]
