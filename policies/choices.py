from django.db import models


class PolicyKind(models.TextChoices):
    VIRTUAL_SERVICE = "VirtualService", "VirtualService"
    DESTINATION_RULE = "DestinationRule", "DestinationRule"
    GATEWAY = "Gateway", "Gateway"
    SERVICE_ENTRY = "ServiceEntry", "ServiceEntry"
    SIDECAR = "Sidecar", "Sidecar"
    AUTHORIZATION_POLICY = "AuthorizationPolicy", "AuthorizationPolicy"
    PEER_AUTHENTICATION = "PeerAuthentication", "PeerAuthentication"
    REQUEST_AUTHENTICATION = "RequestAuthentication", "RequestAuthentication"


SECURITY_KINDS = frozenset(
    {PolicyKind.AUTHORIZATION_POLICY, PolicyKind.PEER_AUTHENTICATION, PolicyKind.REQUEST_AUTHENTICATION}
)


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
    TOKEN_CREATED = "token.created"
    TOKEN_REVOKED = "token.revoked"
    DRAFT_CREATED = "draft.created"
    DRAFT_UPDATED = "draft.updated"
    DRAFT_DISCARDED = "draft.discarded"


class DraftOperation(models.TextChoices):
    """What applying a draft would do to its policy."""

    CREATE = "create", "Create"
    UPDATE = "update", "Update"
    DELETE = "delete", "Delete"

    @property
    def color(self) -> str:
        """The `mg-state-*` badge class suffix for this operation."""
        return {"create": "ok", "update": "info", "delete": "error"}[self.value]
