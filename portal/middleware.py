"""Request ids (for logs and audit rows) and request metrics."""

import contextvars
import logging
import re
import time
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase
from django.urls import resolve

from portal import metrics

GetResponse = Callable[[HttpRequest], HttpResponseBase]
_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
_VALID_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def current_request_id() -> str:
    return _request_id.get()


def bind_request_id(value: str) -> contextvars.Token:
    return _request_id.set(value)


class RequestIdMiddleware:
    """Takes a sane X-Request-ID from the caller or makes one, and echoes it back."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _VALID_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]  # the portal's own attribute
        token = _request_id.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            _request_id.reset(token)
        response["X-Request-ID"] = request_id
        return response


class RequestIdLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        return True


class MetricsMiddleware:
    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        view = match.view_name if match and match.view_name else "<unresolved>"
        metrics.observe_request(request.method or "", view, response.status_code, time.perf_counter() - started)
        return response


class OpsEndpointsMiddleware:
    """Answers /healthz, /readyz and /metrics before the Host check: kubelets and Prometheus call
    pods by IP address, which is never in ALLOWED_HOSTS."""

    PATHS = ("/healthz", "/readyz", "/metrics")

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if request.path_info in self.PATHS and request.method in ("GET", "HEAD"):
            request.resolver_match = resolve(request.path_info)
            return request.resolver_match.func(request)
        return self.get_response(request)
