"""18.0.1.3.0, before the update: the permit sync's per-page cursor leaves
the connector's row.

``sync_offset``, ``sync_page_digest`` and ``sync_pass_rows`` were columns of
``sicantik_config``, written after every page; they now live in
``sicantik.permit.pass`` (one row per connector) and the connector only
shows them. Their values are kept aside in a holding table, where the
post-script finds them once the new table exists, and the columns are
dropped (no field stores them any more).
"""

from odoo.tools import SQL, sql

HOLDING = SQL.identifier("sicantik_permit_pass_moving")
COLUMNS = ("sync_offset", "sync_page_digest", "sync_pass_rows")


def migrate(cr, version):
    if not version or not sql.column_exists(cr, "sicantik_config", COLUMNS[0]):
        return
    cr.execute(SQL("DROP TABLE IF EXISTS %s", HOLDING))
    cr.execute(
        SQL(
            """CREATE TABLE %s AS
               SELECT id AS config_id, sync_offset, sync_page_digest, sync_pass_rows
                 FROM sicantik_config""",
            HOLDING,
        )
    )
    for column in COLUMNS:
        cr.execute(
            SQL(
                "ALTER TABLE sicantik_config DROP COLUMN IF EXISTS %s",
                SQL.identifier(column),
            )
        )
