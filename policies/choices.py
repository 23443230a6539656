from django.db import models


class MembershipSource(models.TextChoices):
    LOCAL = "local", "Granted in Meshgate"
    SSO = "sso", "From single sign-on groups"


class PolicyKind(models.TextChoices):
    """Every kind of the Istio CRD file (integrations.kubernetes.KINDS has their groups and versions)."""

    VIRTUAL_SERVICE = "VirtualService", "VirtualService"
    DESTINATION_RULE = "DestinationRule", "DestinationRule"
    GATEWAY = "Gateway", "Gateway"
    SERVICE_ENTRY = "ServiceEntry", "ServiceEntry"
    SIDECAR = "Sidecar", "Sidecar"
    AUTHORIZATION_POLICY = "AuthorizationPolicy", "AuthorizationPolicy"
    PEER_AUTHENTICATION = "PeerAuthentication", "PeerAuthentication"
    REQUEST_AUTHENTICATION = "RequestAuthentication", "RequestAuthentication"
    WORKLOAD_ENTRY = "WorkloadEntry", "WorkloadEntry"
    WORKLOAD_GROUP = "WorkloadGroup", "WorkloadGroup"
    ENVOY_FILTER = "EnvoyFilter", "EnvoyFilter"
    PROXY_CONFIG = "ProxyConfig", "ProxyConfig"
    TELEMETRY = "Telemetry", "Telemetry"
    WASM_PLUGIN = "WasmPlugin", "WasmPlugin"
    TRAFFIC_EXTENSION = "TrafficExtension", "TrafficExtension"


SECURITY_KINDS = frozenset(
    {PolicyKind.AUTHORIZATION_POLICY, PolicyKind.PEER_AUTHENTICATION, PolicyKind.REQUEST_AUTHENTICATION}
)
# Kinds whose changes need a security-team approver by default: the security.istio.io kinds and the
# extensions that can rewrite the data path arbitrarily (Envoy configuration patches, Wasm and Lua
# filters): they can bypass or switch off authentication, authorization and mTLS.
DATA_PATH_EXTENSION_KINDS = frozenset({PolicyKind.ENVOY_FILTER, PolicyKind.WASM_PLUGIN, PolicyKind.TRAFFIC_EXTENSION})
SECURITY_REVIEW_KINDS = SECURITY_KINDS | DATA_PATH_EXTENSION_KINDS


class Role(models.TextChoices):
    """Membership roles, each including the ones before it."""

    AUTHOR = "author", "Author"
    APPROVER = "approver", "Approver"
    ADMIN = "admin", "Admin"


ROLE_RANK = {Role.AUTHOR: 1, Role.APPROVER: 2, Role.ADMIN: 3}


class ClusterAuth(models.TextChoices):
    TOKEN = "token", "API URL and bearer token"
    KUBECONFIG = "kubeconfig", "Kubeconfig file and context"
    IN_CLUSTER = "in_cluster", "In-cluster service account"


class RevisionSource(models.TextChoices):
    IMPORT = "import", "Imported from the cluster"
    DRAFT = "draft", "Authored in Meshgate"
    ROLLOUT = "rollout", "Applied by a rollout"


class LiveState(models.TextChoices):
    PRESENT = "present", "Live"
    ABSENT = "absent", "Not in cluster"


