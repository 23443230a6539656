"""Sign-in backends: local passwords (can be turned off) and OpenID Connect single sign-on.

The OpenID Connect flow itself (authorization code with PKCE, state and nonce, ID token signature
checks) is mozilla-django-oidc's; Meshgate decides who the identity is and which teams its groups
give (`policies.services.sso`). Both settings are read at each sign-in, so turning passwords off
takes effect without a restart of the backends list."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from policies.exceptions import ApplicationError
from policies.services.sso import sso_login


class PasswordBackend(ModelBackend):
    """Django's password check, while `MESHGATE_PASSWORD_LOGIN` allows it."""

    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> Any:
        if not settings.MESHGATE_PASSWORD_LOGIN:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


class MeshgateOIDCBackend(OIDCAuthenticationBackend):
    """mozilla-django-oidc's code flow; the user and their memberships come from `sso_login`."""

    def authenticate(self, request: HttpRequest | None, **kwargs: Any) -> Any:
        if not settings.MESHGATE_OIDC_ENABLED:
            return None
        return super().authenticate(request, **kwargs)

    def get_or_create_user(self, access_token: str, id_token: str, payload: dict[str, Any]) -> Any:
        claims = {**payload, **self.get_userinfo(access_token, id_token, payload)}
        try:
            return sso_login(
                issuer=settings.MESHGATE_OIDC_ISSUER,
                claims=claims,
                groups_claim=settings.MESHGATE_OIDC_GROUPS_CLAIM,
                username_claim=settings.MESHGATE_OIDC_USERNAME_CLAIM,
            )
        except ApplicationError:
            return None
