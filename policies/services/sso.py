"""Single sign-on: who an OpenID Connect identity is in Meshgate, and their teams from its groups.

At every login through the identity provider:
- the user is found by the provider's `(issuer, sub)` (`ExternalIdentity`), never by a name a
  local account might share; a first login creates the user (named after `preferred_username`,
  made unique if a local account has that name);
- the groups claim is mapped through `GroupMapping` (admin-configured: group → team and role);
  memberships that came from single sign-on are set to exactly what the groups give (created,
  changed, or removed once the person left the group); memberships granted by hand in Meshgate are
  never touched. Each change is audited with the user as the actor.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from policies.choices import ROLE_RANK, AuditAction, MembershipSource, Role
from policies.exceptions import PermissionDeniedError
from policies.models import ExternalIdentity, GroupMapping, Membership, ServiceAccount, Team
from policies.services.audit import audit_record

USERNAME_MAX = 150


def sso_desired_roles(groups: Iterable[str]) -> dict[int, str]:
    """Team id → the highest role any of the groups maps to."""
    desired: dict[int, str] = {}
    for team_id, role in GroupMapping.objects.filter(group__in=list(groups)).values_list("team_id", "role"):
        if team_id not in desired or ROLE_RANK[Role(role)] > ROLE_RANK[Role(desired[team_id])]:
            desired[team_id] = role
    return desired


def sso_login(*, issuer: str, claims: Mapping[str, Any], groups_claim: str, username_claim: str) -> User:
    """The user for these ID-token / userinfo claims, created on first login, with their teams
    synchronised from the groups claim."""
    subject = str(claims.get("sub") or "")
    if not subject:
        raise PermissionDeniedError("the identity provider sent no subject (sub)")
    raw_groups = claims.get(groups_claim) or []
    groups = sorted({str(g) for g in raw_groups}) if isinstance(raw_groups, list | tuple) else [str(raw_groups)]
    with transaction.atomic():
        identity = (
            ExternalIdentity.objects.select_for_update()
            .select_related("user")
            .filter(issuer=issuer, subject=subject)
            .first()
        )
        if identity is None:
            user = _new_user(str(claims.get(username_claim) or claims.get("email") or subject), claims)
            identity = ExternalIdentity.objects.create(issuer=issuer, subject=subject, user=user)
        user = identity.user
        if not user.is_active or ServiceAccount.objects.filter(user=user).exists():
            raise PermissionDeniedError(f"{user.get_username()} may not sign in")
        _update_profile(user, claims)
        sso_sync_memberships(user=user, groups=groups)
        identity.groups = groups
        identity.last_login_at = timezone.now()
        identity.save(update_fields=["groups", "last_login_at"])
        audit_record(
            action=AuditAction.SSO_LOGIN,
            actor=user,
            obj=identity,
            after={"issuer": issuer, "subject": subject, "groups": groups},
        )
    return user


def sso_sync_memberships(*, user: User, groups: Iterable[str]) -> None:
    desired = sso_desired_roles(groups)
    current = {m.team_id: m for m in Membership.objects.select_for_update().filter(user=user).select_related("team")}
    teams = {team.pk: team for team in Team.objects.filter(pk__in=set(desired) | set(current))}
    for team_id, membership in current.items():
        if membership.source == MembershipSource.SSO and team_id not in desired:
            membership.delete()
            audit_record(
                action=AuditAction.TEAM_MEMBER_REMOVED,
                actor=user,
                obj=teams[team_id],
                before={"user": user.get_username(), "role": membership.role, "source": "sso"},
            )
    for team_id, role in desired.items():
        existing = current.get(team_id)
        before: dict[str, str] | None = None
        if existing is None:
            Membership.objects.create(team=teams[team_id], user=user, role=role, source=MembershipSource.SSO)
        elif existing.source != MembershipSource.SSO or existing.role == role:
            continue  # a membership granted in Meshgate is left as it is
        else:
            before = {"role": existing.role}
            existing.role = role
            existing.save(update_fields=["role"])
        audit_record(
            action=AuditAction.TEAM_MEMBER_SET,
            actor=user,
            obj=teams[team_id],
            before=before,
            after={"user": user.get_username(), "role": role, "source": "sso"},
        )


def _new_user(preferred: str, claims: Mapping[str, Any]) -> User:
    user_model = User
    base = "".join(c for c in preferred if c.isalnum() or c in "@.+-_")[: USERNAME_MAX - 8] or "user"
    username, number = base, 1
    while user_model.objects.filter(username=username).exists():
        number += 1
        username = f"{base}-{number}"
    user = user_model(username=username)
    user.set_unusable_password()
    _update_profile(user, claims, save=False)
    user.save()
    return user


def _update_profile(user: Any, claims: Mapping[str, Any], *, save: bool = True) -> None:
    values = {
        "email": str(claims.get("email") or ""),
        "first_name": str(claims.get("given_name") or "")[:150],
        "last_name": str(claims.get("family_name") or "")[:150],
    }
    changed = [field for field, value in values.items() if value and getattr(user, field) != value]
    for field in changed:
        setattr(user, field, values[field])
    if save and changed:
        user.save(update_fields=changed)
