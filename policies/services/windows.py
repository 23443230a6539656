"""Change windows and freezes: is an environment open for rollouts now, and when does it open next.

An environment without allow windows is always open except during freezes; with allow windows,
rollouts are allowed only inside one of them, and never during a freeze. Recurring windows are wall
clock times in their own time zone (zoneinfo), so "Fri 16:00 Europe/Berlin" stays 16:00 local across
daylight-saving changes. A wall time that does not exist on a spring-forward day (02:30) is read with
the offset before the change (i.e. it falls an hour later); a repeated one on a fall-back day is its
first occurrence. Every comparison is made in UTC.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.forms.models import model_to_dict

from policies.choices import AuditAction, WindowKind
from policies.models import ChangeWindow, Environment
from policies.services.audit import audit_record

UTC = dt.UTC
NEXT_OPENING_HORIZON = dt.timedelta(days=60)
"""How far ahead `window_next_opening` looks."""
_LONGEST_RECURRING_SPAN = dt.timedelta(days=8)
"""A recurring occurrence lasts at most 7 days (to the next end weekday), plus a DST hour."""

WEEKEND_FREEZE: dict[str, Any] = {
    "name": "Weekend freeze",
    "kind": WindowKind.FREEZE,
    "weekdays": [4],
    "start_time": dt.time(16, 0),
    "end_weekday": 0,
    "end_time": dt.time(8, 0),
    "timezone": "Europe/Berlin",
}


@dataclass(frozen=True)
class Occurrence:
    """One stretch of time a window covers, in UTC; half-open [start, end)."""

    window: ChangeWindow
    start: dt.datetime
    end: dt.datetime

    def covers(self, at: dt.datetime) -> bool:
        return self.start <= at < self.end


@dataclass(frozen=True)
class WindowStatus:
    open: bool
    reason: str
    window: ChangeWindow | None = None
    """The freeze that closes it, or the allow window that opens it."""
    until: dt.datetime | None = None
    """When this state ends (within the look-ahead horizon)."""
    next_opening: dt.datetime | None = None
    """`at` itself when open; otherwise the next opening within the horizon, or None."""


def _aware(at: dt.datetime) -> dt.datetime:
    if at.tzinfo is None:
        raise ValueError("change windows need an aware datetime")
    return at.astimezone(UTC)


def _format(at: dt.datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _end_date(day: dt.date, window: ChangeWindow) -> dt.date:
    assert window.start_time is not None and window.end_time is not None  # recurring: both times (constraint)
    if window.end_weekday is None:
        return day if window.end_time > window.start_time else day + dt.timedelta(days=1)
    days = (window.end_weekday - day.weekday()) % 7
    if days == 0 and window.end_time <= window.start_time:
        days = 7
    return day + dt.timedelta(days=days)


def window_occurrences(window: ChangeWindow, *, start: dt.datetime, end: dt.datetime) -> list[Occurrence]:
    """The window's occurrences that overlap [start, end)."""
    start, end = _aware(start), _aware(end)
    if not window.is_recurring:
        assert window.starts_at is not None and window.ends_at is not None  # one-off: both ends (constraint)
        first, last = _aware(window.starts_at), _aware(window.ends_at)
        return [Occurrence(window, first, last)] if first < end and last > start else []
    tz = zoneinfo.ZoneInfo(window.timezone)
    weekdays = set(window.weekdays or [])
    day = (start - _LONGEST_RECURRING_SPAN).astimezone(tz).date()
    last_day = end.astimezone(tz).date()
    assert window.start_time is not None and window.end_time is not None  # recurring: both times (constraint)
    found = []
    while day <= last_day:
        if day.weekday() in weekdays:
            begins = dt.datetime.combine(day, window.start_time, tzinfo=tz).astimezone(UTC)
            ends = dt.datetime.combine(_end_date(day, window), window.end_time, tzinfo=tz).astimezone(UTC)
            if begins < ends and begins < end and ends > start:
                found.append(Occurrence(window, begins, ends))
        day += dt.timedelta(days=1)
    return found


class _Timeline:
    """The enabled windows of one environment, expanded over a stretch of time."""

    def __init__(self, windows: list[ChangeWindow], start: dt.datetime, end: dt.datetime):
        self.horizon = end
        self.has_allow = any(w.kind == WindowKind.ALLOW for w in windows)
        self.occurrences = [o for w in windows for o in window_occurrences(w, start=start, end=end)]
        self.freezes = [o for o in self.occurrences if o.window.kind == WindowKind.FREEZE]
        self.allows = [o for o in self.occurrences if o.window.kind == WindowKind.ALLOW]

    def freeze_at(self, at: dt.datetime) -> Occurrence | None:
        covering = [o for o in self.freezes if o.covers(at)]
        return max(covering, key=lambda o: o.end) if covering else None

    def allow_at(self, at: dt.datetime) -> Occurrence | None:
        covering = [o for o in self.allows if o.covers(at)]
        return max(covering, key=lambda o: o.end) if covering else None

    def is_open(self, at: dt.datetime) -> bool:
        if self.freeze_at(at) is not None:
            return False
        return not self.has_allow or self.allow_at(at) is not None

    def boundaries_after(self, at: dt.datetime) -> list[dt.datetime]:
        return sorted({t for o in self.occurrences for t in (o.start, o.end) if at < t <= self.horizon})

    def next_change(self, at: dt.datetime) -> dt.datetime | None:
        """The first boundary after `at` where open/closed flips."""
        state = self.is_open(at)
        for boundary in self.boundaries_after(at):
            if self.is_open(boundary) != state:
                return boundary
        return None


