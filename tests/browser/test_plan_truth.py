"""The plan panel in Chromium: a field another manager keeps would survive the rollout, the plan says
so, the approval is blocked; and a withdrawn change offers no way to approve it."""

import copy

import pytest
from playwright.sync_api import expect

from integrations import kubernetes as kube
from policies.cluster import cluster_config
from policies.normalize import normalize_object
from policies.services.change_lifecycle import change_withdraw
from policies.services.plans import plan_compute
from tests.browser.test_change_review import header_state, sign_in
from tests.policies.changes.helpers import cluster_org, submitted_change  # noqa: F401 - fixture
from tests.policies.changes.test_lifecycle import DR_WITHOUT_TLS

pytestmark = pytest.mark.browser


def test_plan_panel_shows_a_surviving_field_and_blocks_approval(live_server, cluster_org, page):
    org = cluster_org
    cfg = cluster_config(org.env)
    obj = copy.deepcopy(normalize_object(kube.get_object(cfg, "DestinationRule", "bookinfo", "reviews")))
    obj["spec"]["trafficPolicy"] = {"tls": {"mode": "ISTIO_MUTUAL"}, "loadBalancer": {"simple": "ROUND_ROBIN"}}
    kube.apply_object(cfg, obj, field_manager="platform-gitops", force=True)  # another declarative owner
    change = submitted_change(org, texts=[DR_WITHOUT_TLS], title="Drop tls on reviews")
    plan_compute(change=change)

    sign_in(page, live_server, "bob", f"/changes/{change.pk}/")
    panel = page.locator(".mg-plan-ownership")
    expect(panel).to_be_visible()
    survivor = panel.locator(".mg-plan-survivor")
    expect(survivor).to_contain_text("spec.trafficPolicy.tls")
    expect(survivor).to_contain_text("would stay in the cluster")
    expect(survivor).to_contain_text("platform-gitops")
    expect(panel).to_contain_text("approval is blocked")
    findings = page.locator(".mg-plan-findings")
    expect(findings).to_contain_text("MG0905")
    expect(page.locator("#approval-status .mg-blockers")).to_be_visible()
    page.screenshot(path="/tmp/meshgate-plan-truth.png", full_page=True)
    # bob tries anyway: the approval is refused and the page says why
    if page.get_by_role("button", name="Approve…").count():
        page.get_by_role("button", name="Approve…").click()
        page.locator("#approve-form").get_by_role("button", name="Approve").click()
        expect(page.locator(".alert")).to_contain_text("plan has errors")
    expect(header_state(page)).to_have_text("In review")


def test_a_withdrawn_change_has_no_approve_button(live_server, cluster_org, page):
    org = cluster_org
    change = submitted_change(org)
    change_withdraw(actor=org.author, change=change)
    sign_in(page, live_server, "bob", f"/changes/{change.pk}/")
    expect(header_state(page)).to_have_text("Withdrawn")
    expect(page.locator("#withdrawn-alert")).to_be_visible()
    expect(page.get_by_role("button", name="Approve…")).to_have_count(0)
    expect(page.get_by_role("button", name="Schedule rollout")).to_have_count(0)
