"""PostgreSQL as a change source: triggers that log writes, a listener that feeds them on.

triggers    the change log, the trigger function, install / remove on the observed tables
listener    LISTEN for the triggers' wake-ups, drain the change log into ``notify()``
"""

__all__: list[str] = []
