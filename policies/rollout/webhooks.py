"""Rollout webhooks: HTTP calls at the phases of a rollout, whose failure can gate it.

Configured in the rollout's analysis options as a list (`analysis["webhooks"]`)::

    {"name": "load-test", "phase": "step", "url": "https://tests.example/run", "timeout_seconds": 10,
     "gate": true, "metadata": {"suite": "smoke"}}

Phases and what a failure (an answer other than 2xx, a timeout, a refused connection) does when the
webhook gates (`gate`, the default; a non-gating webhook's failure is only recorded):

- `pre-rollout`: called before the snapshot and the first write. The rollout waits one analysis
  interval and calls again; after `attempts` failures in a row it pauses for a person.
- `step`: called at every analysis interval (acceptance or load tests). A failure fails that interval
  like a metric out of range: it counts towards the failure limit, which rolls back.
- `promotion`: called before the final verification and the new revisions. A failure holds the
  promotion like `pre-rollout` (wait, call again, then pause for a person).
- `rollback`: called once the snapshot is restored (a signal to other systems); it never blocks.

The request is a POST of JSON (the phase, the rollout, the change, the step and weight, and the
webhook's `metadata`), with redirects refused. The webhooks of one phase are called side by side, and
each is given up on after its `timeout_seconds` (at most 30) even when its receiver trickles an
answer, so they hold a rollout's action for at most that long; at most 64 KiB of an answer is read.
Calls go through the egress policy (`integrations.http.egress`): loopback, private, link-local and
metadata addresses are refused after DNS resolution unless `MESHGATE_EGRESS_ALLOW` allows them. The
timeline shows their URLs without the query string. `MESHGATE_ROLLOUT_WEBHOOK_HOSTS` (settings)
further limits the hosts a webhook may call (`name` or `*.domain`); webhooks are part of a change's rollout plan, which its approvers
approve. A webhook that answered 2xx in `pre-rollout` is
not called again after a worker restart (its success is a keyed step of the rollout).
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from integrations.http import egress

PRE_ROLLOUT, STEP, PROMOTION, ROLLBACK = "pre-rollout", "step", "promotion", "rollback"
PHASES = (PRE_ROLLOUT, STEP, PROMOTION, ROLLBACK)
DEFAULT_TIMEOUT_SECONDS = 5.0
MAX_TIMEOUT_SECONDS = 30.0
DEFAULT_ATTEMPTS = 3
MAX_WEBHOOKS = 10
_KEYS = {"name", "phase", "url", "timeout_seconds", "gate", "metadata"}


class WebhookConfigError(ValueError):
    """A webhook entry is malformed; the message starts with its path (`webhooks[1].url: ...`)."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path


@dataclass(frozen=True)
class Webhook:
    name: str
    phase: str
    url: str
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    gate: bool = True
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WebhookResult:
    webhook: Webhook
    ok: bool
    status: int | None
    detail: str
    elapsed_ms: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.webhook.name,
            "phase": self.webhook.phase,
            "url": redacted(self.webhook.url),
            "gate": self.webhook.gate,
            "ok": self.ok,
            "status": self.status,
            "detail": self.detail,
            "elapsed_ms": self.elapsed_ms,
        }

    @property
    def summary(self) -> str:
        answer = f"HTTP {self.status}" if self.status is not None else self.detail
        return f"{self.webhook.phase} webhook “{self.webhook.name}” {'answered' if self.ok else 'failed'}: {answer}"


