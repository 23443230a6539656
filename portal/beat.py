"""A beat scheduler of which only one instance is active: the others stand by.

Two beats would send every periodic task twice (and the 2 s reconciler four times a 2 s). The lock is
a Redis key (`SET NX PX`, renewed on every tick) on PostgreSQL + Redis, and an exclusive file lock
(`flock`) next to the schedule on the embedded default. A beat that loses the lock (or never had it)
sends nothing and tries again every few seconds; when the active one dies its key expires (TTL) and
a standby takes over.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import uuid
from typing import Any

from celery.beat import PersistentScheduler

logger = logging.getLogger(__name__)

LOCK_KEY = "meshgate:beat:lock"
LOCK_TTL_SECONDS = 30
STANDBY_POLL_SECONDS = 5.0


class LockedScheduler(PersistentScheduler):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._file: Any = None
        self._redis: Any = None
        self._active = False
        super().__init__(*args, **kwargs)

    # -- the lock ----------------------------------------------------------------------------------
    def _hold(self) -> bool:
        url = self.app.conf.broker_url or ""
        if url.startswith(("redis://", "rediss://")):
            return self._hold_redis(url)
        return self._hold_file()

    def _hold_redis(self, url: str) -> bool:
        import redis

        if self._redis is None:
            self._redis = redis.Redis.from_url(url)
        client = self._redis
        ttl_ms = LOCK_TTL_SECONDS * 1000
        if client.set(LOCK_KEY, self._token, nx=True, px=ttl_ms):
            return True
        # Renew only our own lock (compare and extend atomically).
        renewed = client.eval(
            "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) "
            "else return 0 end",
            1,
            LOCK_KEY,
            self._token,
            ttl_ms,
        )
        return bool(renewed)

    def _hold_file(self) -> bool:
        if self._file is not None:
            return True
        path = f"{getattr(self, 'schedule_filename', 'celerybeat-schedule')}.lock"
        handle = open(path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._file = handle
        return True

    def tick(self, *args: Any, **kwargs: Any) -> float:
        held = self._hold()
        if held != self._active:
            self._active = held
            logger.info("beat %s: %s", self._token, "active" if held else "standing by (another beat is active)")
        if not held:
            return STANDBY_POLL_SECONDS
        return min(super().tick(*args, **kwargs), LOCK_TTL_SECONDS / 3)
