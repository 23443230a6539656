"""Promotion overrides in Chromium: from the policy page to its overrides, a patch saved and shown.
(A refused patch is a 400 page, which the browser fixture counts as an error: its explanation and the
kept text are checked in tests/policies/views/test_promotion_overrides.py.)"""

import pytest
from playwright.sync_api import expect

from tests.browser.test_change_review import sign_in
from tests.policies.changes.helpers import cluster_org  # noqa: F401 - fixture

pytestmark = pytest.mark.browser


def test_an_approver_adds_an_override_from_the_policy_page(live_server, cluster_org, page):
    org = cluster_org
    sign_in(page, live_server, "bob", f"/policies/{org.policy_a.pk}/")
    page.get_by_role("link", name="Overrides per environment").click()
    expect(page.locator("h1")).to_have_text("Promotion overrides")
    expect(page.locator("#override-identity")).to_have_text("VirtualService/bookinfo/reviews")
    expect(page.locator("#no-overrides")).to_be_visible()

    page.get_by_label("Environment").select_option("staging")
    page.locator("#override-patch").fill("metadata:\n  labels:\n    tier: gold\n")
    page.get_by_role("button", name="Save override").click()
    expect(page.locator(".mg-messages")).to_contain_text("The override of staging is saved")
    row = page.locator("#override-table tr[data-environment='staging']")
    expect(row.locator(".mg-override-patch")).to_contain_text("tier: gold")
    page.screenshot(path="/tmp/meshgate-overrides.png", full_page=True)
