import logging
from collections import defaultdict

from markupsafe import Markup, escape

from odoo import _, api, fields, models

from ..tools import whatsapp_webhooks as wh

_logger = logging.getLogger(__name__)

# What a gateway's failure receipt means, in staff words, by failure type.
DEFAULT_STOP_WORDS = "STOP, BERHENTI, unsubscribe"


class SicantikWhatsappEvent(models.Model):
    """One thing a WhatsApp gateway reported through its webhook: a state of
    one of our messages, or a holder's reply.

    Every authenticated call is kept, one row per receipt it carried, with
    what it changed; receipts for unknown messages stay here for staff (and
    are applied if the message id shows up later). The body's digest is
    unique per provider, so a replayed call is recognised and changes
    nothing.
    """

    _name = "sicantik.whatsapp.event"
    _description = "SICANTIK WhatsApp Event"
    _order = "id desc"
    _rec_name = "message_id"

    provider_id = fields.Many2one(
        "sicantik.whatsapp.provider",
        string="Provider",
        required=True,
        index=True,
        ondelete="cascade",
        readonly=True,
    )
    company_id = fields.Many2one(
        related="provider_id.company_id", store=True, index=True, readonly=True
    )
    # the call it came in, and its place in it: (provider, digest, seq) unique
    body_digest = fields.Char(readonly=True, required=True)
    seq = fields.Integer(readonly=True)
    kind = fields.Selection(
        [("status", "Delivery state"), ("reply", "Reply"), ("other", "Other")],
        required=True,
        readonly=True,
    )
    message_id = fields.Char(string="Message ID", readonly=True, index=True)
    alt_id = fields.Char(string="Second ID", readonly=True)
    gateway_state = fields.Selection(
        [
            ("sent", "Sent"),
            ("delivered", "Delivered"),
            ("read", "Read"),
            ("failed", "Failed"),
        ],
        string="Reported State",
        readonly=True,
    )
    event_at = fields.Datetime(string="Happened At", readonly=True)
    reason = fields.Char(readonly=True)
    error_code = fields.Char(readonly=True)
    invalid_number = fields.Boolean(readonly=True)
    sender = fields.Char(readonly=True)
    text = fields.Text(readonly=True)
    notification_id = fields.Many2one(
        "sicantik.notification",
        string="Reminder",
        readonly=True,
        index="btree_not_null",
        ondelete="set null",
    )
    permit_id = fields.Many2one(
        "sicantik.permit", readonly=True, ondelete="set null", index="btree_not_null"
    )
    partner_id = fields.Many2one(
        "res.partner", string="Holder", readonly=True, ondelete="set null"
    )
    outcome = fields.Selection(
        [
            ("applied", "Applied"),
            ("no_change", "No change (duplicate or older)"),
            ("unmatched", "Unknown message"),
            ("opt_out", "Opt-out"),
            ("posted", "Reply posted"),
            ("ignored", "Ignored"),
            ("error", "Error"),
        ],
        readonly=True,
        index=True,
    )

    _sql_constraints = [
        (
            "body_seq_unique",
            "UNIQUE(provider_id, body_digest, seq)",
            "This webhook call was already received.",
        ),
    ]

    # ------------------------------------------------------------
    # BUSINESS METHODS
    # ------------------------------------------------------------

    @api.model
    def _is_replay(self, provider, digest):
        return bool(
            self.sudo().search_count(
                [("provider_id", "=", provider.id), ("body_digest", "=", digest)],
                limit=1,
            )
        )

    @api.model
    def _receive(self, provider, receipts, digest):
        """Record the receipts of one authenticated call and apply them.

        Cheap and idempotent, so done inline: a few indexed searches and
        writes. Returns the recorded events.
        """
        rows = [
            self._prepare_event_values(provider, r, digest, i)
            for i, r in enumerate(receipts)
        ]
        self._apply(provider, rows)
        return self.sudo().create(rows)

    @api.model
    def _prepare_event_values(self, provider, receipt, digest, seq):
        return {
            "provider_id": provider.id,
            "body_digest": digest,
            "seq": seq,
            "kind": receipt.kind,
            "message_id": receipt.message_id,
            "alt_id": receipt.alt_id,
            "gateway_state": receipt.state,
            "event_at": receipt.at,
            "reason": receipt.reason,
            "error_code": receipt.error_code,
            "invalid_number": receipt.invalid_number,
            "sender": wh.sender_e164(receipt.sender),
            "text": receipt.text,
            "outcome": "ignored",
        }

    @api.model
    def _apply(self, provider, rows):
        """Set ``outcome`` (and links) on each row, changing reminders,
        contacts and chatter as the receipts say."""
        statuses = [r for r in rows if r["kind"] == "status"]
        replies = [r for r in rows if r["kind"] == "reply"]
        if statuses:
            self._apply_statuses(provider, statuses)
        if replies:
            self._apply_replies(provider, replies)

    @api.model
    def _apply_statuses(self, provider, rows):
        Notification = self.env["sicantik.notification"].sudo()
        ids = {r["message_id"] for r in rows if r["message_id"]}
        alt_ids = {r["alt_id"] for r in rows if r["alt_id"]}
        found = Notification.search(
            [
                ("provider_id", "=", provider.id),
                "|",
                ("provider_message_id", "in", list(ids)),
                ("provider_state_id", "in", list(alt_ids)),
            ]
        )
        by_id = {n.provider_message_id: n for n in found if n.provider_message_id}
        by_alt = {n.provider_state_id: n for n in found if n.provider_state_id}
        # the state each reminder ends in after this call, in memory first
        states = {n: n.state for n in found}
        changes = defaultdict(dict)
        for row in sorted(rows, key=lambda r: wh.STATE_RANK.get(r["gateway_state"], 9)):
            notification = by_id.get(row["message_id"]) or by_alt.get(row["alt_id"])
            if not notification:
                row["outcome"] = "unmatched"
                continue
            row["notification_id"] = notification.id
            row["permit_id"] = notification.permit_id.id
            row["partner_id"] = notification.partner_id.id
            if row["alt_id"] and not notification.provider_state_id:
                changes[notification]["provider_state_id"] = row["alt_id"]
            if not row["gateway_state"]:
                continue  # pending, processing: nothing to record
            if not wh.advances(states[notification], row["gateway_state"]):
                row["outcome"] = "no_change"
                continue
            states[notification] = row["gateway_state"]
            changes[notification].update(self._state_values(row))
            row["outcome"] = "applied"
        invalid = linked = Notification.browse()
        for notification, values in changes.items():
            notification.write(values)
            if values.get("failure_type") == "invalid_number":
                invalid |= notification
            if values.get("provider_state_id"):
                linked |= notification
        for notification in invalid:
            notification.partner_id._sicantik_flag_invalid_number(
                notification.failure_reason
            )
        # receipts that named the message by its second id before this call
        # linked it (Fonnte, out of order) apply now
        for notification in linked:
            self._reapply_for(notification)

    @api.model
    def _state_values(self, row):
        values = {
            "state": row["gateway_state"],
            "delivery_at": row["event_at"] or fields.Datetime.now(),
        }
        if row["gateway_state"] == "failed":
            values["failure_type"] = (
                "invalid_number" if row["invalid_number"] else "permanent"
            )
            values["failure_reason"] = self._failure_words(row)[:250]
        return values

    @api.model
    def _failure_words(self, row):
        """The gateway's failure in staff words, its own words after them."""
        if row["invalid_number"]:
            text = _(
                "WhatsApp could not deliver it: this number cannot receive "
                "WhatsApp messages. Correct the holder's number."
            )
        else:
            text = _("WhatsApp could not deliver it.")
        detail = row["reason"] or row["error_code"]
        return f"{text} ({detail})" if detail else text

    @api.model
    def _apply_replies(self, provider, rows):
        Partner = self.env["res.partner"].sudo()
        Notification = self.env["sicantik.notification"].sudo()
        phones = {r["sender"] for r in rows if r["sender"]}
        partners = Partner.search([("whatsapp_number", "in", list(phones))])
        partner_by_phone = {p.whatsapp_number: p for p in partners}
        # the latest reminder each number got through this provider tells
        # which permit the reply is about
        reminders = Notification.search(
            [
                ("provider_id", "=", provider.id),
                ("phone", "in", list(phones)),
                ("state", "not in", ("queued", "cancelled")),
            ],
            order="id desc",
        )
        by_message = {n.provider_message_id: n for n in reminders}
        latest = {}
        for notification in reminders:
            latest.setdefault(notification.phone, notification)
        stop_words = self._stop_words(provider)
        opted_out = Partner.browse()
        for row in rows:
            notification = by_message.get(row["message_id"]) or latest.get(
                row["sender"]
            )
            partner = partner_by_phone.get(row["sender"]) or (
                notification.partner_id if notification else Partner
            )
            row["partner_id"] = partner.id
            if notification:
                row["notification_id"] = notification.id
                row["permit_id"] = notification.permit_id.id
            words = (
                wh.parse_stop_words(notification.config_id.whatsapp_stop_words)
                if notification and notification.config_id.whatsapp_stop_words
                else stop_words
            )
            if partner and wh.is_stop(row["text"], words):
                opted_out |= partner
                row["outcome"] = "opt_out"
            elif notification:
                row["outcome"] = "posted"
            else:
                row["outcome"] = "unmatched"
            if notification:
                self._post_reply(notification.permit_id, partner, row)
        if opted_out:
            opted_out._sicantik_opt_out(_("a WhatsApp reply asking to stop"))

    @api.model
    def _post_reply(self, permit, partner, row):
        """The reply on the permit's chatter, as a note from the holder."""
        body = Markup("<p>%s</p><blockquote>%s</blockquote>") % (
            _("WhatsApp reply from %(phone)s:", phone=row["sender"]),
            escape(row["text"] or ""),
        )
        permit.sudo().message_post(
            body=body,
            author_id=partner.id or None,
            message_type="comment",
            subtype_xmlid="mail.mt_note",
        )

    @api.model
    def _stop_words(self, provider):
        """The stop words of the connectors sending through ``provider``
        (the default list when none does), for replies to no known reminder;
        a reply to a reminder uses its connector's list."""
        configs = (
            self.env["sicantik.config"]
            .sudo()
            .search([("whatsapp_provider_id", "=", provider.id)])
        )
        text = ",".join(c.whatsapp_stop_words or "" for c in configs)
        return wh.parse_stop_words(text or DEFAULT_STOP_WORDS)

    @api.model
    def _reapply_for(self, notification):
        """Receipts that arrived before the send was recorded (the gateway
        was quicker than our commit), or before Fonnte linked its second id:
        apply them now."""
        ids = [("message_id", "=", notification.provider_message_id)]
        if notification.provider_state_id:
            ids = ["|", *ids, ("alt_id", "=", notification.provider_state_id)]
        early = self.sudo().search(
            [
                ("provider_id", "=", notification.provider_id.id),
                ("outcome", "=", "unmatched"),
                ("kind", "=", "status"),
                *ids,
            ]
        )
        if not early:
            return
        rows = [
            {
                "kind": "status",
                "message_id": e.message_id,
                "alt_id": e.alt_id,
                "gateway_state": e.gateway_state,
                "event_at": e.event_at,
                "reason": e.reason,
                "error_code": e.error_code,
                "invalid_number": e.invalid_number,
                "outcome": "unmatched",
            }
            for e in early
        ]
        self._apply_statuses(notification.provider_id, rows)
        for event, row in zip(early, rows, strict=True):
            event.write(
                {
                    "outcome": row["outcome"],
                    "notification_id": row.get("notification_id"),
                    "permit_id": row.get("permit_id"),
                    "partner_id": row.get("partner_id"),
                }
            )

    @api.autovacuum
    def _gc_events(self):
        """Receipts are evidence for a few months, not for ever."""
        limit = fields.Datetime.subtract(fields.Datetime.now(), days=180)
        self.sudo().search([("create_date", "<", limit)], limit=10000).unlink()
