"""``manage.py reactive_status`` and ``manage.py reactive_clear``."""

__all__: list[str] = []
