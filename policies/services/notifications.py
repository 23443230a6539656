"""Notifications: who gets which event on which channel, and delivering them with retries.

    notify(event=NotificationEvent.CHANGE_APPROVED, subject="…", body="…", url="/changes/12/",
           payload={"change": 12, "environment": "prod"}, teams=[team], users=[author])

creates one `NotificationDelivery` row per enabled, subscribed channel of the given teams and users
(a user's muted events skip that user's own channels) and enqueues `deliver_notification` for each
once the surrounding transaction commits. The row holds the state: the task makes one attempt,
records the answer, and schedules the next attempt with exponential backoff; the periodic
`retry_due_notifications` picks up rows whose attempt is overdue, so a lost task only delays.
Delivery settings (timeout, attempts, backoff) come from `integrations.notify.notify_settings()`.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from integrations.notify import DeliveryReceipt, NotifyError, notify_settings
from integrations.notify.email import send_email
from integrations.notify.slack import send_slack, slack_message
from integrations.notify.webhook import check_url, send_webhook
from policies import jobs
from policies.choices import AuditAction, DeliveryStatus, NotificationChannelKind, NotificationEvent, Role
from policies.exceptions import PermissionDeniedError, Throttled
from policies.models import NotificationChannel, NotificationDelivery, NotificationPreference, Team
from policies.selectors import user_is_admin, user_is_platform_admin, user_is_team_admin
from policies.services.audit import audit_record

logger = logging.getLogger(__name__)

REQUEUE_GRACE = dt.timedelta(seconds=30)
"""`retry_due_notifications` leaves a due row this long to the task already scheduled for it."""
LEASE_MARGIN = dt.timedelta(seconds=30)
"""An attempt holds its row for the HTTP timeout plus this; after that another worker may retry."""
MAX_SUBJECT = 300
TEST_SENDS_PER_WINDOW = 5
TEST_WINDOW = dt.timedelta(minutes=10)
"""A user may send this many channel tests per window (a test is an outbound request on their behalf)."""
WEBHOOK_SECRET_BYTES = 32

AnyUser = User | AnonymousUser


# --- sending ----------------------------------------------------------------------------------------


def _absolute(url: str) -> str:
    base = getattr(settings, "MESHGATE_PUBLIC_URL", "").rstrip("/")
    return f"{base}{url}" if url.startswith("/") and base else url


@transaction.atomic
def notify(
    *,
    event: str,
    subject: str,
    body: str,
    url: str = "",
    payload: dict[str, Any] | None = None,
    teams: Iterable[Team] = (),
    users: Iterable[User] = (),
) -> list[NotificationDelivery]:
    """Queues the event for the enabled channels of `teams` and `users` that subscribe to it."""
    if event not in NotificationEvent.values:
        raise ValueError(f"unknown notification event {event!r}")
    team_ids = {team.pk for team in teams}
    user_ids = {user.pk for user in users if user is not None and user.pk is not None}
    if not team_ids and not user_ids:
        return []
    channels = list(
        NotificationChannel.objects.filter(enabled=True).filter(
            Q(team_id__in=team_ids) | Q(user_id__in=user_ids, user__is_active=True)
        )
    )
    if not channels:
        return []
    muted = set(
        NotificationPreference.objects.filter(user_id__in=user_ids, event=event, muted=True).values_list(
            "user_id", flat=True
        )
    )
    recipients = [c for c in channels if c.receives(event) and not (c.user_id and c.user_id in muted)]
    return [
        _queue(channel, event=event, subject=subject, body=body, url=url, payload=payload or {})
        for channel in recipients
    ]


def _queue(
    channel: NotificationChannel, *, event: str, subject: str, body: str, url: str, payload: dict[str, Any]
) -> NotificationDelivery:
    now = timezone.now()
    delivery = NotificationDelivery.objects.create(
        event=event,
        channel=channel,
        subject=subject[:MAX_SUBJECT],
        status=DeliveryStatus.PENDING,
        next_attempt_at=now,
        payload={
            "subject": subject,
            "body": body,
            "url": _absolute(url),
            "data": payload,
            "occurred_at": now.isoformat(),
        },
    )
    jobs.deliver_notification.on_commit(delivery.pk)
    return delivery


@dataclass(frozen=True)
class DeliveryOutcome:
    status: str
    """The row's status after this call; "skipped" when the row was not due or is held by another attempt."""
    retry_in: float | None = None
    """Seconds until the next attempt, when one is scheduled."""


