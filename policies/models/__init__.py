from policies.models.audit import AuditChainHead, AuditEvent
from policies.models.draft import Draft
from policies.models.environment import Environment
from policies.models.idempotency import IdempotencyKey
from policies.models.policy import Policy, PolicyRevision
from policies.models.team import Membership, NamespaceOwnership, Team

__all__ = [
    "AuditChainHead",
    "AuditEvent",
    "Draft",
    "Environment",
    "IdempotencyKey",
    "Membership",
    "NamespaceOwnership",
    "Policy",
    "PolicyRevision",
    "Team",
]
