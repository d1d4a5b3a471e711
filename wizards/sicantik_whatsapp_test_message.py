from odoo import _, api, fields, models
from odoo.exceptions import UserError

from ..tools.phone import normalize_phone


class SicantikWhatsappTestMessage(models.TransientModel):
    """Send one message through a provider to check its settings."""

    _name = "sicantik.whatsapp.test.message"
    _description = "Send a WhatsApp Test Message"

    provider_id = fields.Many2one(
        "sicantik.whatsapp.provider", required=True, ondelete="cascade"
    )
    phone = fields.Char(string="WhatsApp Number", required=True)
    message = fields.Text(
        required=True,
        default=lambda self: _("Pesan uji dari SICANTIK Connector."),
    )

    @api.model
    def _normalised_phone(self, raw):
        result = normalize_phone(raw)
        if result.status != "valid_mobile":
            raise UserError(
                _(
                    "%(number)s cannot receive WhatsApp: %(reason)s",
                    number=raw,
                    reason=result.reason or _("not a mobile number"),
                )
            )
        return result.e164

    def action_send(self):
        self.ensure_one()
        phone = self._normalised_phone(self.phone)
        ok, detail = self.provider_id._send_test_message(phone, self.message)
        if not ok:
            raise UserError(
                _("The test message was not sent: %(reason)s", reason=detail)
            )
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "type": "success",
                "title": _("Test message sent"),
                "message": _(
                    "%(provider)s accepted the message for %(phone)s (id %(id)s).",
                    provider=self.provider_id.name,
                    phone=phone,
                    id=detail or "-",
                ),
                "next": {"type": "ir.actions.act_window_close"},
            },
        }
