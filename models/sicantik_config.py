from urllib.parse import urlsplit

import psycopg2

from odoo import _, api, fields, models
from odoo.exceptions import ValidationError

from odoo.addons.base.models.res_partner import _lang_get, _tz_get

from ..tools import const, expiry
from ..tools.sicantik_api import SicantikApi
from .access import check_outbound_url, ensure_manager, outbound_policy
from .bulk_sql import ConcurrentUpdate
from .sicantik_address_gate import DEFAULT_API_URL
from .sicantik_permit_type import PERMIT_FILTERS

DEFAULT_TZ = "Asia/Jakarta"
DEFAULT_LANG = "id_ID"

PERMIT_CRON = "sicantik_connector.ir_cron_sync_permits"


class SicantikConfig(models.Model):
    """One SICANTIK server the office syncs from, and how to talk to it.

    The settings, the buttons and the statistics. The record also holds the
    state of its long jobs (the permit-list pass, the expiry run), which the
    jobs (``sicantik.permit.sync``, ``sicantik.expiry.sync``) read and write
    when a run or a pass starts or ends, so every cron callback resumes from
    the database; what moves page by page is in ``sicantik.permit.pass``.
    """

    _name = "sicantik.config"
    _description = "SICANTIK Connector Configuration"
    _inherit = ["mail.thread", "sicantik.reminder.settings", "sicantik.address.gate"]
    _order = "sequence, id"
    _check_company_auto = True

    # --- identity
    name = fields.Char(required=True, tracking=True)
    sequence = fields.Integer(default=10)
    active = fields.Boolean(default=True, tracking=True)
    company_id = fields.Many2one(
        "res.company",
        default=lambda self: self.env.company,
        index=True,
        help="Leave empty to share this server between all companies.",
    )
    tz = fields.Selection(
        _tz_get,
        string="Office Time Zone",
        default=DEFAULT_TZ,
        required=True,
        help="The daily jobs (status update 00:00, expiry sync 02:00, expiring "
        "permits 09:00) run at these hours of this time zone, and a permit's "
        "days to expiry are counted in it.",
    )

    # --- connection
    api_url = fields.Char(
        string="API URL",
        required=True,
        default=DEFAULT_API_URL,
        tracking=True,
        help="Base URL of the SICANTIK backoffice API, without a trailing method "
        "name, e.g. https://perizinan.karokab.go.id/backoffice/api",
    )
    timeout = fields.Integer(
        string="Timeout (s)",
        default=const.DEFAULT_TIMEOUT[1],
        help="How long to wait for one answer from the server.",
    )
    insecure_url = fields.Boolean(compute="_compute_insecure_url")
    lang = fields.Selection(
        _lang_get,
        string="Language of Job Texts",
        default=lambda self: self._default_lang(),
        required=True,
        help="The language of what the jobs write (run summaries, chatter "
        "notes, reasons), whoever runs them: the schedule (OdooBot) or a "
        "button.",
    )

    # --- pacing
    sync_interval = fields.Integer(
        string="Sync Interval (minutes)",
        default=15,
        help="How often the scheduled permit sync runs.",
    )
    page_size = fields.Integer(
        default=const.DEFAULT_PAGE_SIZE,
        help="Permits asked for in one request to the permit list.",
    )
    rate_limit_enabled = fields.Boolean(string="Rate Limiting", default=True)
    rate_limit = fields.Float(
        string="Requests per Second",
        default=const.DEFAULT_RATE_LIMIT,
        help="The most requests per second this connector sends to the server.",
    )
    max_workers = fields.Integer(
        string="Parallel Requests",
        default=const.DEFAULT_MAX_WORKERS,
        help="The most requests in flight at the same time during the expiry "
        "date sync. The rate limit above still applies.",
    )

    # --- the "future API": the permit list carries expiry dates
    list_has_expiry = fields.Boolean(
        string="List Carries Expiry Dates",
        readonly=True,
        help="Detected automatically: the permit list now includes "
        "d_berlaku_izin, so the expiry sync no longer asks SICANTIK permit "
        "by permit.",
    )
    list_has_expiry_since = fields.Datetime(string="Detected On", readonly=True)

    # --- permit sync cursor (a pass over the whole permit list)
    sync_pass_state = fields.Selection(
        [("idle", "Idle"), ("in_progress", "In progress")],
        string="Permit Sync Pass",
        default="idle",
        required=True,
        readonly=True,
    )
    # The moving part of the cursor, written after every page, lives in its
    # own row (``sicantik.permit.pass``): buttons that write this row never
    # race the job's page commits. Shown here under the names it always had.
    sync_pass_ids = fields.One2many(
        "sicantik.permit.pass", "config_id", string="Permit Sync Pass Cursor"
    )
    sync_offset = fields.Integer(
        string="Next Row",
        compute="_compute_sync_cursor",
        compute_sudo=True,
        help="Row of the permit list the current pass continues from.",
    )
    sync_page_digest = fields.Char(
        compute="_compute_sync_cursor",
        compute_sudo=True,
        help="Digest of the last page read: a server that serves it again for "
        "the next offset is noticed by the next callback too.",
    )
    sync_pass_started_at = fields.Datetime(readonly=True)
    sync_pass_rows = fields.Integer(
        compute="_compute_sync_cursor",
        compute_sudo=True,
        help="Rows of the permit list read so far in the current pass.",
    )
    sync_last_pass_rows = fields.Integer(
        readonly=True, help="Rows of the permit list in the last complete pass."
    )
    sync_requested = fields.Boolean(readonly=True)
    sync_requested_by = fields.Many2one("res.users", readonly=True)
    sync_log_id = fields.Many2one(
        "sicantik.sync.log", string="Running Permit Sync", readonly=True
    )
    last_sync_log_id = fields.Many2one(
        "sicantik.sync.log", string="Last Permit Sync", readonly=True
    )

    # --- expiry sync run
    expiry_run_requested = fields.Boolean(readonly=True)
    expiry_run_limit = fields.Integer(readonly=True)
    expiry_run_trigger = fields.Selection(
        [("button", "Button"), ("wizard", "Wizard")], readonly=True
    )
    expiry_run_user_id = fields.Many2one("res.users", readonly=True)
    expiry_failures = fields.Integer(
        readonly=True,
        help="Expiry runs stopped in a row by the server being unreachable.",
    )
    expiry_log_id = fields.Many2one(
        "sicantik.sync.log", string="Running Expiry Sync", readonly=True
    )
    last_expiry_log_id = fields.Many2one(
        "sicantik.sync.log", string="Last Expiry Sync", readonly=True
    )

    # --- statistics
    last_sync_date = fields.Datetime(
        string="Last Sync", related="last_sync_log_id.end_date"
    )
    last_sync_summary = fields.Char(
        string="Last Sync Summary", related="last_sync_log_id.summary"
    )
    sync_log_summary = fields.Char(
        string="Running Permit Sync Summary", related="sync_log_id.summary"
    )
    expiry_log_summary = fields.Char(
        string="Running Expiry Sync Summary", related="expiry_log_id.summary"
    )
    last_expiry_sync_summary = fields.Char(
        string="Last Expiry Sync Summary", related="last_expiry_log_id.summary"
    )
    last_sync_duration = fields.Float(
        string="Last Sync Duration (s)", related="last_sync_log_id.duration"
    )
    last_sync_state = fields.Selection(
        string="Last Sync Result", related="last_sync_log_id.state"
    )
    last_sync_created = fields.Integer(
        string="Last Sync Created", related="last_sync_log_id.created_count"
    )
    last_sync_updated = fields.Integer(
        string="Last Sync Updated", related="last_sync_log_id.updated_count"
    )
    last_sync_fetched = fields.Integer(
        string="Last Sync Fetched", related="last_sync_log_id.fetched_count"
    )
    last_expiry_sync_date = fields.Datetime(
        string="Last Expiry Sync On", related="last_expiry_log_id.end_date"
    )
    last_expiry_sync_duration = fields.Float(
        string="Last Expiry Sync Duration (s)", related="last_expiry_log_id.duration"
    )
    last_expiry_sync_state = fields.Selection(
        string="Last Expiry Sync Result", related="last_expiry_log_id.state"
    )
    last_expiry_sync_checked = fields.Integer(
        string="Last Expiry Sync Checked", related="last_expiry_log_id.progress_done"
    )
    last_expiry_sync_updated = fields.Integer(
        string="Last Expiry Sync Updated", related="last_expiry_log_id.updated_count"
    )
    permit_count = fields.Integer(compute="_compute_statistics")
    permit_type_count = fields.Integer(compute="_compute_statistics")
    sync_log_count = fields.Integer(compute="_compute_statistics")
    no_expiry_count = fields.Integer(
        string="Without Expiry Date", compute="_compute_statistics"
    )
    critical_count = fields.Integer(
        string="Expiring ≤ 30 Days", compute="_compute_statistics"
    )
    expiring_count = fields.Integer(
        string="Expiring ≤ 60 Days", compute="_compute_statistics"
    )
    expired_count = fields.Integer(string="Expired", compute="_compute_statistics")
    expiry_due_count = fields.Integer(
        string="Awaiting Expiry Check", compute="_compute_statistics"
    )

    _sql_constraints = [
        (
            "timeout_positive",
            "CHECK(timeout > 0)",
            "The timeout must be at least one second.",
        ),
        (
            "sync_interval_positive",
            "CHECK(sync_interval > 0)",
            "The sync interval must be at least one minute.",
        ),
        (
            "page_size_range",
            "CHECK(page_size BETWEEN 1 AND 500)",
            "The page size must be between 1 and 500.",
        ),
        (
            "rate_limit_positive",
            "CHECK(rate_limit > 0)",
            "The rate limit must be more than zero requests per second.",
        ),
        (
            "max_workers_range",
            "CHECK(max_workers BETWEEN 1 AND 32)",
            "Parallel requests must be between 1 and 32.",
        ),
    ]

    # ------------------------------------------------------------
    # COMPUTE METHODS
    # ------------------------------------------------------------

    @api.model
    def _default_lang(self):
        """Indonesian when it is installed, else the user's language."""
        langs = dict(_lang_get(self))
        if DEFAULT_LANG in langs:
            return DEFAULT_LANG
        return self.env.lang if self.env.lang in langs else "en_US"

    @api.depends(
        "sync_pass_ids.next_offset",
        "sync_pass_ids.page_digest",
        "sync_pass_ids.pass_rows",
    )
    def _compute_sync_cursor(self):
        for config in self:
            pass_row = config.sync_pass_ids[:1]
            config.sync_offset = pass_row.next_offset
            config.sync_page_digest = pass_row.page_digest
            config.sync_pass_rows = pass_row.pass_rows

    @api.depends("api_url")
    def _compute_insecure_url(self):
        for config in self:
            config.insecure_url = (config.api_url or "").lower().startswith("http:")

    def _compute_statistics(self):
        """Counters of the stat buttons: one grouped query per model."""
        permits = {}
        types = {}
        logs = {}
        due = {}
        real = self.filtered("id")
        if real:
            domain = [("config_id", "in", real.ids)]
            for config, state, status, count in self.env["sicantik.permit"]._read_group(
                domain, ["config_id", "expiry_state", "status"], ["__count"]
            ):
                # Revoked permits count as the list filters count them: in
                # the total and "without expiry date" only.
                key = (
                    "revoked"
                    if status == "revoked" and state != expiry.NO_DATE
                    else state
                )
                states = permits.setdefault(config.id, {})
                states[key] = states.get(key, 0) + count
            types = {
                config.id: count
                for config, count in self.env["sicantik.permit.type"]._read_group(
                    domain, ["config_id"], ["__count"]
                )
            }
            logs = {
                config.id: count
                for config, count in self.env["sicantik.sync.log"]._read_group(
                    domain, ["config_id"], ["__count"]
                )
            }
            due = {
                config.id: count
                for config, count in self.env["sicantik.permit"]._read_group(
                    domain + [("next_expiry_check", "<=", fields.Datetime.now())],
                    ["config_id"],
                    ["__count"],
                )
            }
        for config in self:
            states = permits.get(config.id, {})
            config.permit_count = sum(states.values())
            config.no_expiry_count = states.get(expiry.NO_DATE, 0)
            config.critical_count = states.get(expiry.CRITICAL, 0)
            config.expiring_count = config.critical_count + states.get(
                expiry.WARNING, 0
            )
            config.expired_count = states.get(expiry.EXPIRED, 0)
            config.permit_type_count = types.get(config.id, 0)
            config.sync_log_count = logs.get(config.id, 0)
            config.expiry_due_count = due.get(config.id, 0)

    # ------------------------------------------------------------
    # CONSTRAINT METHODS
    # ------------------------------------------------------------

    @api.constrains("api_url")
    def _check_api_url(self):
        for config in self:
            problem = config._url_problem()
            if problem:
                raise ValidationError(problem)
            check_outbound_url(self.env, config.api_url)

    # ------------------------------------------------------------
    # CRUD METHODS
    # ------------------------------------------------------------

    @api.model_create_multi
    def create(self, vals_list):
        for vals in vals_list:
            if isinstance(vals.get("api_url"), str):
                vals["api_url"] = vals["api_url"].strip()
        configs = super().create(vals_list)
        self.env["sicantik.job.mixin"]._job_align_schedule()
        return configs

    def write(self, vals):
        if isinstance(vals.get("api_url"), str):
            # Blanks around a pasted address are never meant.
            vals = dict(vals, api_url=vals["api_url"].strip())
        result = super().write(vals)
        if {"tz", "sync_interval", "active"} & set(vals):
            self.env["sicantik.job.mixin"]._job_align_schedule()
        return result

    def unlink(self):
        result = super().unlink()
        self.env["sicantik.job.mixin"]._job_align_schedule()
        return result

    # ------------------------------------------------------------
    # ACTIONS
    # ------------------------------------------------------------

    def action_sync_now(self):
        """Queue a permit sync (types, then every page) in the background."""
        self.ensure_one()
        ensure_manager(self.env, self)
        Log = self.env["sicantik.sync.log"]
        notice = Log._running_notification(self, "permits")
        if notice:
            return notice
        if self.address_state == "failed":
            return Log._notification_action(
                _(
                    "The last Test Connection of %(url)s failed: %(reason)s\n"
                    "Correct the API URL and press Test Connection first. "
                    "Earlier runs: %%s.",
                    url=self.api_url,
                    reason=self.sudo().test_failed_reason or "-",
                ),
                "warning",
                _("Address not working"),
            )
        config = self.sudo().with_context(tracking_disable=True)
        config.write({"sync_requested": True, "sync_requested_by": self.env.uid})
        self.env.ref(PERMIT_CRON).sudo()._trigger()
        return Log._notification_action(
            _(
                "The permit sync runs in the background: permit types first, "
                "then every page of issued permits. This form shows its "
                "progress; every run is in %s."
            ),
            "info",
            _("Permit sync started"),
        )

    def action_test_expiry_sync(self):
        """The two-step expiry sync on 10 permits, inline (about 10 requests)."""
        self.ensure_one()
        ensure_manager(self.env, self)
        Log = self.env["sicantik.sync.log"]
        notice = Log._running_notification(self, "expiry")
        if notice:
            return notice
        lang = self._job_lang()
        ExpirySync = self.env["sicantik.expiry.sync"].with_context(lang=lang)
        config = self.sudo().with_context(lang=lang)
        if not ExpirySync._job_try_lock(config):
            # The scheduled run holds it but had not committed its log yet.
            return Log._notification_action(
                _(
                    "The expiry sync of %(name)s is running in the background. "
                    "Nothing new was started: its progress is in %%s.",
                    name=self.display_name,
                ),
                "warning",
                _("Already running"),
            )
        released = False
        try:
            log, stopped = ExpirySync._run_test(config, 10)
        except (ConcurrentUpdate, psycopg2.Error) as err:
            # The transaction is lost. The run lock belongs to the connection
            # and would outlive the request: release it in a sane transaction,
            # then let Odoo's request retry see the driver's own error.
            self.env.cr.rollback()
            ExpirySync._job_release_lock(config)
            released = True
            if isinstance(err, ConcurrentUpdate) and err.__cause__:
                raise err.__cause__ from None
            raise
        finally:
            if not released:
                ExpirySync._job_release_lock(config)
        log = log.with_env(self.env)
        if stopped:
            return log._notification_action(
                _(
                    "Test Expiry Sync stopped: %(reason)s (%%s)",
                    reason=log.failure_reason,
                ),
                "danger",
                _("Test Expiry Sync failed"),
            )
        return log._notification_action(
            log.message or log.summary or "",
            "success" if log.state == "done" else "warning",
            _("Test Expiry Sync"),
        )

    def action_open_expiry_sync_wizard(self):
        self.ensure_one()
        ensure_manager(self.env, self)
        return {
            "type": "ir.actions.act_window",
            "name": _("Sync All Expiry Dates"),
            "res_model": "sicantik.config.expiry.sync",
            "view_mode": "form",
            "target": "new",
            "context": {"default_config_id": self.id},
        }

    def action_view_permits(self):
        """The connector's permits; a stat button names a filter of the permit
        search view in the ``sicantik_permit_filter`` context key."""
        action = self._action_for("sicantik_connector.sicantik_permit_action")
        permit_filter = self.env.context.get("sicantik_permit_filter")
        if permit_filter in PERMIT_FILTERS:
            action["context"] = {f"search_default_{permit_filter}": 1}
        return action

    def action_view_permit_types(self):
        return self._action_for("sicantik_connector.sicantik_permit_type_action")

    def action_view_sync_logs(self):
        return self._action_for("sicantik_connector.sicantik_sync_log_action")

    # ------------------------------------------------------------
    # BUSINESS METHODS
    # ------------------------------------------------------------

    def _action_for(self, xmlid):
        """A window action of ``xmlid`` limited to this connector's records
        (of a connector the user may see: the company rules)."""
        self.ensure_one()
        self.check_access("read")
        action = self.env["ir.actions.act_window"]._for_xml_id(xmlid)
        action["domain"] = [("config_id", "=", self.id)]
        return action

    def _today(self):
        """Today's date in the office's time zone."""
        self.ensure_one()
        return fields.Date.context_today(self.with_context(tz=self.tz or DEFAULT_TZ))

    def _job_lang(self):
        """The language the jobs of this connector write in."""
        self.ensure_one()
        return self.lang or DEFAULT_LANG

    def _with_job_lang(self):
        """This connector in the language its jobs write in: every ``_()``
        below it translates to the connector's language, whoever runs it."""
        self.ensure_one()
        return self.with_context(lang=self._job_lang())

    def _notification(self, message, kind="info", title=None, sticky=False):
        params = {"type": kind, "message": message, "sticky": sticky}
        if title:
            params["title"] = title
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": params,
        }

    def _shared_limiter(self):
        """The rate limiter of this connector's server (host and port).

        Connectors pointing at one server share one quota, paced at the
        lowest rate any of them sets, kept in one database row for every
        process of the deployment (``sicantik.rate.bucket``).
        """
        if not self.rate_limit_enabled or not self.rate_limit:
            return None
        server = self._server()
        rates = [
            config.rate_limit
            for config in self.sudo().search([("rate_limit_enabled", "=", True)])
            if config._server() == server
        ]
        rate = float(min([self.rate_limit, *rates]))
        return self.env["sicantik.rate.bucket"]._limiter(f"sicantik:{server}", rate)

    def _server(self):
        """Host and port of the API URL: what the server's quota counts."""
        return (urlsplit((self.api_url or "").strip()).netloc or "").lower()

    def _make_api(self, **kwargs):
        """A client for this server, with its timeout, pace and parallelism."""
        self.ensure_one()
        read = float(self.timeout or const.DEFAULT_TIMEOUT[1])
        connect = min(float(const.DEFAULT_TIMEOUT[0]), read)
        return SicantikApi(
            self.api_url,
            timeout=(connect, read),
            rate_limit=None,
            limiter=self._shared_limiter(),
            max_workers=self.max_workers or const.DEFAULT_MAX_WORKERS,
            address_policy=outbound_policy(self.env),
            **kwargs,
        )
