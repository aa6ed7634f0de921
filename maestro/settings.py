"""The one settings module. Every environment variable the gateway reads is read here, strictly.

A value that does not parse stops the start with a `ConfigError` naming the variable and the form
it expects; `maestro.config.load_settings_or_exit()` turns that into one line on stderr. Defaults
are the embedded ones: SQLite in ./data, the in-process cache, no external service.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from pathlib import Path
from urllib.parse import urlsplit

import environ

from maestro.config import ConfigError

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("MAESTRO_DATA_DIR") or BASE_DIR / "data")

# A local .env (written by `make run`) fills in what the real environment does not set.
# Tests and containers set DJANGO_DOTENV_FILE="" so a developer's .env never leaks into them.
_dotenv = os.environ.get("DJANGO_DOTENV_FILE", str(BASE_DIR / ".env"))
if _dotenv and Path(_dotenv).is_file():
    environ.Env.read_env(_dotenv, overwrite=False)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
GENERATE_HINT = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'"


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def env_bool(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ConfigError(f"{name}={value!r} is not a boolean: use true or false")


def env_int(name: str, default: int, *, minimum: int, maximum: int) -> int:
    value = _raw(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not an integer: use a whole number between {minimum} and {maximum}") from None
    if not minimum <= number <= maximum:
        raise ConfigError(f"{name}={number} is out of range: use a whole number between {minimum} and {maximum}")
    return number


def env_list(name: str) -> list[str]:
    value = _raw(name)
    if value is None:
        return []
    return [item.strip() for item in value.split(",") if item.strip()]


def env_cidrs(name: str) -> list[str]:
    """Comma-separated networks (`10.0.0.0/8,fd00::/8`; a bare address is a /32 or /128)."""
    networks = []
    for item in env_list(name):
        try:
            networks.append(str(ipaddress.ip_network(item, strict=True)))
        except ValueError:
            raise ConfigError(f"{name} holds {item!r}: use networks like 10.0.0.0/8 or fd00::/8 (host bits zero), comma-separated") from None
    return networks


def env_url(name: str, *, schemes: set[str], default: str | None = None) -> str | None:
    value = _raw(name) or default
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in schemes or not (parts.netloc or parts.path):
        raise ConfigError(f"{name}={_mask(value)!r} is not a valid URL: expected {' or '.join(sorted(s + '://...' for s in schemes))}")
    return value


def env_path(name: str) -> str | None:
    value = _raw(name)
    if value is None:
        return None
    if not Path(value).is_file():
        raise ConfigError(f"{name}={value!r}: no readable file at that path")
    return value


def env_bind(name: str, default: str | None) -> str | None:
    """HOST:PORT to listen on (HOST may be empty or a bracketed IPv6 address)."""
    value = _raw(name) or default
    if value is None:
        return None
    port = value.rpartition(":")[2]
    if ":" not in value or not port.isdigit() or not 0 < int(port) < 65536:
        example = default or "127.0.0.1:9464"
        raise ConfigError(f"{name}={value!r}: use HOST:PORT, e.g. {example} or 0.0.0.0:{example.rpartition(':')[2]}")
    return value


def _mask(url: str) -> str:
    """Hide a password in a URL before it goes into an error message."""
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url


def _secret(name: str, *, required: bool) -> bytes | None:
    value = _raw(name)
    if value is None:
        if required:
            raise ConfigError(f"{name} is not set: it is required; {GENERATE_HINT}")
        return None
    if len(value.encode()) < 32:
        raise ConfigError(f"{name} is too short ({len(value.encode())} bytes, at least 32 needed); {GENERATE_HINT}")
    return value.encode()


def _derive(key: bytes, purpose: str) -> bytes:
    """Independent keys per purpose, so one leaked derived key does not expose the others."""
    return hmac.new(key, purpose.encode(), hashlib.sha256).digest()


# --- The gateway -----------------------------------------------------------------------------

MAESTRO_MCP_ENABLED = env_bool("MAESTRO_MCP_ENABLED", True)
SESSION_SECRET = _secret("SESSION_SECRET", required=True)
SESSION_SECRET_PREVIOUS = [s.encode() for s in env_list("SESSION_SECRET_PREVIOUS")]
for _previous in SESSION_SECRET_PREVIOUS:
    if len(_previous) < 32:
        raise ConfigError(f"SESSION_SECRET_PREVIOUS holds a secret shorter than 32 bytes; {GENERATE_HINT}")
SESSION_TTL_SECONDS = env_int("SESSION_TTL_SECONDS", 3600, minimum=1, maximum=7 * 24 * 3600)
SESSION_TOKEN_LEEWAY_SECONDS = env_int("SESSION_TOKEN_LEEWAY_SECONDS", 5, minimum=0, maximum=300)
SESSION_TOKEN_ISSUER = "maestro-mcp"
SESSION_TOKEN_AUDIENCE = "maestro-mcp-gateway"
MCP_SESSIONS_PERSIST = env_bool("MCP_SESSIONS_PERSIST", False)
MCP_SESSION_MAX_IN_FLIGHT = env_int("MCP_SESSION_MAX_IN_FLIGHT", 32, minimum=1, maximum=100_000)
# How long after its call's timeout an in-flight slot outlives a worker that died holding it (the
# time around the upstream request: policy, evidence write). mcp/services/limits.py.
MCP_SESSION_SLOT_GRACE_SECONDS = env_int("MCP_SESSION_SLOT_GRACE_SECONDS", 30, minimum=1, maximum=3600)
MCP_SESSION_CLEANUP_INTERVAL_SECONDS = env_int("MCP_SESSION_CLEANUP_INTERVAL_SECONDS", 300, minimum=5, maximum=86_400)
MCP_HEALTH_PROBE_INTERVAL_SECONDS = env_int("MCP_HEALTH_PROBE_INTERVAL_SECONDS", 60, minimum=5, maximum=86_400)
MCP_EVIDENCE_VERIFY_INTERVAL_SECONDS = env_int("MCP_EVIDENCE_VERIFY_INTERVAL_SECONDS", 30, minimum=5, maximum=86_400)
MCP_TOOLS_CACHE_TTL_SECONDS = env_int("MCP_TOOLS_CACHE_TTL_SECONDS", 300, minimum=1, maximum=86_400)
MCP_UPSTREAM_MAX_RESPONSE_BYTES = env_int("MCP_UPSTREAM_MAX_RESPONSE_BYTES", 4 * 1024 * 1024, minimum=1024, maximum=256 * 1024 * 1024)
MCP_UPSTREAM_MAX_CONNECTIONS = env_int("MCP_UPSTREAM_MAX_CONNECTIONS", 100, minimum=1, maximum=10_000)
# The destination policy for upstream servers (mcp/upstream/destinations.py): metadata and
# link-local addresses are always refused; other non-public addresses only with one of these.
MCP_UPSTREAM_ALLOW_PRIVATE = env_bool("MCP_UPSTREAM_ALLOW_PRIVATE", False)
MCP_UPSTREAM_ALLOWED_CIDRS = env_cidrs("MCP_UPSTREAM_ALLOWED_CIDRS")
MCP_MAX_REQUEST_BYTES = env_int("MCP_MAX_REQUEST_BYTES", 1024 * 1024, minimum=1024, maximum=64 * 1024 * 1024)
MCP_MAX_JSON_DEPTH = env_int("MCP_MAX_JSON_DEPTH", 32, minimum=4, maximum=256)
MCP_ENDPOINT_PAGE_SIZE = env_int("MCP_ENDPOINT_PAGE_SIZE", 100, minimum=1, maximum=1000)  # items per page of the MCP endpoint's lists

POLICY_RECEIPT_SECRET = _secret("POLICY_RECEIPT_SECRET", required=False)
POLICY_RECEIPT_KEY = POLICY_RECEIPT_SECRET or _derive(SESSION_SECRET, "maestro-mcp/policy-receipt/v1")
# Upstream auth headers are encrypted at rest with this key. Set MCP_SECRETS_KEY explicitly in
# production so rotating SESSION_SECRET does not make stored upstream credentials unreadable.
MCP_SECRETS_KEY = _secret("MCP_SECRETS_KEY", required=False) or _derive(SESSION_SECRET, "maestro-mcp/secrets/v1")
OPA_URL = env_url("OPA_URL", schemes={"http", "https"})
OPA_POLICY_PATH = (_raw("OPA_POLICY_PATH") or "maestro/mcp/allow").strip("/")
OPA_TIMEOUT_MS = env_int("OPA_TIMEOUT_MS", 500, minimum=10, maximum=60_000)

MCP_GRPC_BIND = env_bind("MCP_GRPC_BIND", "127.0.0.1:50051")
MCP_GRPC_DEFAULT_DEADLINE_MS = env_int("MCP_GRPC_DEFAULT_DEADLINE_MS", 30_000, minimum=10, maximum=3_600_000)
MCP_GRPC_MAX_IN_FLIGHT = env_int("MCP_GRPC_MAX_IN_FLIGHT", 64, minimum=1, maximum=100_000)


def _worker_processes(variable: str) -> int:
    """Worker processes of a door: one per core (two here) with Redis, one without, where per-process
    state (in-flight counts, chain heads, the file cache) then needs no coordination."""
    count = env_int(variable, 2 if _raw("REDIS_URL") else 1, minimum=1, maximum=64)
    if count > 1 and not _raw("REDIS_URL"):
        raise ConfigError(f"{variable} > 1 needs REDIS_URL: the embedded cache is not built for several workers")
    return count


MCP_GRPC_WORKERS = _worker_processes("MCP_GRPC_WORKERS")  # run_grpc processes, each with MCP_GRPC_MAX_IN_FLIGHT
MCP_GRPC_TLS_CERT = env_path("MCP_GRPC_TLS_CERT")
MCP_GRPC_TLS_KEY = env_path("MCP_GRPC_TLS_KEY")
MCP_GRPC_TLS_CA = env_path("MCP_GRPC_TLS_CA")
if bool(MCP_GRPC_TLS_CERT) != bool(MCP_GRPC_TLS_KEY):
    raise ConfigError("MCP_GRPC_TLS_CERT and MCP_GRPC_TLS_KEY must be set together (TLS needs both)")
if MCP_GRPC_TLS_CA and not MCP_GRPC_TLS_CERT:
    raise ConfigError("MCP_GRPC_TLS_CA needs MCP_GRPC_TLS_CERT and MCP_GRPC_TLS_KEY (mTLS is on top of TLS)")
# Where run_grpc serves /metrics for all its worker processes (HOST:PORT; unset: off).
MCP_GRPC_METRICS_BIND = env_bind("MCP_GRPC_METRICS_BIND", None)

CORS_ALLOWED_ORIGINS = env_list("CORS_ORIGIN")
for _origin in CORS_ALLOWED_ORIGINS:
    _parts = urlsplit(_origin)
    if _parts.scheme not in {"http", "https"} or not _parts.netloc or _parts.path not in {"", "/"}:
        raise ConfigError(f"CORS_ORIGIN holds {_origin!r}: use comma-separated origins like https://studio.example.com")
CORS_ALLOWED_ORIGINS = [o.rstrip("/") for o in CORS_ALLOWED_ORIGINS]

# The web door (maestro/web.py): granian, an event loop per worker process, a worker per core; the
# data plane on the loop, Django's control plane on HTTP_THREADS threads per worker (DESIGN
# section 1). HTTP_MAX_CONCURRENCY bounds the requests one worker holds at once (slow tool calls
# and open streams included): each costs memory, not a thread.
HTTP_BIND = env_bind("MAESTRO_HTTP_BIND", "127.0.0.1:8000")
HTTP_WORKERS = _worker_processes("WEB_CONCURRENCY")
HTTP_THREADS = env_int("MAESTRO_HTTP_THREADS", 32, minimum=1, maximum=1024)
HTTP_MAX_CONCURRENCY = env_int("MAESTRO_HTTP_MAX_CONCURRENCY", 16384, minimum=16, maximum=1_000_000)

# --- Django ----------------------------------------------------------------------------------

SECRET_KEY = _raw("DJANGO_SECRET_KEY") or _derive(SESSION_SECRET, "maestro-mcp/django/v1").hex()
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS") or ["localhost", "127.0.0.1", "[::1]", "testserver"]
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")
CSRF_FAILURE_VIEW = "maestro.api_errors.csrf_failure"
LOG_LEVEL = (_raw("DJANGO_LOG_LEVEL") or "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ConfigError(f"DJANGO_LOG_LEVEL={LOG_LEVEL!r}: use DEBUG, INFO, WARNING, ERROR or CRITICAL")
LOG_REQUESTS = env_bool("MAESTRO_LOG_REQUESTS", True)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served from here (never a CDN)
    "django_prometheus",
    "maestro",
    "sessions_app",
    "mcp",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "maestro.middleware.RequestLogMiddleware",
    "maestro.middleware.NulGuardMiddleware",
    "maestro.telemetry.RouteSpanMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "maestro.urls"
WSGI_APPLICATION = "maestro.wsgi.application"
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
            ],
        },
    },
]

_DB_SCHEMES = {"postgres", "postgresql", "pgsql", "sqlite"}
_database_url = env_url("DATABASE_URL", schemes=_DB_SCHEMES)
if _database_url is None:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "maestro.sqlite3",
            # WAL lets the web server, the gRPC server and the worker read while one writes.
            "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", "timeout": 20},
        }
    }
else:
    try:
        _db = environ.Env.db_url_config(_database_url)
    except Exception:
        raise ConfigError(f"DATABASE_URL={_mask(_database_url)!r} is malformed: expected postgresql://USER:PASSWORD@HOST:PORT/NAME") from None
    if _db.get("ENGINE", "").endswith("postgresql"):
        if not _db.get("NAME"):
            raise ConfigError(f"DATABASE_URL={_mask(_database_url)!r} names no database: expected postgresql://USER:PASSWORD@HOST:PORT/NAME")
        _db.setdefault("OPTIONS", {})
        _db["OPTIONS"].setdefault("connect_timeout", 2)
        # Pools per process, not a connection per thread. DATABASE_POOL_SIZE is the data plane's
        # (maestro.adb: evidence, sessions); Django's control plane, on its threads, has a pool of
        # half that. PostgreSQL allows about a hundred connections in all (README: "Scaling out").
        # Each request takes a connection when it first queries and gives it back when it ends;
        # with CONN_HEALTH_CHECKS Django has the pool check it on the way out, so a connection
        # broken by a PostgreSQL restart is never handed out.
        DATABASE_POOL_SIZE = env_int("DATABASE_POOL_SIZE", 10, minimum=0, maximum=500)
        if DATABASE_POOL_SIZE:
            if _raw("DATABASE_CONN_MAX_AGE"):
                raise ConfigError("DATABASE_CONN_MAX_AGE applies only without the pool: set DATABASE_POOL_SIZE=0 to use it, or unset it")
            # timeout: how long a request waits for a free connection before failing (503) rather
            # than hanging while PostgreSQL is down. reconnect_timeout: as the data plane's pool
            # (maestro.adb.RECONNECT_S), so the back-off between reconnection attempts cannot outgrow
            # the timeout and fail requests after PostgreSQL is back.
            _db["OPTIONS"]["pool"] = {"min_size": 1, "max_size": max(2, DATABASE_POOL_SIZE // 2), "timeout": 5, "reconnect_timeout": 1}
            _db["CONN_MAX_AGE"] = 0
        else:
            _db["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 600, minimum=0, maximum=86_400)
        _db["CONN_HEALTH_CHECKS"] = True
    DATABASES = {"default": _db}

REDIS_URL = env_url("REDIS_URL", schemes={"redis", "rediss", "unix"})
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "maestro",
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                # Bounded: a hung Redis must never hold a request (or readiness) for long.
                "SOCKET_CONNECT_TIMEOUT": 1.0,
                "SOCKET_TIMEOUT": 1.0,
                # A connection per thread that may need one at once, and a short wait rather than
                # an error when they are all busy (MaxConnectionsError under a burst of calls).
                "CONNECTION_POOL_CLASS": "redis.BlockingConnectionPool",
                "CONNECTION_POOL_KWARGS": {
                    "max_connections": max(HTTP_THREADS, MCP_GRPC_MAX_IN_FLIGHT) + 64, "timeout": 2, "retry_on_timeout": False,
                },
                # JSON, not pickle: the data plane reads and writes the same entries with its own
                # async client (maestro.aredis), and JSON is what both sides can read.
                "SERIALIZER": "django_redis.serializers.json.JSONSerializer",
            },
        }
    }
else:
    # The embedded default: a cache in ./data that needs no service. A file cache rather than
    # memory, because `make run` is three processes (web, gRPC, worker) that must all see a
    # revocation or a registry change; Redis replaces it for anything beyond one machine.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(DATA_DIR / "cache"),
            "KEY_PREFIX": "maestro",
            "OPTIONS": {"MAX_ENTRIES": 100_000},
        }
    }

CELERY_BROKER_URL = (
    env_url("CELERY_BROKER_URL", schemes={"redis", "rediss", "amqp", "amqps", "filesystem", "memory"}) or REDIS_URL or "filesystem://"
)
CELERY_BROKER_TRANSPORT_OPTIONS: dict = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    # The embedded default: a broker in ./data, so `make run` runs the periodic jobs with no service.
    _broker_dir = DATA_DIR / "celery-broker"
    for _sub in ("out", "processed"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "out"),
        "data_folder_out": str(_broker_dir / "out"),
        "data_folder_processed": str(_broker_dir / "processed"),
        # Without it kombu keeps its exchange table in ./control, wherever the process started.
        "control_folder": str(_broker_dir / "control"),
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "mcp-sessions-cleanup": {"task": "sessions_app.tasks.cleanup_expired_sessions", "schedule": float(MCP_SESSION_CLEANUP_INTERVAL_SECONDS)},
    "mcp-servers-health-probe": {"task": "mcp.tasks.probe_all_servers", "schedule": float(MCP_HEALTH_PROBE_INTERVAL_SECONDS)},
    "mcp-evidence-verify": {"task": "mcp.tasks.verify_evidence_chains", "schedule": float(MCP_EVIDENCE_VERIFY_INTERVAL_SECONDS)},
}

# Prometheus multiprocess mode: each door (web, gRPC) keeps its worker processes' metric files in
# its own subdirectory, emptied when the door starts, and /metrics sums them (maestro.prometheus).
METRICS_DIR = Path(_raw("MAESTRO_METRICS_DIR") or DATA_DIR / "metrics")
if METRICS_DIR.exists() and not METRICS_DIR.is_dir():
    raise ConfigError(f"MAESTRO_METRICS_DIR={str(METRICS_DIR)!r} is not a directory: give a folder the doors may write to")

OTEL_EXPORTER_OTLP_ENDPOINT = env_url("OTEL_EXPORTER_OTLP_ENDPOINT", schemes={"http", "https"})
OTEL_SERVICE_NAME = _raw("OTEL_SERVICE_NAME") or "maestro-mcp"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# The pages' stylesheet and script are also served straight from the app folders, so a web process
# started without `collectstatic` (tests, a checkout run by hand) still has them; whitenoise reads
# them once at start either way.
WHITENOISE_USE_FINDERS = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATA_UPLOAD_MAX_MEMORY_SIZE = MCP_MAX_REQUEST_BYTES
SESSION_COOKIE_HTTPONLY = True
LOGIN_URL = "pages-login"
LOGIN_REDIRECT_URL = "pages-registry"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "sessions_app.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["sessions_app.permissions.IsOperator"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer", "rest_framework.renderers.BrowsableAPIRenderer"],
    "DEFAULT_PARSER_CLASSES": ["maestro.parsers.StrictJSONParser"],
    "EXCEPTION_HANDLER": "maestro.api_errors.exception_handler",
    "DEFAULT_PAGINATION_CLASS": "maestro.pagination.BoundedLimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# The OpenAPI document (/api/schema/, Swagger UI at /api/docs/): public, like the API's shape in
# the README; the data-plane routes are added by maestro.openapi.postprocess.
SPECTACULAR_SETTINGS = {
    "TITLE": "Maestro MCP gateway",
    "DESCRIPTION": "Registry of MCP servers, run sessions, tool invocation with policy receipts and hash-chained evidence. "
    'Every error has one shape: {"error": {"code", "message", "details"?}}.',
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "maestro.openapi.postprocess"],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "maestro.logs.RedactingFilter"}},
    "formatters": {"json": {"()": "maestro.logs.JsonFormatter"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["redact"]}},
    "root": {"handlers": ["stderr"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": ["stderr"], "level": LOG_LEVEL, "propagate": False},
        # Django's own per-request warnings duplicate our access log.
        "django.request": {"handlers": ["stderr"], "level": "ERROR", "propagate": False},
        "django.server": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}
