"""18.0.1.2.0: WhatsApp outcomes.

* Reminders "sent" through a log-only provider never left Odoo: they become
  "Logged (not sent)", so the counts of sent messages tell the truth.
* Connectors still using the old default reminder text (which doubled the
  word "izin" before names such as "IZIN GANGGUAN USAHA") get the new one;
  a text staff edited is left as it is.
* Every provider gets its own webhook path token: the upgrade filled the
  new column with one default value for all rows, so the unique constraint
  could not be added then; it is added here.
"""

import secrets

from odoo.tools import SQL

from odoo.addons.sicantik_connector.tools.reminders import OLD_DEFAULT_TEMPLATES


def migrate(cr, version):
    cr.execute(
        """
        UPDATE sicantik_notification n
           SET state = 'logged'
          FROM sicantik_whatsapp_provider p
         WHERE p.id = n.provider_id AND p.provider_type = 'log'
           AND n.state = 'sent'
        """
    )
    for column in ("reminder_template", "reminder_template_today"):
        for old, new in OLD_DEFAULT_TEMPLATES.items():
            cr.execute(
                SQL(
                    "UPDATE sicantik_config SET %s = %s WHERE %s = %s",
                    SQL.identifier(column),
                    new,
                    SQL.identifier(column),
                    old,
                )
            )
    cr.execute(
        """
        SELECT id FROM sicantik_whatsapp_provider p
         WHERE webhook_token IS NULL
            OR EXISTS (SELECT 1 FROM sicantik_whatsapp_provider q
                        WHERE q.webhook_token = p.webhook_token AND q.id != p.id)
        """
    )
    for (provider_id,) in cr.fetchall():
        cr.execute(
            "UPDATE sicantik_whatsapp_provider SET webhook_token = %s WHERE id = %s",
            (secrets.token_urlsafe(32), provider_id),
        )
    cr.execute(
        """
        SELECT 1 FROM pg_constraint
         WHERE conname = 'sicantik_whatsapp_provider_webhook_token_unique'
        """
    )
    if not cr.fetchone():
        cr.execute(
            """
            ALTER TABLE sicantik_whatsapp_provider
              ADD CONSTRAINT sicantik_whatsapp_provider_webhook_token_unique
                  UNIQUE (webhook_token)
            """
        )
