"""Settings of the test project; every process of a test run imports them.

The first process to import them starts a private Redis and picks a SQLite
file (unless REDIS_URL / REACTIVE_SQLITE_PATH are set) and exports both, so
the Celery workers and ASGI servers it starts share them.
"""

import os
import tempfile

from reactive_celery.testing import redis_server

REDIS_URL = redis_server.ensure()
_redis = REDIS_URL.rstrip("/")

SECRET_KEY = "tests-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
# Origins other than a page's own that may open sockets (a dedicated server of the origin tests).
CSRF_TRUSTED_ORIGINS = os.environ.get("REACTIVE_TEST_CSRF_TRUSTED_ORIGINS", "").split(",")
CSRF_TRUSTED_ORIGINS = [origin for origin in CSRF_TRUSTED_ORIGINS if origin]
USE_TZ = True
ROOT_URLCONF = "tests.project.urls"
ASGI_APPLICATION = "tests.project.asgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "rest_framework",
    # Token authentication for the ticket tests: clients outside a browser.
    "rest_framework.authtoken",
    "django_filters",
    "channels",
    "reactive_celery",
    "tests.testapp",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]

if os.environ.get("REACTIVE_DATABASE", "sqlite") == "postgres":
    _db = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "reactive_test",
        "HOST": os.environ.get("REACTIVE_PG_HOST", "127.0.0.1"),
        "PORT": os.environ.get("REACTIVE_PG_PORT", "5432"),
        "USER": os.environ.get("REACTIVE_PG_USER", "postgres"),
        "PASSWORD": os.environ.get("REACTIVE_PG_PASSWORD", ""),
        # docs/deployment.md's configuration: 0 under uvicorn (each request thread
        # would keep one open) and in pytest's short-lived loop threads; workers keep
        # theirs through CELERY_DB_REUSE_MAX below.
        "CONN_MAX_AGE": int(os.environ.get("REACTIVE_TEST_CONN_MAX_AGE", "0")),
        "TEST": {"NAME": "reactive_test"},
    }
    if os.environ.get("REACTIVE_TEST_PG_POOL"):
        # docs/deployment.md's pool for an ASGI server: at most this many connections.
        _db["OPTIONS"] = {
            "pool": {"min_size": 1, "max_size": int(os.environ["REACTIVE_TEST_PG_POOL"])}
        }
else:
    _path = os.environ.setdefault(
        "REACTIVE_SQLITE_PATH",
        os.path.join(tempfile.mkdtemp(prefix="reactive-db-"), "test.sqlite3"),
    )
    _db = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": _path,
        "OPTIONS": {"timeout": 30},
        "TEST": {"NAME": _path},
    }
DATABASES = {"default": _db}

REST_FRAMEWORK = {
    # Session first: an anonymous request is still answered 403 (Token's 401 only for a bad token).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [{"address": f"{_redis}/2", "socket_timeout": None}],
            # All sockets of one ASGI process share one receive channel; the
            # fan-out benchmark lowers this to channels_redis' default (100).
            "capacity": int(os.environ.get("REACTIVE_TEST_CAPACITY", "2000")),
            "expiry": 30,
        },
    }
}

CELERY_BROKER_URL = f"{_redis}/1"

# The sharded-layer test's processes: the layer over several Redis servers (comma-separated).
_layer_hosts = os.environ.get("REACTIVE_TEST_LAYER_HOSTS")
if _layer_hosts:
    CHANNEL_LAYERS["default"]["CONFIG"]["hosts"] = [
        {"address": address, "socket_timeout": None} for address in _layer_hosts.split(",")
    ]
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fixup otherwise closes the connection around every task.
CELERY_DB_REUSE_MAX = 100
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# Redeliver a task whose worker died within seconds, not Celery's default hour.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # Above the longest countdown a retry waits in a worker (the lock's lifetime,
    # EVALUATION_TIME_LIMIT + 5 s): a shorter one redelivers waiting retries forever.
    # The recovery test's processes raise it (300 s) so only the sweep can explain a recovery.
    "visibility_timeout": float(os.environ.get("REACTIVE_TEST_VISIBILITY_TIMEOUT", "20")),
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
    # A worker SIGKILLed while it restores holds kombu's restore mutex until this
    # expires (300 s by default): no restore of any unacked task happens meanwhile.
    "unacked_mutex_expire": 10,
}

# Short lifetimes so the fault tests see expiry and heartbeats quickly.
REACTIVE_CELERY = {
    "REDIS_URL": f"{_redis}/0",
    "HEARTBEAT_INTERVAL": float(os.environ.get("REACTIVE_TEST_HEARTBEAT", "1")),
    "SUBSCRIBER_TTL": float(os.environ.get("REACTIVE_TEST_SUBSCRIBER_TTL", "10")),
    "EVALUATION_TIME_LIMIT": float(os.environ.get("REACTIVE_TEST_TIME_LIMIT", "5")),
    # Dedicated processes of the operations tests: a fast sweep, a queue of their own.
    "SWEEP_INTERVAL": float(os.environ.get("REACTIVE_TEST_SWEEP_INTERVAL", "30")),
    "QUEUE": os.environ.get("REACTIVE_TEST_QUEUE") or None,
    # The fuzz tests send frames as fast as answers come back; the flood test lowers it.
    "FRAME_RATE": float(os.environ.get("REACTIVE_TEST_FRAME_RATE", "10000")),
    "MAX_SOCKETS_PER_ADDRESS": int(os.environ.get("REACTIVE_TEST_MAX_SOCKETS_PER_ADDRESS", "1000")),
    # The on/off comparison runs its workers both ways.
    "PRECISE_INVALIDATION": os.environ.get("REACTIVE_TEST_PRECISE", "1") == "1",
}

# The cluster test's processes: the store on a Redis Cluster (redis+cluster://...);
# broker and layer stay on the plain Redis, as kombu and channels_redis need.
_store_url = os.environ.get("REACTIVE_TEST_STORE_URL")
if _store_url:
    REACTIVE_CELERY["REDIS_URL"] = _store_url

# The Sentinel test's processes: store, broker and layer behind the sentinels
# (host:port,host:port,...) of a group whose master is named "reactive".
_sentinels = os.environ.get("REACTIVE_TEST_SENTINELS")
if _sentinels:
    _pairs = [(h, int(p)) for h, p in (entry.rsplit(":", 1) for entry in _sentinels.split(","))]
    REACTIVE_CELERY["REDIS_URL"] = f"redis+sentinel://{_sentinels}/reactive/0"
    CELERY_BROKER_URL = ";".join(f"sentinel://{h}:{p}/1" for h, p in _pairs)
    CELERY_BROKER_TRANSPORT_OPTIONS["master_name"] = "reactive"
    CHANNEL_LAYERS["default"]["CONFIG"]["hosts"] = [
        {"sentinels": _pairs, "master_name": "reactive", "db": 2, "socket_timeout": None}
    ]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "reactive_celery": {
            "handlers": ["console"],
            # A failing fault test's worker logs can then say what each task did.
            "level": os.environ.get("REACTIVE_TEST_LOG_LEVEL", "INFO"),
        }
    },
}
