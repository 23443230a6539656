import datetime as dt
import zoneinfo

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from policies.choices import AuditAction, WindowKind
from policies.models import AuditEvent, ChangeWindow
from policies.services.windows import (
    WEEKEND_FREEZE,
    change_window_upsert,
    window_explain,
    window_is_open,
    window_next_opening,
    window_status,
)
from tests.factories import EnvironmentFactory, UserFactory

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
UTC = dt.UTC


def berlin(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=BERLIN)


def utc(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def is_open_now(environment) -> bool:
    return window_is_open(environment=environment, at=timezone.now())


@pytest.fixture
def prod(db):
    return EnvironmentFactory(name="prod", is_production=True)


@pytest.fixture
def staging(db):
    return EnvironmentFactory(name="staging")


@pytest.fixture
def weekend_freeze(prod):
    return change_window_upsert(environment=prod, **WEEKEND_FREEZE)


def weekdays_allow(environment, start=dt.time(9), end=dt.time(17), tz="Europe/Berlin", name="Business hours"):
    return change_window_upsert(
        environment=environment,
        name=name,
        kind=WindowKind.ALLOW,
        weekdays=[0, 1, 2, 3, 4],
        start_time=start,
        end_time=end,
        timezone=tz,
    )


def test_no_windows_means_always_open(staging):
    with time_machine.travel(berlin(2027, 1, 9, 3, 0), tick=False):
        assert is_open_now(staging)
        assert window_explain(environment=staging, at=timezone.now()) == "open: no change window restricts staging"
        assert window_next_opening(environment=staging, after=timezone.now()) == timezone.now()


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (berlin(2027, 1, 8, 15, 59), True),  # Friday before the freeze
        (berlin(2027, 1, 8, 16, 0), False),  # Friday 16:00: frozen
        (berlin(2027, 1, 9, 12, 0), False),  # Saturday
        (berlin(2027, 1, 10, 23, 59), False),  # Sunday night
        (berlin(2027, 1, 11, 7, 59), False),  # Monday before 08:00
        (berlin(2027, 1, 11, 8, 0), True),  # Monday 08:00: open again
        (berlin(2027, 1, 13, 12, 0), True),  # Wednesday
    ],
)
def test_weekend_freeze_friday_16_to_monday_08(weekend_freeze, prod, moment, expected):
    with time_machine.travel(moment, tick=False):
        assert is_open_now(prod) is expected


def test_weekend_freeze_explains_itself_and_knows_the_next_opening(weekend_freeze, prod):
    with time_machine.travel(berlin(2027, 1, 9, 12, 0), tick=False):
        now = timezone.now()
        # Monday 08:00 CET is 07:00 UTC.
        assert window_next_opening(environment=prod, after=now) == utc(2027, 1, 11, 7, 0)
        assert window_explain(environment=prod, at=now) == "frozen by 'Weekend freeze' until 2027-01-11 07:00 UTC"
    with time_machine.travel(berlin(2027, 1, 6, 12, 0), tick=False):
        assert window_explain(environment=prod, at=timezone.now()) == (
            "open: the next freeze 'Weekend freeze' starts 2027-01-08 15:00 UTC"
        )


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (utc(2027, 1, 5, 23, 0), True),  # Tuesday 23:00, inside Tuesday's window
        (utc(2027, 1, 6, 5, 59), True),  # Wednesday 05:59, still Tuesday's window
        (utc(2027, 1, 6, 6, 0), False),  # Wednesday 06:00: closed
        (utc(2027, 1, 6, 21, 59), False),
        (utc(2027, 1, 9, 1, 0), True),  # Saturday 01:00: Friday's window crosses midnight
        (utc(2027, 1, 9, 23, 0), False),  # Saturday 23:00: no window starts on Saturday
        (utc(2027, 1, 11, 1, 0), False),  # Monday 01:00: Sunday has no window either
        (utc(2027, 1, 11, 22, 0), True),
    ],
)
def test_overnight_window_crossing_midnight(staging, moment, expected):
    weekdays_allow(staging, start=dt.time(22), end=dt.time(6), tz="UTC", name="Night shift")
    with time_machine.travel(moment, tick=False):
        assert is_open_now(staging) is expected


