"""Reusable API tests, after NetBox's `utilities/testing/api.py`, for pytest.

Subclass a contract once per endpoint and say how to call it; the contract brings the tests
every endpoint owes its callers:

- an anonymous caller is refused with 401 and a `WWW-Authenticate` challenge;
- a token without the scope the method needs is refused with 403;
- the permitted caller gets the answer, by session and by token (or, for session-only
  endpoints, a token is refused with 403 `session_required`);
- for team-owned data, another team's objects are not listed and answer 404.

Every refusal is checked to carry the one error shape `{"code", "message", "details"}`.
"""

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpResponse
from django.utils import timezone
from rest_framework.test import APIClient

from portal.choices import TokenScope
from portal.models import ApiToken, new_token_material, token_digest
from portal.permissions import TokenScopePermission
from portal.services import token_create

ERROR_KEYS = {"code", "message", "details"}
BEARER_CHALLENGE = 'Bearer realm="api"'


# --- clients ------------------------------------------------------------------------------


def anonymous_client() -> APIClient:
    return APIClient()


def session_client(user: AbstractBaseUser) -> APIClient:
    """Signed in through a real session cookie, as the browser UI is."""
    client = APIClient()
    client.force_login(user)
    return client


def bearer_client(plaintext: str) -> APIClient:
    """Sends `Authorization: Bearer <token>` on every request, as a pipeline does."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    return client


def token_for(user: AbstractBaseUser, scopes: Sequence[str] = (TokenScope.READ,), days: int = 30) -> str:
    """A token issued the normal way; returns its plaintext."""
    _, plaintext = token_create(user=user, name="test token", scopes=list(scopes), expires_in_days=days)
    return plaintext


def stored_token(
    user: AbstractBaseUser,
    *,
    scopes: Sequence[str] = (TokenScope.READ,),
    expires_at: datetime | None = None,
    enabled: bool = True,
) -> tuple[ApiToken, str]:
    """A token written straight to the table, for states the service never issues
    (no known scope, already expired)."""
    key_id, plaintext = new_token_material()
    token = ApiToken.objects.create(
        user=user,
        name="stored token",
        key_id=key_id,
        digest=token_digest(plaintext),
        scopes=list(scopes),
        enabled=enabled,
        expires_at=expires_at or timezone.now() + timedelta(days=30),
    )
    return token, plaintext


# --- assertions ---------------------------------------------------------------------------


def assert_error(response: HttpResponse, status: int, *, code: str | None = None, message: str | None = None) -> Any:
    """The response is an error of the given status in the one error shape; returns `details`."""
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == ERROR_KEYS, body
    if code is not None:
        assert body["code"] == code, body
    if message is not None:
        assert body["message"] == message, body
    return body["details"]


def results(response: HttpResponse) -> list[dict]:
    """The items of a paginated list answer."""
    assert response.status_code == 200, response.content
    body = response.json()
    assert {"count", "next", "previous", "results"} <= set(body), body
    return body["results"]


# --- contracts ----------------------------------------------------------------------------


class EndpointContract:
    """One endpoint and method. Subclasses implement `url()` and, where needed, the hooks."""

    method: str = "get"
    scope: str = TokenScope.READ  # what a token needs for this call
    success_status: int = 200
    tokens_allowed: bool = True  # False: session-only, a token gets 403 session_required

    @pytest.fixture(autouse=True)
    def _arrange(self, org):
        self.arrange(org)

    def arrange(self, org) -> None:
        """Data the endpoint needs beyond the `org` fixture; runs before every contract test."""

    def url(self, org) -> str:
        raise NotImplementedError

    def payload(self, org) -> dict | None:
        return None

    def permitted_user(self, org) -> AbstractBaseUser:
        return org.author

    def check_response(self, response: HttpResponse, org) -> None:
        """Endpoint-specific assertions on the permitted caller's answer."""

    def call(self, client: APIClient, org, url: str | None = None) -> HttpResponse:
        url = url or self.url(org)
        if self.method == "get":
            return client.get(url)
        return getattr(client, self.method)(url, self.payload(org), format="json")

    def _assert_permitted(self, response: HttpResponse, org) -> None:
        assert response.status_code == self.success_status, response.content
        self.check_response(response, org)

    def test_anonymous_is_refused(self, org):
        response = self.call(anonymous_client(), org)
        assert_error(response, 401, code="not_authenticated")
        assert response["WWW-Authenticate"] == BEARER_CHALLENGE

    def test_token_without_the_scope_is_forbidden(self, org):
        lacking = [] if self.scope == TokenScope.READ else [TokenScope.READ]
        _, plaintext = stored_token(self.permitted_user(org), scopes=lacking)
        response = self.call(bearer_client(plaintext), org)
        assert_error(response, 403, code="permission_denied", message=TokenScopePermission.message)

    def test_permitted_with_a_session(self, org):
        self._assert_permitted(self.call(session_client(self.permitted_user(org)), org), org)

    def test_permitted_with_a_token(self, org):
        plaintext = token_for(self.permitted_user(org), scopes=[self.scope])
        response = self.call(bearer_client(plaintext), org)
        if self.tokens_allowed:
            self._assert_permitted(response, org)
        else:
            assert_error(response, 403, code="session_required")


class TeamScopedListContract(EndpointContract):
    """A list of team-owned objects: the permitted user must not see another team's."""

    def hidden(self, org) -> Any:
        """The identity of an object the permitted user must not see."""
        raise NotImplementedError

    def identity(self, item: dict) -> Any:
        return item["id"]

    def test_other_teams_objects_are_not_listed(self, org):
        items = results(self.call(session_client(self.permitted_user(org)), org))
        assert self.hidden(org) not in [self.identity(item) for item in items]


class TeamScopedObjectContract(EndpointContract):
    """One team-owned object (or a list under one): another team's answers 404, as if absent."""

    def foreign_url(self, org) -> str:
        """The same endpoint for an object of a team the permitted user is not in."""
        raise NotImplementedError

    def missing_url(self, org) -> str:
        """The same endpoint for an object that does not exist."""
        raise NotImplementedError

    @pytest.mark.parametrize("which", ["foreign_url", "missing_url"])
    def test_other_teams_and_missing_objects_are_not_found(self, org, which):
        url = getattr(self, which)(org)
        response = self.call(session_client(self.permitted_user(org)), org, url=url)
        assert_error(response, 404, code="not_found")