def parse_webhooks(raw: Any, *, path: str = "webhooks") -> list[Webhook]:
    """The validated webhooks of a rollout's options; raises `WebhookConfigError` naming the entry."""
    if raw in (None, []):
        return []
    if not isinstance(raw, list):
        raise WebhookConfigError(path, "must be a list of webhooks")
    if len(raw) > MAX_WEBHOOKS:
        raise WebhookConfigError(path, f"at most {MAX_WEBHOOKS} webhooks")
    found, names = [], set()
    for index, entry in enumerate(raw):
        here = f"{path}[{index}]"
        if not isinstance(entry, dict):
            raise WebhookConfigError(here, "must be an object")
        unknown = sorted(set(entry) - _KEYS)
        if unknown:
            raise WebhookConfigError(f"{here}.{unknown[0]}", f"unknown field (allowed: {', '.join(sorted(_KEYS))})")
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            raise WebhookConfigError(f"{here}.name", "a name of 1 to 100 characters is required")
        if name in names:
            raise WebhookConfigError(f"{here}.name", f"“{name}” is used twice")
        names.add(name)
        phase = entry.get("phase")
        if phase not in PHASES:
            raise WebhookConfigError(f"{here}.phase", f"must be one of {', '.join(PHASES)}")
        url = entry.get("url")
        parts = urlsplit(url) if isinstance(url, str) else None
        if (
            parts is None
            or not isinstance(url, str)
            or parts.scheme not in ("http", "https")
            or not parts.hostname
            or len(url) > 2000
        ):
            raise WebhookConfigError(f"{here}.url", "must be an http:// or https:// URL")
        if parts.username or parts.password:
            raise WebhookConfigError(f"{here}.url", "must not carry credentials")
        try:
            egress.vet(url, resolve=False)
        except egress.EgressError as exc:
            raise WebhookConfigError(f"{here}.url", exc.message) from exc
        allowed = _allowed_hosts()
        if allowed and not any(_host_matches(parts.hostname, pattern) for pattern in allowed):
            raise WebhookConfigError(
                f"{here}.url", f"host {parts.hostname} is not among the allowed webhook hosts ({', '.join(allowed)})"
            )
        timeout = entry.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= MAX_TIMEOUT_SECONDS:
            raise WebhookConfigError(f"{here}.timeout_seconds", f"must be a number in (0, {MAX_TIMEOUT_SECONDS:g}]")
        gate = entry.get("gate", True)
        if not isinstance(gate, bool):
            raise WebhookConfigError(f"{here}.gate", "must be true or false")
        metadata = entry.get("metadata", {})
        if not isinstance(metadata, dict):
            raise WebhookConfigError(f"{here}.metadata", "must be an object")
        found.append(
            Webhook(name=name, phase=phase, url=url, timeout_seconds=float(timeout), gate=gate, metadata=metadata)
        )
    return found


def webhooks_for(config: dict[str, Any], phase: str) -> list[Webhook]:
    """The rollout's webhooks of one phase (a malformed list was refused when the options were set;
    here it yields nothing rather than failing every step)."""
    try:
        return [hook for hook in parse_webhooks(config.get("webhooks")) if hook.phase == phase]
    except WebhookConfigError:
        return []


def _allowed_hosts() -> list[str]:
    from django.conf import settings

    return list(getattr(settings, "MESHGATE_ROLLOUT_WEBHOOK_HOSTS", []) or [])


def _host_matches(host: str, pattern: str) -> bool:
    """`pattern` is a host name, or `*.domain` for any host under it."""
    host, pattern = host.lower().rstrip("."), pattern.lower().rstrip(".")
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


def redacted(url: str) -> str:
    """The URL without its query and fragment (they may carry tokens): what the timeline shows."""
    parts = urlsplit(url)
    return parts._replace(query="", fragment="").geturl() + ("?…" if parts.query else "")


def call_all(hooks: list[Webhook], payload: dict[str, Any]) -> list[WebhookResult]:
    """Calls `hooks` side by side; every result comes back within the longest timeout (a receiver
    that trickles its answer is given up on), in the order of `hooks`. Never raises."""
    if not hooks:
        return []
    pool = ThreadPoolExecutor(max_workers=len(hooks), thread_name_prefix="rollout-webhook")
    started = time.monotonic()
    futures = [pool.submit(call, hook, payload) for hook in hooks]
    results = []
    for hook, future in zip(hooks, futures, strict=True):
        left = hook.timeout_seconds + 1.0 - (time.monotonic() - started)
        try:
            results.append(future.result(timeout=max(0.0, left)))
        except FutureTimeout:
            results.append(
                WebhookResult(hook, False, None, f"no complete answer within {hook.timeout_seconds:g} s", _ms(started))
            )
        except Exception as exc:  # noqa: BLE001 - a webhook never breaks the step that calls it
            results.append(WebhookResult(hook, False, None, f"{type(exc).__name__}: {exc}"[:300], _ms(started)))
    pool.shutdown(wait=False, cancel_futures=True)  # a stuck call's thread ends with its socket timeout
    return results


def call(hook: Webhook, payload: dict[str, Any]) -> WebhookResult:
    """One POST through the egress policy (a total deadline of `timeout_seconds`, at most 64 KiB of the
    answer read, no redirects, internal addresses refused unless allowed); never raises."""
    started = time.monotonic()
    body = {**payload, "phase": hook.phase, "webhook": hook.name, "metadata": hook.metadata}
    try:
        response = egress.post(
            hook.url,
            body=json.dumps(body, default=str).encode(),
            deadline_seconds=hook.timeout_seconds,
            headers={
                "Content-Type": "application/json",
                "User-Agent": "meshgate-rollout",
                "X-Meshgate-Phase": hook.phase,
            },
        )
    except egress.EgressError as exc:
        return WebhookResult(hook, False, None, exc.message, _ms(started))
    detail = "" if response.ok else response.text()
    return WebhookResult(hook, response.ok, response.status, detail, _ms(started))


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
