from policies.models.audit import AuditChainHead, AuditEvent, AuditSeal
from policies.models.change import ApprovalRule, ChangeItem, ChangeRequest, Plan, PlanItem, Review, ReviewComment
from policies.models.draft import Draft
from policies.models.environment import Environment
from policies.models.guardrail import Guardrail, GuardrailOverride
from policies.models.idempotency import IdempotencyKey
from policies.models.inventory import InventoryObject, InventoryWatermark
from policies.models.notification import NotificationChannel, NotificationDelivery, NotificationPreference
from policies.models.policy import Policy, PolicyRevision
from policies.models.rollout import Lease, PolicyDrift, Rollout, RolloutEvent
from policies.models.team import (
    ExternalIdentity,
    GroupMapping,
    Membership,
    NamespaceOwnership,
    ServiceAccount,
    Team,
)
from policies.models.window import ChangeWindow

__all__ = [
    "ApprovalRule",
    "ChangeItem",
    "ChangeRequest",
    "Plan",
    "PlanItem",
    "Review",
    "ReviewComment",
    "AuditChainHead",
    "AuditSeal",
    "AuditEvent",
    "ChangeWindow",
    "Draft",
    "Environment",
    "Guardrail",
    "GuardrailOverride",
    "IdempotencyKey",
    "InventoryObject",
    "InventoryWatermark",
    "Lease",
    "Membership",
    "NamespaceOwnership",
    "NotificationChannel",
    "NotificationDelivery",
    "NotificationPreference",
    "Policy",
    "PolicyDrift",
    "PolicyRevision",
    "Rollout",
    "RolloutEvent",
    "ExternalIdentity",
    "GroupMapping",
    "ServiceAccount",
    "Team",
]
