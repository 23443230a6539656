"""Service-account pages: a team's admins and platform admins list and create accounts, issue,
rotate and revoke their tokens and disable them; everyone else is refused."""

import re

import pytest
from django.test import Client
from django.urls import reverse

from policies.choices import AuditAction, Role
from policies.models import AuditEvent, Membership, ServiceAccount
from policies.services.service_accounts import service_account_create, service_account_token_create
from portal.models import ApiToken, token_digest
from portal.services import token_create
from tests.api_testing import bearer_client
from tests.factories import MembershipFactory, UserFactory, grant_platform_admin

NEW_TOKEN = re.compile(r'<code[^>]*id="new-token">(mgt_[0-9a-f]{12}_[A-Za-z0-9_-]+)</code>')
LIST = "/service-accounts/"


@pytest.fixture
def admins(org):
    """tina administers Bookinfo, otto administers Shop, root is a platform admin."""
    org.team_admin = UserFactory(username="tina")
    MembershipFactory(team=org.team_a, user=org.team_admin, role=Role.ADMIN)
    org.shop_admin = UserFactory(username="otto")
    MembershipFactory(team=org.team_b, user=org.shop_admin, role=Role.ADMIN)
    org.root = UserFactory(username="root", is_superuser=True, is_staff=True)
    return org


@pytest.fixture
def account(admins):
    return service_account_create(actor=admins.team_admin, team=admins.team_a, name="ci", description="GitHub")


def _issue(account, actor, name="github", scopes=("write",)):
    return service_account_token_create(
        actor=actor, account=account, name=name, scopes=list(scopes), expires_in_days=30
    )


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_urls():
    assert reverse("service_accounts:list") == LIST
    assert reverse("service_accounts:detail", args=["ci"]) == "/service-accounts/ci/"
    assert reverse("service_accounts:token-rotate", args=["ci", 4]) == "/service-accounts/ci/tokens/4/rotate/"


def test_anonymous_is_sent_to_login(client, admins):
    response = client.get(LIST)
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_a_team_admin_lists_only_the_accounts_of_their_teams(admins, account):
    service_account_create(actor=admins.shop_admin, team=admins.team_b, name="shop-ci")
    body = _client(admins.team_admin).get(LIST).content.decode()
    assert "sa.ci" in body and "GitHub" in body
    assert "sa.shop-ci" not in body
    assert 'href="/service-accounts/"' in body  # the navigation offers the page
    everything = _client(admins.root).get(LIST).content.decode()
    assert "sa.ci" in everything and "sa.shop-ci" in everything
    one_team = _client(admins.root).get(LIST, {"team": "shop"}).content.decode()
    assert "sa.shop-ci" in one_team and "sa.ci<" not in one_team


def test_people_who_administer_no_team_are_refused_and_not_offered_the_page(admins, account):
    for user in (admins.author, admins.approver, admins.other, admins.outsider):
        client = _client(user)
        assert client.get(LIST).status_code == 403
        assert client.get("/service-accounts/ci/").status_code == 403
        assert 'href="/service-accounts/"' not in client.get(reverse("account:tokens")).content.decode()


def test_another_teams_admin_is_refused_every_page_and_action(admins, account):
    token, _ = _issue(account, admins.team_admin)
    otto = _client(admins.shop_admin)
    assert otto.get(LIST, {"team": "bookinfo"}).status_code == 403
    assert otto.get("/service-accounts/ci/").status_code == 403
    data = {"name": "x", "scopes": ["read"], "expires_in_days": "5"}
    assert otto.post("/service-accounts/ci/tokens/", data).status_code == 403
    assert otto.post(f"/service-accounts/ci/tokens/{token.pk}/rotate/").status_code == 403
    assert otto.post(f"/service-accounts/ci/tokens/{token.pk}/revoke/").status_code == 403
    assert otto.post("/service-accounts/ci/disable/").status_code == 403
    created = otto.post(LIST, {"name": "sneaky", "team": "bookinfo", "role": "author"})
    assert created.status_code == 403
    token.refresh_from_db()
    account.refresh_from_db()
    assert token.enabled and account.is_active
    assert list(ApiToken.objects.filter(user=account.user)) == [token]
    assert not ServiceAccount.objects.filter(user__username="sa.sneaky").exists()


def test_missing_accounts_and_tokens_are_404(admins, account):
    tina = _client(admins.team_admin)
    assert tina.get("/service-accounts/nope/").status_code == 404
    assert tina.get(LIST, {"team": "no-such-team"}).status_code == 404
    someone_elses, _ = token_create(user=admins.author, name="alice-ci", scopes=["read"], expires_in_days=5)
    assert tina.post(f"/service-accounts/ci/tokens/{someone_elses.pk}/revoke/").status_code == 404
    assert tina.post(f"/service-accounts/ci/tokens/{someone_elses.pk}/rotate/").status_code == 404
    someone_elses.refresh_from_db()
    assert someone_elses.enabled


