"""Helpers for the test suites and the demo: a private ``redis-server`` on loopback."""

__all__: list[str] = []