class AuditAction(models.TextChoices):
    ENVIRONMENT_CREATED = "environment.created"
    ENVIRONMENT_UPDATED = "environment.updated"
    ENVIRONMENT_IMPORTED = "environment.imported"
    TEAM_CREATED = "team.created"
    TEAM_MEMBER_SET = "team.member_set"
    NAMESPACE_ASSIGNED = "namespace.assigned"
    POLICY_REVISION_CREATED = "policy.revision_created"
    POLICY_LIVE_ABSENT = "policy.live_absent"
    POLICY_DRIFT_ADOPTED = "policy.drift_adopted"
    POLICY_DRIFT_REAPPLIED = "policy.drift_reapplied"
    PROMOTION_OVERRIDE_CREATED = "promotion_override.created"
    PROMOTION_OVERRIDE_UPDATED = "promotion_override.updated"
    PROMOTION_OVERRIDE_DELETED = "promotion_override.deleted"
    TOKEN_CREATED = "token.created"
    TOKEN_REVOKED = "token.revoked"
    TOKEN_ROTATED = "token.rotated"
    SERVICE_ACCOUNT_CREATED = "service_account.created"
    SERVICE_ACCOUNT_REVOKED = "service_account.revoked"
    TEAM_MEMBER_REMOVED = "team.member_removed"
    SSO_LOGIN = "sso.login"
    DRAFT_CREATED = "draft.created"
    DRAFT_UPDATED = "draft.updated"
    DRAFT_DISCARDED = "draft.discarded"
    # governance: guardrails, change windows, notification channels
    GUARDRAIL_CREATED = "guardrail.created"
    GUARDRAIL_UPDATED = "guardrail.updated"
    GUARDRAIL_OVERRIDDEN = "guardrail.overridden"
    WINDOW_CREATED = "window.created"
    WINDOW_UPDATED = "window.updated"
    CHANNEL_CREATED = "notification_channel.created"
    CHANNEL_UPDATED = "notification_channel.updated"
    CHANNEL_DELETED = "notification_channel.deleted"
    NOTIFICATION_PREFERENCE_SET = "notification_preference.set"
    NOTIFICATION_TEST_SENT = "notification.test_sent"


class DraftOperation(models.TextChoices):
    """What applying a draft would do to its policy."""

    CREATE = "create", "Create"
    UPDATE = "update", "Update"
    DELETE = "delete", "Delete"

    @property
    def color(self) -> str:
        """The `mg-state-*` badge class suffix for this operation."""
        return {"create": "ok", "update": "info", "delete": "error"}[self.value]


# --- governance: guardrails, change windows, notifications ---------------------------------


class GuardrailEnforcement(models.TextChoices):
    ADVISORY = "advisory", "Advisory"
    SOFT_MANDATORY = "soft_mandatory", "Soft mandatory"
    HARD_MANDATORY = "hard_mandatory", "Hard mandatory"

    @property
    def color(self) -> str:
        return {"advisory": "info", "soft_mandatory": "warn", "hard_mandatory": "error"}[self.value]


class GuardrailOutcome(models.TextChoices):
    PASSED = "passed", "Passed"
    FAILED = "failed", "Failed"
    ERROR = "error", "Error"

    @property
    def color(self) -> str:
        return {"passed": "ok", "failed": "error", "error": "warn"}[self.value]


class WindowKind(models.TextChoices):
    ALLOW = "allow", "Allow window"
    FREEZE = "freeze", "Freeze"

    @property
    def color(self) -> str:
        return {"allow": "ok", "freeze": "error"}[self.value]


class NotificationEvent(models.TextChoices):
    CHANGE_SUBMITTED = "change.submitted", "Change submitted"
    CHANGE_REVIEW_REQUESTED = "change.review_requested", "Review requested"
    CHANGE_COMMENTED = "change.commented", "Change commented"
    CHANGE_APPROVED = "change.approved", "Change approved"
    CHANGE_CHANGES_REQUESTED = "change.changes_requested", "Changes requested"
    CHANGE_REJECTED = "change.rejected", "Change rejected"
    CHANGE_STALE = "change.stale", "Change became stale"
    ROLLOUT_STARTED = "rollout.started", "Rollout started"
    ROLLOUT_STEP = "rollout.step", "Rollout step"
    ROLLOUT_PAUSED = "rollout.paused", "Rollout paused"
    ROLLOUT_PROMOTED = "rollout.promoted", "Rollout promoted"
    ROLLOUT_ROLLED_BACK = "rollout.rolled_back", "Rollout rolled back"
    ROLLOUT_FAILED = "rollout.failed", "Rollout failed"
    # a change's end, for pipelines: the change (not its rollout) reached a final state
    CHANGE_COMPLETED = "change.completed", "Change completed"
    CHANGE_ROLLED_BACK = "change.rolled_back", "Change rolled back"
    CHANGE_FAILED = "change.failed", "Change failed"
    CHANGE_ABORTED = "change.aborted", "Change aborted"
    DRIFT_DETECTED = "drift.detected", "Drift detected"
    TEST = "notification.test", "Test notification"


