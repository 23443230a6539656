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


class ConflictError(ApplicationError):
    code = "conflict"
    status = 409


class DraftRejected(ApplicationError):
    """A draft or a bundle that cannot be stored: nothing was written.

    `findings` are validation findings (dicts from `Finding.as_dict()`), each naming the file,
    document, line and field path at fault; they are returned under `details.findings`.
    """

    code = "draft_rejected"

    def __init__(self, message: str, *, findings: list[dict], status: int = 400, code: str | None = None):
        super().__init__(message, extra={"findings": findings})
        self.findings = findings
        self.status = status
        if code is not None:
            self.code = code


class RequestTooLarge(ApplicationError):
    code = "request_too_large"
    status = 413


class IdempotencyKeyReused(ApplicationError):
    code = "idempotency_key_reused"
    status = 422


class Throttled(ApplicationError):
    code = "throttled"
    status = 429


class NotFoundError(ApplicationError):
    code = "not_found"
    status = 404
