import json
import logging
import secrets
import time

from odoo import _, api, fields, models
from odoo.exceptions import ValidationError

from ..tools import reminders, whatsapp_gateways
from ..tools.adaptive_pace import PaceRule
from ..tools.pg_rate_limiter import PgRateLimiter
from ..tools.rate_limiter import shared_limiter
from ..tools.whatsapp_exceptions import WhatsappError
from .access import MANAGER_GROUP, check_outbound_url, ensure_manager, outbound_policy
from .sicantik_rate_bucket import _connect

WEBHOOK_ROUTE = "/sicantik/whatsapp"
# receipts newer than this count as "arriving" on the provider form
RECENT_RECEIPT_HOURS = 24


def _new_webhook_token():
    return secrets.token_urlsafe(32)


_logger = logging.getLogger(__name__)


class SicantikWhatsappProvider(models.Model):
    """A WhatsApp gateway reminders go through.

    Each provider type is a selection value plus one method
    ``_whatsapp_gateway_<type>()`` returning the client of ``tools/``; another
    addon adds a gateway with ``selection_add`` and that one method.
    """

    _name = "sicantik.whatsapp.provider"
    _description = "SICANTIK WhatsApp Provider"
    _inherit = ["mail.thread"]
    _order = "sequence, id"

    name = fields.Char(required=True, tracking=True, translate=True)
    sequence = fields.Integer(default=10)
    active = fields.Boolean(default=True, tracking=True)
    company_id = fields.Many2one(
        "res.company", default=lambda self: self.env.company, index=True
    )
    provider_type = fields.Selection(
        [
            ("log", "Log only (no message leaves Odoo)"),
            ("meta", "Meta WhatsApp Cloud API"),
            ("fonnte", "Fonnte"),
            ("waha", "WAHA (self-hosted)"),
            ("webhook", "Generic webhook"),
        ],
        string="Type",
        required=True,
        default="log",
        tracking=True,
        ondelete={"log": "cascade"},
    )
    rate_limit = fields.Float(
        string="Messages per Second",
        default=1.0,
        help="The most messages this gateway is sent per second.",
    )
    timeout = fields.Integer(string="Timeout (s)", default=30)
    # --- endpoints and credentials: managers only, never logged
    api_url = fields.Char(
        string="API URL",
        groups=MANAGER_GROUP,
        help="Base URL of the gateway; empty: the provider's public address "
        "(Meta, Fonnte). Required for WAHA and webhooks.",
    )
    api_token = fields.Char(string="Token / API Key", groups=MANAGER_GROUP, copy=False)
    meta_phone_number_id = fields.Char(string="Phone Number ID", groups=MANAGER_GROUP)
    meta_api_version = fields.Char(
        string="Graph API Version", default="v21.0", groups=MANAGER_GROUP
    )
    meta_template_name = fields.Char(
        string="Template Name",
        groups=MANAGER_GROUP,
        help="An approved message template whose body takes, in this order: "
        "holder, permit type, permit number, expiry date, days left.",
    )
    meta_template_language = fields.Char(
        string="Template Language", default="id", groups=MANAGER_GROUP
    )
    waha_session = fields.Char(
        string="WAHA Session", default="default", groups=MANAGER_GROUP
    )
    webhook_headers = fields.Text(
        groups=MANAGER_GROUP,
        help='JSON object of extra headers, e.g. {"Authorization": "Bearer …"}.',
    )
    # --- receipts: the gateway calls us back (managers only, never logged)
    webhook_token = fields.Char(
        string="Webhook Path Token",
        groups=MANAGER_GROUP,
        copy=False,
        default=lambda self: _new_webhook_token(),
        help="The secret part of the webhook URL; regenerate it if the URL leaked.",
    )
    webhook_secret = fields.Char(
        groups=MANAGER_GROUP,
        copy=False,
        help="Meta: the app secret (X-Hub-Signature-256). WAHA: the HMAC key of "
        "the webhook (X-Webhook-Hmac), optional. Fonnte: an optional token "
        "added to the URL as ?token=…. Generic webhook: the key of the "
        "X-Sicantik-Signature header, required.",
    )
    meta_verify_token = fields.Char(
        string="Verify Token",
        groups=MANAGER_GROUP,
        copy=False,
        help="Any text you choose; type the same in Meta's webhook settings.",
    )
    webhook_url = fields.Char(
        string="Webhook URL",
        compute="_compute_webhook_url",
        groups=MANAGER_GROUP,
        help="Register this URL with the gateway to receive delivery receipts "
        "and replies.",
    )
    last_receipt_at = fields.Datetime(
        string="Last Receipt", compute="_compute_last_receipt_at"
    )
    receipts_recent = fields.Boolean(
        string="Receipts Arriving", compute="_compute_last_receipt_at"
    )

    _sql_constraints = [
        (
            "rate_limit_positive",
            "CHECK(rate_limit > 0)",
            "A provider must be allowed at least some messages per second.",
        ),
        ("timeout_positive", "CHECK(timeout > 0)", "The timeout must be positive."),
        (
            "webhook_token_unique",
            "UNIQUE(webhook_token)",
            "Two providers cannot share a webhook URL.",
        ),
    ]

    # ------------------------------------------------------------
    # COMPUTE METHODS
    # ------------------------------------------------------------

    @api.depends("webhook_token", "provider_type")
    def _compute_webhook_url(self):
        base = self.env["ir.config_parameter"].sudo().get_param("web.base.url", "")
        for provider in self:
            if provider.provider_type == "log" or not provider.webhook_token:
                provider.webhook_url = False
                continue
            provider.webhook_url = (
                f"{base.rstrip('/')}{WEBHOOK_ROUTE}/{provider.webhook_token}"
            )

    def _compute_last_receipt_at(self):
        last = dict(
            self.env["sicantik.whatsapp.event"]
            .sudo()
            ._read_group(
                [("provider_id", "in", self.ids)], ["provider_id"], ["create_date:max"]
            )
        )
        recent = fields.Datetime.subtract(
            fields.Datetime.now(), hours=RECENT_RECEIPT_HOURS
        )
        for provider in self:
            at = last.get(provider)
            provider.last_receipt_at = at or False
            provider.receipts_recent = bool(at and at >= recent)

    @api.constrains("api_url")
    def _check_api_url(self):
        for provider in self.sudo():
            if provider.api_url:
                check_outbound_url(self.env, provider.api_url)

    @api.constrains("webhook_headers")
    def _check_webhook_headers(self):
        for provider in self.sudo():
            if not provider.webhook_headers:
                continue
            try:
                headers = json.loads(provider.webhook_headers)
            except ValueError:
                headers = None
            if not isinstance(headers, dict) or not all(
                isinstance(v, str) for v in headers.values()
            ):
                raise ValidationError(
                    _(
                        "Webhook headers must be a JSON object of text values, "
                        'e.g. {"Authorization": "Bearer abc"}.'
                    )
                )

    # ------------------------------------------------------------
    # ACTIONS
    # ------------------------------------------------------------

    def action_regenerate_webhook_token(self):
        """A new webhook URL: the old one stops working at once."""
        ensure_manager(self.env, self)
        for provider in self:
            provider.webhook_token = _new_webhook_token()

    def action_open_test_message(self):
        self.ensure_one()
        ensure_manager(self.env, self)
        return {
            "type": "ir.actions.act_window",
            "name": _("Send Test Message"),
            "res_model": "sicantik.whatsapp.test.message",
            "view_mode": "form",
            "target": "new",
            "context": {"default_provider_id": self.id},
        }

    # ------------------------------------------------------------
    # SENDING
    # ------------------------------------------------------------

    def _whatsapp_send(self, phone, text, values, record=None):
        """Send ``text`` (or the approved template filled with ``values``) to
        ``phone`` (E.164); return the gateway's message id.

        Raises ``WhatsappError``; its ``failure_type`` tells the ledger what
        to do (retry, give up, flag the number, or reconcile).
        """
        self.ensure_one()
        provider = self.sudo()
        gateway = getattr(provider, f"_whatsapp_gateway_{provider.provider_type}")()
        limiter = None
        if provider.provider_type != "log":
            # Paced in the deployment's bucket, by the gateway: it takes the
            # slot and checks it again at the write, once connected (a log-
            # only message leaves nothing to pace, and may be written while
            # the module installs, before the bucket table is visible to the
            # limiter's connection).
            limiter = gateway.limiter = self._limiter()
        started = time.monotonic()
        try:
            result = gateway.send(
                phone,
                text,
                params=reminders.template_params(values),
                # Lets the gateway (and staff) match a lost answer to its row.
                reference=f"{record._name}:{record.id}" if record else None,
            )
        except WhatsappError as err:
            self._pace_feedback(limiter, err.status, started, gateway.limiter_wait)
            raise
        finally:
            gateway.close()
        self._pace_feedback(limiter, 200, started, gateway.limiter_wait)
        return result.message_id

    @api.model
    def _pace_feedback(self, limiter, status, started, waited=0.0):
        """A 429 or 503 slows the provider's shared bucket down (adaptive
        pace), as the SICANTIK client does for its server. The response
        time leaves out the wait for the limiter (``waited``)."""
        if limiter is not None and status:
            limiter.feedback(status, time.monotonic() - started - (waited or 0.0))

    def _whatsapp_safe_to_resend(self):
        """Whether a send cut short by a crash may simply be sent again:
        only when nothing leaves Odoo."""
        self.ensure_one()
        return self.provider_type == "log"

    def _limiter(self):
        """One bucket per provider, shared by every process of the
        deployment: the sender jobs and a test message never go faster
        together than the gateway allows."""
        rate = float(self.rate_limit or 1.0)
        dbname = self.env.cr.dbname
        key = f"whatsapp:{self.id}"

        def make():
            # slots 1 / rate apart, scaled down by the adaptive pace
            return PgRateLimiter(key, rate, lambda: _connect(dbname), rule=PaceRule())

        return shared_limiter(("pg", dbname, key, rate, "paced"), make)

    def _timeouts(self):
        read = float(self.timeout or 30)
        return (min(10.0, read), read)

    def _whatsapp_gateway_log(self):
        return whatsapp_gateways.LogOnlyGateway(logger=_logger)

    def _whatsapp_gateway_meta(self):
        return whatsapp_gateways.MetaCloudGateway(
            token=self.api_token,
            phone_number_id=self.meta_phone_number_id,
            template=self.meta_template_name,
            language=self.meta_template_language or "id",
            api_version=self.meta_api_version or "v21.0",
            base_url=self.api_url or None,
            timeout=self._timeouts(),
            address_policy=outbound_policy(self.env),
        )

    def _whatsapp_gateway_fonnte(self):
        return whatsapp_gateways.FonnteGateway(
            token=self.api_token,
            base_url=self.api_url or None,
            timeout=self._timeouts(),
            address_policy=outbound_policy(self.env),
        )

    def _whatsapp_gateway_waha(self):
        return whatsapp_gateways.WahaGateway(
            base_url=self.api_url,
            api_key=self.api_token or None,
            session=self.waha_session or "default",
            timeout=self._timeouts(),
            address_policy=outbound_policy(self.env),
        )

    def _whatsapp_gateway_webhook(self):
        return whatsapp_gateways.WebhookGateway(
            url=self.api_url,
            headers=json.loads(self.webhook_headers or "{}"),
            timeout=self._timeouts(),
            address_policy=outbound_policy(self.env),
        )

    def _send_test_message(self, phone, text):
        """Used by the test-message wizard: a translated verdict either way."""
        self.ensure_one()
        ensure_manager(self.env, self)
        try:
            message_id = self._whatsapp_send(phone, text, {"holder": phone})
        except WhatsappError as err:
            return False, str(err)
        return True, message_id
