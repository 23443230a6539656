"""Reads about the caller's own account, shared by the portal pages and the API."""

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet

from portal.models import ApiToken


def token_list(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[ApiToken]:
    """The user's tokens (none for an anonymous one, e.g. while the API schema is generated)."""
    if isinstance(user, AnonymousUser):
        return ApiToken.objects.none()
    return ApiToken.objects.filter(user_id=user.pk)
