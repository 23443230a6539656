"""Settings shared by every deployment; everything that differs comes from the environment."""

import datetime as dt
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
    "csp",
    "axes",
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
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: it turns a lockout into a 429 answer.
    "axes.middleware.AxesMiddleware",
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
    "default": env.db_url_config(env.str("DATABASE_URL", default="") or f"sqlite:///{VAR_DIR / 'meshgate.sqlite3'}"),
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
# Login throttling (django-axes): the throttling backend answers before the password is hashed.
AXES_FAILURE_LIMIT = env.int("MESHGATE_LOGIN_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = dt.timedelta(minutes=env.int("MESHGATE_LOGIN_COOLOFF_MINUTES", default=15))
# A username and an address are locked out independently (a guessing run from many addresses locks
# the account; one address trying many accounts locks the address).
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
AXES_RESET_ON_SUCCESS = True
# Behind N reverse proxies the client address is the N-th from the right of X-Forwarded-For.
AXES_IPWARE_PROXY_COUNT = env.int("MESHGATE_TRUSTED_PROXY_COUNT", default=0) or None
AXES_IPWARE_META_PRECEDENCE_ORDER = (
    ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"] if AXES_IPWARE_PROXY_COUNT else ["REMOTE_ADDR"]
)
LOGIN_REDIRECT_URL = "policies:home"
LOGOUT_REDIRECT_URL = "login"

# --- sign-in: local passwords and OpenID Connect single sign-on -------------------------------
# The throttling backend comes first: a locked-out address or username is refused before any
# password is hashed (it passes single sign-on, which carries no password, to the next backends).
AUTHENTICATION_BACKENDS = [
    "portal.auth_backends.ThrottlingBackend",
    "portal.sso.PasswordBackend",
    "portal.sso.MeshgateOIDCBackend",
]
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
# Content-Security-Policy (django-csp): scripts from this origin only (no inline scripts or inline
# handlers: see static/js/behaviours.js), no plugins, no framing. 'unsafe-eval' stays for htmx's
# trigger filters (`change[target.name === 'q']` in the catalog and the wizards), which htmx
# compiles with Function(); injected markup still cannot run a script. Inline *styles* stay allowed
# (a few templates set widths inline, htmx adds its indicator style).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'", "'unsafe-eval'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "worker-src": ["'self'", "blob:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}
SECURE_REFERRER_POLICY = "same-origin"

# --- Cache -------------------------------------------------------------------------------
# Shared by every web and worker process (the CRD-schema cache, the audit-chain status, throttles):
# Redis in production (MESHGATE_CACHE_URL, a database of its own: clearing the cache empties it), a
# file cache in var/ on the embedded default.
MESHGATE_CACHE_URL = env.str("MESHGATE_CACHE_URL", default="")
if MESHGATE_CACHE_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": MESHGATE_CACHE_URL,
            "KEY_PREFIX": "meshgate",
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

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
# Queues: rollout steps never wait behind imports, plans or deliveries. `<queue>` holds imports, plans,
# drift, probes and the audit sealer; `<queue>.rollouts` the rollout steps and their reconciler;
# `<queue>.notifications` the deliveries (a slow receiver holds only its own queue). A worker
# started by docker/start-worker consumes all three unless MESHGATE_WORKER_QUEUES names some: at scale
# run rollout workers apart (MESHGATE_WORKER_QUEUES=rollouts).
CELERY_TASK_DEFAULT_QUEUE = env.str("MESHGATE_QUEUE", default="meshgate")
CELERY_TASK_ROUTES = ["portal.celery.route_task"]
# Redis redelivers an unacknowledged task after the visibility timeout: longer than the longest
# countdown (a notification retry waits at most MESHGATE_NOTIFY_RETRY_MAX_SECONDS, 1 h), or a task
# waiting for its countdown would run twice. A killed worker's rollout is rescued by the reconciler
# long before that.
CELERY_BROKER_VISIBILITY_TIMEOUT = env.int("MESHGATE_BROKER_VISIBILITY_TIMEOUT", default=2 * 3600)
if not MESHGATE_FILESYSTEM_BROKER:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_BROKER_VISIBILITY_TIMEOUT}
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
# Beat: one active instance at a time (portal.beat.LockedScheduler holds a lock in Redis, or a file
# lock on the embedded default; a second beat stands by). Every entry expires after its own period,
# so periodic work does not pile up in the queue while the workers are down.
CELERY_BEAT_SCHEDULER = "portal.beat:LockedScheduler"


def _every(task: str, seconds: float) -> dict:
    return {"task": task, "schedule": seconds, "options": {"expires": max(1.0, seconds)}}


CELERY_BEAT_SCHEDULE = {
    "probe-clusters": _every(
        "policies.tasks.probe_clusters", env.float("MESHGATE_CLUSTER_PROBE_SECONDS", default=30.0)
    ),
    "retry-due-notifications": _every("policies.tasks.retry_due_notifications", 60.0),
    "reconcile-rollouts": _every(
        "policies.tasks.reconcile_rollouts", env.float("MESHGATE_ROLLOUT_RECONCILE_SECONDS", default=2.0)
    ),
    "detect-drift": _every("policies.tasks.detect_drift", env.float("MESHGATE_DRIFT_SECONDS", default=60.0)),
    "seal-audit-log": _every("policies.tasks.seal_audit_log", 10.0),
}

