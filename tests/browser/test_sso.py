"""Single sign-on in Chromium through a real OpenID Connect provider: people land in the teams
their groups map to, and a group taken away removes the membership at the next login."""

import pytest
from playwright.sync_api import expect

from policies.choices import MembershipSource, Role
from policies.models import AuditEvent, ExternalIdentity, GroupMapping, Membership
from tests.factories import UserFactory

pytestmark = pytest.mark.browser


def sso_sign_in(page, live_server, username: str, password: str) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_test_id("sso-login").click()
    page.get_by_label("Provider username").fill(username)
    page.get_by_label("Provider password").fill(password)
    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(f"{live_server.url}/")


def test_groups_map_to_teams_at_every_login(live_server, org, sso, browser):
    GroupMapping.objects.create(group="mesh-bookinfo-dev", team=org.team_a, role=Role.AUTHOR)
    GroupMapping.objects.create(group="mesh-shop-leads", team=org.team_b, role=Role.APPROVER)
    sso.user("grace", "provider-pw", groups=["mesh-bookinfo-dev", "mesh-shop-leads", "unmapped"])

    context = browser.new_context()
    page = context.new_page()
    sso_sign_in(page, live_server, "grace", "provider-pw")
    expect(page.locator("body")).to_contain_text("grace")
    identity = ExternalIdentity.objects.select_related("user").get()
    user = identity.user
    assert (user.username, user.email, user.has_usable_password()) == ("grace", "grace@example.com", False)
    assert dict(Membership.objects.filter(user=user).values_list("team__slug", "role")) == {
        "bookinfo": Role.AUTHOR,
        "shop": Role.APPROVER,
    }
    context.close()

    # the provider drops one group; at the next login the membership it gave is gone
    sso.user("grace", "provider-pw", groups=["mesh-bookinfo-dev"])
    context = browser.new_context()
    page = context.new_page()
    sso_sign_in(page, live_server, "grace", "provider-pw")
    assert dict(Membership.objects.filter(user=user).values_list("team__slug", "role")) == {"bookinfo": Role.AUTHOR}
    assert AuditEvent.objects.filter(action="team.member_removed").count() == 1
    context.close()


def test_a_local_account_of_the_same_name_is_never_taken_over(live_server, org, sso, browser):
    local = UserFactory(username="henry")
    Membership.objects.create(team=org.team_a, user=local, role=Role.ADMIN)  # granted by hand
    sso.user("henry", "provider-pw", groups=[])
    page = browser.new_context().new_page()
    sso_sign_in(page, live_server, "henry", "provider-pw")
    identity = ExternalIdentity.objects.select_related("user").get()
    assert identity.user != local and identity.user.username == "henry-2"
    assert Membership.objects.get(user=local).source == MembershipSource.LOCAL  # untouched


def test_password_login_can_be_turned_off(live_server, org, sso, page, settings):
    settings.MESHGATE_PASSWORD_LOGIN = False
    page.goto(f"{live_server.url}/accounts/login/")
    expect(page.get_by_test_id("sso-login")).to_be_visible()
    expect(page.get_by_label("Password", exact=True)).to_have_count(0)
    # and a forged password POST does not sign anyone in
    from django.test import Client

    client = Client()
    client.get("/accounts/login/")
    client.post("/accounts/login/", {"username": "alice", "password": "pw-for-tests"})
    assert "_auth_user_id" not in client.session
