"""Single-flight leases: one holder of a named lease at a time, taken over once it expires.

Each call is its own short transaction (no lock is held across the holder's work), so a killed holder
only delays the next one by the lease's time to live.
"""

from __future__ import annotations

import datetime as dt
import secrets

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from policies.models import Lease


def lease_acquire(*, key: str, ttl_seconds: float) -> str | None:
    """A token when the lease `key` was free (or expired) and is now held for `ttl_seconds`; else None."""
    now = timezone.now()
    token = secrets.token_hex(16)
    expires = now + dt.timedelta(seconds=ttl_seconds)
    taken = Lease.objects.filter(Q(key=key) & Q(expires_at__lte=now)).update(token=token, expires_at=expires)
    if taken:
        return token
    try:
        with transaction.atomic():
            Lease.objects.create(key=key, token=token, expires_at=expires)
    except IntegrityError:
        return None
    return token


def lease_renew(*, key: str, token: str, ttl_seconds: float) -> bool:
    expires = timezone.now() + dt.timedelta(seconds=ttl_seconds)
    return bool(Lease.objects.filter(key=key, token=token).update(expires_at=expires))


def lease_release(*, key: str, token: str) -> None:
    Lease.objects.filter(key=key, token=token).delete()
