"""Reads about the caller's own account, shared by the portal pages and the API."""
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from portal.models import ApiToken


def token_list(*, user: AbstractBaseUser) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user_id=user.pk)
