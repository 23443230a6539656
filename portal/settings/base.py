"""Settings shared by every deployment; everything that differs comes from the environment."""
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parents[2]

env = environ.Env()
VAR_DIR = Path(env.str("MESHGATE_VAR_DIR", default=str(BASE_DIR / "var")))

SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "mozilla_django_oidc",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "portal",
    "policies",
]

MIDDLEWARE = [
    "portal.middleware.RequestIdMiddleware",
    "portal.middleware.MetricsMiddleware",
    "portal.middleware.OpsEndpointsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "policies.context_processors.navigation",
                "policies.context_processors.sign_in",
            ],
        },
    },
]

DATABASES = {
    "default": env.db_url_config(
        env.str("DATABASE_URL", default="") or f"sqlite:///{VAR_DIR / 'meshgate.sqlite3'}"
    ),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # One writer at a time, taken when the transaction starts, so that the web process,
    # the worker and beat never deadlock on an upgrade from a read to a write lock.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"transaction_mode": "IMMEDIATE", "timeout": 20, "init_command": "PRAGMA journal_mode=WAL;"}
    )
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "policies:home"
LOGOUT_REDIRECT_URL = "login"

# --- sign-in: local passwords and OpenID Connect single sign-on -------------------------------
AUTHENTICATION_BACKENDS = ["portal.sso.PasswordBackend", "portal.sso.MeshgateOIDCBackend"]
# Local passwords (the embedded default's demo logins); turn off once everyone signs in with SSO.
MESHGATE_PASSWORD_LOGIN = env.bool("MESHGATE_PASSWORD_LOGIN", default=True)
# OpenID Connect: on when an issuer is set. The endpoints are the provider's (its
# /.well-known/openid-configuration lists them); the redirect URI to register is <portal>/oidc/callback/.
MESHGATE_OIDC_ISSUER = env.str("MESHGATE_OIDC_ISSUER", default="")
MESHGATE_OIDC_ENABLED = bool(MESHGATE_OIDC_ISSUER)
MESHGATE_OIDC_GROUPS_CLAIM = env.str("MESHGATE_OIDC_GROUPS_CLAIM", default="groups")
MESHGATE_OIDC_USERNAME_CLAIM = env.str("MESHGATE_OIDC_USERNAME_CLAIM", default="preferred_username")
MESHGATE_OIDC_BUTTON = env.str("MESHGATE_OIDC_BUTTON", default="Sign in with single sign-on")
OIDC_RP_CLIENT_ID = env.str("MESHGATE_OIDC_CLIENT_ID", default="")
OIDC_RP_CLIENT_SECRET = env.str("MESHGATE_OIDC_CLIENT_SECRET", default="")
OIDC_OP_AUTHORIZATION_ENDPOINT = env.str("MESHGATE_OIDC_AUTHORIZATION_ENDPOINT", default="")
OIDC_OP_TOKEN_ENDPOINT = env.str("MESHGATE_OIDC_TOKEN_ENDPOINT", default="")
OIDC_OP_USER_ENDPOINT = env.str("MESHGATE_OIDC_USERINFO_ENDPOINT", default="")
OIDC_OP_JWKS_ENDPOINT = env.str("MESHGATE_OIDC_JWKS_ENDPOINT", default="")
OIDC_RP_SIGN_ALGO = env.str("MESHGATE_OIDC_SIGN_ALGO", default="RS256")
OIDC_RP_SCOPES = env.str("MESHGATE_OIDC_SCOPES", default="openid email profile")
OIDC_USE_PKCE = True
OIDC_TIMEOUT = 10
LOGIN_REDIRECT_URL_FAILURE = "/accounts/login/?sso=failed"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
NODE_MODULES = BASE_DIR / "node_modules"
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("vendor/bootstrap", NODE_MODULES / "bootstrap" / "dist"),
    ("vendor/htmx", NODE_MODULES / "htmx.org" / "dist"),
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# Bundles of manifests may be large; the API answers anything bigger with a JSON 413.
DATA_UPLOAD_MAX_MEMORY_SIZE = 12 * 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FILES = 500

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# --- Celery -------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
BROKER_DIR = VAR_DIR / "broker"
# The embedded broker: message files in var/, written atomically (portal/broker.py).
MESHGATE_FILESYSTEM_BROKER = CELERY_BROKER_URL.startswith("filesystem://")
if MESHGATE_FILESYSTEM_BROKER:
    CELERY_BROKER_TRANSPORT = "portal.broker:Transport"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        # kombu keeps its exchange table here (default: "control/" in the working directory)
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
        # The folder is listed this often for new messages (kombu's default is 1 s, a second of lag
        # per hop between rollout steps).
        "polling_interval": env.float("MESHGATE_FILESYSTEM_BROKER_POLL_SECONDS", default=0.1),
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=300)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=240)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False  # the worker logs through LOGGING (JSON in production)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "probe-clusters": {
        "task": "policies.tasks.probe_clusters",
        "schedule": env.float("MESHGATE_CLUSTER_PROBE_SECONDS", default=30.0),
    },
    "retry-due-notifications": {"task": "policies.tasks.retry_due_notifications", "schedule": 60.0},
    "reconcile-rollouts": {
        "task": "policies.tasks.reconcile_rollouts",
        "schedule": env.float("MESHGATE_ROLLOUT_RECONCILE_SECONDS", default=2.0),
    },
    "detect-drift": {
        "task": "policies.tasks.detect_drift",
        "schedule": env.float("MESHGATE_DRIFT_SECONDS", default=60.0),
    },
}

