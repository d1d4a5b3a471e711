import math

from odoo import _, api, fields, models
from odoo.exceptions import UserError
from odoo.tools import SQL
from odoo.tools.misc import formatLang

from ..models.access import ensure_manager
from ..tools.const import RATE_SAFETY_MARGIN

# Seconds one cekperizinan call takes when nothing is known about the server.
DEFAULT_LATENCY = 0.5


class SicantikConfigExpirySync(models.TransientModel):
    """Start the expiry date sync of a connector in the background."""

    _name = "sicantik.config.expiry.sync"
    _description = "Sync All Expiry Dates"

    config_id = fields.Many2one(
        "sicantik.config", string="Connector", required=True, ondelete="cascade"
    )
    mode = fields.Selection(
        [
            ("test", "Test with 10 permits"),
            ("all", "All permits that need a check"),
            ("limit", "At most"),
        ],
        required=True,
        default="all",
    )
    limit = fields.Integer(string="Maximum", default=500)
    recheck_all = fields.Boolean(
        string="Also re-check permits checked recently",
        help="Ask SICANTIK again about every permit, not only those due. "
        "Permits whose date comes with the permit list are never asked.",
    )
    list_has_expiry = fields.Boolean(related="config_id.list_has_expiry")
    due_count = fields.Integer(
        string="Permits needing a check", compute="_compute_estimate"
    )
    no_expiry_count = fields.Integer(
        string="Of which without expiry date", compute="_compute_estimate"
    )
    run_count = fields.Integer(string="Permits to check", compute="_compute_estimate")
    estimated_seconds = fields.Integer(compute="_compute_estimate")
    estimate = fields.Char(string="Estimated Duration", compute="_compute_estimate")

    # ------------------------------------------------------------
    # COMPUTE METHODS
    # ------------------------------------------------------------

    @api.depends("config_id", "mode", "limit", "recheck_all")
    def _compute_estimate(self):
        Permit = self.env["sicantik.permit"]
        now = fields.Datetime.now()
        for wizard in self:
            config = wizard.config_id
            if not config:
                wizard.update(
                    {
                        "due_count": 0,
                        "no_expiry_count": 0,
                        "run_count": 0,
                        "estimated_seconds": 0,
                        "estimate": False,
                    }
                )
                continue
            base = [("config_id", "=", config.id), ("next_expiry_check", "!=", False)]
            if not wizard.recheck_all:
                base.append(("next_expiry_check", "<=", now))
            due = Permit.search_count(base)
            no_expiry = Permit.search_count(
                base + [("expiry_date", "=", False), ("expiry_unlimited", "=", False)]
            )
            if wizard.mode == "test":
                count = min(due, 10)
            elif wizard.mode == "limit":
                count = min(due, max(0, wizard.limit))
            else:
                count = due
            seconds = wizard._estimate_seconds(config, count)
            wizard.update(
                {
                    "due_count": due,
                    "no_expiry_count": no_expiry,
                    "run_count": count,
                    "estimated_seconds": seconds,
                    "estimate": wizard._format_duration(seconds, config),
                }
            )

    # ------------------------------------------------------------
    # ACTIONS
    # ------------------------------------------------------------

    def action_start(self):
        """Queue the run; the expiry sync job does it in the background."""
        self.ensure_one()
        config = self.config_id
        ensure_manager(self.env, config)
        Log = self.env["sicantik.sync.log"]
        notice = Log._running_notification(config, "expiry")
        if notice:
            notice["params"]["next"] = {"type": "ir.actions.act_window_close"}
            return notice
        if self.mode == "limit" and self.limit <= 0:
            raise UserError(_("Enter how many permits to check at most."))
        if self.list_has_expiry:
            raise UserError(
                _(
                    "The permit list of %(name)s carries the expiry dates: the "
                    "permit sync keeps them current, no separate check is needed.",
                    name=config.display_name,
                )
            )
        if self.recheck_all:
            Permit = self.env["sicantik.permit"].sudo()
            Permit.flush_model()
            self.env.cr.execute(
                SQL(
                    "UPDATE sicantik_permit SET next_expiry_check = %s "
                    "WHERE config_id = %s AND next_expiry_check > %s",
                    fields.Datetime.now(),
                    config.id,
                    fields.Datetime.now(),
                )
            )
            Permit.invalidate_model(["next_expiry_check"])
        limit = {"test": 10, "limit": self.limit}.get(self.mode, 0)
        config.sudo().with_context(tracking_disable=True).write(
            {
                "expiry_run_requested": True,
                "expiry_run_limit": limit,
                "expiry_run_trigger": "wizard",
                "expiry_run_user_id": self.env.uid,
            }
        )
        self.env.ref(self.env["sicantik.expiry.sync"]._job_cron).sudo()._trigger()
        message = _(
            "The expiry sync of %(count)s permit(s) runs in the background "
            "(about %(estimate)s). The connector's form shows its progress; "
            "every run is in %%s.",
            count=self.run_count,
            estimate=self.estimate or "-",
        )
        return Log._notification_action(
            message,
            "info",
            _("Expiry sync started"),
            next={"type": "ir.actions.act_window_close"},
        )

    # ------------------------------------------------------------
    # BUSINESS METHODS
    # ------------------------------------------------------------

    @api.model
    def _estimate_seconds(self, config, count):
        """Duration of ``count`` calls at the configured pace.

        Rate-limited: the count over the rate the client really keeps. Not
        rate-limited: the latency of the last expiry run (or half a second)
        divided by the parallel requests.
        """
        if not count:
            return 0
        if config.rate_limit_enabled and config.rate_limit:
            rate = config.rate_limit * (1.0 - RATE_SAFETY_MARGIN)
            return math.ceil(count / rate)
        latency = (config.last_expiry_log_id.latency_p50_ms or 0) / 1000.0
        latency = latency or DEFAULT_LATENCY
        return math.ceil(count * latency / max(1, config.max_workers))

    @api.model
    def _format_duration(self, seconds, config):
        if seconds < 60:
            text = _(
                "%(seconds)s seconds", seconds=formatLang(self.env, seconds, digits=0)
            )
        elif seconds < 3600:
            text = _("%(minutes)s minutes", minutes=math.ceil(seconds / 60))
        else:
            text = _(
                "%(hours)s h %(minutes)s min",
                hours=seconds // 3600,
                minutes=math.ceil((seconds % 3600) / 60),
            )
        if config.rate_limit_enabled and config.rate_limit:
            rate = config.rate_limit
            return _(
                "%(duration)s at %(rate)s requests per second",
                duration=text,
                # In the user's locale: "2,5" in Indonesian.
                rate=formatLang(self.env, rate, digits=0 if rate == int(rate) else 1),
            )
        return text
