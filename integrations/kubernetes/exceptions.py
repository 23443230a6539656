"""Errors of the cluster adapter, independent of the client library's own."""

from dataclasses import dataclass


@dataclass
class Cause:
    field: str
    reason: str
    message: str


class KubernetesError(Exception):
    def __init__(self, message: str, *, status: int | None = None, causes: list[Cause] | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.causes = causes or []


class Unreachable(KubernetesError):
    """The API server could not be reached (connection, TLS, timeout)."""


class Unauthorized(KubernetesError):
    """401 or 403 from the API server."""


class NotFound(KubernetesError):
    pass


class AlreadyExists(KubernetesError):
    pass


class Conflict(KubernetesError):
    """409: stale resourceVersion or a field-manager conflict on server-side apply."""


class Invalid(KubernetesError):
    """422: the object violates the schema; `causes` carry the field paths."""