class NotificationChannelKind(models.TextChoices):
    EMAIL = "email", "Email"
    WEBHOOK = "webhook", "Webhook (HMAC-signed JSON)"
    SLACK = "slack", "Slack incoming webhook"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RETRYING = "retrying", "Retrying"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"

    @property
    def color(self) -> str:
        return {"pending": "muted", "retrying": "warn", "delivered": "ok", "failed": "error"}[self.value]


# --- change requests, reviews, plans ---------------------------------------------------------


class ChangeState(models.TextChoices):
    """A change request's life: authored, reviewed, then rolled out by the rollout engine."""

    DRAFT = "draft", "Draft"
    IN_REVIEW = "in_review", "In review"
    CHANGES_REQUESTED = "changes_requested", "Changes requested"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    SCHEDULED = "scheduled", "Scheduled"
    ROLLING_OUT = "rolling_out", "Rolling out"
    COMPLETED = "completed", "Completed"
    ROLLED_BACK = "rolled_back", "Rolled back"
    FAILED = "failed", "Failed"
    ABORTED = "aborted", "Aborted"
    WITHDRAWN = "withdrawn", "Withdrawn"

    @property
    def color(self) -> str:
        return {
            "withdrawn": "muted",
            "draft": "muted",
            "in_review": "info",
            "changes_requested": "warn",
            "approved": "ok",
            "rejected": "error",
            "scheduled": "info",
            "rolling_out": "info",
            "completed": "ok",
            "rolled_back": "warn",
            "failed": "error",
            "aborted": "muted",
        }[self.value]


# States in which a change is still open (it may yet change the cluster).
OPEN_CHANGE_STATES = frozenset(
    {
        ChangeState.DRAFT,
        ChangeState.IN_REVIEW,
        ChangeState.CHANGES_REQUESTED,
        ChangeState.APPROVED,
        ChangeState.SCHEDULED,
        ChangeState.ROLLING_OUT,
    }
)
# States in which the author may still edit items and rebase (approved/scheduled go back to review).
EDITABLE_CHANGE_STATES = frozenset(
    {
        ChangeState.DRAFT,
        ChangeState.IN_REVIEW,
        ChangeState.CHANGES_REQUESTED,
        ChangeState.APPROVED,
        ChangeState.SCHEDULED,
    }
)
# States in which reviewers act on a change.
REVIEWABLE_CHANGE_STATES = frozenset({ChangeState.IN_REVIEW, ChangeState.APPROVED})


# States from which the author may withdraw a change (nothing of it is in the cluster).
WITHDRAWABLE_CHANGE_STATES = frozenset(
    {
        ChangeState.DRAFT,
        ChangeState.IN_REVIEW,
        ChangeState.CHANGES_REQUESTED,
        ChangeState.APPROVED,
        ChangeState.SCHEDULED,
    }
)
# States from which an approver may retry the rollout (Argo Rollouts' retry).
RETRYABLE_CHANGE_STATES = frozenset({ChangeState.ROLLED_BACK, ChangeState.FAILED})


class ForeignControllerPolicy(models.TextChoices):
    """What a plan does with a live object another controller (Argo CD, Flux, Helm) manages."""

    WARN = "warn", "Go ahead and warn"
    REFUSE = "refuse", "Refuse"


