"""Reads shared by views, the API and tasks. Visibility rules live here and nowhere else."""
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Exists, OuterRef, QuerySet, Subquery

from policies.choices import ROLE_RANK, Role
from policies.models import Environment, Membership, NamespaceOwnership, Policy, PolicyRevision, Team

User = AbstractBaseUser | AnonymousUser


def sees_everything(user: User) -> bool:
    """Superusers and members of a security team read every policy."""
    if not user.is_authenticated:
        return False
    return user.is_superuser or Membership.objects.filter(user=user, team__is_security=True).exists()


def _owner_subquery(field: str = "team__name") -> Subquery:
    return Subquery(
        NamespaceOwnership.objects.filter(
            environment=OuterRef("environment"), namespace=OuterRef("namespace")
        ).values(field)[:1]
    )


def policy_list(*, user: User) -> QuerySet[Policy]:
    """The policies a user may read, with owner team and current revision loaded."""
    policies = Policy.objects.select_related("environment", "current_revision").annotate(
        owner_team=_owner_subquery("team__name"), owner_team_slug=_owner_subquery("team__slug")
    )
    if not user.is_authenticated:
        return policies.none()
    if sees_everything(user):
        return policies
    owned = NamespaceOwnership.objects.filter(
        environment=OuterRef("environment"), namespace=OuterRef("namespace"), team__memberships__user=user
    )
    return policies.filter(Exists(owned))


def policy_revisions(*, policy: Policy) -> QuerySet[PolicyRevision]:
    return policy.revisions.select_related("author").order_by("-number")


def environment_list(*, user: User) -> QuerySet[Environment]:
    if not user.is_authenticated:
        return Environment.objects.none()
    return Environment.objects.all()


def team_list(*, user: User) -> QuerySet[Team]:
    if not user.is_authenticated:
        return Team.objects.none()
    return Team.objects.prefetch_related("namespaces__environment")


def user_role_for_namespace(*, user: User, environment: Environment, namespace: str) -> Role | None:
    """The highest role the user holds in the team owning the namespace, or None."""
    if not user.is_authenticated:
        return None
    roles = Membership.objects.filter(
        user=user, team__namespaces__environment=environment, team__namespaces__namespace=namespace
    ).values_list("role", flat=True)
    return max(roles, key=lambda role: ROLE_RANK[role], default=None)


def user_is_admin(user: User) -> bool:
    """Platform admins: superusers or admins of any team."""
    return user.is_authenticated and (
        user.is_superuser or Membership.objects.filter(user=user, role=Role.ADMIN).exists()
    )

