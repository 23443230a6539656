"""Two people review a change in Chromium: alice authors and submits, bob comments on a line and
approves, alice cannot approve her own change, and her later edit voids bob's approval."""

import re

import pytest
from playwright.sync_api import expect

from policies.choices import ChangeState
from policies.models import ChangeRequest, Review, ReviewComment
from policies.services.drafts import draft_save
from policies.services.plans import plan_compute
from tests.policies.changes.helpers import REVIEWS_V2, REVIEWS_V3, cluster_org  # noqa: F401 - fixture

pytestmark = pytest.mark.browser


def sign_in(page, live_server, username: str, url: str = "/") -> None:
    page.goto(f"{live_server.url}{url}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("pw-for-tests")
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live_server.url}{url}")
    scripts_ready(page)


def scripts_ready(page) -> None:
    """Until the page's deferred scripts (Bootstrap, htmx, behaviours.js) have run: the buttons they
    drive (collapses, line comments, htmx forms) do nothing when clicked before."""
    page.wait_for_load_state("load")


def header_state(page):
    return page.locator(".mg-page-header .mg-change-state")


def test_author_submits_approver_comments_and_approves_edit_voids(live_server, cluster_org, browser, page):
    org = cluster_org
    draft_save(author=org.author, environment=org.env, text=REVIEWS_V2, message="5s timeout")

    # alice makes a change of her draft and submits it
    sign_in(page, live_server, "alice", "/changes/new/")
    page.get_by_label(re.compile("bookinfo/reviews")).check()
    page.get_by_label("Title").fill("Timeout for reviews")
    page.get_by_role("button", name="Create change").click()
    change = ChangeRequest.objects.get()
    expect(page).to_have_url(f"{live_server.url}/changes/{change.pk}/")
    expect(header_state(page)).to_have_text("Draft")
    page.get_by_role("button", name="Submit for review").click()
    expect(header_state(page)).to_have_text("In review")
    plan_compute(change=change)  # what the worker does after the submit

    # bob finds it on his dashboard, reads the diff, comments on a line and approves
    bob_context = browser.new_context(viewport={"width": 1440, "height": 900})
    bob = bob_context.new_page()
    try:
        sign_in(bob, live_server, "bob", "/")
        waiting = bob.locator("#waiting-for-review")
        expect(waiting).to_contain_text("Timeout for reviews")
        waiting.get_by_role("link", name="Timeout for reviews").click()
        expect(bob).to_have_url(f"{live_server.url}/changes/{change.pk}/")
        scripts_ready(bob)
        item = change.items.get()
        diff = bob.locator(f"#plan-diff-{item.pk}")
        expect(diff.locator("tr.mg-diff-row", has_text="timeout: 5s")).to_be_visible()
        diff.locator("tr.mg-diff-row", has_text="timeout: 5s").get_by_role("button").click()
        form = bob.locator(".mg-line-comment-form")
        expect(form).to_be_visible()
        form.get_by_role("textbox").fill("Is 5s enough for the p99?")
        form.get_by_role("button", name="Comment").click()
        thread = diff.locator(".mg-thread-row")
        expect(thread).to_contain_text("Is 5s enough for the p99?")
        expect(form).to_have_count(0)
        comment = ReviewComment.objects.get()
        assert comment.item == item and "timeout: 5s" in item.source_text
        bob.screenshot(path="/tmp/meshgate-change-review.png", full_page=True)

        bob.get_by_role("button", name="Approve…").click()
        bob.locator("#approve-form").get_by_role("button", name="Approve").click()
        expect(header_state(bob)).to_have_text("Approved")
        expect(bob.locator("#approval-status")).to_contain_text("1 of 1 approval")

        # alice has no approve button, and a forced POST is refused
        expect(page.locator(".mg-plan-polling")).to_have_count(0)  # her page reloaded itself once the plan came
        page.goto(f"{live_server.url}/changes/{change.pk}/")
        expect(header_state(page)).to_have_text("Approved")
        expect(page.get_by_role("button", name="Approve…")).to_have_count(0)
        csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
        forced = page.request.post(
            f"{live_server.url}/changes/{change.pk}/approve/", headers={"X-CSRFToken": csrf, "Referer": page.url}
        )
        assert forced.status == 403 and "You cannot approve your own change" in forced.text()
        assert Review.objects.filter(reviewer=org.author).count() == 0

        # alice edits the item after the approval: bob's approval is voided, back to review
        page.locator(f"#item-{item.pk}").get_by_role("link", name="Edit").click()
        page.get_by_label("YAML").fill(REVIEWS_V3)
        page.get_by_role("button", name="Save item").click()
        expect(header_state(page)).to_have_text("In review")
        approvals = page.locator("#approval-status")
        expect(approvals.locator(".mg-approval-void")).to_contain_text("bob")
        expect(approvals).to_contain_text("voided")
        expect(approvals).to_contain_text("was edited by alice after this approval")
        page.screenshot(path="/tmp/meshgate-change-voided.png", full_page=True)
        change.refresh_from_db()
        assert change.state == ChangeState.IN_REVIEW
    finally:
        bob_context.close()