def _backoff(attempts: int) -> float:
    config = notify_settings()
    return min(config.retry_base_seconds * (2 ** max(0, attempts - 1)), config.retry_max_seconds)


def notification_deliver(*, delivery_id: int) -> DeliveryOutcome:
    """One attempt at one delivery, if it is due. Claims the row with a conditional UPDATE (a lease),
    so two workers never send the same attempt; the HTTP call runs outside any transaction."""
    config = notify_settings()
    now = timezone.now()
    lease_until = now + dt.timedelta(seconds=config.timeout_seconds) + LEASE_MARGIN
    claimed = NotificationDelivery.objects.filter(
        pk=delivery_id, status__in=[DeliveryStatus.PENDING, DeliveryStatus.RETRYING], next_attempt_at__lte=now
    ).update(next_attempt_at=lease_until, attempts=F("attempts") + 1)
    if not claimed:
        return DeliveryOutcome("skipped")
    delivery = NotificationDelivery.objects.select_related("channel").get(pk=delivery_id)
    try:
        receipt = _send(delivery)
    except NotifyError as exc:
        return _record_failure(delivery, exc, config.max_attempts)
    except Exception as exc:
        logger.exception("notification delivery %s failed unexpectedly", delivery_id)
        return _record_failure(
            delivery, NotifyError(f"internal error: {type(exc).__name__}: {exc}"), config.max_attempts
        )
    delivery.status = DeliveryStatus.DELIVERED
    delivery.delivered_at = timezone.now()
    delivery.next_attempt_at = None
    delivery.last_status_code = receipt.status_code
    delivery.last_error = ""
    delivery.save(update_fields=["status", "delivered_at", "next_attempt_at", "last_status_code", "last_error"])
    return DeliveryOutcome(DeliveryStatus.DELIVERED)


def _record_failure(delivery: NotificationDelivery, error: NotifyError, max_attempts: int) -> DeliveryOutcome:
    delivery.last_error = error.message[:2000]
    delivery.last_status_code = error.status_code
    retry_in = None
    if error.retryable and delivery.attempts < max_attempts:
        retry_in = _backoff(delivery.attempts)
        delivery.status = DeliveryStatus.RETRYING
        delivery.next_attempt_at = timezone.now() + dt.timedelta(seconds=retry_in)
    else:
        delivery.status = DeliveryStatus.FAILED
        delivery.next_attempt_at = None
    delivery.save(update_fields=["status", "next_attempt_at", "last_status_code", "last_error"])
    logger.warning("notification delivery %s attempt %s failed: %s", delivery.pk, delivery.attempts, error.message)
    return DeliveryOutcome(delivery.status, retry_in)


def delivery_message(delivery: NotificationDelivery) -> dict[str, Any]:
    """The JSON body a generic webhook receives."""
    payload = delivery.payload or {}
    return {
        "event": delivery.event,
        "delivery": str(delivery.uuid),
        "occurred_at": payload.get("occurred_at"),
        "subject": payload.get("subject", delivery.subject),
        "body": payload.get("body", ""),
        "url": payload.get("url", ""),
        "data": payload.get("data", {}),
    }


def _send(delivery: NotificationDelivery) -> DeliveryReceipt:
    channel = delivery.channel
    if not channel.enabled:
        raise NotifyError("the channel has been disabled", retryable=False)
    message = delivery_message(delivery)
    if channel.kind == NotificationChannelKind.WEBHOOK:
        return send_webhook(
            url=channel.target,
            secret=channel.secret or "",
            event=delivery.event,
            delivery_id=message["delivery"],
            payload=message,
        )
    if channel.kind == NotificationChannelKind.SLACK:
        data = message["data"] if isinstance(message["data"], dict) else {}
        fields = {str(k): str(v) for k, v in data.items() if isinstance(v, (str, int, float, bool))}
        return send_slack(
            url=channel.target,
            message=slack_message(
                event=delivery.event,
                subject=message["subject"],
                body=message["body"],
                url=message["url"],
                fields=fields,
            ),
        )
    if channel.kind == NotificationChannelKind.EMAIL:
        return send_email(
            to=channel.target,
            subject=message["subject"],
            body=message["body"],
            url=message["url"],
            event=delivery.event,
        )
    raise NotifyError(f"unknown channel kind {channel.kind!r}", retryable=False)


