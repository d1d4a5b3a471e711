"""18.0.1.2.0, before the update: permits are keyed per letter.

A permit used to be unique per connector and registration; it is now unique
per connector, registration and letter (``sicantik_permit_letter_unique``,
a unique index the module update creates). The old constraint would refuse
a registration's second letter: drop it, with its reflection. No row is
touched: permits, their chatter, reminders and holders stay as they are.
"""

from odoo.tools import SQL

OLD_CONSTRAINT = "sicantik_permit_pendaftaran_config_unique"


def migrate(cr, version):
    if not version:
        return
    cr.execute(
        SQL(
            "ALTER TABLE sicantik_permit DROP CONSTRAINT IF EXISTS %s",
            SQL.identifier(OLD_CONSTRAINT),
        )
    )
    cr.execute("DELETE FROM ir_model_constraint WHERE name = %s", (OLD_CONSTRAINT,))