def test_a_team_admin_creates_an_account_and_the_audit_names_them(admins):
    response = _client(admins.team_admin).post(
        LIST, {"name": "deploy", "team": "bookinfo", "role": "author", "description": "GitLab"}
    )
    assert response.status_code == 302 and response["Location"] == "/service-accounts/deploy/"
    account = ServiceAccount.objects.get(user__username="sa.deploy")
    assert account.team == admins.team_a and account.description == "GitLab"
    assert Membership.objects.get(user=account.user).role == Role.AUTHOR
    event = AuditEvent.objects.get(action=AuditAction.SERVICE_ACCOUNT_CREATED)
    assert event.actor_name == "tina" and event.after["name"] == "sa.deploy"


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({"name": "Bad Name!"}, 400, "1-50 lowercase letters, digits and dashes"),
        ({"name": "ci"}, 409, "the name sa.ci is taken"),
        ({"role": "approver"}, 403, None),
        ({"team": "no-such-team"}, 400, "Select a valid choice"),
        ({"name": ""}, 400, "This field is required"),
    ],
)
def test_bad_account_input_is_refused_with_the_reason_and_nothing_written(admins, account, fields, status, message):
    before = ServiceAccount.objects.count()
    response = _client(admins.team_admin).post(
        LIST, {"name": "new-one", "team": "bookinfo", "role": "author", **fields}
    )
    assert response.status_code == status
    if message:
        assert message in response.content.decode()
    assert ServiceAccount.objects.count() == before


