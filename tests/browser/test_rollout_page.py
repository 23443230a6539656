"""The live rollout page in Chromium, with the real engine: a canary of reviews to v3 on the simulated
staging cluster, advanced one action at a time by the test (as the worker would), analysed over
meshsim's own traffic metrics. The page follows without a reload; an approver pauses and resumes it;
the author has no controls; after a rollback the reason comes first."""

import pytest
import requests
from playwright.sync_api import expect

from policies.choices import DraftOperation, RolloutState
from policies.models import Rollout
from policies.services.imports import environment_import
from policies.services.rollouts import rollout_start
from tests.policies.rollouts.helpers import REVIEWS_TO_V3, drive, scheduled_change

pytestmark = pytest.mark.browser

# The engine's analysis over meshsim's /metrics; each interval advances meshsim's traffic clock a minute.
# The threshold judge, no warm-up: this page's journey needs a step per interval (reviews v3 is slower
# than v1 in meshsim, which the default judge rightly reads as a latency regression).
ANALYSIS = {
    "interval_seconds": 1,
    "judge": "threshold",
    "min_requests": 5,
    "warmup_intervals": 0,
    "provider": "meshsim",
    "meshsim_advance_seconds": 60,
    "window": "5m",
    "metrics": [{"kind": "success_rate", "min": 0.95, "guard_min": None}, {"kind": "latency_p99", "max": 1000}],
}


@pytest.fixture
def rollout(org, meshsim) -> Rollout:
    """A canary of reviews (bookinfo) to v3 in steps of 10, 25, 50 and 100 %, its first step applied."""
    org.env.api_url = meshsim.url
    org.env.save(update_fields=["api_url"])
    org.meshsim = meshsim
    environment_import(environment=org.env)
    change = scheduled_change(org, [(DraftOperation.UPDATE, REVIEWS_TO_V3)], title="Reviews to v3")
    started = rollout_start(change=change, steps=[10, 25, 50, 100], analysis=ANALYSIS)
    return analysing_at(started, 10)


def analysing_at(rollout: Rollout, weight: int) -> Rollout:
    """Runs the engine until the step of `weight` is applied and waits for its analysis."""
    return drive(rollout, until=lambda r: r.current_weight == weight and r.step_stage == "analyze")


def sign_in(page, live_server, username: str, url: str) -> None:
    page.goto(f"{live_server.url}{url}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("pw-for-tests")
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live_server.url}{url}")


def url_of(rollout: Rollout) -> str:
    return f"/rollouts/{rollout.pk}/"


def state_badge(page):
    return page.locator(".mg-page-header .mg-rollout-state")


def current_step(page):
    return page.locator(".mg-rollout-steps li[data-status='current']")


def expect_drawn(page, selector: str) -> None:
    """Waits until Chart.js has sized the canvas and drawn on it (it is no longer a blank bitmap)."""
    page.wait_for_function(
        """(selector) => {
            const canvas = document.querySelector(selector);
            if (!canvas || !canvas.style.width || !canvas.width || !canvas.height) return false;
            const blank = document.createElement("canvas");
            blank.width = canvas.width; blank.height = canvas.height;
            return canvas.toDataURL() !== blank.toDataURL();
        }""",
        arg=selector,
    )


def test_steps_weight_and_charts_follow_the_engine_without_a_reload(live_server, rollout, page):
    sign_in(page, live_server, "bob", url_of(rollout))
    expect(state_badge(page)).to_have_text("Running")
    expect(page.locator(".mg-current-weight")).to_have_text("10 %")
    expect(page.locator(".mg-rollout-steps li")).to_have_count(4)
    expect(current_step(page)).to_contain_text("canary 10 %")
    expect(page.get_by_text("step 1/4")).to_be_visible()
    expect(page.locator("#mg-weight-chart")).to_be_visible()
    expect_drawn(page, "#mg-weight-chart")
    expect(page.locator("#mg-no-metrics")).to_be_visible()
    page.evaluate("() => { window.mgNotReloaded = true; }")

    analysing_at(rollout, 25)  # the 10 % interval passed, 25 % is applied

    expect(page.locator(".mg-current-weight")).to_have_text("25 %")
    expect(current_step(page)).to_contain_text("canary 25 %")
    expect(page.locator(".mg-rollout-steps li").first).to_have_attribute("data-status", "done")
    expect(page.locator(".mg-rollout-steps li").first).to_contain_text("pass")
    expect(page.get_by_text("step 2/4")).to_be_visible()
    expect(page.locator("#mg-analysis-rows")).to_contain_text("request-success-rate")
    expect(page.locator("#mg-no-metrics")).to_be_hidden()
    for metric in ("request-success-rate", "request-duration-p99"):
        expect(page.locator(f"#mg-metric-charts canvas[data-metric='{metric}']")).to_be_visible()
        expect_drawn(page, f"#mg-metric-charts canvas[data-metric='{metric}']")
    assert page.evaluate("() => window.mgNotReloaded === true")

    drive(rollout)  # to the end
    expect(state_badge(page)).to_have_text("Completed")
    expect(page.locator(".mg-current-weight")).to_have_text("100 %")
    expect(page.locator(".mg-rollout-steps li[data-status='done']")).to_have_count(4)
    assert page.evaluate("() => window.mgNotReloaded === true")


