"""The author sets the rollout plan of a change in Chromium: a wrong value comes back next to its
field without leaving the page, a valid plan is saved and shown, and bob's approval is voided."""

import pytest
from playwright.sync_api import expect

from policies.choices import ChangeState
from policies.models import Review
from policies.services.reviews import review_approve
from tests.browser.test_change_review import sign_in
from tests.fixtures.browser import DEADLINE_MS
from tests.policies.changes.helpers import cluster_org, submitted_change  # noqa: F401 - fixture

pytestmark = pytest.mark.browser


@pytest.fixture
def page(browser):
    """A fresh context like the shared `page` fixture, failing on JavaScript errors except the
    browser's own log line for the form's 400 answer (invalid input is a 400, swapped by htmx)."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    context.set_default_timeout(DEADLINE_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on(
        "console",
        lambda message: (
            errors.append(message.text)
            if message.type == "error"
            and not ("status of 400" in message.text and "Failed to load resource" in message.text)
            else None
        ),
    )
    yield page
    context.close()
    assert not errors, f"JavaScript errors in the page: {errors}"


def test_author_edits_the_rollout_plan(live_server, cluster_org, page):
    org = cluster_org
    change = submitted_change(org)
    review_approve(reviewer=org.approver, change=change)

    sign_in(page, live_server, "alice", f"/changes/{change.pk}/")
    panel = page.locator("#rollout-plan")
    expect(panel).to_contain_text("5 → 10 → 25 → 50 → 100 %")
    expect(panel).to_contain_text("every 60 s over 60s, sequential (against stable, evidence over the attempt) judge")
    panel.get_by_role("button", name="Edit rollout plan…").click()
    panel.get_by_label("Canary steps (%)").fill("10, 50, 100")
    panel.get_by_label("Analysis interval (s)").fill("1")
    panel.get_by_label("Manual gates").fill("1")
    panel.get_by_role("button", name="Save rollout plan").click()

    # htmx swaps the panel with the error next to the field; what was typed is kept
    interval = page.locator("#rollout-plan").get_by_label("Analysis interval (s)")
    expect(page.locator("#rollout-plan .invalid-feedback")).to_have_text("must be from 5 to 86400, not 1")
    expect(interval).to_have_value("1")
    expect(page.locator("#rollout-plan").get_by_label("Canary steps (%)")).to_have_value("10, 50, 100")
    change.refresh_from_db()
    assert change.rollout_options == {}

    interval.fill("30")
    page.locator("#rollout-plan").get_by_role("button", name="Save rollout plan").click()
    expect(page.locator(".alert", has_text="Rollout plan of change")).to_contain_text(
        "The approvals were voided; it goes back to review."
    )
    panel = page.locator("#rollout-plan")
    expect(panel).to_contain_text("10 → 50 → 100 %")
    expect(panel).to_contain_text("every 30 s over 30s")
    expect(panel.locator(".mg-plan-gate")).to_have_count(1)
    change.refresh_from_db()
    assert change.rollout_options == {"steps": [10, 50, 100], "gates": [1], "analysis": {"interval_seconds": 30}}
    assert change.state == ChangeState.IN_REVIEW
    assert Review.objects.get(change=change).voided_at is not None
