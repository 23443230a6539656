"""Rollouts: the execution of an approved change on its environment.

- `Rollout` is the state of one execution: strategy, phases (steps), current step and weight,
  the pre-rollout snapshot of every live object the change touches, the resourceVersions Meshgate
  last saw or wrote, the analysis configuration and counters, why it paused or rolled back.
  The worker updates this row; the UI and API read it (never the Celery result backend).
- `RolloutEvent` is the rollout's timeline. An event with a `step_key` records that a keyed step
  happened: re-running a step whose key is recorded does nothing (idempotent steps).
- `PolicyDrift`: a managed policy whose live object differs from the last revision Meshgate applied.
"""

from typing import Any

from django.db import models
from django.db.models import Q
from django.utils import timezone

from policies.choices import RolloutEventKind, RolloutState, RolloutStrategy
from policies.models.change import ChangeRequest
from policies.models.environment import Environment
from policies.models.policy import Policy


class Rollout(models.Model):
    change = models.OneToOneField(ChangeRequest, on_delete=models.PROTECT, related_name="rollout")
    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="rollouts")
    strategy = models.CharField(max_length=10, choices=RolloutStrategy.choices)
    steps = models.JSONField(default=list, blank=True, help_text="Canary weights, e.g. [5, 10, 25, 50, 100].")
    phases = models.JSONField(
        default=list,
        blank=True,
        help_text="The planned phases: [{key, label, weight, gate, bake, writes: {identity: object|null}}].",
    )
    step_index = models.PositiveIntegerField(default=0, help_text="The phase being executed.")
    step_stage = models.CharField(max_length=10, default="apply", help_text="apply | analyze | gate.")
    current_weight = models.PositiveSmallIntegerField(default=0)
    state = models.CharField(max_length=20, choices=RolloutState.choices, default=RolloutState.PENDING, db_index=True)
    next_action_at = models.DateTimeField(null=True, blank=True, db_index=True)
    snapshot = models.JSONField(
        default=dict,
        blank=True,
        help_text="{identity: full live object before the first write, or null when it did not exist}.",
    )
    observed = models.JSONField(
        default=dict, blank=True, help_text="{identity: the resourceVersion Meshgate last saw or wrote ('' absent)}."
    )
    expected = models.JSONField(
        default=dict, blank=True, help_text="{identity: content hash of what Meshgate last saw or wrote ('' absent)}."
    )
    owned = models.JSONField(default=list, blank=True, help_text="Identities Meshgate has taken ownership of.")
    others = models.JSONField(
        default=dict,
        blank=True,
        help_text="Per identity: digest of the managedFields entries of the other field managers, as Meshgate last "
        "saw them (a change in it is another writer's edit; a change of Meshgate's own entry is not).",
    )
    lease_token = models.CharField(
        max_length=32, blank=True, help_text="The executor acting on this rollout now (empty: none)."
    )
    lease_expires_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the executor's lease lapses (a killed worker's lease is taken over after it).",
    )
    analysis = models.JSONField(
        default=dict, blank=True, help_text="{interval_seconds, intervals_per_step, failure_limit, metrics}."
    )
    analysis_runs = models.PositiveIntegerField(default=0, help_text="Intervals evaluated in the current phase.")
    analysis_failures = models.PositiveIntegerField(default=0, help_text="Failed intervals over the rollout.")
    pause_reason = models.TextField(blank=True)
    resume_state = models.CharField(max_length=20, blank=True)
    rollback_reason = models.JSONField(
        null=True, blank=True, help_text="{summary, metric, observed, threshold, interval, error}."
    )
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="Consecutive failed attempts of the current action.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)
    # Set on the instance (never stored) while the rollout engine acts on the row: engine.bind / advance.
    engine_effects: Any
    engine_lease: str

    class Meta:
        ordering = ["-pk"]
        indexes = [models.Index(fields=["state", "next_action_at"])]

    def __str__(self) -> str:
        return f"rollout of change #{self.change_id} ({self.strategy}, {self.state})"

    @property
    def state_color(self) -> str:
        return RolloutState(self.state).color

    @property
    def is_active(self) -> bool:
        return self.state in RolloutState.active()


class RolloutEvent(models.Model):
    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(default=timezone.now)
    kind = models.CharField(max_length=20, choices=RolloutEventKind.choices)
    message = models.CharField(max_length=1000)
    data = models.JSONField(default=dict, blank=True)
    step_key = models.CharField(max_length=200, null=True, blank=True)

    class Meta:
        ordering = ["at", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["rollout", "step_key"],
                condition=Q(step_key__isnull=False),
                name="one_event_per_rollout_step_key",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


class PolicyDrift(models.Model):
    policy = models.OneToOneField(Policy, on_delete=models.CASCADE, related_name="drift")
    detected_at = models.DateTimeField(default=timezone.now)
    live_content = models.JSONField(null=True, blank=True, help_text="Normalized live object (null: gone).")
    live_resource_version = models.CharField(max_length=64, blank=True)
    notified_hash = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-detected_at"]

    def __str__(self) -> str:
        return f"drift of {self.policy}"


class Lease(models.Model):
    """A named single-flight lease (e.g. `drift:<environment>`): held by one token until it expires."""

    key = models.CharField(max_length=100, unique=True)
    token = models.CharField(max_length=32)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"lease {self.key}"
