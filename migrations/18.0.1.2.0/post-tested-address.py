"""18.0.1.2.0: the schedule only uses an API URL that passed a test.

Existing connectors must not stop syncing on the upgrade: the current URL
of a connector whose permit sync already completed a pass counts as tested
(on the date of its last such pass). A connector that never synced waits
for Test Connection, as a new one does.

The jobs now write in the connector's language, Indonesian by default:
the language is activated, and connectors get it unless the office chose
another one already.
"""

from odoo import SUPERUSER_ID, api


def migrate(cr, version):
    env = api.Environment(cr, SUPERUSER_ID, {})
    cr.execute(
        """
        UPDATE sicantik_config AS config
           SET tested_url = btrim(config.api_url),
               tested_ok_at = passes.last_end
          FROM (SELECT config_id, max(end_date) AS last_end
                  FROM sicantik_sync_log
                 WHERE operation = 'permits' AND state IN ('done', 'partial')
                 GROUP BY config_id) AS passes
         WHERE passes.config_id = config.id
           AND config.tested_url IS NULL
           AND coalesce(btrim(config.api_url), '') != ''
        """
    )
    if env["res.lang"]._activate_lang("id_ID"):
        cr.execute(
            "UPDATE sicantik_config SET lang = 'id_ID' "
            "WHERE lang IS NULL OR lang = 'en_US'"
        )
