"""Who may act: one group, one check, one exception type."""

from odoo.exceptions import AccessError

MANAGER_GROUP = "sicantik_connector.sicantik_connector_group_manager"


def ensure_manager(env, records=None):
    """Refuse, before any remote call or change, a user who is not a
    SICANTIK manager, or who may not change ``records`` (the company rules:
    a button that then works as superuser must not reach another company's
    connector, permit or provider)."""
    if not env.su and not env.user.has_group(MANAGER_GROUP):
        raise AccessError(
            env._(
                "Only a SICANTIK manager can do this: run a sync, test the "
                "connection, change permits or reminders, or use a WhatsApp "
                "provider. Ask your administrator for the SICANTIK / Manager "
                "access right."
            )
        )
    if records:
        records.check_access("write")
