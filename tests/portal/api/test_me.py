from django.urls import reverse

from portal.models import ApiToken
from tests.api_testing import EndpointContract, bearer_client, session_client, token_for


def me_url() -> str:
    return reverse("api:me")


class TestMe(EndpointContract):
    def url(self, org):
        return me_url()

    def check_response(self, response, org):
        body = response.json()
        assert body["username"] == "alice"
        assert body["teams"] == [{"slug": "bookinfo", "name": "Bookinfo", "role": "author"}]


def test_session_caller_has_no_token(org):
    body = session_client(org.approver).get(me_url()).json()
    assert body["teams"] == [{"slug": "bookinfo", "name": "Bookinfo", "role": "approver"}]
    assert body["token"] is None


def test_token_caller_sees_the_token_it_used(org):
    plaintext = token_for(org.sec, scopes=["read", "write"], days=10)
    token = ApiToken.objects.get(user=org.sec)
    body = bearer_client(plaintext).get(me_url()).json()
    assert body["username"] == "sam"
    assert body["teams"] == [{"slug": "security", "name": "Security", "role": "approver"}]
    assert body["token"] == {
        "key_id": token.key_id,
        "name": "test token",
        "scopes": ["read", "write"],
        "expires_at": token.expires_at.isoformat().replace("+00:00", "Z"),
    }


def test_user_in_no_team_has_no_teams(org):
    assert session_client(org.outsider).get(me_url()).json()["teams"] == []
