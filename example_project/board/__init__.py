"""The example project: settings, URLs, ASGI application and Celery app.

The Celery app is imported here so that it is loaded whenever Django is
(Celery's "First steps with Django"): signals can then enqueue evaluations
from any process that writes to the database.
"""

from .celery import app as celery_app

__all__ = ["celery_app"]