# --- REST API -----------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "portal.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["portal.permissions.TokenScopePermission"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "portal.api.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Meshgate API",
    "DESCRIPTION": "Govern Istio traffic and security policy: environments, teams, policies and revisions.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "ENUM_NAME_OVERRIDES": {
        "NotificationChannelKindEnum": "policies.choices.NotificationChannelKind",
        "NotificationEventEnum": "policies.choices.NotificationEvent",
        "DeliveryStatusEnum": "policies.choices.DeliveryStatus",
        "ServiceAccountRoleEnum": [("author", "Author"), ("approver", "Approver")],
        "PolicyKindEnum": "policies.choices.PolicyKind",
        "RoleEnum": "policies.choices.Role",
        "PlanStatusEnum": "policies.choices.PlanStatus",
    },
}

# --- Meshgate -----------------------------------------------------------------------------
# Key for credentials stored in the database (Fernet, urlsafe base64 of 32 bytes).
MESHGATE_FIELD_ENCRYPTION_KEY = env.str("MESHGATE_FIELD_ENCRYPTION_KEY", default="")
MESHGATE_API_TOKEN_MAX_DAYS = env.int("MESHGATE_API_TOKEN_MAX_DAYS", default=365)
# Whether a platform admin may give a service account the approver role (off: pipelines only author).
MESHGATE_SERVICE_ACCOUNT_APPROVERS = env.bool("MESHGATE_SERVICE_ACCOUNT_APPROVERS", default=False)
MESHGATE_KUBE_TIMEOUT_SECONDS = env.float("MESHGATE_KUBE_TIMEOUT_SECONDS", default=10.0)
# The live inventory (manage.py watch_inventory): older than this, reads list the cluster directly.
MESHGATE_INVENTORY_MAX_AGE_SECONDS = env.float("MESHGATE_INVENTORY_MAX_AGE_SECONDS", default=60.0)
# How long one watch request lasts before the watcher resumes it (a quiet end confirms freshness).
MESHGATE_INVENTORY_WATCH_SECONDS = env.int("MESHGATE_INVENTORY_WATCH_SECONDS", default=20)
# Rollouts: the reconciler re-enqueues a rollout whose next action is overdue by this much (its task
# chain was lost); the analyzer is a dotted path (empty: the metrics analyzer of policies.rollout.analysis).
MESHGATE_ROLLOUT_RESCUE_SECONDS = env.float("MESHGATE_ROLLOUT_RESCUE_SECONDS", default=3.0)
MESHGATE_ROLLOUT_ANALYZER = env.str("MESHGATE_ROLLOUT_ANALYZER", default="")
# Hosts rollout webhooks may call (`name` or `*.domain`); empty: any.
MESHGATE_ROLLOUT_WEBHOOK_HOSTS = env.list("MESHGATE_ROLLOUT_WEBHOOK_HOSTS", default=[])
# Absolute base URL used in notification links, e.g. https://meshgate.example.com
MESHGATE_PUBLIC_URL = env.str("MESHGATE_PUBLIC_URL", default="")
# When set, /metrics asks for "Authorization: Bearer <token>".
MESHGATE_METRICS_TOKEN = env.str("MESHGATE_METRICS_TOKEN", default="")

LOG_FORMAT = env.str("LOG_FORMAT", default="text")
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "filters": {"request_id": {"()": "portal.middleware.RequestIdLogFilter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
