"""The same deployment without ``reactive_celery``: the baseline of scenario (f)'s save cost."""

from .settings import *  # noqa: F403
from .settings import INSTALLED_APPS

INSTALLED_APPS = [app for app in INSTALLED_APPS if app != "reactive_celery"]
