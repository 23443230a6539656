"""Template context shared by every page: what the navigation may offer the signed-in user.

Evaluated lazily: a page that does not render the navigation (an htmx fragment) runs no query."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from policies import selectors


def navigation(request: HttpRequest) -> dict[str, object]:
    user = getattr(request, "user", None)
    return {
        # the same check the audit log's views make (platform admins and the security team)
        "may_read_audit": SimpleLazyObject(lambda: user is not None and selectors.user_may_read_audit(user)),
        # team admins and platform admins: the service-account pages answer them (and 403 anyone else)
        "may_manage_service_accounts": SimpleLazyObject(
            lambda: user is not None and selectors.user_manages_service_accounts(user)
        ),
        # the approval-rules page's own check (platform admins and team admins)
        "may_edit_rules": SimpleLazyObject(
            lambda: (
                user is not None and (selectors.user_is_admin(user) or selectors.teams_administered(user=user).exists())
            )
        ),
    }


def sign_in(request: HttpRequest) -> dict[str, object]:
    """How people may sign in: the login page offers what is on."""
    return {
        "password_login": settings.MESHGATE_PASSWORD_LOGIN,
        "sso_enabled": settings.MESHGATE_OIDC_ENABLED,
        "sso_button": settings.MESHGATE_OIDC_BUTTON,
    }
