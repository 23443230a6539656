"""The traffic-shift wizard in Chromium: pre-filled from the cluster, opens the editor, saves a draft."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.test_editor import sign_in, staging  # noqa: F401 (fixture)

pytestmark = pytest.mark.browser


def test_traffic_shift_wizard_to_a_draft(live_server, staging, org, page):
    sign_in(page, live_server.url, "/editor/wizards/")
    expect(page.locator("h1")).to_have_text("Wizards")
    page.get_by_role("link", name=re.compile("Traffic shift")).click()
    expect(page).to_have_url(re.compile(r"/editor/wizards/traffic-shift/\?environment=staging$"))

    page.get_by_label("Service").select_option("bookinfo/reviews")
    # The weights are reloaded for reviews' subsets, pre-filled with the live split (90/10/0).
    weights = page.locator("#weights")
    expect(weights.locator("input")).to_have_count(3)
    expect(page.locator("#id_weight_v1")).to_have_value("90")
    expect(page.locator("#id_weight_v2")).to_have_value("10")
    expect(page).to_have_url(re.compile(r"service=bookinfo%2Freviews"))
    preview = page.locator("#wizard-preview")
    expect(preview.locator(".mg-split")).to_have_text(["v1 90%\nv2 10%"])

    expect(page.locator("#id_weight_v3")).to_have_value("0")
    page.locator("#id_weight_v1").fill("50")
    page.locator("#id_weight_v2").fill("50")
    expect(preview.locator(".mg-split")).to_have_text(["v1 50%\nv2 50%"])
    expect(preview).not_to_have_class(re.compile("htmx-request"))
    expect(preview.locator("pre")).to_contain_text("subset: v2\n    weight: 50")
    page.screenshot(path="/tmp/meshgate-wizard.png", full_page=True)

    page.get_by_role("button", name="Open in the editor").click()
    editor_url = r"/editor/new/\?environment=staging&kind=VirtualService&namespace=bookinfo&prefill="
    expect(page).to_have_url(re.compile(editor_url))
    expect(page.locator("h1")).to_contain_text("Edit reviews · from the traffic shift wizard")
    expect(page.locator("#editor-status")).to_have_text(re.compile(r"Valid|warning"))
    text = page.evaluate("window.meshgateEditor.text()")
    assert re.search(r"subset: v1\n\s+weight: 50\n", text) and re.search(r"subset: v2\n\s+weight: 50\n", text), text
    assert "v3" not in text
    page.screenshot(path="/tmp/meshgate-wizard-editor.png")

    page.get_by_role("button", name="Save draft").click()
    expect(page).to_have_url(re.compile(r"/drafts/\d+/$"))
    draft_text = page.locator("pre.mg-yaml code").last
    expect(draft_text).to_contain_text("kind: VirtualService")
    expect(draft_text).to_contain_text("subset: v1\n    weight: 50")
    expect(draft_text).to_contain_text("subset: v2\n    weight: 50")


def test_the_preview_explains_weights_that_do_not_add_up(live_server, staging, org, page):
    # (Submitting them answers 400 with the error on the weights: see tests/policies/editor.)
    sign_in(page, live_server.url, "/editor/wizards/traffic-shift/?environment=staging&service=bookinfo/reviews")
    expect(page.locator("#id_weight_v1")).to_have_value("90")
    page.locator("#id_weight_v1").fill("60")
    page.locator("#id_weight_v2").fill("30")
    expect(page.locator("#wizard-preview")).to_contain_text("The weights must add up to 100 (they add up to 90).")
    page.locator("#id_weight_v3").fill("10")
    expect(page.locator("#wizard-preview pre")).to_contain_text("weight: 60")
