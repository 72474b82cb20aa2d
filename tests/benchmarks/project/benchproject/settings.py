"""Settings of the benchmark deployment: the README's configuration, nothing tuned for tests.

The suite starts Redis and the database and passes them in the environment:
``BENCH_REDIS_URL``, ``BENCH_DATABASE`` (``sqlite`` or ``postgres``),
``BENCH_SQLITE_PATH`` or ``BENCH_PG_HOST/PORT/USER/PASSWORD/NAME``. Unlike
``tests.project`` it never starts a Redis itself, so it depends on no helper
of the ``reactive_celery`` revision under test.

Database connections, the deployment choices the figures depend on:

- Celery workers keep their PostgreSQL connection: ``CONN_MAX_AGE`` 600 and
  ``CELERY_DB_REUSE_MAX`` 100. Celery 5.x's Django fixup otherwise closes
  every connection before and after each task, whatever ``CONN_MAX_AGE`` says,
  and each evaluation would open a new one.
- uvicorn gets ``BENCH_CONN_MAX_AGE=0``: Django's docs advise against
  persistent connections under ASGI (each request's thread would keep one
  open). On PostgreSQL it takes its connections from docs/deployment.md's
  bounded pool (``BENCH_PG_POOL``: its ``max_size``, 4 unless the suite's
  ``BENCH_ASGI_POOL`` says otherwise; 0: a connection per request).
- SQLite runs in WAL mode (Django 5.1+ ``init_command``), as a deployment
  with concurrent readers and one writer would.
"""

import os

REDIS_URL = os.environ["BENCH_REDIS_URL"].rstrip("/")

SECRET_KEY = "benchmark-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
ROOT_URLCONF = "benchproject.urls"
ASGI_APPLICATION = "benchproject.asgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "rest_framework",
    "django_filters",
    "channels",
    "reactive_celery",
    "benchapp",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]

_conn_max_age = int(os.environ.get("BENCH_CONN_MAX_AGE", "600"))
if os.environ.get("BENCH_DATABASE", "sqlite") == "postgres":
    _db = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ["BENCH_PG_NAME"],
        "HOST": os.environ.get("BENCH_PG_HOST", "127.0.0.1"),
        "PORT": os.environ.get("BENCH_PG_PORT", "5432"),
        "USER": os.environ.get("BENCH_PG_USER", "postgres"),
        "PASSWORD": os.environ.get("BENCH_PG_PASSWORD", ""),
        "CONN_MAX_AGE": _conn_max_age,
        "CONN_HEALTH_CHECKS": True,
    }
    if int(os.environ.get("BENCH_PG_POOL") or 0):
        _db["OPTIONS"] = {"pool": {"min_size": 1, "max_size": int(os.environ["BENCH_PG_POOL"])}}
else:
    _db = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["BENCH_SQLITE_PATH"],
        "CONN_MAX_AGE": _conn_max_age,
        "OPTIONS": {"timeout": 30, "init_command": "PRAGMA journal_mode=WAL;"},
    }
DATABASES = {"default": _db}

REST_FRAMEWORK = {
    # Anonymous clients: the benchmark measures the reactive path, not logins.
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [{"address": f"{REDIS_URL}/2", "socket_timeout": None}],
            "capacity": 1000,  # README's value: all sockets of one process share a channel
        },
    }
}

CELERY_BROKER_URL = f"{REDIS_URL}/1"
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_DB_REUSE_MAX = int(os.environ.get("BENCH_DB_REUSE_MAX", "100")) or None

# Every load client is one loopback address and one anonymous user: the caps that
# guard a real deployment would refuse the fan-out scenarios (1,000-5,000 sockets,
# 1,000 observers).
REACTIVE_CELERY = {
    "REDIS_URL": f"{REDIS_URL}/0",
    "MAX_SOCKETS_PER_ADDRESS": 10_000,
    "MAX_OBSERVERS_PER_USER": 5_000,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    # WARNING: INFO logs one record per evaluation, which would be part of the cost measured.
    "loggers": {
        "reactive_celery": {"handlers": ["console"], "level": "WARNING"},
        # A 500 during a run must say why in the deployment's log.
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
    },
}
