"""Enumerations of the rollout engine (kept here so the engine is one package; re-exported by
`policies.models.rollout`)."""
from django.db import models


class RolloutStrategy(models.TextChoices):
    CANARY = "canary", "Canary (traffic shifting)"
    DRY_RUN = "dry_run", "Dry run, then enforce"
    RAMP = "ramp", "Ramp (PERMISSIVE, then STRICT)"
    WAVES = "waves", "Waves (namespace after namespace)"
    DIRECT = "direct", "Direct (apply, bake, keep or roll back)"


class RolloutState(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    WAITING_GATE = "waiting_gate", "Waiting for a person"
    PROMOTING = "promoting", "Promoting"
    COMPLETED = "completed", "Completed"
    ROLLING_BACK = "rolling_back", "Rolling back"
    ROLLED_BACK = "rolled_back", "Rolled back"
    FAILED = "failed", "Failed"
    ABORTED = "aborted", "Aborted"

    @classmethod
    def active(cls) -> frozenset[str]:
        return frozenset({cls.PENDING, cls.RUNNING, cls.PAUSED, cls.WAITING_GATE, cls.PROMOTING, cls.ROLLING_BACK})

    @classmethod
    def due_states(cls) -> frozenset[str]:
        """States in which the engine itself acts when `next_action_at` is due."""
        return frozenset({cls.PENDING, cls.RUNNING, cls.PROMOTING, cls.ROLLING_BACK})

    @property
    def color(self) -> str:
        return {
            "pending": "muted", "running": "info", "paused": "warn", "waiting_gate": "warn", "promoting": "info",
            "completed": "ok", "rolling_back": "warn", "rolled_back": "warn", "failed": "error", "aborted": "muted",
        }[self.value]


class RolloutEventKind(models.TextChoices):
    STARTED = "started", "Started"
    SNAPSHOT = "snapshot", "Snapshot taken"
    APPLY = "apply", "Applied"
    ANALYSIS = "analysis", "Analysis interval"
    GATE = "gate", "Manual gate"
    PAUSED = "paused", "Paused"
    RESUMED = "resumed", "Resumed"
    PROMOTED = "promoted", "Promoted"
    ROLLBACK = "rollback", "Rolled back"
    FAILED = "failed", "Failed"
    ABORTED = "aborted", "Aborted"
    ERROR = "error", "Error"
    COMPLETED = "completed", "Completed"
    WEBHOOK = "webhook", "Webhook"


class RolloutAuditAction(models.TextChoices):
    ROLLOUT_STARTED = "rollout.started"
    ROLLOUT_WRITE = "rollout.cluster_write"
    ROLLOUT_PAUSED = "rollout.paused"
    ROLLOUT_RESUMED = "rollout.resumed"
    ROLLOUT_GATE_CONFIRMED = "rollout.gate_confirmed"
    ROLLOUT_PROMOTE_NOW = "rollout.promote_now"
    ROLLOUT_ABORTED = "rollout.aborted"
    ROLLOUT_COMPLETED = "rollout.completed"
    ROLLOUT_ROLLED_BACK = "rollout.rolled_back"
    ROLLOUT_FAILED = "rollout.failed"
    DRIFT_DETECTED = "policy.drift_detected"
    DRIFT_RESOLVED = "policy.drift_resolved"
