"""Statement-level triggers that log every write to the observed tables, and NOTIFY.

One trigger per statement and event (INSERT, UPDATE, DELETE, TRUNCATE) reads
the statement's transition tables and appends one row to
``reactive_change_log``: the table and the changed primary keys, or NULL for
"the whole table" (TRUNCATE, a table without a primary key, or more than
``MAX_PKS`` rows). It then ``pg_notify``s the table's name on ``CHANNEL`` to
wake the listener. The keys travel in the log, not in the payload, so
NOTIFY's 8000-byte limit never applies, and a write committed while no
listener runs waits in the log until one drains it.

Our own SQL rather than django-pgtrigger: the triggers go on tables, not
models (auto-created m2m tables too), one generic function serves them all,
and the change log beside them is what makes catch-up after a restart
possible; the whole is a few statements.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.apps import apps
from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model

from ..exceptions import ConfigurationError

__all__ = [
    "CHANNEL",
    "EXCLUDED_TABLES",
    "FUNCTION",
    "LOG_TABLE",
    "MAX_PKS",
    "TRIGGERS",
    "install",
    "installed_tables",
    "observed_tables",
    "postgres_connection",
    "remove",
]

#: The LISTEN/NOTIFY channel the triggers wake the listener on.
CHANNEL = "reactive_changes"
LOG_TABLE = "reactive_change_log"
FUNCTION = "reactive_log_change"
#: More changed rows than this in one statement are logged as "the whole table".
MAX_PKS = 1000
#: Django's bookkeeping: written on every request or migration, observed by nobody.
EXCLUDED_TABLES = frozenset({"django_migrations", "django_session", LOG_TABLE})

#: Trigger name -> (event, REFERENCING clause). Transition tables allow one event per trigger.
TRIGGERS = {
    "reactive_insert": ("INSERT", "REFERENCING NEW TABLE AS new_rows"),
    "reactive_update": ("UPDATE", "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"),
    "reactive_delete": ("DELETE", "REFERENCING OLD TABLE AS old_rows"),
    "reactive_truncate": ("TRUNCATE", ""),
}

_SETUP = f"""
CREATE TABLE IF NOT EXISTS {LOG_TABLE} (
    id bigserial PRIMARY KEY,
    table_name text NOT NULL,
    pks text[],
    created timestamptz NOT NULL DEFAULT now()
);
CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    pk_column text := TG_ARGV[0];
    max_pks integer := TG_ARGV[1]::integer;
    changed text[];
BEGIN
    IF TG_OP = 'TRUNCATE' OR pk_column = '' THEN
        changed := NULL;
    ELSE
        -- Read one key past the limit: enough to know the statement is too big.
        IF TG_OP = 'INSERT' THEN
            EXECUTE format('SELECT array_agg(k) FROM (SELECT %1$I::text AS k FROM new_rows'
                           ' LIMIT $1) s', pk_column) INTO changed USING max_pks + 1;
        ELSIF TG_OP = 'DELETE' THEN
            EXECUTE format('SELECT array_agg(k) FROM (SELECT %1$I::text AS k FROM old_rows'
                           ' LIMIT $1) s', pk_column) INTO changed USING max_pks + 1;
        ELSE
            -- Old keys too: an update that changes a primary key moves a row.
            EXECUTE format('SELECT array_agg(k) FROM (SELECT %1$I::text AS k FROM new_rows'
                           ' UNION SELECT %1$I::text FROM old_rows LIMIT $1) s', pk_column)
                INTO changed USING max_pks + 1;
        END IF;
        IF changed IS NULL THEN
            RETURN NULL;  -- the statement changed no row
        END IF;
        IF cardinality(changed) > max_pks THEN
            changed := NULL;
        END IF;
    END IF;
    INSERT INTO {LOG_TABLE} (table_name, pks) VALUES (TG_TABLE_NAME, changed);
    PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME);
    RETURN NULL;
END;
$$;
"""


def postgres_connection(using: str) -> BaseDatabaseWrapper:
    """Django's connection ``using``; a ConfigurationError unless it is PostgreSQL."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        raise ConfigurationError(
            f"Database {using!r} is {connection.vendor}: triggers and reactive_listen need "
            "PostgreSQL. Keep REACTIVE_CELERY['CHANGE_SOURCE'] = 'signals' on other databases."
        )
    return connection


def observed_tables(labels: Iterable[str] = ()) -> dict[str, str]:
    """Table -> primary key column ('' for none) of the models to watch.

    ``labels`` are app labels or ``app_label.Model``; none means every installed
    model that Django manages (m2m tables included) but ``EXCLUDED_TABLES``.
    """
    models: list[type[Model]] = []
    for label in labels:
        try:
            if "." in label:
                models.append(apps.get_model(label))
            else:
                models += apps.get_app_config(label).get_models(include_auto_created=True)
        except LookupError:
            raise ConfigurationError(
                f"{label!r} is neither an installed app label nor 'app_label.Model'."
            ) from None
    if not labels:
        models = list(apps.get_models(include_auto_created=True))
    tables: dict[str, str] = {}
    for model in models:
        meta = model._meta
        if meta.proxy or not meta.managed or meta.db_table in EXCLUDED_TABLES:
            continue
        tables[meta.db_table] = meta.pk.column if meta.pk is not None else ""
    return dict(sorted(tables.items()))


def install(tables: dict[str, str], using: str = "default") -> list[str]:
    """Create the change log and function, and (re)create the triggers on ``tables``.

    Idempotent and atomic; run it again after migrations that add tables.
    Returns the tables now watched.
    """
    connection = postgres_connection(using)
    quote = connection.ops.quote_name
    with transaction.atomic(using=using), connection.cursor() as cursor:
        cursor.execute(_SETUP)
        for table, pk_column in tables.items():
            for name, (event, referencing) in TRIGGERS.items():
                cursor.execute(f"DROP TRIGGER IF EXISTS {name} ON {quote(table)}")
                cursor.execute(
                    f"CREATE TRIGGER {name} AFTER {event} ON {quote(table)} {referencing} "
                    f"FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}(%s, %s)"
                    % (_literal(pk_column), _literal(str(MAX_PKS)))
                )
    return list(tables)


def installed_tables(using: str = "default") -> list[str]:
    """The tables that carry our triggers now, sorted."""
    connection = postgres_connection(using)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "JOIN pg_proc p ON p.oid = t.tgfoid WHERE p.proname = %s ORDER BY 1",
            [FUNCTION],
        )
        return [row[0] for row in cursor.fetchall()]


def remove(using: str = "default") -> list[str]:
    """Drop every trigger, the function and the change log; returns the tables unwatched."""
    connection = postgres_connection(using)
    quote = connection.ops.quote_name
    with transaction.atomic(using=using):
        tables = installed_tables(using)
        with connection.cursor() as cursor:
            for table in tables:
                for name in TRIGGERS:
                    cursor.execute(f"DROP TRIGGER IF EXISTS {name} ON {quote(table)}")
            cursor.execute(f"DROP FUNCTION IF EXISTS {FUNCTION}()")
            cursor.execute(f"DROP TABLE IF EXISTS {LOG_TABLE}")
    return tables


def _literal(value: str) -> str:
    # Trigger arguments are literals in the DDL, which takes no bind parameters.
    return "'" + value.replace("'", "''") + "'"
