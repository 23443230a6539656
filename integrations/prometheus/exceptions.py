"""Errors of the Prometheus client, independent of ``requests``' own."""


class PrometheusError(Exception):
    """Any failure talking to Prometheus (or to meshsim's /metrics in the fallback)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class PrometheusUnavailable(PrometheusError):
    """Prometheus could not answer: connection refused, timeout, or a 5xx."""


class QueryError(PrometheusError):
    """Prometheus rejected the query (400 bad_data / 422 execution); ``message`` is its error.

    ``error_type`` is Prometheus' ``errorType`` (``bad_data``, ``execution``, ...).
    """

    def __init__(self, message: str, *, status: int | None = None, error_type: str = "") -> None:
        super().__init__(message, status=status)
        self.error_type = error_type