def test_issuing_shows_the_secret_once_stores_a_digest_and_the_token_works(admins, account):
    tina = _client(admins.team_admin)
    response = tina.post(
        "/service-accounts/ci/tokens/", {"name": "github", "scopes": ["write"], "expires_in_days": "30"}
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    plaintext = NEW_TOKEN.search(response.content.decode()).group(1)
    token = ApiToken.objects.get(user=account.user)
    assert token.digest == token_digest(plaintext) and token.scopes == ["write"]
    secret = plaintext.split("_", 2)[2]
    assert not AuditEvent.objects.filter(after__icontains=secret).exists()
    assert secret not in tina.get("/service-accounts/ci/").content.decode()
    event = AuditEvent.objects.filter(action=AuditAction.TOKEN_CREATED).latest("pk")
    assert event.actor_name == "tina" and event.after["user"] == "sa.ci"
    me = bearer_client(plaintext).get("/api/v1/me/")
    assert me.status_code == 200 and me.json()["username"] == "sa.ci"


def test_bad_token_input_is_a_400_naming_each_field(admins, account):
    response = _client(admins.team_admin).post("/service-accounts/ci/tokens/", {"expires_in_days": "abc"})
    assert response.status_code == 400
    assert set(response.context["form"].errors) == {"name", "scopes", "expires_in_days"}
    assert not ApiToken.objects.filter(user=account.user).exists()


def test_rotating_replaces_the_secret_keeping_name_and_scopes(admins, account):
    old, old_plaintext = _issue(account, admins.team_admin, scopes=("read", "write"))
    response = _client(admins.root).post(f"/service-accounts/ci/tokens/{old.pk}/rotate/")
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    body = response.content.decode()
    new_plaintext = NEW_TOKEN.search(body).group(1)
    assert "the old secret no longer works" in body
    old.refresh_from_db()
    new = ApiToken.objects.get(user=account.user, enabled=True)
    assert not old.enabled and new.pk != old.pk
    assert (new.name, new.scopes) == ("github", ["read", "write"])
    assert new.digest == token_digest(new_plaintext)
    assert bearer_client(old_plaintext).get("/api/v1/me/").status_code in (401, 403)
    assert bearer_client(new_plaintext).get("/api/v1/me/").status_code == 200
    event = AuditEvent.objects.get(action=AuditAction.TOKEN_ROTATED)
    assert event.actor_name == "root" and event.after == {
        "key_id": old.key_id,
        "user": "sa.ci",
        "replaced_by": new.key_id,
    }


def test_a_revoked_token_cannot_be_rotated(admins, account):
    token, _ = _issue(account, admins.team_admin)
    ApiToken.objects.filter(pk=token.pk).update(enabled=False)
    response = _client(admins.team_admin).post(f"/service-accounts/ci/tokens/{token.pk}/rotate/")
    assert response.status_code == 409
    assert "is revoked: issue a new one instead" in response.content.decode()
    assert ApiToken.objects.filter(user=account.user).count() == 1


def test_revoking_a_token_disables_only_that_one(admins, account):
    token, plaintext = _issue(account, admins.team_admin)
    other, _ = _issue(account, admins.team_admin, name="gitlab")
    tina = _client(admins.team_admin)
    response = tina.post(f"/service-accounts/ci/tokens/{token.pk}/revoke/")
    assert response.status_code == 302 and response["Location"] == "/service-accounts/ci/"
    token.refresh_from_db()
    other.refresh_from_db()
    assert not token.enabled and other.enabled
    assert "Token “github” revoked." in tina.get("/service-accounts/ci/").content.decode()
    assert bearer_client(plaintext).get("/api/v1/me/").status_code in (401, 403)
    event = AuditEvent.objects.filter(action=AuditAction.TOKEN_REVOKED).latest("pk")
    assert event.actor_name == "tina" and event.after == {"key_id": token.key_id, "user": "sa.ci"}


def test_disabling_the_account_stops_every_token(admins, account):
    _, plaintext = _issue(account, admins.team_admin)
    tina = _client(admins.team_admin)
    response = tina.post("/service-accounts/ci/disable/")
    assert response.status_code == 302
    account.refresh_from_db()
    assert not account.is_active
    assert not ApiToken.objects.filter(user=account.user, enabled=True).exists()
    assert bearer_client(plaintext).get("/api/v1/me/").status_code in (401, 403)
    page = tina.get("/service-accounts/ci/").content.decode()
    assert ">disabled<" in page and "Issue token" not in page
    event = AuditEvent.objects.get(action=AuditAction.SERVICE_ACCOUNT_REVOKED)
    assert event.actor_name == "tina" and event.after["tokens_revoked"] == 1
    refused = tina.post("/service-accounts/ci/tokens/", {"name": "again", "scopes": ["read"], "expires_in_days": "5"})
    assert refused.status_code == 409 and not ApiToken.objects.filter(user=account.user, enabled=True).exists()


def test_actions_need_post(admins, account):
    token, _ = _issue(account, admins.team_admin)
    tina = _client(admins.team_admin)
    for url in (
        "/service-accounts/ci/tokens/",
        f"/service-accounts/ci/tokens/{token.pk}/rotate/",
        f"/service-accounts/ci/tokens/{token.pk}/revoke/",
        "/service-accounts/ci/disable/",
    ):
        assert tina.get(url).status_code == 405


def test_forms_are_csrf_protected(admins, account):
    token, _ = _issue(account, admins.team_admin)
    client = Client(enforce_csrf_checks=True)
    client.force_login(admins.team_admin)
    assert client.post(LIST, {"name": "x", "team": "bookinfo"}).status_code == 403
    assert client.post(f"/service-accounts/ci/tokens/{token.pk}/revoke/").status_code == 403
    assert client.post("/service-accounts/ci/disable/").status_code == 403
    token.refresh_from_db()
    assert token.enabled and ServiceAccount.objects.count() == 1


def test_user_text_is_escaped(admins):
    hostile = "<img src=x onerror=alert(1)>"
    account = service_account_create(actor=admins.team_admin, team=admins.team_a, name="ci", description=hostile)
    _issue(account, admins.team_admin, name=hostile)
    tina = _client(admins.team_admin)
    for body in (tina.get(LIST).content.decode(), tina.get("/service-accounts/ci/").content.decode()):
        assert "<img src=x" not in body
        assert "&lt;img src=x onerror=alert(1)&gt;" in body


def test_a_service_account_itself_is_refused(admins, account):
    """A pipeline's identity never manages identities, even if its team role were admin."""
    Membership.objects.filter(user=account.user).update(role=Role.ADMIN)
    assert _client(account.user).get(LIST).status_code == 403


def test_a_platform_admin_by_permission_manages_every_teams_accounts(admins, account):
    """Platform admins are superusers and holders of the platform permission alike."""
    pia = _client(grant_platform_admin(UserFactory(username="pia")))
    assert "sa.ci" in pia.get(LIST).content.decode()
    created = pia.post(LIST, {"name": "shop-ci", "team": "shop", "role": "author"})
    assert created.status_code == 302
    assert ServiceAccount.objects.get(user__username="sa.shop-ci").created_by.username == "pia"
    issued = pia.post("/service-accounts/ci/tokens/", {"name": "gh", "scopes": ["read"], "expires_in_days": "5"})
    assert issued.status_code == 200 and NEW_TOKEN.search(issued.content.decode())