# --- REST API -----------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "portal.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["portal.permissions.TokenScopePermission"],
    "DEFAULT_PARSER_CLASSES": [
        "portal.parsers.SafeJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "portal.pagination.BoundedLimitOffsetPagination",
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
        "RevisionSourceEnum": "policies.choices.RevisionSource",
        "MembershipSourceEnum": "policies.choices.MembershipSource",
    },
}

# --- Meshgate -----------------------------------------------------------------------------
# Key for credentials stored in the database (Fernet, urlsafe base64 of 32 bytes).
MESHGATE_FIELD_ENCRYPTION_KEY = env.str("MESHGATE_FIELD_ENCRYPTION_KEY", default="")
# Key of the audit chain's HMAC: it must live outside the database (environment, secret store), so
# that database access alone cannot rewrite history unseen. Empty: derived from SECRET_KEY (the
# embedded default only; production refuses to start without it).
MESHGATE_AUDIT_KEY = env.str("MESHGATE_AUDIT_KEY", default="")
MESHGATE_API_TOKEN_MAX_DAYS = env.int("MESHGATE_API_TOKEN_MAX_DAYS", default=365)
# A change's server-sent event stream (/api/v1/changes/{id}/events/stream/) holds a web worker while
# open: it ends after this many seconds (keep it below gunicorn's --timeout, WEB_TIMEOUT, 60 by
# default, which would kill a sync worker mid-stream); clients reconnect with Last-Event-ID.
MESHGATE_EVENT_STREAM_SECONDS = env.int("MESHGATE_EVENT_STREAM_SECONDS", default=50)
MESHGATE_EVENT_STREAM_HEARTBEAT_SECONDS = env.float("MESHGATE_EVENT_STREAM_HEARTBEAT_SECONDS", default=15.0)
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
# Plans: a plan asked for (submit, edit, rebase, refresh) and not stored after this long lost its task
# (a killed worker, an enqueue that failed after the commit); the reconciler sends it again, once per
# this period. Longer than a plan takes behind a busy queue: a duplicate would only compute it twice.
MESHGATE_PLAN_RESCUE_SECONDS = env.float("MESHGATE_PLAN_RESCUE_SECONDS", default=120.0)
# ... at most this many times in a row: a plan whose task keeps getting lost (or keeps killing its worker)
# is then left for a person, the change page says so
MESHGATE_PLAN_RESCUE_ATTEMPTS = env.int("MESHGATE_PLAN_RESCUE_ATTEMPTS", default=3)
MESHGATE_ROLLOUT_ANALYZER = env.str("MESHGATE_ROLLOUT_ANALYZER", default="")
# Outbound requests to URLs users type (notification channels, rollout webhooks) go through
# integrations.http.egress: loopback, private, link-local (metadata), CGNAT and reserved addresses are
# refused after DNS resolution unless listed here, as host names (`hooks.internal`, `*.corp.example`)
# or networks (`10.20.0.0/16`, `127.0.0.1/32`).
MESHGATE_EGRESS_ALLOW = env.list("MESHGATE_EGRESS_ALLOW", default=[])
# The engine acts on a rollout under a lease (no database transaction is held across cluster calls);
# a killed worker's lease is taken over after this long. An action renews it before each cluster
# write, analysis and webhook call, so it must exceed the longest of those (kube and webhook timeouts).
MESHGATE_ROLLOUT_LEASE_SECONDS = env.float("MESHGATE_ROLLOUT_LEASE_SECONDS", default=20.0)
# A step whose cluster calls keep failing is retried with a growing delay (2, 4, 8 ... capped at 30 s)
# this many times before the rollout rolls back (a forward step) or ends `failed` with the live state
# shown (a restore or promotion that cannot be verified).
MESHGATE_ROLLOUT_MAX_ATTEMPTS = env.int("MESHGATE_ROLLOUT_MAX_ATTEMPTS", default=5)
MESHGATE_ROLLOUT_VERIFY_ATTEMPTS = env.int("MESHGATE_ROLLOUT_VERIFY_ATTEMPTS", default=8)
# One drift sweep per environment at a time (single-flight lease).
MESHGATE_DRIFT_LEASE_SECONDS = env.float("MESHGATE_DRIFT_LEASE_SECONDS", default=300.0)
# Hosts rollout webhooks may call (`name` or `*.domain`), on top of the egress policy; empty: any it allows.
MESHGATE_ROLLOUT_WEBHOOK_HOSTS = env.list("MESHGATE_ROLLOUT_WEBHOOK_HOSTS", default=[])
# Absolute base URL used in notification links, e.g. https://meshgate.example.com
MESHGATE_PUBLIC_URL = env.str("MESHGATE_PUBLIC_URL", default="")
# When set, /metrics asks for "Authorization: Bearer <token>".
MESHGATE_METRICS_TOKEN = env.str("MESHGATE_METRICS_TOKEN", default="")
# Without a token, /metrics is open on the embedded default and closed (403) in production.
MESHGATE_METRICS_OPEN = env.bool("MESHGATE_METRICS_OPEN", default=True)

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
