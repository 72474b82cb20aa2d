"""The benchmark deployment: settings, URLs, ASGI and Celery apps of ``tests.benchmarks.suite``.

It is imported as the top-level package ``benchproject`` with
``tests/benchmarks/project`` on ``PYTHONPATH``, never as ``tests.…``: the
suite runs it against the ``reactive_celery`` of another revision whose
``tests`` package may not contain it.
"""

from .celery_app import app as celery_app

__all__ = ["celery_app"]
