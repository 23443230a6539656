"""Settings for the test suite: the embedded default unless DATABASE_URL / CELERY_BROKER_URL say otherwise."""

from .base import *  # noqa: F403
from .base import DATABASES, MESHGATE_FILESYSTEM_BROKER, VAR_DIR, env

SECRET_KEY = "meshgate-test-key"
MESHGATE_FIELD_ENCRYPTION_KEY = "dGVzdC1vbmx5LW1lc2hnYXRlLWZpZWxkLWtleS0zMiE="
# The tests' HTTP receivers listen on loopback: allowed here explicitly, never by default.
MESHGATE_EGRESS_ALLOW = ["127.0.0.0/8", "::1/128"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory, so that the worker process the tests start sees the same data.
    DATABASES["default"]["TEST"] = {"NAME": env.str("MESHGATE_TEST_SQLITE", default=str(VAR_DIR / "test.sqlite3"))}

if not env.str("MESHGATE_CACHE_URL", default=""):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "test-cache"),
        }
    }

# The tests' worker listens on its own queue (and folder), apart from any running demo.
CELERY_TASK_DEFAULT_QUEUE = "meshgate-test"
BROKER_DIR = VAR_DIR / "test-broker"
if MESHGATE_FILESYSTEM_BROKER:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        # kombu keeps its exchange table here (default: "control/" in the working directory)
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
        "polling_interval": env.float("MESHGATE_FILESYSTEM_BROKER_POLL_SECONDS", default=0.1),
    }
CELERY_BEAT_SCHEDULE = {}
