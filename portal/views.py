"""Operational endpoints: liveness, readiness and metrics."""

import hmac

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django.views.defaults import page_not_found

from portal import metrics
from portal.readiness import check_broker, check_clusters


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Database, broker and every environment's cluster API; names whichever failed.

    `?scope=local` checks only what this process needs to serve requests (database, broker): the
    readiness probe of the web pods, so that a cluster outage does not take the portal out of
    service (the clusters' state is shown in the portal and in `meshgate_cluster_reachable`)."""
    scope = request.GET.get("scope", "all")
    if scope not in ("all", "local"):
        return JsonResponse({"status": "bad request", "error": "scope is all or local"}, status=400)
    checks: dict[str, dict] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = {"ok": True}
    except Exception as exc:  # noqa: BLE001 - any driver error means not ready
        checks["database"] = {"ok": False, "error": str(exc)}
    checks["broker"] = check_broker()
    if scope == "all" and checks["database"]["ok"]:
        checks.update({f"cluster:{name}": result for name, result in check_clusters().items()})
    failed = sorted(name for name, result in checks.items() if not result["ok"])
    return JsonResponse(
        {"status": "ready" if not failed else "not ready", "scope": scope, "failed": failed, "checks": checks},
        status=200 if not failed else 503,
    )


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    expected = settings.MESHGATE_METRICS_TOKEN
    if not expected and not getattr(settings, "MESHGATE_METRICS_OPEN", True):
        # Production: closed until a token is configured for the scraper.
        return HttpResponse(
            "metrics are closed: set MESHGATE_METRICS_TOKEN and scrape with it\n", status=403, content_type="text/plain"
        )
    if expected:
        supplied = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(supplied, expected):
            return HttpResponse("metrics token required\n", status=401, content_type="text/plain")
    return HttpResponse(metrics.render(), content_type="text/plain; version=0.0.4; charset=utf-8")


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """API callers get the API's error shape; people get the portal's page."""
    if request.path.startswith("/api/"):
        return JsonResponse(
            {"code": "not_found", "message": f"no API endpoint at {request.path}", "details": {}}, status=404
        )
    return page_not_found(request, exception)
