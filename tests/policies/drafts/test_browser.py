import pytest
from playwright.sync_api import expect

from policies.models import Draft
from tests.policies.drafts.helpers import REVIEWS_MISSING_SUBSET, cluster_org  # noqa: F401 - fixture

pytestmark = pytest.mark.browser


def sign_in(page, live_server, url: str) -> None:
    page.goto(f"{live_server.url}{url}")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("pw-for-tests")
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live_server.url}{url}")


def test_paste_a_bundle_read_the_diff_and_discard(live_server, cluster_org, page):
    sign_in(page, live_server, "/drafts/upload/")
    page.get_by_label("Or paste YAML").fill(REVIEWS_MISSING_SUBSET)
    page.get_by_label("Message").fill("try subset v9")
    page.get_by_role("button", name="Create drafts").click()

    expect(page).to_have_url(f"{live_server.url}/drafts/")
    expect(page.locator(".alert-success")).to_contain_text("1 draft saved from the bundle for staging.")
    expect(page.locator(".mg-drafts-table")).to_contain_text("1 error")
    page.get_by_role("link", name="bookinfo/reviews").click()

    expect(page.locator("#draft-findings")).to_contain_text("MG0302")
    split = page.locator("#draft-diff-split")
    expect(split).to_be_visible()
    expect(split.locator("tr.mg-diff-insert")).to_contain_text("subset: v9")
    page.screenshot(path="/tmp/meshgate-draft-detail.png", full_page=True)

    page.get_by_role("tab", name="Unified").click()
    unified = page.locator("#draft-diff-unified")
    expect(unified).to_be_visible()
    expect(split).to_be_hidden()
    expect(unified.locator("td.mg-diff-sign.mg-diff-insert")).to_have_text(["+"])

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Discard").click()
    expect(page).to_have_url(f"{live_server.url}/drafts/")
    expect(page.locator("body")).to_contain_text("You have no drafts")
    assert not Draft.objects.exists()


def test_delete_a_policy_through_the_dialog(live_server, org, page):
    sign_in(page, live_server, f"/policies/{org.policy_a.pk}/")
    page.get_by_role("button", name="Delete…").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Why?").fill("replaced by the mesh gateway")
    page.screenshot(path="/tmp/meshgate-delete-dialog.png")
    dialog.get_by_role("button", name="Create deletion draft").click()

    expect(page.locator("h1")).to_have_text("reviews")
    expect(page.locator(".alert-success")).to_contain_text("Deletion of VirtualService bookinfo/reviews drafted.")
    expect(page.locator("#draft-diff")).to_contain_text("−4 removed")
    draft = Draft.objects.get()
    assert (draft.operation, draft.message) == ("delete", "replaced by the mesh gateway")
