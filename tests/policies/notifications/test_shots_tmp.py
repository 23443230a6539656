import pytest
from playwright.sync_api import expect
from policies.choices import Role
from policies.models import NotificationChannel, NotificationDelivery, Membership
from policies.services.windows import WEEKEND_FREEZE, change_window_upsert
from tests.factories import EnvironmentFactory
pytestmark = pytest.mark.browser

def test_shots(live_server, page, org):
    Membership.objects.filter(team=org.team_a, user=org.author).update(role=Role.ADMIN)
    prod = EnvironmentFactory(name="prod", is_production=True)
    change_window_upsert(environment=prod, **WEEKEND_FREEZE)
    ch = NotificationChannel.objects.create(name="bookinfo-slack", team=org.team_a, kind="slack", target="https://hooks.slack.com/services/T/B/X")
    NotificationChannel.objects.create(name="alice-mail", user=org.author, kind="email", target="alice@example.com")
    NotificationDelivery.objects.create(event="change.approved", channel=ch, subject="Change #4 approved", status="delivered", attempts=1, last_status_code=200)
    NotificationDelivery.objects.create(event="rollout.failed", channel=ch, subject="Rollout #2 failed", status="retrying", attempts=2, last_status_code=500, last_error="the receiver answered 500: boom")
    page.goto(f"{live_server.url}/governance/notifications/")
    page.get_by_label("Username").fill("alice"); page.get_by_label("Password").fill("pw-for-tests"); page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#delivery-table")).to_be_visible()
    page.screenshot(path="/tmp/gov-shots/notifications.png", full_page=True)
    page.goto(f"{live_server.url}/governance/windows/")
    page.screenshot(path="/tmp/gov-shots/windows.png", full_page=True)
    page.goto(f"{live_server.url}/governance/notifications/channels/new/")
    page.screenshot(path="/tmp/gov-shots/channel.png", full_page=True)
