import logging
import time
from collections import Counter
from datetime import timedelta

import pytz
from markupsafe import Markup, escape

from odoo import _, api, fields, models
from odoo.exceptions import UserError
from odoo.tools import SQL

from ..tools import reminders
from ..tools.whatsapp_exceptions import WhatsappError
from .access import ensure_manager
from .sicantik_reminder_queue import SEND_CRON

_logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
RETRY_FIRST = timedelta(minutes=5)
RETRY_MAX = timedelta(hours=6)
# A claim older than this belongs to a sender that died (a send takes at
# most the provider's timeout); ``sicantik_connector.reminder_stale_seconds``
# overrides it.
STALE_SENDING = timedelta(minutes=30)


class SicantikNotification(models.Model):
    """One WhatsApp reminder: a permit, a stage of its ladder, an expiry date.

    The database allows one row per (permit, stage, expiry date), so a
    reminder can be queued only once, and a renewal (new date) starts the
    ladder again. A row moves queued -> sending -> sent / failed; "sending"
    is committed before the gateway is called, so a crash leaves a row that
    is reconciled, never sent a second time by itself. The gateway's
    receipts (``sicantik.whatsapp.event``) then move a sent row on to
    delivered and read, or to failed, never back. A log-only provider
    leaves it "logged": nothing was sent.
    """

    _name = "sicantik.notification"
    _description = "SICANTIK WhatsApp Reminder"
    _inherit = ["sicantik.job.mixin", "sicantik.reminder.queue"]
    _order = "id desc"
    _rec_name = "permit_id"
    _check_company_auto = True

    permit_id = fields.Many2one(
        "sicantik.permit",
        required=True,
        index=True,
        ondelete="cascade",
        check_company=True,
    )
    partner_id = fields.Many2one(
        "res.partner", string="Holder", index=True, check_company=True
    )
    config_id = fields.Many2one(
        "sicantik.config", string="Connector", required=True, ondelete="cascade"
    )
    # The permit's company (the 09:00 SQL copies it the same way).
    company_id = fields.Many2one(
        related="permit_id.company_id", store=True, index=True, readonly=True
    )
    provider_id = fields.Many2one(
        "sicantik.whatsapp.provider",
        string="Provider",
        ondelete="set null",
        check_company=True,
    )
    stage = fields.Integer(
        string="Days Before Expiry", required=True, help="0: the day of expiry."
    )
    expiry_date = fields.Date(required=True)
    phone = fields.Char(string="Sent To", readonly=True)
    body = fields.Text(string="Message", readonly=True)
    state = fields.Selection(
        [
            ("queued", "Queued"),
            ("sending", "Sending"),
            ("logged", "Logged (not sent)"),
            ("sent", "Sent"),
            ("delivered", "Delivered"),
            ("read", "Read"),
            ("failed", "Failed"),
            ("cancelled", "Cancelled"),
        ],
        default="queued",
        required=True,
        index=True,
        readonly=True,
    )
    attempts = fields.Integer(readonly=True)
    next_try = fields.Datetime(index=True, readonly=True)
    claimed_at = fields.Datetime(readonly=True)
    sent_at = fields.Datetime(readonly=True, index=True)
    provider_message_id = fields.Char(readonly=True, index="btree_not_null")
    # Fonnte names later receipts of a message by a second id
    provider_state_id = fields.Char(readonly=True, index="btree_not_null")
    delivery_at = fields.Datetime(
        string="Delivery State At",
        readonly=True,
        help="When the gateway reported the current state (delivered, read "
        "or failed).",
    )
    failure_type = fields.Selection(
        [
            ("retryable", "Temporary"),
            ("rate_limited", "Rate limited"),
            ("permanent", "Refused"),
            ("invalid_number", "Invalid number"),
            ("config", "Provider configuration"),
            ("unknown", "Outcome unknown"),
        ],
        readonly=True,
    )
    failure_reason = fields.Char(readonly=True)

    _sql_constraints = [
        (
            "permit_stage_expiry_unique",
            "UNIQUE(permit_id, stage, expiry_date)",
            "This reminder was already queued for this permit.",
        ),
    ]

    # ------------------------------------------------------------
    # ACTIONS
    # ------------------------------------------------------------

    def action_retry(self):
        ensure_manager(self.env, self)
        retry = self.filtered(lambda n: n.state in ("failed", "cancelled"))
        if not retry:
            raise UserError(_("Only failed or cancelled reminders can be retried."))
        retry.write(
            {
                "state": "queued",
                "next_try": fields.Datetime.now(),
                "failure_type": False,
                "failure_reason": False,
            }
        )
        self.env.ref(SEND_CRON)._trigger()

    def action_cancel(self):
        ensure_manager(self.env, self)
        self.filtered(lambda n: n.state == "queued").write(
            {"state": "cancelled", "failure_reason": _("Cancelled by staff.")}
        )

    # ------------------------------------------------------------
    # SENDING (sender job)
    # ------------------------------------------------------------

    @api.model
    def _cron_send_reminders(self):
        """Drain the queue at each provider's pace, one committed claim per
        message, within the cron's time budget; report progress, and log a
        sync log row per connector that sent (or failed) something."""
        deadline = time.monotonic() + self._job_time_budget()
        self._reconcile_stale()
        quiet = self._quiet_config_ids()
        outcomes = {}
        done = 0
        while time.monotonic() < deadline:
            notification = self._claim_next(quiet, done)
            if not notification:
                break
            # Chatter notes and reasons in the connector's language.
            notification = notification.with_context(
                lang=notification.config_id._job_lang()
            )
            try:
                notification._send_claimed()
            except Exception:
                _logger.exception("SICANTIK: reminder %s failed", notification.id)
                self._job_rollback()
                notification._mark_failed(
                    "unknown",
                    _(
                        "Unexpected error while sending; it is not known whether "
                        "WhatsApp delivered it. See the server log."
                    ),
                )
            counts = outcomes.setdefault(notification.config_id, Counter())
            counts[notification.state] += 1
            done += 1
            self._job_commit(done, self._count_sendable(quiet))
        self._log_outcomes(outcomes)
        remaining = self._count_sendable(quiet)
        self.env["ir.cron"]._notify_progress(done=done, remaining=remaining)

    @api.model
    def _log_outcomes(self, outcomes):
        for config, counts in outcomes.items():
            config = config._with_job_lang()
            self.with_env(config.env)._log_connector_outcomes(config, counts)
        if outcomes:
            self._job_commit()

    @api.model
    def _log_connector_outcomes(self, config, counts):
        log = self.env["sicantik.sync.log"]._start(config, "reminders")
        log.write(
            {
                "fetched_count": sum(counts.values()),
                "created_count": counts["sent"] + counts["logged"],
                "failed_count": counts["failed"],
                "skipped_count": counts["cancelled"],
                "unchanged_count": counts["queued"],
                "progress_done": sum(counts.values()),
            }
        )
        log._finish(
            None,
            _(
                "%(sent)s reminder(s) sent, %(logged)s logged (not sent), "
                "%(failed)s failed, %(retry)s to retry later, %(cancelled)s "
                "cancelled.",
                sent=counts["sent"],
                logged=counts["logged"],
                failed=counts["failed"],
                retry=counts["queued"],
                cancelled=counts["cancelled"],
            ),
        )

    @api.model
    def _quiet_config_ids(self):
        now = pytz.utc.localize(fields.Datetime.now())
        return [
            config.id
            for config in self.env["sicantik.config"].search([])
            if reminders.in_quiet_hours(
                now.astimezone(pytz.timezone(config.tz or "Asia/Jakarta")),
                config.quiet_hours_start,
                config.quiet_hours_end,
            )
        ]

    @api.model
    def _sendable_sql(self, quiet):
        return SQL(
            "state = 'queued' AND next_try <= %s AND NOT (config_id = ANY(%s))",
            fields.Datetime.now(),
            quiet or [0],
        )

    @api.model
    def _count_sendable(self, quiet):
        self.env.cr.execute(
            SQL(
                "SELECT count(*) FROM sicantik_notification WHERE %s",
                self._sendable_sql(quiet),
            )
        )
        return self.env.cr.fetchone()[0]

    @api.model
    def _claim_next(self, quiet, done=0):
        """Take the most urgent due row for this worker (SKIP LOCKED: another
        worker takes another row) and commit the claim before any HTTP.

        The claim counts as progress of the cron run: a worker killed during
        the gateway call has moved work forward, and Odoo must not count the
        run as timed out (three in a row would stop the job)."""
        self.flush_model()
        self.env.cr.execute(
            SQL(
                """
                UPDATE sicantik_notification
                   SET state = 'sending', claimed_at = %(now)s,
                       attempts = attempts + 1, write_date = %(now)s
                 WHERE id = (SELECT id FROM sicantik_notification
                              WHERE %(sendable)s
                           ORDER BY stage, next_try, id
                              LIMIT 1 FOR UPDATE SKIP LOCKED)
             RETURNING id
                """,
                now=fields.Datetime.now(),
                sendable=self._sendable_sql(quiet),
            )
        )
        row = self.env.cr.fetchone()
        self.invalidate_model()
        if not row:
            return self.browse()
        self._job_commit(done + 1, self._count_sendable(quiet))
        return self.browse(row[0])

    def _cancel_reason(self):
        """Why this reminder must not go out any more, or None."""
        permit, partner = self.permit_id, self.partner_id
        if permit.status == "revoked":
            return _("The permit was revoked.")
        if permit.expiry_date != self.expiry_date:
            return _(
                "The expiry date changed (renewed?): the reminder ladder "
                "starts again for the new date."
            )
        if not partner:
            return _("The permit has no holder contact.")
        if partner.whatsapp_opt_out:
            return _("The holder does not want WhatsApp reminders.")
        if partner.whatsapp_number_state != "valid":
            return _("The holder has no usable WhatsApp number.")
        return None

    def _message_values(self):
        today = self.config_id._today()
        return {
            "holder": self.partner_id.name or self.permit_id.applicant_name or "",
            "permit_type": self.permit_id.permit_type_id.name
            or self.permit_id.permit_type_name
            or "",
            "permit_number": self.permit_id.no_surat or "",
            "expiry_date": self.expiry_date,
            "days": (self.expiry_date - today).days,
        }

    def _send_claimed(self):
        """Send this claimed row and record the outcome (the caller commits)."""
        self.ensure_one()
        reason = self._cancel_reason()
        if reason:
            self.write({"state": "cancelled", "failure_reason": reason})
            return
        provider = self.provider_id or self.config_id._reminder_provider()
        values = self._message_values()
        body = self.config_id._reminder_text(self.stage, values)
        phone = self.partner_id.whatsapp_number
        self.write({"phone": phone, "body": body, "provider_id": provider.id})
        try:
            message_id = provider._whatsapp_send(phone, body, values, record=self)
        except WhatsappError as err:
            self._record_error(err)
            return
        logged = provider.provider_type == "log"
        self.write(
            {
                "state": "logged" if logged else "sent",
                "sent_at": fields.Datetime.now(),
                "provider_message_id": message_id or False,
                "failure_type": False,
                "failure_reason": False,
            }
        )
        # One note per reminder, whatever the provider.
        if logged:
            text = _(
                "WhatsApp reminder (%(stage)s) logged, not sent: %(provider)s "
                "sends nothing to %(phone)s.",
                stage=self._stage_label(),
                phone=phone,
                provider=provider.name,
            )
        else:
            text = _(
                "WhatsApp reminder (%(stage)s) sent to %(phone)s via %(provider)s.",
                stage=self._stage_label(),
                phone=phone,
                provider=provider.name,
            )
        self._post_on_permit(text, body)
        if message_id and not logged:
            self.env["sicantik.whatsapp.event"]._reapply_for(self)

    def _record_error(self, err):
        kind = err.failure_type
        if kind == "invalid_number":
            self.partner_id._sicantik_flag_invalid_number(str(err))
        if kind in ("retryable", "rate_limited") and self.attempts < MAX_ATTEMPTS:
            wait = RETRY_FIRST * (2 ** max(0, self.attempts - 1))
            if err.retry_after:
                wait = max(wait, timedelta(seconds=err.retry_after))
            self.write(
                {
                    "state": "queued",
                    "next_try": fields.Datetime.now() + min(wait, RETRY_MAX),
                    "failure_type": kind,
                    "failure_reason": str(err)[:250],
                }
            )
            return
        self._mark_failed(kind if kind in self._failure_types() else "permanent", err)

    def _mark_failed(self, kind, reason):
        self.write(
            {
                "state": "failed",
                "failure_type": kind,
                "failure_reason": str(reason)[:250],
            }
        )
        self._post_on_permit(
            _(
                "WhatsApp reminder (%(stage)s) not sent: %(reason)s",
                stage=self._stage_label(),
                reason=str(reason)[:250],
            )
        )

    @api.model
    def _failure_types(self):
        return dict(self._fields["failure_type"].selection)

    def _stage_label(self):
        if not self.stage:
            return _("expiry day")
        return _("%(days)s days before expiry", days=self.stage)

    def _post_on_permit(self, text, body=None):
        html = Markup("<p>%s</p>") % escape(text)
        if body:
            html += Markup("<blockquote>%s</blockquote>") % escape(body)
        self.permit_id.sudo()._message_log(body=html)

    @api.model
    def _reconcile_stale(self):
        """Rows left in "sending" by a dead worker: whether the gateway got
        the message is unknown, so they are not sent again by themselves;
        providers that send nothing outside Odoo (log only) re-queue them."""
        seconds = (
            self.env["ir.config_parameter"]
            .sudo()
            .get_param("sicantik_connector.reminder_stale_seconds")
        )
        stale_after = (
            timedelta(seconds=int(seconds))
            if (seconds or "").isdigit()
            else STALE_SENDING
        )
        stale = self.search(
            [
                ("state", "=", "sending"),
                ("claimed_at", "<", fields.Datetime.now() - stale_after),
            ]
        )
        requeue = stale.filtered(
            lambda n: n.provider_id and n.provider_id._whatsapp_safe_to_resend()
        )
        requeue.write({"state": "queued", "next_try": fields.Datetime.now()})
        for notification in stale - requeue:
            notification._mark_failed(
                "unknown",
                _(
                    "Sending was interrupted: it is not known whether the holder "
                    "received it. Check before pressing Retry."
                ),
            )
        return len(stale)
