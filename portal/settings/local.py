"""The embedded default: SQLite, a filesystem broker, the simulated clusters; no servers needed."""

from .base import *  # noqa: F403
from .base import VAR_DIR, env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="meshgate-local-development-key-not-for-production")
# A fixed key keeps locally stored cluster credentials readable across restarts.
MESHGATE_FIELD_ENCRYPTION_KEY = env.str(
    "MESHGATE_FIELD_ENCRYPTION_KEY", default="bG9jYWwtb25seS1tZXNoZ2F0ZS1maWVsZC1rZXktMzI="
)
EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
EMAIL_FILE_PATH = VAR_DIR / "mail"
MESHGATE_PUBLIC_URL = env.str("MESHGATE_PUBLIC_URL", default="http://127.0.0.1:8000")
