"""Set-based INSERT and UPDATE of many rows in ONE statement each.

The ORM's ``create()`` inserts at most 100 rows per statement and ``write()``
issues one UPDATE per distinct set of values, so the number of queries of a
sync page would grow with the page size. These helpers write any number of rows
with one statement, every value passed as a query parameter (never formatted
into the SQL text). The caller invalidates the ORM cache afterwards.

A failing statement is not written to the server log: it would carry the
names, phone numbers and tax numbers of a whole page. The caller reports the
failure in its own words.
"""

from contextlib import contextmanager

import psycopg2
import psycopg2.errors
import psycopg2.extensions

from odoo import fields
from odoo.tools import SQL


def _adapt(model, fname, value):
    """The ORM's False means NULL, except in boolean columns."""
    if value is False and model._fields[fname].type != "boolean":
        return None
    return value


def _column_type(model, fname):
    field = model._fields[fname]
    if not field.column_type:
        raise ValueError(f"{model._name}.{fname} is not a column")
    return field.column_type[1]


def bulk_insert(model, rows, conflict=None):
    """Insert ``rows`` (dicts with the same keys) into ``model``'s table.

    Sets the log-access columns. ``conflict`` is a tuple of column names with a
    unique constraint (or the ``SQL`` of a unique index's expressions): rows
    that would violate it are skipped. Returns the new
    ids, in no particular order.
    """
    if not rows:
        return []
    now = fields.Datetime.now()
    uid = model.env.uid
    names = list(rows[0])
    for name in names:
        _column_type(model, name)  # only real columns
    columns = [*names, "create_uid", "create_date", "write_uid", "write_date"]
    values = SQL(", ").join(
        SQL(
            "(%s)",
            SQL(", ").join(
                [*(_adapt(model, n, row[n]) for n in names), uid, now, uid, now]
            ),
        )
        for row in rows
    )
    on_conflict = SQL()
    if conflict:
        # Column names, or an SQL target (a unique index on an expression).
        target = (
            conflict
            if isinstance(conflict, SQL)
            else SQL(", ").join(SQL.identifier(c) for c in conflict)
        )
        on_conflict = SQL("ON CONFLICT (%s) DO NOTHING", target)
    model.env.cr.execute(
        SQL(
            'INSERT INTO %s (%s) VALUES %s %s RETURNING "id"',
            SQL.identifier(model._table),
            SQL(", ").join(SQL.identifier(c) for c in columns),
            values,
            on_conflict,
        ),
        log_exceptions=False,
    )
    return [row[0] for row in model.env.cr.fetchall()]


def bulk_update(model, rows, keep_null=()):
    """Update rows of ``model``'s table: ``rows`` maps id -> {column: value}.

    Every row must carry the same columns. One ``UPDATE ... FROM (VALUES ...)``
    statement; values are cast to the column types, so ``None`` is fine. For
    the columns in ``keep_null`` a ``None`` keeps the stored value: an answer
    that lacks a field must not erase what an earlier answer gave.
    """
    if not rows:
        return 0
    names = list(next(iter(rows.values())))
    types = [_column_type(model, name) for name in names]
    now = fields.Datetime.now()
    values = SQL(", ").join(
        SQL(
            "(%s)",
            SQL(", ").join([record_id, *(_adapt(model, n, vals[n]) for n in names)]),
        )
        for record_id, vals in rows.items()
    )
    assignments = SQL(", ").join(
        [
            *(
                SQL(
                    "%s = COALESCE(v.%s::%s, t.%s)"
                    if name in keep_null
                    else "%s = v.%s::%s",
                    SQL.identifier(name),
                    SQL.identifier(name),
                    SQL(ctype),
                    *([SQL.identifier(name)] if name in keep_null else []),
                )
                for name, ctype in zip(names, types, strict=True)
            ),
            SQL('"write_uid" = %s', model.env.uid),
            SQL('"write_date" = %s', now),
        ]
    )
    model.env.cr.execute(
        SQL(
            'UPDATE %s AS t SET %s FROM (VALUES %s) AS v("id", %s) '
            'WHERE t."id" = v."id"::int4',
            SQL.identifier(model._table),
            assignments,
            values,
            SQL(", ").join(SQL.identifier(n) for n in names),
        ),
        log_exceptions=False,
    )
    return model.env.cr.rowcount


# A row that bad data makes the database refuse is set aside; these errors
# are not about the row.
ROW_ERRORS = (psycopg2.Error, ValueError)
# Another transaction committed a change to a row this one also writes (two
# jobs of one connector touch its settings row and shared holders). Nothing is
# wrong with the data: the job loop drops the step and runs it again.
CONCURRENCY_ERRORS = (
    psycopg2.extensions.TransactionRollbackError,  # serialization, deadlock
    psycopg2.errors.LockNotAvailable,
)


class ConcurrentUpdate(Exception):  # noqa: N818 (not an error of the data)
    """A write lost a race with another job; retried by the job loop."""


@contextmanager
def row_attempt(cr, flush=False):
    """A savepoint around one write that bad data may refuse (``ROW_ERRORS``).

    A lost race is not bad data: setting the rows aside one by one would fail
    the same way for each of them. It leaves as ``ConcurrentUpdate``, which no
    ``except ROW_ERRORS`` catches.
    """
    try:
        with cr.savepoint(flush=flush):
            yield
    except CONCURRENCY_ERRORS as err:
        raise ConcurrentUpdate(type(err).__name__) from err