def test_an_approver_pauses_and_resumes(live_server, rollout, page):
    sign_in(page, live_server, "bob", url_of(rollout))
    controls = page.locator(".mg-rollout-controls")
    for name in ("Pause", "Promote now", "Abort"):
        expect(controls.get_by_role("button", name=name)).to_be_visible()
    expect(controls.get_by_role("button", name="Resume")).to_have_count(0)

    controls.get_by_role("button", name="Pause").click()
    expect(state_badge(page)).to_have_text("Paused")
    expect(page.locator(".mg-rollout-reason")).to_contain_text("paused by bob")
    expect(page.get_by_text("Rollout paused.")).to_be_visible()
    expect(controls.get_by_role("button", name="Pause")).to_have_count(0)
    rollout.refresh_from_db()
    assert rollout.state == RolloutState.PAUSED
    assert drive(rollout).state == RolloutState.PAUSED  # the engine leaves a paused rollout alone

    controls.get_by_role("button", name="Resume").click()
    expect(state_badge(page)).to_have_text("Running")
    expect(page.locator(".mg-rollout-reason")).to_have_count(0)
    expect(controls.get_by_role("button", name="Pause")).to_be_visible()
    rollout.refresh_from_db()
    assert rollout.state == RolloutState.RUNNING
    analysing_at(rollout, 25)
    expect(page.locator(".mg-current-weight")).to_have_text("25 %")


def test_the_author_has_no_controls_and_a_forced_post_is_refused(live_server, rollout, page):
    sign_in(page, live_server, "alice", url_of(rollout))
    expect(state_badge(page)).to_have_text("Running")
    expect(page.locator(".mg-rollout-controls")).to_have_count(0)
    for name in ("Pause", "Resume", "Promote now", "Abort"):
        expect(page.get_by_role("button", name=name)).to_have_count(0)
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    for action in ("pause", "abort", "promote"):
        forced = page.request.post(
            f"{live_server.url}/rollouts/{rollout.pk}/{action}/",
            form={"csrfmiddlewaretoken": csrf},
            headers={"Referer": f"{live_server.url}{url_of(rollout)}"},
        )
        assert forced.status == 403, action
    rollout.refresh_from_db()
    assert rollout.state == RolloutState.RUNNING and rollout.current_weight == 10


def test_after_a_rollback_the_reason_comes_first(live_server, rollout, page):
    meshsim = rollout.environment.api_url
    sign_in(page, live_server, "alice", url_of(rollout))
    expect(state_badge(page)).to_have_text("Running")
    expect(page.locator(".mg-rollout-reason")).to_have_count(0)

    # v3 starts answering 503 to half of its requests: the next interval fails
    requests.post(
        f"{meshsim}/meshsim/traffic/faults",
        json={"service": "reviews", "namespace": "bookinfo", "version": "v3", "error_rate": 0.5, "status": 503},
        timeout=10,
    ).raise_for_status()
    rolled = drive(rollout)
    assert rolled.state == RolloutState.ROLLED_BACK
    reason = rolled.rollback_reason

    alert = page.locator(".mg-rollout-reason")
    expect(alert).to_be_visible()
    expect(state_badge(page)).to_have_text("Rolled back")
    expect(alert).to_contain_text("Rolled back: request-success-rate failed at canary 10 %")
    expect(alert.locator(".mg-reason-metric")).to_have_text("request-success-rate")
    details = dict(zip(alert.locator("dt").all_inner_texts(), alert.locator("dd").all_inner_texts()))
    assert details["Metric"] == "request-success-rate"
    assert details["Observed"].startswith(f"canary {reason['observed']} vs stable ")
    assert details["Threshold"] == reason["threshold"] == ">= 0.95" and reason["observed"] < 0.95
    expect(page.locator(".mg-current-weight")).to_have_text("0 %")
    # the first thing in the main content, above the title, steps and charts
    first = page.evaluate("() => document.querySelector('main').firstElementChild.firstElementChild.className")
    assert "mg-rollout-reason" in first
    top = alert.bounding_box()["y"]
    for other in (".mg-title", ".mg-rollout-steps", "#mg-weight-chart"):
        assert top < page.locator(other).bounding_box()["y"], other
