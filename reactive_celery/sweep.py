"""Deprecated: the sweep moved to ``reactive_celery.store.sweep``.

``from reactive_celery.sweep import sweep`` keeps working for one release.
"""

from __future__ import annotations

import warnings

from .store.sweep import sweep

__all__ = ["sweep"]

warnings.warn(
    "reactive_celery.sweep moved to reactive_celery.store.sweep; "
    "the old path goes in the next release.",
    DeprecationWarning,
    stacklevel=2,
)
