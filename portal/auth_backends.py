"""Login throttling: django-axes ahead of the password check.

`ThrottlingBackend` is the first authentication backend: it refuses a locked-out username or client
address before `ModelBackend` spends any CPU on the password hash, so failed logins cannot be
used as a CPU amplifier. Lockouts count per address and per username (`AXES_LOCKOUT_PARAMETERS`).
Calls without a request (management commands, the shell) are not throttled: they do not come from
the network; nor is single sign-on (no password: the identity provider throttles its own logins)
or an API token, which authenticate elsewhere.
"""

from __future__ import annotations

from typing import Any

from axes.backends import AxesStandaloneBackend
from django.http import HttpRequest


class ThrottlingBackend(AxesStandaloneBackend):
    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> None:
        if request is None or password is None:
            return None  # not a password login from the network (a command, or single sign-on)
        return super().authenticate(request, username=username, password=password, **kwargs)
