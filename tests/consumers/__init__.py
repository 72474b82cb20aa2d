"""In-process tests of the WebSocket consumers over the real channels_redis layer."""

#: Upper bound in seconds on any single wait; no test depends on how fast things are.
TIMEOUT = 10
