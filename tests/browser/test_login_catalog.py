import pytest
from playwright.sync_api import expect

from tests.factories import make_policy

pytestmark = pytest.mark.browser


def test_sign_in_search_the_catalog_and_open_a_policy(live_server, org, page):
    make_policy(environment=org.env, namespace="bookinfo", name="ratings")
    make_policy(environment=org.env, namespace="bookinfo", name="details")

    page.goto(f"{live_server.url}/policies/")
    expect(page).to_have_url(f"{live_server.url}/accounts/login/?next=/policies/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("pw-for-tests")
    page.get_by_role("button", name="Sign in").click()

    expect(page).to_have_url(f"{live_server.url}/policies/")
    table = page.locator("#catalog-table")
    expect(table.get_by_role("link")).to_have_text(["details", "ratings", "reviews"])
    expect(page.locator("body")).not_to_contain_text("payments")  # shop's, not alice's

    page.evaluate("window.stillTheSamePage = true")
    page.get_by_label("Search").press_sequentially("ratings")
    expect(table.get_by_role("link")).to_have_text(["ratings"])
    expect(page).to_have_url(f"{live_server.url}/policies/?q=ratings")
    assert page.evaluate("window.stillTheSamePage") is True  # htmx swapped the table, no reload
    page.screenshot(path="/tmp/meshgate-catalog.png", full_page=True)

    table.get_by_role("link", name="ratings").click()
    expect(page.locator("h1")).to_contain_text("ratings")
    yaml = page.locator("pre.mg-yaml code")
    expect(yaml).to_contain_text("kind: VirtualService")
    expect(yaml).to_contain_text("name: ratings")
    page.screenshot(path="/tmp/meshgate-policy.png", full_page=True)
