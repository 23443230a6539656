"""Outgoing notifications: signed generic webhooks, Slack incoming webhooks, email.

Thin clients without Django models or business rules: the domain (`policies.services.notifications`)
decides who gets what and when to retry; these functions only deliver one message and say how it went.
Every failure is a `NotifyError` that tells whether trying again later can help.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


class NotifyError(Exception):
    """One delivery attempt failed. `retryable` is False when sending the same message again cannot
    succeed (e.g. the receiver answered 400 or 404, or the target is not a usable URL)."""

    def __init__(self, message: str, *, status_code: int | None = None, retryable: bool = True):
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.retryable = retryable


@dataclass(frozen=True)
class DeliveryReceipt:
    """What the receiver answered to a successful attempt (no status code for email)."""

    status_code: int | None = None


@dataclass(frozen=True)
class NotifySettings:
    timeout_seconds: float
    """Connect and read timeout of one HTTP delivery."""
    max_attempts: int
    """Attempts per delivery before it is marked failed."""
    retry_base_seconds: float
    """Wait before the second attempt; it doubles after every further failure."""
    retry_max_seconds: float
    """The longest wait between two attempts."""
    user_agent: str = "Meshgate-Notify/1"


def notify_settings() -> NotifySettings:
    """The delivery settings, read from the environment on every call (so a worker and the web
    process started with the same environment agree, and tests can shorten the backoff)."""
    env = os.environ
    return NotifySettings(
        timeout_seconds=float(env.get("MESHGATE_NOTIFY_TIMEOUT_SECONDS", "10")),
        max_attempts=max(1, int(env.get("MESHGATE_NOTIFY_MAX_ATTEMPTS", "6"))),
        retry_base_seconds=max(0.0, float(env.get("MESHGATE_NOTIFY_RETRY_BASE_SECONDS", "30"))),
        retry_max_seconds=max(0.0, float(env.get("MESHGATE_NOTIFY_RETRY_MAX_SECONDS", "3600"))),
    )


def is_retryable_status(status_code: int) -> bool:
    """Timeouts, rate limits and server errors may pass later; other 4xx answers will not."""
    return status_code in (408, 425, 429) or status_code >= 500


__all__ = ["DeliveryReceipt", "NotifyError", "NotifySettings", "is_retryable_status", "notify_settings"]
