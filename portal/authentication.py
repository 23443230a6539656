"""Bearer API tokens for pipelines: looked up by key id, verified against the stored digest."""

import hmac

from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from portal.models import TOKEN_PREFIX, ApiToken, token_digest


class TokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[User, ApiToken] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        scheme, _, plaintext = header.partition(" ")
        if scheme.lower() not in ("bearer", "token") or not plaintext:
            return None
        parts = plaintext.strip().split("_", 2)
        if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
            raise exceptions.AuthenticationFailed("malformed API token")
        token = ApiToken.objects.select_related("user").filter(key_id=parts[1]).first()
        if token is None or not hmac.compare_digest(token.digest, token_digest(plaintext.strip())):
            raise exceptions.AuthenticationFailed("invalid API token")
        if not token.enabled:
            raise exceptions.AuthenticationFailed("API token is revoked")
        if token.is_expired:
            raise exceptions.AuthenticationFailed("API token has expired")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("the token's user is inactive")
        now = timezone.now()
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'
