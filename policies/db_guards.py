"""SQLite's DELETE guard on the immutable tables (revisions, audit events, seals).

PostgreSQL refuses the DELETE in a trigger; SQLite's trigger asks `meshgate_delete_allowed()`, which
every connection registers here and which answers 0, except inside `allow_delete()` (the test
suite's table flush between transactional tests). A client without this function (sqlite3 on the
command line) gets "no such function": refused as well.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

_state = threading.local()


def delete_allowed() -> int:
    return 1 if getattr(_state, "allowed", False) else 0


@contextlib.contextmanager
def allow_delete() -> Iterator[None]:
    _state.allowed = True
    try:
        yield
    finally:
        _state.allowed = False


def register(sender: Any, connection: Any, **kwargs: Any) -> None:
    """`connection_created` receiver."""
    if connection.vendor == "sqlite":
        connection.connection.create_function("meshgate_delete_allowed", 0, delete_allowed, deterministic=False)
