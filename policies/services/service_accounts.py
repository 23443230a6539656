"""Service accounts: team-owned, non-human identities for CI/CD pipelines.

A service account is a user that can never sign in (no usable password) with one membership in its
team. Because it is a user, every rule that applies to people applies to it unchanged (who may
author where, who may approve what, never approving its own change) and every audit row names it
as the actor. Its tokens are ordinary API tokens (hashed, scoped, expiring), issued by an admin of
the team or a platform admin without a session: from the UI, the API or `manage.py`.

An author service account is the usual case. One that approves needs a platform admin
(`MESHGATE_SERVICE_ACCOUNT_APPROVERS` must also allow it) since it removes a person from the review.
"""

from __future__ import annotations

import re

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from policies.choices import AuditAction, Role
from policies.exceptions import ApplicationError, ConflictError, PermissionDeniedError
from policies.models import Membership, ServiceAccount, Team
from policies.selectors import user_is_platform_admin
from policies.services.audit import audit_record
from portal.models import ApiToken
from portal.services import token_create

PREFIX = "sa."
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,48}[a-z0-9])?$")
ROLES = (Role.AUTHOR, Role.APPROVER)


def _is_platform_admin(user: User) -> bool:
    return user_is_platform_admin(user)


def user_may_manage_service_accounts(*, user: User, team: Team) -> bool:
    """Admins of the team and platform admins (superusers)."""
    if not user.is_authenticated or _is_service(user):
        return False  # a pipeline never creates identities or tokens
    return _is_platform_admin(user) or Membership.objects.filter(team=team, user=user, role=Role.ADMIN).exists()


def _is_service(user: User) -> bool:
    return ServiceAccount.objects.filter(user_id=user.pk).exists()


def service_account_create(
    *, actor: User, team: Team, name: str, role: str = Role.AUTHOR, description: str = ""
) -> ServiceAccount:
    if not user_may_manage_service_accounts(user=actor, team=team):
        raise PermissionDeniedError(f"only an admin of {team.name} or a platform admin can create its service accounts")
    name = name.strip().lower()
    if not _NAME.match(name):
        raise ApplicationError(
            "a service account's name is 1-50 lowercase letters, digits and dashes, starting and ending with a "
            "letter or digit",
            extra={"field": "name"},
        )
    if role not in ROLES:
        raise ApplicationError(f"a service account's role is one of {', '.join(ROLES)}", extra={"field": "role"})
    if role == Role.APPROVER and not (settings.MESHGATE_SERVICE_ACCOUNT_APPROVERS and _is_platform_admin(actor)):
        raise PermissionDeniedError(
            "an approving service account needs a platform admin, and MESHGATE_SERVICE_ACCOUNT_APPROVERS must allow it"
        )
    username = f"{PREFIX}{name}"
    user_model = get_user_model()
    with transaction.atomic():
        if user_model.objects.filter(username=username).exists():
            raise ConflictError(f"the name {username} is taken", extra={"field": "name"})
        user = user_model(username=username, email="")
        user.set_unusable_password()
        user.save()
        Membership.objects.create(team=team, user=user, role=role)
        account = ServiceAccount.objects.create(user=user, team=team, description=description, created_by=actor)
        audit_record(
            action=AuditAction.SERVICE_ACCOUNT_CREATED,
            actor=actor,
            obj=account,
            after={"name": username, "team": team.slug, "role": role},
        )
    return account


def service_account_revoke(*, actor: User, account: ServiceAccount) -> ServiceAccount:
    """Disables the account and every token of it, at once; its history stays."""
    if not user_may_manage_service_accounts(user=actor, team=account.team):
        raise PermissionDeniedError(f"only an admin of {account.team.name} or a platform admin can revoke it")
    with transaction.atomic():
        account = ServiceAccount.objects.select_for_update().select_related("user").get(pk=account.pk)
        if account.revoked_at is None:
            account.revoked_at = timezone.now()
            account.save(update_fields=["revoked_at"])
            account.user.is_active = False
            account.user.save(update_fields=["is_active"])
            revoked = ApiToken.objects.filter(user=account.user, enabled=True).update(enabled=False)
            audit_record(
                action=AuditAction.SERVICE_ACCOUNT_REVOKED,
                actor=actor,
                obj=account,
                after={"name": account.name, "tokens_revoked": revoked},
            )
    return account


def service_account_token_create(
    *, actor: User, account: ServiceAccount, name: str, scopes: list[str], expires_in_days: int
) -> tuple[ApiToken, str]:
    """A token for the account, shown once; the audit row names the admin who issued it."""
    if not user_may_manage_service_accounts(user=actor, team=account.team):
        raise PermissionDeniedError(f"only an admin of {account.team.name} or a platform admin can issue its tokens")
    if not account.is_active:
        raise ConflictError(f"{account.name} is revoked")
    return token_create(user=account.user, name=name, scopes=scopes, expires_in_days=expires_in_days, actor=actor)


def _account_token(*, account: ServiceAccount, token: ApiToken) -> ApiToken:
    """The token, locked, if it is one of the account's (another user's token is refused)."""
    locked = ApiToken.objects.select_for_update().filter(pk=token.pk, user_id=account.user_id).first()
    if locked is None:
        raise PermissionDeniedError(f"that token is not one of {account.name}'s")
    return locked


def service_account_token_revoke(*, actor: User, account: ServiceAccount, token: ApiToken) -> ApiToken:
    """Disables one token of the account at once; the account and its other tokens stay."""
    if not user_may_manage_service_accounts(user=actor, team=account.team):
        raise PermissionDeniedError(f"only an admin of {account.team.name} or a platform admin can revoke its tokens")
    with transaction.atomic():
        token = _account_token(account=account, token=token)
        if token.enabled:
            token.enabled = False
            token.save(update_fields=["enabled"])
            audit_record(
                action=AuditAction.TOKEN_REVOKED,
                actor=actor,
                obj=token,
                after={"key_id": token.key_id, "user": account.name},
            )
    return token


def service_account_token_rotate(*, actor: User, account: ServiceAccount, token: ApiToken) -> tuple[ApiToken, str]:
    """Replaces a token with a new one of the same name, scopes and lifetime, shown once; the old one
    stops working in the same transaction (the pipeline's secret must be updated with the new one)."""
    if not user_may_manage_service_accounts(user=actor, team=account.team):
        raise PermissionDeniedError(f"only an admin of {account.team.name} or a platform admin can rotate its tokens")
    if not account.is_active:
        raise ConflictError(f"{account.name} is revoked")
    with transaction.atomic():
        old = _account_token(account=account, token=token)
        if not old.enabled:
            raise ConflictError(f"the token {old.name} is revoked: issue a new one instead")
        lifetime = max(1, round((old.expires_at - old.created_at).total_seconds() / 86400))
        days = min(lifetime, settings.MESHGATE_API_TOKEN_MAX_DAYS)
        new, plaintext = token_create(
            user=account.user, name=old.name, scopes=list(old.scopes), expires_in_days=days, actor=actor
        )
        old.enabled = False
        old.save(update_fields=["enabled"])
        audit_record(
            action=AuditAction.TOKEN_ROTATED,
            actor=actor,
            obj=old,
            after={"key_id": old.key_id, "user": account.name, "replaced_by": new.key_id},
        )
    return new, plaintext
