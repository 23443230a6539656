from __future__ import annotations

from typing import TYPE_CHECKING

from rest_framework import permissions

from portal.choices import TokenScope
from portal.models import ApiToken

if TYPE_CHECKING:  # rest_framework.views reads the permission setting, which names this module
    from rest_framework.request import Request
    from rest_framework.views import APIView


class TokenScopePermission(permissions.BasePermission):
    """Authenticated users only; a token additionally needs `read` for safe methods, `write` otherwise."""

    message = "this API token lacks the scope for this request"

    def has_permission(self, request: Request, view: APIView) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        if isinstance(request.auth, ApiToken):
            needed = TokenScope.READ if request.method in permissions.SAFE_METHODS else TokenScope.WRITE
            return request.auth.has_scope(needed)
        return True
