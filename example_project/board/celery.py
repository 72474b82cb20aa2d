"""The Celery app; start a worker with ``celery -A board worker``.

reactive_celery's tasks register themselves when Django loads the app, so
there is nothing to list here.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "board.settings")

app = Celery("board")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
