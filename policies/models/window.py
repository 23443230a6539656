import zoneinfo

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils.timezone import now as _now

from policies.choices import WindowKind
from policies.models.environment import Environment


class ChangeWindow(models.Model):
    """When rollouts to an environment may run (allow) or must not (freeze).

    Recurring: on each of `weekdays` (0 = Monday, in `timezone`) from `start_time` to `end_time`,
    which is on the next day when it is not after the start (22:00 → 06:00; 00:00 → 00:00 is a whole
    day). With `end_weekday` the window runs until the next such weekday at `end_time`
    (Fri 16:00 → Mon 08:00). One-off: from `starts_at` to `ends_at` (e.g. a holiday freeze).
    """

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="change_windows")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=10, choices=WindowKind.choices)
    weekdays = models.JSONField(default=list, blank=True, help_text="Days it starts on, 0 = Monday … 6 = Sunday.")
    start_time = models.TimeField(null=True, blank=True)
    end_time = models.TimeField(null=True, blank=True)
    end_weekday = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="For windows longer than a day: the weekday it ends on (0 = Monday)."
    )
    timezone = models.CharField(max_length=64, default="UTC", help_text="IANA name, e.g. Europe/Berlin.")
    starts_at = models.DateTimeField(null=True, blank=True, help_text="One-off windows: start.")
    ends_at = models.DateTimeField(null=True, blank=True, help_text="One-off windows: end.")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=_now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["environment__order", "kind", "name"]
        constraints = [
            models.UniqueConstraint(fields=["environment", "name"], name="unique_window_name_per_environment"),
            models.CheckConstraint(
                condition=(
                    Q(start_time__isnull=False, end_time__isnull=False, starts_at__isnull=True, ends_at__isnull=True)
                    | Q(
                        start_time__isnull=True,
                        end_time__isnull=True,
                        end_weekday__isnull=True,
                        starts_at__isnull=False,
                        ends_at__isnull=False,
                    )
                ),
                name="window_recurring_xor_one_off",
            ),
            models.CheckConstraint(
                condition=Q(starts_at__isnull=True) | Q(ends_at__gt=models.F("starts_at")),
                name="window_one_off_ends_after_start",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display().lower()}, {self.environment.name})"

    @property
    def kind_choice(self) -> WindowKind:
        return WindowKind(self.kind)

    @property
    def is_recurring(self) -> bool:
        return self.start_time is not None

    def clean(self) -> None:
        errors: dict[str, str] = {}
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            errors["timezone"] = f"{self.timezone!r} is not an IANA time zone name (e.g. Europe/Berlin)"
        one_off = self.starts_at is not None or self.ends_at is not None
        recurring = self.start_time is not None or self.end_time is not None
        if one_off == recurring:
            errors["__all__"] = "give either weekdays with a start and end time, or a start and end date-time"
        elif recurring:
            if self.start_time is None or self.end_time is None:
                errors["end_time" if self.start_time else "start_time"] = "a recurring window needs both times"
            days = self.weekdays
            if not isinstance(days, list) or not days or any(type(d) is not int or not 0 <= d <= 6 for d in days):
                errors["weekdays"] = "a non-empty list of weekdays, 0 = Monday … 6 = Sunday"
            if self.end_weekday is not None and not 0 <= self.end_weekday <= 6:
                errors["end_weekday"] = "0 = Monday … 6 = Sunday"
        else:
            if self.starts_at is None or self.ends_at is None:
                errors["ends_at" if self.starts_at else "starts_at"] = "a one-off window needs a start and an end"
            elif self.ends_at <= self.starts_at:
                errors["ends_at"] = "must be after the start"
            if self.weekdays or self.end_weekday is not None:
                errors["weekdays"] = "a one-off window has no weekdays"
        if errors:
            raise ValidationError(errors)
