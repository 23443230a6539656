import uuid
from urllib.parse import urlsplit

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q
from django.utils import timezone

from policies.choices import DeliveryStatus, NotificationChannelKind, NotificationEvent
from policies.fields import EncryptedTextField
from policies.models.team import Team


class NotificationChannel(models.Model):
    """Where a team's or a user's notifications go. Owned by exactly one team or one user."""

    name = models.CharField(max_length=100)
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE, related_name="channels")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="notification_channels"
    )
    kind = models.CharField(max_length=10, choices=NotificationChannelKind.choices)
    target = models.CharField(max_length=500, help_text="An email address, or the webhook / Slack URL.")
    secret = EncryptedTextField(blank=True, help_text="Webhook HMAC key, encrypted at rest.")
    events = models.JSONField(default=list, blank=True, help_text="Event names it receives; empty = all.")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["team__name", "name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(team__isnull=False, user__isnull=True) | Q(team__isnull=True, user__isnull=False),
                name="channel_owned_by_team_xor_user",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    @property
    def owner_label(self) -> str:
        return f"team {self.team}" if self.team_id else f"user {self.user}"

    @property
    def masked_target(self) -> str:
        """The target as shown to people who do not manage the channel and to the audit log: Slack
        and many webhook URLs carry their token in the path or query, so only scheme and host show."""
        if self.kind == NotificationChannelKind.EMAIL:
            return self.target
        parts = urlsplit(self.target)
        rest = "/…" if parts.path.strip("/") or parts.query else ""
        return f"{parts.scheme}://{parts.netloc}{rest}"

    def receives(self, event: str) -> bool:
        return self.enabled and (not self.events or event in self.events)


class NotificationPreference(models.Model):
    """A user's own switch per event: muted events reach none of the user's own channels."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preferences"
    )
    event = models.CharField(max_length=40, choices=NotificationEvent.choices)
    muted = models.BooleanField(default=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "event"], name="unique_preference_per_event")]

    def __str__(self) -> str:
        return f"{self.user}: {self.event} {'muted' if self.muted else 'on'}"


class NotificationDelivery(models.Model):
    """One message to one channel and every attempt to deliver it. The row is the state; the
    Celery task only carries its id."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    event = models.CharField(max_length=40, choices=NotificationEvent.choices)
    channel = models.ForeignKey(NotificationChannel, on_delete=models.CASCADE, related_name="deliveries")
    subject = models.CharField(max_length=300)
    payload = models.JSONField(default=dict, encoder=DjangoJSONEncoder)
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="When the next attempt is due (pending / retrying); a lease while sending."
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name_plural = "notification deliveries"
        indexes = [models.Index(fields=["status", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"{self.event} → {self.channel} ({self.status})"

    @property
    def status_choice(self) -> DeliveryStatus:
        return DeliveryStatus(self.status)
