"""Service accounts: team-owned pipeline identities, their tokens issued without a session, and
everything they do attributed to them."""

import pytest
from django.core.management import call_command
from django.test import Client

from policies.choices import AuditAction, Role
from policies.models import AuditEvent, Draft, ServiceAccount
from portal.choices import TokenScope
from portal.models import ApiToken
from tests.api_testing import assert_error, bearer_client, session_client, token_for
from tests.factories import MembershipFactory
from tests.policies.drafts.helpers import REVIEWS_V2, cluster_org  # noqa: F401 - fixture

LIST = "/api/v1/service-accounts/"


@pytest.fixture
def team_admin(org):
    admin = org.approver.__class__.objects.create_user(username="tina")
    MembershipFactory(team=org.team_a, user=admin, role=Role.ADMIN)
    return admin


def _create(client, **fields):
    return client.post(LIST, {"team": "bookinfo", "name": "ci", **fields}, format="json")


def test_a_team_admin_creates_an_author_account_and_issues_a_token_with_an_api_token(org, team_admin):
    admin = bearer_client(token_for(team_admin, [TokenScope.WRITE]))  # no session: a token is enough
    response = _create(admin, description="GitHub Actions")
    assert response.status_code == 201, response.json()
    assert response.json() | {"created_at": None} == {
        "name": "sa.ci",
        "team": "bookinfo",
        "role": "author",
        "description": "GitHub Actions",
        "active": True,
        "created_by": "tina",
        "created_at": None,
        "revoked_at": None,
    }
    issued = admin.post(
        f"{LIST}ci/tokens/", {"name": "github", "scopes": ["write"], "expires_in_days": 30}, format="json"
    )
    assert issued.status_code == 201
    plaintext = issued.json()["token"]
    token = ApiToken.objects.get(key_id=issued.json()["key_id"])
    assert token.user.username == "sa.ci" and plaintext not in (token.digest, token.key_id)
    created = AuditEvent.objects.filter(action=AuditAction.TOKEN_CREATED).latest("pk")
    assert created.actor_name == "tina"  # who issued it
    assert [t["name"] for t in admin.get(f"{LIST}ci/tokens/").json()] == ["github"]


def test_the_account_authors_as_itself_and_cannot_sign_in(cluster_org, team_admin):
    account_user = _make_account(cluster_org, team_admin).user
    assert not account_user.has_usable_password()
    pipeline = bearer_client(token_for(account_user, [TokenScope.WRITE]))
    response = pipeline.post("/api/v1/drafts/", {"environment": "staging", "text": REVIEWS_V2}, format="json")
    assert response.status_code == 201, response.json()
    assert Draft.objects.get().author == account_user
    event = AuditEvent.objects.filter(action=AuditAction.DRAFT_CREATED).latest("pk")
    assert event.actor_name == "sa.ci"
    login = Client().post("/accounts/login/", {"username": "sa.ci", "password": ""})
    assert login.status_code == 200 and "_auth_user_id" not in Client().session  # the form is shown again


def test_only_admins_of_the_team_or_platform_admins_manage_accounts(org, team_admin):
    for user in (org.author, org.approver, org.other):
        assert_error(_create(session_client(user)), 403)
    other_team_admin = org.approver.__class__.objects.create_user(username="otto")
    MembershipFactory(team=org.team_b, user=other_team_admin, role=Role.ADMIN)
    assert_error(_create(session_client(other_team_admin)), 403)
    assert not ServiceAccount.objects.exists()
    assert _create(session_client(team_admin)).status_code == 201


def test_an_account_never_manages_accounts_or_tokens(org, team_admin):
    account = _make_account(org, team_admin)
    pipeline = bearer_client(token_for(account.user, [TokenScope.WRITE]))
    assert_error(pipeline.post(f"{LIST}ci/tokens/", {"name": "x", "scopes": ["read"]}, format="json"), 403)
    assert_error(_create(pipeline, name="other"), 403)


def test_an_approving_account_needs_a_platform_admin_and_the_setting(org, team_admin, settings, admin_user):
    assert_error(_create(session_client(team_admin), role="approver"), 403)
    assert_error(_create(session_client(admin_user), role="approver"), 403)  # setting off by default
    settings.MESHGATE_SERVICE_ACCOUNT_APPROVERS = True
    assert_error(_create(session_client(team_admin), role="approver"), 403)
    assert _create(session_client(admin_user), role="approver").status_code == 201


def test_revoking_disables_the_account_and_every_token_at_once(org, team_admin):
    account = _make_account(org, team_admin)
    plaintext = token_for(account.user, [TokenScope.READ])
    assert bearer_client(plaintext).get("/api/v1/me/").status_code == 200
    response = session_client(team_admin).delete(f"{LIST}ci/")
    assert response.status_code == 200 and response.json()["active"] is False
    assert bearer_client(plaintext).get("/api/v1/me/").status_code == 401
    assert AuditEvent.objects.filter(action=AuditAction.SERVICE_ACCOUNT_REVOKED).count() == 1


def test_names_are_checked(org, team_admin):
    response = _create(session_client(team_admin), name="Not OK!")
    assert_error(response, 400)
    assert _create(session_client(team_admin)).status_code == 201
    assert_error(_create(session_client(team_admin)), 409)


def test_manage_py_bootstraps_an_account_and_prints_its_token_once(org, team_admin, capsys):
    call_command("service_account", "create", "deployer", "--team", "bookinfo", "--by", "tina")
    call_command("service_account", "token", "deployer", "--token-name", "gitlab", "--days", "7", "--by", "tina")
    plaintext = capsys.readouterr().out.strip().splitlines()[-1]
    assert bearer_client(plaintext).get("/api/v1/me/").json()["username"] == "sa.deployer"


def _make_account(org, admin) -> ServiceAccount:
    assert _create(session_client(admin)).status_code == 201
    return ServiceAccount.objects.select_related("user").get()
