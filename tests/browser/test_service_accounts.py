"""A team admin manages a pipeline identity in Chromium: from the navigation to the service-account
page, creates an account, issues a token (shown once, and it works against the API), rotates it,
revokes it and disables the account; an author of the same team is not offered the page."""

import pytest
import requests
from playwright.sync_api import expect

from policies.choices import Role
from policies.models import ServiceAccount
from portal.models import ApiToken
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.browser


def sign_in(page, live_server, username: str) -> None:
    # The server's first request loads the URLconf and every view; take that outside the page's timeout.
    requests.get(f"{live_server.url}/healthz", timeout=120)
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("pw-for-tests")
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live_server.url}/")


def whoami(live_server, plaintext: str) -> int:
    return requests.get(
        f"{live_server.url}/api/v1/me/", headers={"Authorization": f"Bearer {plaintext}"}, timeout=10
    ).status_code


def test_a_team_admin_creates_an_account_and_issues_rotates_and_revokes_its_token(live_server, org, browser, page):
    admin = UserFactory(username="tina")
    MembershipFactory(team=org.team_a, user=admin, role=Role.ADMIN)

    sign_in(page, live_server, "tina")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Service accounts").click()
    expect(page.locator("h1")).to_have_text("Service accounts")

    page.get_by_label("Name", exact=True).fill("github-deploy")
    page.get_by_label("Team", exact=True).select_option(label="Bookinfo")
    page.get_by_label("Description").fill("GitHub Actions, repo mesh-config")
    page.get_by_role("button", name="Create service account").click()
    expect(page).to_have_url(f"{live_server.url}/service-accounts/github-deploy/")
    expect(page.locator("h1")).to_contain_text("sa.github-deploy")
    expect(page.locator(".mg-subtitle")).to_contain_text("Author of team Bookinfo")

    page.get_by_label("Token name").fill("github")
    page.get_by_label("Write").check()
    page.get_by_role("button", name="Issue token").click()
    secret = page.locator("#new-token")
    expect(secret).to_contain_text("mgt_")
    first = secret.inner_text()
    assert whoami(live_server, first) == 200
    page.screenshot(path="/tmp/meshgate-service-account.png", full_page=True)

    page.get_by_role("button", name="Rotate github").click()
    expect(page.locator(".mg-messages")).to_contain_text("the old secret no longer works")
    second = page.locator("#new-token").inner_text()
    assert second.startswith("mgt_") and second != first
    assert whoami(live_server, first) in (401, 403)
    assert whoami(live_server, second) == 200

    page.goto(f"{live_server.url}/service-accounts/github-deploy/")  # the secret was in that one answer only
    expect(page.locator("#new-token")).to_have_count(0)
    rows = page.locator("#token-table tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="active")).to_have_count(1)

    page.get_by_role("button", name="Revoke github").click()
    expect(page.locator(".mg-messages")).to_contain_text("Token “github” revoked.")
    assert whoami(live_server, second) in (401, 403)

    page.get_by_role("button", name="Disable sa.github-deploy").click()
    expect(page.locator("h1")).to_contain_text("disabled")
    expect(page.get_by_role("button", name="Issue token")).to_have_count(0)
    account = ServiceAccount.objects.get(user__username="sa.github-deploy")
    assert not account.is_active
    assert not ApiToken.objects.filter(user=account.user, enabled=True).exists()

    # an author of the same team is not offered the page, and is refused it
    alice = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
    try:
        sign_in(alice, live_server, "alice")
        expect(alice.get_by_role("link", name="Service accounts")).to_have_count(0)
        response = alice.goto(f"{live_server.url}/service-accounts/github-deploy/")
        assert response is not None and response.status == 403
    finally:
        alice.context.close()
