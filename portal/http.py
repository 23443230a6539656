"""Request helpers shared by the portal's and the domain's views."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

if TYPE_CHECKING:
    from rest_framework.request import Request


def signed_in_user(request: HttpRequest | Request) -> User:
    """The user of a view that requires one (`login_required`, DRF's `IsAuthenticated`); for the
    type checker, `request.user` may still be anonymous."""
    user = request.user
    if not isinstance(user, User):
        raise PermissionDenied("sign in first")
    return user