def _windows(environment: Environment) -> list[ChangeWindow]:
    return list(ChangeWindow.objects.filter(environment=environment, enabled=True))


def _timeline(environment: Environment, at: dt.datetime, windows: list[ChangeWindow] | None) -> _Timeline:
    at = _aware(at)
    return _Timeline(_windows(environment) if windows is None else windows, at, at + NEXT_OPENING_HORIZON)


# `windows` (optional everywhere): the environment's enabled windows, when the caller already has them.


def window_is_open(*, environment: Environment, at: dt.datetime, windows: list[ChangeWindow] | None = None) -> bool:
    """May a rollout to the environment run at `at`?"""
    return _timeline(environment, at, windows).is_open(_aware(at))


def window_next_opening(
    *, environment: Environment, after: dt.datetime, windows: list[ChangeWindow] | None = None
) -> dt.datetime | None:
    """`after` itself if the environment is open then; otherwise the first moment it opens within
    the next 60 days, or None."""
    after = _aware(after)
    timeline = _timeline(environment, after, windows)
    if timeline.is_open(after):
        return after
    return timeline.next_change(after)


def window_status(
    *, environment: Environment, at: dt.datetime, windows: list[ChangeWindow] | None = None
) -> WindowStatus:
    """Open or not at `at`, why, until when, and the next opening."""
    at = _aware(at)
    timeline = _timeline(environment, at, windows)
    change = timeline.next_change(at)
    freeze = timeline.freeze_at(at)
    if freeze is not None:
        reason = f"frozen by '{freeze.window.name}' until {_format(freeze.end)}"
        if change is None:
            reason += f"; it does not open within the next {NEXT_OPENING_HORIZON.days} days"
        elif change != freeze.end:
            reason += f"; the next opening is {_format(change)}"
        return WindowStatus(False, reason, freeze.window, freeze.end, change)
    if timeline.has_allow:
        allow = timeline.allow_at(at)
        if allow is not None:
            until = change or allow.end
            return WindowStatus(
                True, f"open: inside '{allow.window.name}' until {_format(until)}", allow.window, until, at
            )
        if change is None:
            reason = f"closed: outside every allow window, and none opens within {NEXT_OPENING_HORIZON.days} days"
            return WindowStatus(False, reason)
        opening = timeline.allow_at(change)
        name = f" ('{opening.window.name}')" if opening else ""
        return WindowStatus(
            False, f"closed: outside every allow window; next opening {_format(change)}{name}", None, change, change
        )
    if change is not None:
        upcoming = timeline.freeze_at(change)
        name = f"'{upcoming.window.name}' " if upcoming else ""
        return WindowStatus(True, f"open: the next freeze {name}starts {_format(change)}", None, change, at)
    return WindowStatus(True, f"open: no change window restricts {environment.name}", None, None, at)


def window_explain(*, environment: Environment, at: dt.datetime, windows: list[ChangeWindow] | None = None) -> str:
    """One sentence, e.g. "frozen by 'Holiday freeze' until 2027-01-02 08:00 UTC"."""
    return window_status(environment=environment, at=at, windows=windows).reason


WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def window_describe(window: ChangeWindow) -> str:
    """E.g. "Fri 16:00 → Mon 08:00 (Europe/Berlin)", "Mon–Fri 22:00 → 06:00 (UTC)" or a one-off range."""
    if not window.is_recurring:
        assert window.starts_at is not None and window.ends_at is not None  # one-off: both ends (constraint)
        return f"{_format(window.starts_at)} → {_format(window.ends_at)}"
    days = sorted(set(window.weekdays or []))
    if len(days) > 2 and days == list(range(days[0], days[-1] + 1)):
        day_text = f"{WEEKDAY_NAMES[days[0]]}–{WEEKDAY_NAMES[days[-1]]}"
    else:
        day_text = ", ".join(WEEKDAY_NAMES[d] for d in days)
    end_day = f"{WEEKDAY_NAMES[window.end_weekday]} " if window.end_weekday is not None else ""
    return f"{day_text} {window.start_time:%H:%M} → {end_day}{window.end_time:%H:%M} ({window.timezone})"


def _snapshot(window: ChangeWindow) -> dict[str, Any]:
    data = model_to_dict(window, exclude=["id"])
    return {key: value.isoformat() if hasattr(value, "isoformat") else value for key, value in data.items()}


@transaction.atomic
def change_window_upsert(
    *, environment: Environment, name: str, actor: User | None = None, **fields: Any
) -> ChangeWindow:
    """Creates or updates the environment's window of that name (validated, audited)."""
    window = ChangeWindow.objects.select_for_update().filter(environment=environment, name=name).first()
    created = window is None
    if created:
        window = ChangeWindow(environment=environment, name=name)
    assert window is not None
    before = None if created else _snapshot(window)
    for field, value in fields.items():
        setattr(window, field, value)
    window.full_clean()
    after = _snapshot(window)
    if not created and after == before:
        return window
    window.save()
    audit_record(
        action=AuditAction.WINDOW_CREATED if created else AuditAction.WINDOW_UPDATED,
        actor=actor,
        obj=window,
        environment=environment.name,
        before=before,
        after=_snapshot(window),
    )
    return window
