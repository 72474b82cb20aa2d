"""Settings of the example project: a demo on loopback, not a production setup.

Redis: ``REDIS_URL`` from the environment, else a private ``redis-server`` is
started for this process and exported (``reactive_celery.testing.redis_server``).
``run.py`` starts it once, before the web server and the worker, so that all
of them share it; a ``manage.py`` command run by hand must be given the same
``REDIS_URL`` (run.py prints it) or its writes reach nobody.
"""

import os
from pathlib import Path

from reactive_celery.testing import redis_server

BASE_DIR = Path(__file__).resolve().parent.parent

#: True when REDIS_URL was not given, so this process runs a Redis of its own.
PRIVATE_REDIS = not os.environ.get("REDIS_URL")
REDIS_URL = redis_server.ensure().rstrip("/")

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "channels",
    "reactive_celery",
    "tasks",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "board.urls"
ASGI_APPLICATION = "board.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DEMO_SQLITE_PATH", str(BASE_DIR / "db.sqlite3")),
        # The web server, the worker and make_changes write concurrently.
        "OPTIONS": {"timeout": 30},
    }
}
# docs/deployment/compose.yaml runs the demo on PostgreSQL: DEMO_PG_HOST selects it.
if os.environ.get("DEMO_PG_HOST"):
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": os.environ["DEMO_PG_HOST"],
            "PORT": os.environ.get("DEMO_PG_PORT", "5432"),
            "NAME": os.environ.get("DEMO_PG_NAME", "board"),
            "USER": os.environ.get("DEMO_PG_USER", "postgres"),
            "PASSWORD": os.environ.get("DEMO_PG_PASSWORD", ""),
            "CONN_MAX_AGE": 0,
        }
    }
    CELERY_DB_REUSE_MAX = 100
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
}

# Workers push through this layer to the ASGI servers. socket_timeout=None:
# redis-py's default 5 s timeout would drop every socket idle for 5 s
# (channels_redis #422). capacity: one ASGI process shares one receiving
# channel among all its sockets, and the default of 100 drops bursts.
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [{"address": f"{REDIS_URL}/2", "socket_timeout": None}],
            "capacity": 1000,
        },
    }
}

CELERY_BROKER_URL = f"{REDIS_URL}/1"
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

REACTIVE_CELERY = {
    "REDIS_URL": f"{REDIS_URL}/0",
    # "triggers" (PostgreSQL only) needs `manage.py reactive_listen` running.
    "CHANGE_SOURCE": os.environ.get("DEMO_CHANGE_SOURCE", "signals"),
    # Reactive work on its own queue, apart from the app's other tasks.
    "QUEUE": os.environ.get("DEMO_REACTIVE_QUEUE") or None,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"quiet_polling": {"()": "board.log_filters.QuietPolling"}},
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        # Not propagated: under Celery the root logger prints them a second time.
        "reactive_celery": {"handlers": ["console"], "level": "INFO", "propagate": False},
        # Celery's own records of every task received, finished or sent by beat.
        **{
            name: {"filters": ["quiet_polling"]}
            for name in ("celery.app.trace", "celery.worker.strategy", "celery.beat")
        },
        "reactive_celery.tasks": {"filters": ["quiet_polling"]},
    },
}
