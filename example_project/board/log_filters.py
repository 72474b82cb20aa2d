"""Keep the demo's console readable: the status widget is re-run every second.

Celery logs every task received and finished, beat every task it sends, and
reactive_celery every evaluation; with a view polled each second that is five
lines a second. This filter drops those records, leaving one line per
evaluation of a task list (``Evaluated observer <id> (tasks.views.TaskViewSet)
in 0.004 s``) and everything at WARNING or above.
"""

import logging

POLLED_VIEW = "tasks.views.ServerStatusViewSet"
TASK_NAMES = ("reactive_celery.poll", "reactive_celery.evaluate")


class QuietPolling(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        if getattr(record, "view", None) == POLLED_VIEW:
            return False
        message = record.getMessage()
        return not any(name in message for name in TASK_NAMES)
