"""API token lifecycle. The plaintext is returned once, at creation, and never stored."""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from policies.choices import AuditAction
from policies.exceptions import ApplicationError, PermissionDeniedError
from policies.services.audit import audit_record
from portal.choices import TokenScope
from portal.models import ApiToken, new_token_material, token_digest


@transaction.atomic
def token_create(
    *,
    user: User,
    name: str,
    scopes: list[str],
    expires_in_days: int,
    actor: User | None = None,
) -> tuple[ApiToken, str]:
    """A new token for `user`; `actor` is who issued it (the user themselves, or an admin issuing a
    service account's token)."""
    name = name.strip()
    if not name:
        raise ApplicationError("a token needs a name", extra={"field": "name"})
    unknown = sorted(set(scopes) - set(TokenScope.values))
    if unknown or not scopes:
        raise ApplicationError(
            f"scopes must be a non-empty subset of {', '.join(TokenScope.values)}", extra={"field": "scopes"}
        )
    limit = settings.MESHGATE_API_TOKEN_MAX_DAYS
    if not 1 <= expires_in_days <= limit:
        raise ApplicationError(f"expiry must be between 1 and {limit} days", extra={"field": "expires_in_days"})
    key_id, plaintext = new_token_material()
    token = ApiToken.objects.create(
        user=user,
        name=name,
        key_id=key_id,
        digest=token_digest(plaintext),
        scopes=sorted(set(scopes)),
        expires_at=timezone.now() + timedelta(days=expires_in_days),
    )
    audit_record(
        action=AuditAction.TOKEN_CREATED,
        actor=actor or user,
        obj=token,
        after={
            "name": name,
            "key_id": key_id,
            "scopes": token.scopes,
            "expires_at": token.expires_at,
            "user": user.get_username(),
        },
    )
    return token, plaintext


@transaction.atomic
def token_revoke(*, token: ApiToken, actor: User) -> ApiToken:
    if token.user_id != actor.pk and not actor.is_superuser:
        raise PermissionDeniedError("only the token's owner or an administrator can revoke it")
    if token.enabled:
        token.enabled = False
        token.save(update_fields=["enabled"])
        audit_record(action=AuditAction.TOKEN_REVOKED, actor=actor, obj=token, after={"key_id": token.key_id})
    return token
