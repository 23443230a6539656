"""Errors raised by the domain; the API and views translate them into 4xx answers."""


class ApplicationError(Exception):
    code = "error"
    status = 400

    def __init__(self, message: str, *, extra: dict | None = None):
        super().__init__(message)
        self.message = message
        self.extra = extra or {}


class ImmutableError(ApplicationError):
    code = "immutable"
    status = 409


class PermissionDeniedError(ApplicationError):
    code = "permission_denied"
    status = 403


class ClusterError(ApplicationError):
    code = "cluster_error"
    status = 502
