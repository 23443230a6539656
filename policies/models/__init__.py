from policies.models.audit import AuditChainHead, AuditEvent
from policies.models.environment import Environment
from policies.models.policy import Policy, PolicyRevision
from policies.models.team import Membership, NamespaceOwnership, Team

__all__ = [
    "AuditChainHead",
    "AuditEvent",
    "Environment",
    "Membership",
    "NamespaceOwnership",
    "Policy",
    "PolicyRevision",
    "Team",
]