class ReviewVerdict(models.TextChoices):
    APPROVE = "approve", "Approve"
    REQUEST_CHANGES = "request_changes", "Request changes"
    COMMENT = "comment", "Comment"

    @property
    def color(self) -> str:
        return {"approve": "ok", "request_changes": "warn", "comment": "muted"}[self.value]


class PlanStatus(models.TextChoices):
    OK = "ok", "OK"
    ERROR = "error", "Error"

    @property
    def color(self) -> str:
        return {"ok": "ok", "error": "error"}[self.value]


class PlanLiveState(models.TextChoices):
    """What a plan found in the cluster for one item."""

    PRESENT = "present", "Live"
    ABSENT = "absent", "Not in cluster"
    UNREADABLE = "unreadable", "Could not be read"


class SecurityApproval(models.TextChoices):
    """Whether an approval rule asks for a security-team approver."""

    DEFAULT = "default", "For security kinds"
    ALWAYS = "always", "Always"
    NEVER = "never", "Never"


class ChangeAuditAction(models.TextChoices):
    """Audit actions of the change workflow (kept apart from AuditAction for readability)."""

    CHANGE_CREATED = "change.created"
    CHANGE_SUBMITTED = "change.submitted"
    CHANGE_ITEM_UPDATED = "change.item_updated"
    CHANGE_APPROVED = "change.approved"
    CHANGE_BACK_TO_REVIEW = "change.back_to_review"
    CHANGE_CHANGES_REQUESTED = "change.changes_requested"
    CHANGE_REJECTED = "change.rejected"
    CHANGE_REBASED = "change.rebased"
    CHANGE_SCHEDULED = "change.scheduled"
    CHANGE_PROMOTED = "change.promoted"
    CHANGE_ITEMS_REPLACED = "change.items_replaced"
    CHANGE_WITHDRAWN = "change.withdrawn"
    CHANGE_RETRIED = "change.retried"
    CHANGE_PLAN_RESCUED = "change.plan_rescued"
    CHANGE_PLAN_GIVEN_UP = "change.plan_given_up"
    CHANGE_GUARDRAIL_OVERRIDDEN = "change.guardrail_overridden"
    CHANGE_ROLLOUT_OPTIONS_UPDATED = "change.rollout_options_updated"
    DRAFT_MOVED_TO_CHANGE = "draft.moved_to_change"
    REVIEW_APPROVED = "review.approved"
    REVIEW_CHANGES_REQUESTED = "review.changes_requested"
    REVIEW_VOIDED = "review.voided"
    COMMENT_CREATED = "comment.created"
    COMMENT_RESOLVED = "comment.resolved"
    APPROVAL_RULE_CREATED = "approval_rule.created"
    APPROVAL_RULE_UPDATED = "approval_rule.updated"
    APPROVAL_RULE_DELETED = "approval_rule.deleted"


# --- the rollout engine -------------------------------------------------------------------------------


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
            "pending": "muted",
            "running": "info",
            "paused": "warn",
            "waiting_gate": "warn",
            "promoting": "info",
            "completed": "ok",
            "rolling_back": "warn",
            "rolled_back": "warn",
            "failed": "error",
            "aborted": "muted",
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


class ChangeOutcome(models.TextChoices):
    """What a pipeline needs to know of a change: still going, or over and how it ended."""

    PENDING = "pending", "Pending"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"

    @classmethod
    def of(cls, state: str) -> "ChangeOutcome":
        if state == ChangeState.COMPLETED:
            return cls.SUCCEEDED
        if state in UNSUCCESSFUL_CHANGE_STATES:
            return cls.FAILED
        return cls.PENDING


# Final states in which the change did not reach the cluster as approved.
UNSUCCESSFUL_CHANGE_STATES = frozenset(
    {
        ChangeState.REJECTED,
        ChangeState.ROLLED_BACK,
        ChangeState.FAILED,
        ChangeState.ABORTED,
        ChangeState.WITHDRAWN,
    }
)