def notifications_due(*, now: dt.datetime | None = None, limit: int = 500) -> list[int]:
    """Ids of pending / retrying deliveries whose attempt is overdue (their task was lost)."""
    cutoff = (now or timezone.now()) - REQUEUE_GRACE
    return list(
        NotificationDelivery.objects.filter(
            status__in=[DeliveryStatus.PENDING, DeliveryStatus.RETRYING], next_attempt_at__lte=cutoff
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )


# --- channels and preferences ---------------------------------------------------------------------


def _is_team_admin(user: AnyUser, team_id: int) -> bool:
    return user_is_team_admin(user, team_id)


def channel_may_manage(*, user: AnyUser, channel: NotificationChannel) -> bool:
    """Own channels; team channels for that team's admins; everything for superusers."""
    if not user.is_authenticated:
        return False
    if channel.user_id:
        return channel.user_id == user.pk or user_is_platform_admin(user)
    assert channel.team_id is not None  # a channel belongs to exactly one team or one user
    return _is_team_admin(user, channel.team_id)


def channel_visible_list(*, user: AnyUser) -> QuerySet[NotificationChannel]:
    """Channels a user may see: their own and their teams' (superusers: all)."""
    channels = NotificationChannel.objects.select_related("team", "user")
    if not user.is_authenticated:
        return channels.none()
    if user_is_platform_admin(user):
        return channels
    return channels.filter(Q(user=user) | Q(team__memberships__user=user)).distinct()


def teams_user_administers(*, user: AnyUser) -> QuerySet[Team]:
    if not user.is_authenticated:
        return Team.objects.none()
    if user_is_platform_admin(user):
        return Team.objects.all()
    return Team.objects.filter(memberships__user=user, memberships__role=Role.ADMIN).distinct()


def delivery_visible_list(*, user: AnyUser) -> QuerySet[NotificationDelivery]:
    """Admins see every delivery; others those to their own and their teams' channels."""
    deliveries = NotificationDelivery.objects.select_related("channel__team", "channel__user")
    if not user.is_authenticated:
        return deliveries.none()
    if user_is_admin(user):
        return deliveries
    return deliveries.filter(Q(channel__user=user) | Q(channel__team__memberships__user=user)).distinct()


def _clean_channel(channel: NotificationChannel) -> None:
    errors: dict[str, str] = {}
    if channel.kind == NotificationChannelKind.EMAIL:
        try:
            validate_email(channel.target)
        except ValidationError:
            errors["target"] = "an email address"
    elif channel.kind in (NotificationChannelKind.WEBHOOK, NotificationChannelKind.SLACK):
        try:
            URLValidator(schemes=["http", "https"])(channel.target)
        except ValidationError:
            errors["target"] = "an http(s) URL"
        else:
            try:
                check_url(channel.target)
            except NotifyError as exc:
                errors["target"] = exc.message
    events = channel.events
    if not isinstance(events, list) or any(e not in NotificationEvent.values for e in events):
        errors["events"] = "a list of event names"
    if errors:
        raise ValidationError(errors)
    channel.full_clean()


def _channel_snapshot(channel: NotificationChannel) -> dict[str, Any]:
    return {
        "name": channel.name,
        "owner": channel.owner_label,
        "kind": channel.kind,
        "target": channel.masked_target,
        "events": channel.events,
        "enabled": channel.enabled,
        "has_secret": bool(channel.secret),
    }


@transaction.atomic
def channel_create(
    *,
    actor: User,
    name: str,
    kind: str,
    target: str,
    team: Team | None = None,
    user: User | None = None,
    secret: str = "",
    events: Iterable[str] = (),
    enabled: bool = True,
) -> NotificationChannel:
    """A channel for the actor themselves (`user`) or for a team the actor administers. A webhook
    without a secret gets a generated one (read it from the returned channel once, to give it to
    the receiver)."""
    if (team is None) == (user is None):
        raise ValidationError("a channel belongs to exactly one team or one user")
    if user is not None and not (actor.pk == user.pk or actor.is_superuser):
        raise PermissionDeniedError("you may only add channels for yourself")
    if team is not None and not _is_team_admin(actor, team.pk):
        raise PermissionDeniedError(f"only admins of {team} may add its channels")
    if kind == NotificationChannelKind.WEBHOOK and not secret:
        secret = secrets.token_urlsafe(WEBHOOK_SECRET_BYTES)
    channel = NotificationChannel(
        name=name.strip(),
        kind=kind,
        target=target.strip(),
        team=team,
        user=user,
        secret=secret,
        events=list(events),
        enabled=enabled,
    )
    _clean_channel(channel)
    channel.save()
    audit_record(action=AuditAction.CHANNEL_CREATED, actor=actor, obj=channel, after=_channel_snapshot(channel))
    return channel


_CHANNEL_EDITABLE = ("name", "kind", "target", "secret", "events", "enabled")


@transaction.atomic
def channel_update(*, actor: User, channel: NotificationChannel, **fields: Any) -> NotificationChannel:
    if not channel_may_manage(user=actor, channel=channel):
        raise PermissionDeniedError("you may not change this channel")
    unknown = set(fields) - set(_CHANNEL_EDITABLE)
    if unknown:
        raise ValueError(f"not editable: {', '.join(sorted(unknown))}")
    channel = NotificationChannel.objects.select_for_update().get(pk=channel.pk)
    before = _channel_snapshot(channel)
    old_secret = channel.secret
    for field, value in fields.items():
        setattr(
            channel, field, list(value) if field == "events" else value.strip() if isinstance(value, str) else value
        )
    if channel.kind == NotificationChannelKind.WEBHOOK and not channel.secret:
        channel.secret = secrets.token_urlsafe(WEBHOOK_SECRET_BYTES)
    _clean_channel(channel)
    after = _channel_snapshot(channel)
    secret_changed = channel.secret != old_secret
    if after == before and not secret_changed:
        return channel
    channel.save()
    audit_record(
        action=AuditAction.CHANNEL_UPDATED,
        actor=actor,
        obj=channel,
        before=before,
        after={**after, "secret_rotated": secret_changed},
    )
    return channel


@transaction.atomic
def channel_delete(*, actor: User, channel: NotificationChannel) -> None:
    if not channel_may_manage(user=actor, channel=channel):
        raise PermissionDeniedError("you may not delete this channel")
    audit_record(action=AuditAction.CHANNEL_DELETED, actor=actor, obj=channel, before=_channel_snapshot(channel))
    channel.delete()


@transaction.atomic
def notification_preference_set(*, user: User, event: str, muted: bool) -> NotificationPreference:
    if event not in NotificationEvent.values:
        raise ValidationError({"event": f"unknown event {event!r}"})
    preference, created = NotificationPreference.objects.get_or_create(
        user=user, event=event, defaults={"muted": muted}
    )
    if created or preference.muted != muted:
        if not created:
            preference.muted = muted
            preference.save(update_fields=["muted"])
        audit_record(
            action=AuditAction.NOTIFICATION_PREFERENCE_SET,
            actor=user,
            obj=preference,
            after={"event": event, "muted": muted},
        )
    return preference


def notification_muted_events(*, user: AnyUser) -> set[str]:
    if not user.is_authenticated:
        return set()
    return set(NotificationPreference.objects.filter(user=user, muted=True).values_list("event", flat=True))


@transaction.atomic
def notification_send_test(*, actor: User, channel: NotificationChannel) -> NotificationDelivery:
    """A test message to this one channel, whatever its event filter and the owner's mutes."""
    if not channel_may_manage(user=actor, channel=channel):
        raise PermissionDeniedError("you may not send to this channel")
    recent = NotificationDelivery.objects.filter(
        event=NotificationEvent.TEST,
        payload__data__sent_by=actor.get_username(),
        created_at__gte=timezone.now() - TEST_WINDOW,
    ).count()
    if recent >= TEST_SENDS_PER_WINDOW:
        raise Throttled(
            f"you sent {recent} channel tests in the last {int(TEST_WINDOW.total_seconds() // 60)} "
            "minutes: wait before sending another"
        )
    delivery = _queue(
        channel,
        event=NotificationEvent.TEST,
        subject=f"Test notification for “{channel.name}”",
        body=f"{actor.get_username()} sent this test from Meshgate. If you can read it, the channel works.",
        url="",
        payload={"channel": channel.name, "sent_by": actor.get_username()},
    )
    audit_record(
        action=AuditAction.NOTIFICATION_TEST_SENT, actor=actor, obj=channel, after={"delivery": str(delivery.uuid)}
    )
    return delivery
