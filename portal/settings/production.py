"""Production: PostgreSQL, Redis, real clusters. Refuses to start without its secrets."""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import env

DEBUG = False


def _required(name: str) -> str:
    value = env.str(name, default="")
    if not value:
        raise ImproperlyConfigured(f"{name} must be set in production")
    return value


SECRET_KEY = _required("DJANGO_SECRET_KEY")
MESHGATE_FIELD_ENCRYPTION_KEY = _required("MESHGATE_FIELD_ENCRYPTION_KEY")
MESHGATE_AUDIT_KEY = _required("MESHGATE_AUDIT_KEY")
_required("DATABASE_URL")
_required("CELERY_BROKER_URL")
_required("MESHGATE_CACHE_URL")
if not env.list("DJANGO_ALLOWED_HOSTS", default=[]):
    raise ImproperlyConfigured("DJANGO_ALLOWED_HOSTS must be set in production")

LOG_FORMAT = env.str("LOG_FORMAT", default="json")
LOGGING["handlers"]["console"]["formatter"] = LOG_FORMAT  # type: ignore[index]  # noqa: F405 - a dict of dicts

# HTTPS only: `manage.py check --deploy` passes with these defaults.
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SSL_REDIRECT", default=True)
# /healthz, /readyz and /metrics are answered before the redirect (kubelet probes speak plain HTTP).
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_HSTS_PRELOAD", default=True)
MESHGATE_METRICS_OPEN = env.bool("MESHGATE_METRICS_OPEN", default=False)
EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="meshgate@localhost")
