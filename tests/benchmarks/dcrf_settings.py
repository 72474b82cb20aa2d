"""Settings of the DCRF side of ``compare_dcrf``: the test project's, with a larger Redis pool.

redis-py's asyncio pool holds at most 100 connections and raises
``MaxConnectionsError`` instead of waiting; channels_redis takes one per
concurrent ``group_add``, so 200 clients subscribing at once fail with the
stock pool. The benchmark raises the cap for DCRF (reactive_celery's server
needs no change).
"""

from tests.project.settings import *  # noqa: F403
from tests.project.settings import CHANNEL_LAYERS

CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]["max_connections"] = 1000
