"""18.0.1.2.0, after the update: stored values follow the new rules.

* Placeholders SICANTIK sent before the rule existed (``-``, ``0``, ...: see
  ``tools/placeholders.py``) are emptied in the permits' text columns, as the
  sync now stores them. A letter that was a placeholder becomes "no letter".
* Every stored permit counts as listed by its connector's current (or last)
  pass, so that the first complete pass after the upgrade does not count the
  pages read before it as missed.

Each permit keeps its id, so its chatter, activities, reminders and holder
stay linked. A registration's second letter arrives with the next pass as a
permit of its own.
"""

from odoo.tools import SQL

from odoo.addons.sicantik_connector.tools.placeholders import (
    PLACEHOLDER_WORDS,
    is_placeholder,
)

TEXT_COLUMNS = (
    "no_surat",
    "applicant_name",
    "permit_type_name",
    "applicant_address",
    "applicant_phone",
    "company_name",
    "npwp",
    "company_address",
    "kelurahan",
    "kecamatan",
)


def _blank_placeholders(cr, column):
    # Candidates in SQL (no ASCII letter nor digit 1-9, or a placeholder
    # word); the rule itself, which knows every script, decides in Python.
    name = SQL.identifier(column)
    cr.execute(
        SQL(
            """SELECT id, %(name)s FROM sicantik_permit
                WHERE %(name)s IS NOT NULL
                  AND (%(name)s !~ '[A-Za-z1-9]'
                       OR lower(btrim(%(name)s)) = ANY(%(words)s))""",
            name=name,
            words=sorted(PLACEHOLDER_WORDS),
        )
    )
    ids = [row_id for row_id, value in cr.fetchall() if is_placeholder(value)]
    if ids:
        cr.execute(
            SQL("UPDATE sicantik_permit SET %s = NULL WHERE id = ANY(%s)", name, ids)
        )
    return len(ids)


def migrate(cr, version):
    if not version:
        return
    for column in TEXT_COLUMNS:
        _blank_placeholders(cr, column)
    cr.execute(
        """UPDATE sicantik_permit p
              SET listed_pass = c.sync_pass_started_at, missed_passes = 0
             FROM sicantik_config c
            WHERE c.id = p.config_id AND p.listed_pass IS NULL"""
    )
