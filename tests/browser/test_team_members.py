"""A team's admin manages its members in Chromium: from the user menu to the team's page, adds a
person, changes a role, removes a member."""

import pytest
from playwright.sync_api import expect

from policies.choices import Role
from policies.models import AuditEvent
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.browser


def test_a_team_admin_manages_members(live_server, org, page):
    MembershipFactory(team=org.team_a, user=UserFactory(username="tara"), role=Role.ADMIN)
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Username").fill("tara")
    page.get_by_label("Password").fill("pw-for-tests")
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live_server.url}/")

    page.get_by_role("button", name="tara").or_(page.get_by_role("link", name="tara")).click()
    page.get_by_role("link", name="Teams").click()
    expect(page).to_have_url(f"{live_server.url}/teams/")
    page.get_by_role("link", name="Bookinfo").click()
    expect(page.locator("h1")).to_have_text("Bookinfo")

    add = page.get_by_test_id("add-member")
    add.get_by_label("Username").fill("nobody")
    add.get_by_label("Role").select_option("approver")
    add.get_by_role("button", name="Add member").click()
    expect(page.locator(".alert-success")).to_contain_text("nobody is now approver of Bookinfo")
    members = page.get_by_test_id("members")
    expect(members.locator("[data-member]")).to_have_count(4)

    page.get_by_label("Role of alice").select_option("admin")
    members.locator('[data-member="alice"]').get_by_role("button", name="Change role").click()
    expect(page.locator(".alert-success")).to_contain_text("alice is now admin of Bookinfo")
    expect(page.get_by_label("Role of alice")).to_have_value("admin")

    members.locator('[data-member="bob"]').get_by_role("button", name="Remove").click()
    expect(page.locator(".alert-success")).to_contain_text("bob removed from Bookinfo")
    expect(members.locator('[data-member="bob"]')).to_have_count(0)
    page.screenshot(path="/tmp/meshgate-team-members.png", full_page=True)

    assert dict(org.team_a.memberships.values_list("user__username", "role")) == {
        "alice": "admin",
        "tara": "admin",
        "nobody": "approver",
    }
    assert AuditEvent.objects.filter(actor_name="tara", action__startswith="team.member").count() == 3
