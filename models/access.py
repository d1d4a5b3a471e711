"""Who may act, and where Odoo may connect: one rule each."""

import logging

from odoo.exceptions import AccessError, ValidationError

from ..tools.addresses import AddressPolicy
from ..tools.api_errors import AddressNotAllowed
from ..tools.const import ALLOWED_HOSTS_PARAM

_logger = logging.getLogger(__name__)

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


def outbound_policy(env):
    """The addresses the connectors and gateways may reach: public ones, plus
    what an administrator lists in the system parameter (only administrators
    may edit system parameters; a SICANTIK manager cannot open a door)."""
    listed = env["ir.config_parameter"].sudo().get_param(ALLOWED_HOSTS_PARAM) or ""
    try:
        return AddressPolicy(listed)
    except ValueError as err:
        # A bad entry opens nothing: the list is ignored until it is fixed.
        _logger.warning("SICANTIK: %s is ignored: %s", ALLOWED_HOSTS_PARAM, err)
        return AddressPolicy(())


def address_refused_message(env, host):
    return env._(
        "Odoo may not connect to %(host)s: it is a loopback, private or "
        "cloud-internal address. If this server really is on your network, "
        "an administrator can allow it in Settings > Technical > System "
        "Parameters, %(param)s (host names, addresses or networks such as "
        "10.0.0.0/8).",
        host=host,
        param=ALLOWED_HOSTS_PARAM,
    )


def check_outbound_url(env, url):
    """Refuse to save a URL whose host resolves to an address Odoo may not
    call (the connection is checked again when it is made)."""
    try:
        outbound_policy(env).check_url(url)
    except AddressNotAllowed as err:
        raise ValidationError(address_refused_message(env, err.host)) from None
