"""18.0.1.3.0, after the update: every connector gets its permit sync pass
row, with the cursor its pass had (the pre-script kept it aside), so a pass
under way resumes at the row it had reached."""

from odoo.tools import SQL, sql

HOLDING = "sicantik_permit_pass_moving"


def migrate(cr, version):
    if not version or not sql.table_exists(cr, HOLDING):
        return
    cr.execute(
        SQL(
            """INSERT INTO sicantik_permit_pass
                   (config_id, next_offset, page_digest, pass_rows,
                    create_uid, create_date, write_uid, write_date)
            SELECT moving.config_id, COALESCE(moving.sync_offset, 0),
                   moving.sync_page_digest, COALESCE(moving.sync_pass_rows, 0),
                   1, now() AT TIME ZONE 'UTC', 1, now() AT TIME ZONE 'UTC'
              FROM %s AS moving
              JOIN sicantik_config AS config ON config.id = moving.config_id
            ON CONFLICT (config_id) DO NOTHING""",
            SQL.identifier(HOLDING),
        )
    )
    cr.execute(SQL("DROP TABLE %s", SQL.identifier(HOLDING)))