def test_overnight_window_next_opening_and_explanation(staging):
    weekdays_allow(staging, start=dt.time(22), end=dt.time(6), tz="UTC", name="Night shift")
    with time_machine.travel(utc(2027, 1, 9, 7, 0), tick=False):  # Saturday morning
        now = timezone.now()
        assert window_next_opening(environment=staging, after=now) == utc(2027, 1, 11, 22, 0)
        assert window_explain(environment=staging, at=now) == (
            "closed: outside every allow window; next opening 2027-01-11 22:00 UTC ('Night shift')"
        )
    with time_machine.travel(utc(2027, 1, 5, 23, 0), tick=False):
        assert window_explain(environment=staging, at=timezone.now()) == (
            "open: inside 'Night shift' until 2027-01-06 06:00 UTC"
        )


def test_business_hours_across_the_spring_dst_change_in_berlin(prod):
    """Clocks go forward on Sunday 2027-03-28: 09:00 Berlin is 08:00 UTC before, 07:00 UTC after."""
    weekdays_allow(prod)
    with time_machine.travel(utc(2027, 3, 26, 16, 30), tick=False):  # Friday 17:30 CET: closed
        now = timezone.now()
        assert not is_open_now(prod)
        assert window_next_opening(environment=prod, after=now) == utc(2027, 3, 29, 7, 0)
    assert window_is_open(environment=prod, at=utc(2027, 3, 26, 8, 0))  # Fri 09:00 CET
    assert not window_is_open(environment=prod, at=utc(2027, 3, 26, 7, 59))
    assert not window_is_open(environment=prod, at=utc(2027, 3, 29, 6, 30))  # Mon 08:30 CEST
    assert window_is_open(environment=prod, at=utc(2027, 3, 29, 7, 0))  # Mon 09:00 CEST
    assert window_is_open(environment=prod, at=utc(2027, 3, 29, 14, 59))  # Mon 16:59 CEST
    assert not window_is_open(environment=prod, at=utc(2027, 3, 29, 15, 0))  # Mon 17:00 CEST


def test_weekend_freeze_across_both_dst_changes(weekend_freeze, prod):
    # Spring: Friday 16:00 CET (15:00 UTC) to Monday 08:00 CEST (06:00 UTC).
    assert window_is_open(environment=prod, at=utc(2027, 3, 26, 14, 59))
    assert not window_is_open(environment=prod, at=utc(2027, 3, 26, 15, 0))
    assert not window_is_open(environment=prod, at=utc(2027, 3, 29, 5, 59))
    assert window_next_opening(environment=prod, after=utc(2027, 3, 27, 12, 0)) == utc(2027, 3, 29, 6, 0)
    # Autumn (back on 2027-10-31): Friday 16:00 CEST (14:00 UTC) to Monday 08:00 CET (07:00 UTC).
    assert not window_is_open(environment=prod, at=utc(2027, 10, 29, 14, 0))
    assert not window_is_open(environment=prod, at=utc(2027, 11, 1, 6, 59))
    assert window_next_opening(environment=prod, after=utc(2027, 10, 30, 12, 0)) == utc(2027, 11, 1, 7, 0)


def test_one_off_holiday_freeze_overrides_an_allow_window(prod):
    weekdays_allow(prod)
    change_window_upsert(
        environment=prod,
        name="Holiday freeze",
        kind=WindowKind.FREEZE,
        starts_at=utc(2026, 12, 23, 0, 0),
        ends_at=utc(2027, 1, 2, 8, 0),
    )
    with time_machine.travel(berlin(2026, 12, 28, 10, 0), tick=False):  # a Monday, inside business hours
        now = timezone.now()
        assert not is_open_now(prod)
        # The freeze ends on Saturday; business hours open again on Monday 09:00 CET.
        assert window_next_opening(environment=prod, after=now) == utc(2027, 1, 4, 8, 0)
        assert window_explain(environment=prod, at=now) == (
            "frozen by 'Holiday freeze' until 2027-01-02 08:00 UTC; the next opening is 2027-01-04 08:00 UTC"
        )
        status = window_status(environment=prod, at=now)
        assert status.window.name == "Holiday freeze" and status.until == utc(2027, 1, 2, 8, 0)
    with time_machine.travel(berlin(2027, 1, 4, 10, 0), tick=False):
        assert is_open_now(prod)


def test_disabled_windows_do_not_count(prod):
    freeze = change_window_upsert(
        environment=prod, name="Freeze", kind=WindowKind.FREEZE, starts_at=utc(2027, 1, 1), ends_at=utc(2027, 2, 1)
    )
    assert not window_is_open(environment=prod, at=utc(2027, 1, 15))
    change_window_upsert(environment=prod, name="Freeze", enabled=False)
    freeze.refresh_from_db()
    assert not freeze.enabled
    assert window_is_open(environment=prod, at=utc(2027, 1, 15))


