"""Management commands of reactive_celery: ``reactive_status`` and ``reactive_clear``."""

__all__: list[str] = []
