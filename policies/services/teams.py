"""A team's members, governed by the team's admins (and platform admins): add a person with a role,
change their role, remove them. One transaction and one audit row each.

Memberships set from the identity provider's groups (`source=sso`) are changed there, not here
(the next sign-in would undo it); a service account's membership belongs to the account
(`policies.services.service_accounts`). A team keeps at least one admin once it has one.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import ValidationError
from django.db import transaction

from policies import selectors
from policies.choices import AuditAction, MembershipSource, Role
from policies.exceptions import PermissionDeniedError
from policies.models import Membership, ServiceAccount, Team
from policies.services.audit import audit_record


def user_may_manage_members(*, user: User | AnonymousUser, team: Team) -> bool:
    """The team's admins and platform admins."""
    return selectors.user_is_team_admin(user, team.pk)


def require_member_manager(actor: User, team: Team) -> None:
    if not user_may_manage_members(user=actor, team=team):
        raise PermissionDeniedError(f"only admins of team {team.name} (or platform admins) may manage its members")


def _member_user(username: str) -> User:
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise ValidationError({"username": f"no user is named {username!r}"})
    if not user.is_active:
        raise ValidationError({"username": f"{username} is deactivated"})
    if ServiceAccount.objects.filter(user=user).exists():
        raise ValidationError({"username": f"{username} is a service account: its team and role are set with it"})
    return user


def _refuse_if_managed_elsewhere(membership: Membership) -> None:
    if membership.source == MembershipSource.SSO:
        raise ValidationError(
            {
                "username": f"{membership.user.get_username()}'s membership comes from the identity provider's "
                "groups: change it there"
            }
        )


def _refuse_if_last_admin(team: Team, membership: Membership) -> None:
    others = Membership.objects.filter(team=team, role=Role.ADMIN).exclude(pk=membership.pk)
    if membership.role == Role.ADMIN and not others.exists():
        raise ValidationError(
            {
                "role": f"{membership.user.get_username()} is the last admin of team {team.name}: make someone else admin first"
            }
        )


def team_member_save(*, actor: User, team: Team, username: str, role: str) -> Membership:
    """Adds `username` to the team with `role`, or changes the role of a member."""
    require_member_manager(actor, team)
    if role not in Role.values:
        raise ValidationError({"role": f"{role!r} is not a role: one of {', '.join(Role.values)}"})
    user = _member_user(username)
    with transaction.atomic():
        # Lock the team's memberships so two admins cannot each demote the other.
        memberships = {m.user_id: m for m in Membership.objects.select_for_update().filter(team=team)}
        membership = memberships.get(user.pk)
        if membership is None:
            membership = Membership.objects.create(team=team, user=user, role=role, source=MembershipSource.LOCAL)
            before = None
        else:
            _refuse_if_managed_elsewhere(membership)
            if membership.role == role:
                return membership
            if role != Role.ADMIN:
                _refuse_if_last_admin(team, membership)
            before = {"user": username, "role": membership.role}
            membership.role = role
            membership.save(update_fields=["role"])
        audit_record(
            action=AuditAction.TEAM_MEMBER_SET,
            actor=actor,
            obj=team,
            before=before,
            after={"user": username, "role": role},
        )
    return membership


def team_member_remove(*, actor: User, team: Team, username: str) -> None:
    require_member_manager(actor, team)
    with transaction.atomic():
        list(Membership.objects.select_for_update().filter(team=team))
        membership = Membership.objects.select_related("user").filter(team=team, user__username=username).first()
        if membership is None:
            raise ValidationError({"username": f"{username} is not a member of team {team.name}"})
        _refuse_if_managed_elsewhere(membership)
        if ServiceAccount.objects.filter(user=membership.user).exists():
            raise ValidationError({"username": f"{username} is a service account: revoke it instead"})
        _refuse_if_last_admin(team, membership)
        membership.delete()
        audit_record(
            action=AuditAction.TEAM_MEMBER_REMOVED,
            actor=actor,
            obj=team,
            before={"user": username, "role": membership.role},
        )
