"""Reads shared by views, the API and tasks. Visibility rules live here and nowhere else."""
from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet, Subquery

from policies.choices import ROLE_RANK, Role
from policies.models import Draft, Environment, Membership, NamespaceOwnership, Policy, PolicyRevision, Team

if TYPE_CHECKING:
    from policies.diff import ObjectDiff
    from policies.validation.service import ValidationReport

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
    members = Membership.objects.select_related("user").order_by("user__username")
    return Team.objects.prefetch_related(
        Prefetch("memberships", queryset=members),
        Prefetch("namespaces", queryset=NamespaceOwnership.objects.select_related("environment")),
    )


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



# --- drafts -------------------------------------------------------------------------------

def user_may_author(*, user: User, environment: Environment, namespace: str) -> bool:
    """Drafting in a namespace takes a role (author or higher) in its owning team, or superuser."""
    if not user.is_authenticated:
        return False
    return user.is_superuser or user_role_for_namespace(user=user, environment=environment, namespace=namespace) is not None


def user_may_manage_drafts(*, user: User, environment: Environment, namespace: str) -> bool:
    """Discarding someone else's draft: superusers and admins of the team owning the namespace."""
    if not user.is_authenticated:
        return False
    role = user_role_for_namespace(user=user, environment=environment, namespace=namespace)
    return user.is_superuser or role == Role.ADMIN


def draft_list(*, user: User, environment: Environment | None = None) -> QuerySet[Draft]:
    """The user's own drafts, with environment, policy and author loaded."""
    if not user.is_authenticated:
        return Draft.objects.none()
    drafts = Draft.objects.filter(author=user).select_related(
        "environment", "policy__current_revision", "base_revision", "author"
    )
    if environment is not None:
        drafts = drafts.filter(environment=environment)
    return drafts


def draft_visible_list(*, user: User) -> QuerySet[Draft]:
    """Drafts a user may open: their own; every draft for superusers; drafts in namespaces whose
    owning team the user administers."""
    drafts = Draft.objects.select_related("environment", "policy__current_revision", "base_revision", "author")
    if not user.is_authenticated:
        return drafts.none()
    if user.is_superuser:
        return drafts
    administered = NamespaceOwnership.objects.filter(
        environment=OuterRef("environment"), namespace=OuterRef("namespace"),
        team__memberships__user=user, team__memberships__role=Role.ADMIN,
    )
    return drafts.filter(Q(author=user) | Exists(administered))


def policy_for_identity(*, environment: Environment, kind: str, namespace: str, name: str) -> Policy | None:
    return (
        Policy.objects.select_related("current_revision")
        .filter(environment=environment, kind=kind, namespace=namespace, name=name)
        .first()
    )


def draft_diff(*, draft: Draft) -> ObjectDiff:
    """The draft against its policy's current revision (nothing on the left for a new policy)."""
    from policies.diff import diff_objects

    current = draft.policy.current_revision if draft.policy_id else None
    return diff_objects(current.content if current is not None else None, draft.content)


def draft_validation(*, draft: Draft, dry_run: bool = False) -> ValidationReport | None:
    """A fresh validation of the draft's text against its environment (None for a deletion)."""
    if draft.content is None:
        return None
    from policies.validation.service import validate_text

    return validate_text(environment=draft.environment, text=draft.source_text, dry_run=dry_run)