def test_no_opening_within_the_horizon(prod):
    change_window_upsert(
        environment=prod, name="Long freeze", kind=WindowKind.FREEZE, starts_at=utc(2027, 1, 1), ends_at=utc(2027, 6, 1)
    )
    assert window_next_opening(environment=prod, after=utc(2027, 1, 10)) is None
    assert window_explain(environment=prod, at=utc(2027, 1, 10)) == (
        "frozen by 'Long freeze' until 2027-06-01 00:00 UTC; it does not open within the next 60 days"
    )


def test_windows_of_other_environments_do_not_apply(weekend_freeze, staging):
    assert window_is_open(environment=staging, at=berlin(2027, 1, 9, 12, 0))


def test_naive_datetimes_are_refused(prod):
    with pytest.raises(ValueError):
        window_is_open(environment=prod, at=dt.datetime(2027, 1, 1))


def test_upsert_is_validated_and_audited(prod):
    actor = UserFactory()
    change_window_upsert(
        environment=prod,
        name="Hours",
        actor=actor,
        **{"kind": WindowKind.ALLOW, "weekdays": [0], "start_time": dt.time(9), "end_time": dt.time(17)},
    )
    event = AuditEvent.objects.get(action=AuditAction.WINDOW_CREATED)
    assert event.actor == actor and event.environment == "prod" and event.after["start_time"] == "09:00:00"
    change_window_upsert(environment=prod, name="Hours", weekdays=[0, 1])
    assert AuditEvent.objects.get(action=AuditAction.WINDOW_UPDATED).after["weekdays"] == [0, 1]
    change_window_upsert(environment=prod, name="Hours", weekdays=[0, 1])  # no change, no row
    assert AuditEvent.objects.filter(action=AuditAction.WINDOW_UPDATED).count() == 1


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"weekdays": [0], "start_time": dt.time(9), "end_time": dt.time(17), "timezone": "Mars/Olympus"}, "timezone"),
        ({"weekdays": [7], "start_time": dt.time(9), "end_time": dt.time(17)}, "weekdays"),
        ({"weekdays": [], "start_time": dt.time(9), "end_time": dt.time(17)}, "weekdays"),
        ({"weekdays": [0], "start_time": dt.time(9)}, "end_time"),
        ({"starts_at": utc(2027, 1, 2), "ends_at": utc(2027, 1, 1)}, "ends_at"),
        (
            {
                "weekdays": [0],
                "start_time": dt.time(9),
                "end_time": dt.time(17),
                "starts_at": utc(2027, 1, 1),
                "ends_at": utc(2027, 1, 2),
            },
            "__all__",
        ),
    ],
)
def test_invalid_windows_are_refused(prod, fields, field):
    with pytest.raises(ValidationError) as caught:
        change_window_upsert(environment=prod, name="Bad", kind=WindowKind.ALLOW, **fields)
    assert field in caught.value.message_dict


def test_the_database_refuses_a_window_that_is_neither_recurring_nor_one_off(prod):
    with pytest.raises(IntegrityError), transaction.atomic():
        ChangeWindow.objects.create(environment=prod, name="Nothing", kind=WindowKind.FREEZE)


def test_the_windows_page_shows_each_environment_state(client, weekend_freeze, prod, staging):
    with time_machine.travel(berlin(2027, 1, 9, 12, 0), tick=False):
        client.force_login(UserFactory())
        response = client.get(reverse("governance:windows"))
    html = response.content.decode()
    assert response.status_code == 200
    assert "frozen by &#x27;Weekend freeze&#x27; until 2027-01-11 07:00 UTC" in html
    assert "Fri 16:00 → Mon 08:00 (Europe/Berlin)" in html
    assert "open: no change window restricts staging" in html


def test_window_descriptions(prod, weekend_freeze):
    from policies.services.windows import window_describe

    assert window_describe(weekend_freeze) == "Fri 16:00 → Mon 08:00 (Europe/Berlin)"
    night = weekdays_allow(prod, start=dt.time(22), end=dt.time(6), tz="UTC", name="Night")
    assert window_describe(night) == "Mon–Fri 22:00 → 06:00 (UTC)"
    holiday = change_window_upsert(
        environment=prod,
        name="Holiday",
        kind=WindowKind.FREEZE,
        starts_at=utc(2026, 12, 23),
        ends_at=utc(2027, 1, 2, 8),
    )
    assert window_describe(holiday) == "2026-12-23 00:00 UTC → 2027-01-02 08:00 UTC"
