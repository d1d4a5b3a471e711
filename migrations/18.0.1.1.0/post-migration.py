"""18.0.1.1.0: the long jobs moved out of the connector.

The scheduled actions are ``noupdate`` data, so an upgrade does not rewrite
them: point the three whose entry point moved at their new model.
"""

from odoo import SUPERUSER_ID, api

MOVED_CRONS = (
    ("ir_cron_sync_permits", "sicantik.permit.sync", "model._cron_sync_permits()"),
    (
        "ir_cron_sync_expiry_dates",
        "sicantik.expiry.sync",
        "model._cron_sync_expiry_dates()",
    ),
    (
        "ir_cron_check_expiring",
        "sicantik.notification",
        "model._cron_queue_reminders()",
    ),
)


def migrate(cr, version):
    env = api.Environment(cr, SUPERUSER_ID, {})
    for name, model, code in MOVED_CRONS:
        cron = env.ref(f"sicantik_connector.{name}", raise_if_not_found=False)
        if cron:
            cron.write({"model_id": env["ir.model"]._get_id(model), "code": code})
