import logging
import threading
import time
import traceback
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import pytz

from odoo import _, api, fields, models, tools
from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.tools import SQL

from odoo.addons.base.models.res_partner import _tz_get

from ..tools import const, reminders
from ..tools.rate_limiter import RateLimiter, shared_limiter
from ..tools.sicantik_api import SicantikApi
from ..tools.sicantik_exceptions import SicantikError
from .sicantik_permit_type import PERMIT_FILTERS

_logger = logging.getLogger(__name__)

# The regency whose server the addon was first written for.
DEFAULT_API_URL = "https://perizinan.karokab.go.id/backoffice/api"
DEFAULT_TZ = "Asia/Jakarta"
MANAGER_GROUP = "sicantik_connector.sicantik_connector_group_manager"

# Scheduled jobs run at these local hours of the office (``tz``).
PERMIT_CRON = "sicantik_connector.ir_cron_sync_permits"
EXPIRY_CRON = "sicantik_connector.ir_cron_sync_expiry_dates"
DAILY_CRONS = {
    "sicantik_connector.ir_cron_update_status": 0,
    EXPIRY_CRON: 2,
    "sicantik_connector.ir_cron_check_expiring": 9,
}

# Keys of the advisory locks that keep two callbacks of one job off the same
# connector (the second key is the connector id), and the job of each.
RUN_LOCK_KEYS = {"permits": 0x51C40001, "expiry": 0x51C40002}
RUN_CRONS = {"permits": PERMIT_CRON, "expiry": EXPIRY_CRON}


def next_local_time(now_utc, tz_name, hour):
    """The next ``hour``:00 in ``tz_name`` after ``now_utc``, as naive UTC."""
    zone = pytz.timezone(tz_name or DEFAULT_TZ)
    local_now = pytz.utc.localize(now_utc).astimezone(zone)
    candidate = zone.localize(
        datetime.combine(local_now.date(), datetime.min.time()).replace(hour=hour)
    )
    if candidate <= local_now:
        candidate = zone.localize(
            datetime.combine(
                local_now.date() + timedelta(days=1), datetime.min.time()
            ).replace(hour=hour)
        )
    return candidate.astimezone(pytz.utc).replace(tzinfo=None)


def _param_int(env, key, default):
    value = env["ir.config_parameter"].sudo().get_param(key)
    try:
        return int(value) if value not in (None, False, "") else default
    except ValueError:
        _logger.warning("SICANTIK: parameter %s=%r is not a number", key, value)
        return default


class SicantikConfig(models.Model):
    """One SICANTIK server the office syncs from, and how to talk to it.

    Besides the settings, the record holds the state of its long jobs (the
    permit-list cursor and the expiry run), so that every cron callback
    resumes from the database and nothing is kept in memory between them.
    """

    _name = "sicantik.config"
    _description = "SICANTIK Connector Configuration"
    _inherit = ["mail.thread"]
    _order = "sequence, id"

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
    sync_offset = fields.Integer(
        string="Next Row",
        readonly=True,
        help="Row of the permit list the current pass continues from.",
    )
    sync_page_digest = fields.Char(
        readonly=True,
        help="Digest of the last page read: a server that serves it again for "
        "the next offset is noticed by the next callback too.",
    )
    sync_pass_started_at = fields.Datetime(readonly=True)
    sync_pass_rows = fields.Integer(readonly=True)
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

    # --- WhatsApp reminders
    whatsapp_provider_id = fields.Many2one(
        "sicantik.whatsapp.provider",
        string="WhatsApp Provider",
        default=lambda self: self.env.ref(
            "sicantik_connector.sicantik_whatsapp_provider_log",
            raise_if_not_found=False,
        ),
        ondelete="restrict",
        help="The gateway reminders of this connector's permits go through.",
    )
    reminder_stages = fields.Char(
        default="90, 60, 30, 7, 0",
        required=True,
        help="Days before the expiry date at which the holder is reminded "
        "(0: the day itself). After downtime only the most urgent missed "
        "stage is sent.",
    )
    reminder_template = fields.Text(
        default=reminders.DEFAULT_TEMPLATE,
        required=True,
        help="Placeholders: {holder}, {permit_type}, {permit_number}, "
        "{expiry_date} (dd-mm-yyyy), {days}.",
    )
    reminder_template_today = fields.Text(
        string="Reminder Template (Expiry Day)",
        default=reminders.DEFAULT_TEMPLATE_TODAY,
        required=True,
    )
    quiet_hours_start = fields.Float(
        default=reminders.DEFAULT_QUIET_START,
        help="No reminder is sent from this hour (office time)...",
    )
    quiet_hours_end = fields.Float(
        default=reminders.DEFAULT_QUIET_END,
        help="...until this hour; queued reminders wait. Equal hours: none.",
    )
    notification_count = fields.Integer(
        string="Reminders", compute="_compute_notification_count"
    )

    _sql_constraints = [
        (
            "quiet_hours_range",
            "CHECK(quiet_hours_start >= 0 AND quiet_hours_start < 24 "
            "AND quiet_hours_end >= 0 AND quiet_hours_end < 24)",
            "Quiet hours are hours of the day, from 0 to 23:59.",
        ),
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
                key = "revoked" if status == "revoked" and state != "none" else state
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
            config.no_expiry_count = states.get("none", 0)
            config.critical_count = states.get("critical", 0)
            config.expiring_count = states.get("critical", 0) + states.get("warning", 0)
            config.expired_count = states.get("expired", 0)
            config.permit_type_count = types.get(config.id, 0)
            config.sync_log_count = logs.get(config.id, 0)
            config.expiry_due_count = due.get(config.id, 0)

    def _compute_notification_count(self):
        counts = dict(
            self.env["sicantik.notification"]._read_group(
                [("config_id", "in", self.ids)], ["config_id"], ["__count"]
            )
        )
        for config in self:
            config.notification_count = counts.get(config, 0)

    # ------------------------------------------------------------
    # CONSTRAINT METHODS
    # ------------------------------------------------------------

    @api.constrains("reminder_stages", "reminder_template", "reminder_template_today")
    def _check_reminder_settings(self):
        for config in self:
            try:
                reminders.parse_stages(config.reminder_stages)
            except reminders.ReminderConfigError as err:
                if err.args[0] is None:
                    raise ValidationError(
                        _("Give at least one reminder stage, e.g. 30, 7, 0.")
                    ) from None
                raise ValidationError(
                    _(
                        "Reminder stages are whole days before expiry, at most "
                        "366; %(part)s is not.",
                        part=err.args[0],
                    )
                ) from None
            for template in (config.reminder_template, config.reminder_template_today):
                unknown = reminders.unknown_placeholders(template)
                if unknown:
                    raise ValidationError(
                        _(
                            "Unknown placeholder(s) %(unknown)s in a reminder "
                            "template; use {holder}, {permit_type}, "
                            "{permit_number}, {expiry_date} or {days}.",
                            unknown=", ".join("{" + name + "}" for name in unknown),
                        )
                    )

    @api.constrains("api_url")
    def _check_api_url(self):
        for config in self:
            parts = urlsplit((config.api_url or "").strip())
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValidationError(
                    _(
                        "The API URL of %(name)s must start with https:// (or "
                        "http://) and name a server, e.g. %(example)s.",
                        name=config.name,
                        example=DEFAULT_API_URL,
                    )
                )
            if parts.username or parts.password:
                raise ValidationError(
                    _(
                        "The API URL of %(name)s must not contain a user name or "
                        "password.",
                        name=config.name,
                    )
                )
            try:
                parts.port  # noqa: B018 (raises ValueError on a bad port)
            except ValueError:
                raise ValidationError(
                    _("The API URL of %(name)s has an invalid port.", name=config.name)
                ) from None
            if parts.query or parts.fragment:
                # The client refuses them too; the URL is also written to logs.
                raise ValidationError(
                    _(
                        "The API URL of %(name)s must not contain a query string "
                        "(?...) or a fragment (#...).",
                        name=config.name,
                    )
                )

    # ------------------------------------------------------------
    # CRUD METHODS
    # ------------------------------------------------------------

    @api.model_create_multi
    def create(self, vals_list):
        configs = super().create(vals_list)
        self._align_cron_schedule()
        return configs

    def write(self, vals):
        result = super().write(vals)
        if {"tz", "sync_interval", "active"} & set(vals):
            self._align_cron_schedule()
        return result

    def unlink(self):
        result = super().unlink()
        self._align_cron_schedule()
        return result

    # ------------------------------------------------------------
    # ACTIONS
    # ------------------------------------------------------------

    def action_test_connection(self):
        """Ask ``jumlahPerizinan`` and report the number of permit types."""
        self.ensure_one()
        self._check_manager()
        config = self.sudo()
        started = fields.Datetime.now()
        stats = {}
        try:
            with config._make_api(max_retries=1) as api:
                try:
                    count = api.count_permit_types()
                finally:
                    stats = api.stats.as_dict()
        except SicantikError as err:
            config._log_failure_separately("test_connection", "button", err, stats)
            raise UserError(config._connection_error_message(err)) from err
        log = self.env["sicantik.sync.log"]._start(
            config, "test_connection", "button", start_date=started
        )
        log._add_client_stats(stats)
        log.write({"fetched_count": count, "progress_done": 1})
        message = _(
            "Connected to %(url)s: SICANTIK knows %(count)s permit types.",
            url=config.api_url,
            count=count,
        )
        log._finish("done", message)
        return self._notification(message, "success", _("Connection successful"))

    def action_sync_now(self):
        """Queue a permit sync (types, then every page) in the background."""
        self.ensure_one()
        self._check_manager()
        self._ensure_not_running("permits")
        config = self.sudo().with_context(tracking_disable=True)
        config.write({"sync_requested": True, "sync_requested_by": self.env.uid})
        self.env.ref(PERMIT_CRON).sudo()._trigger()
        return self._notification(
            _(
                "The permit sync runs in the background: permit types first, "
                "then every page of issued permits. Follow it in SICANTIK > "
                "Sync Logs."
            ),
            "info",
            _("Permit sync started"),
        )

    def action_test_expiry_sync(self):
        """The two-step expiry sync on 10 permits, inline (about 10 requests)."""
        self.ensure_one()
        self._check_manager()
        self._ensure_not_running("expiry")
        config = self.sudo()
        if not config._try_run_lock("expiry"):
            # The scheduled run holds it but had not committed its log yet.
            raise UserError(
                _(
                    "The expiry sync of %(name)s is running in the background. "
                    "Wait for it to end: its progress is in SICANTIK > Sync Logs.",
                    name=self.display_name,
                )
            )
        try:
            return config._run_test_expiry_sync(10)
        finally:
            config._release_run_lock("expiry")

    def action_open_expiry_sync_wizard(self):
        self.ensure_one()
        self._check_manager()
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
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "sicantik_connector.sicantik_permit_action"
        )
        action["domain"] = [("config_id", "=", self.id)]
        permit_filter = self.env.context.get("sicantik_permit_filter")
        if permit_filter in PERMIT_FILTERS:
            action["context"] = {f"search_default_{permit_filter}": 1}
        return action

    def action_view_permit_types(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "sicantik_connector.sicantik_permit_type_action"
        )
        action["domain"] = [("config_id", "=", self.id)]
        return action

    def action_view_sync_logs(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "sicantik_connector.sicantik_sync_log_action"
        )
        action["domain"] = [("config_id", "=", self.id)]
        return action

    # ------------------------------------------------------------
    # BUSINESS METHODS: helpers
    # ------------------------------------------------------------

    def _check_manager(self):
        """Refuse before any remote call when the user may not run syncs."""
        if not self.env.user.has_group(MANAGER_GROUP):
            raise AccessError(
                _(
                    "Only a SICANTIK manager can test the connection or run a "
                    "sync. Ask your administrator for the SICANTIK / Manager "
                    "access right."
                )
            )

    def _reminder_stages(self):
        self.ensure_one()
        return reminders.parse_stages(self.reminder_stages)

    def _reminder_provider(self):
        """The provider reminders go through (the log-only one by default)."""
        self.ensure_one()
        return (
            self.whatsapp_provider_id
            or self.env.ref(
                "sicantik_connector.sicantik_whatsapp_provider_log",
                raise_if_not_found=False,
            )
            or self.env["sicantik.whatsapp.provider"]
        )

    def _reminder_text(self, stage, values):
        self.ensure_one()
        template = (
            self.reminder_template_today if stage == 0 else self.reminder_template
        )
        return reminders.render(template, values)

    def action_view_notifications(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "sicantik_connector.sicantik_notification_action"
        )
        action["domain"] = [("config_id", "=", self.id)]
        return action

    def _today(self):
        """Today's date in the office's time zone."""
        self.ensure_one()
        return fields.Date.context_today(self.with_context(tz=self.tz or DEFAULT_TZ))

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
        lowest rate any of them sets.
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
        return shared_limiter(
            ("sicantik", server, rate), lambda: RateLimiter.for_server_limit(rate)
        )

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
            **kwargs,
        )

    def _connection_error_message(self, err):
        """A translated message per failure family of the connection test."""
        host = urlsplit(self.api_url or "").hostname or self.api_url
        detail = err.message
        family = err.failure_type
        if family == const.FT_TIMEOUT:
            return _(
                "The SICANTIK server %(host)s did not answer within %(seconds)s "
                "seconds. Check the address and the network, or raise the "
                "timeout.\n\nDetail: %(detail)s",
                host=host,
                seconds=self.timeout,
                detail=detail,
            )
        if family == const.FT_CONNECTION:
            return _(
                "Odoo could not connect to %(host)s. Check the server name and "
                "port in the API URL, and that this Odoo server can reach it "
                "(DNS, firewall, internet access).\n\nDetail: %(detail)s",
                host=host,
                detail=detail,
            )
        if family == const.FT_TLS:
            return _(
                "The secure connection to %(host)s failed: its certificate is "
                "not trusted or does not match the address. Check the URL (use "
                "the server's exact name) or ask the server's administrator to "
                "fix the certificate.\n\nDetail: %(detail)s",
                host=host,
                detail=detail,
            )
        if err.status and family in (
            const.FT_SERVER,
            const.FT_RATE_LIMITED,
            const.FT_BAD_REQUEST,
            const.FT_CONFIG,
        ):
            return _(
                "The SICANTIK server %(host)s answered with the HTTP error "
                "%(status)s. Check that the API URL ends in /backoffice/api; if "
                "it does, the server has a problem: try again later.\n\n"
                "Detail: %(detail)s",
                host=host,
                status=err.status,
                detail=detail,
            )
        if family in (const.FT_BAD_RESPONSE, const.FT_TOO_LARGE):
            return _(
                "The server %(host)s answered, but not like a SICANTIK API: the "
                "answer cannot be read. Check that the URL points at the "
                "backoffice API (it ends in /backoffice/api).\n\nDetail: "
                "%(detail)s",
                host=host,
                detail=detail,
            )
        return _(
            "The connection test failed: %(reason)s\n\nDetail: %(detail)s",
            reason=self.env["sicantik.sync.log"]._failure_reason(family),
            detail=detail,
        )

    def _log_failure_separately(self, operation, trigger, err, stats=None):
        """Record a failed run in its own transaction, so that it stays logged
        although the action raises (and rolls back) to show the error."""
        self.ensure_one()
        uid = self.env.uid
        with self.env.registry.cursor() as cr:
            env = api.Environment(cr, uid, {})
            env = env(su=True)
            config = env["sicantik.config"].browse(self.id)
            log = env["sicantik.sync.log"]._start(config, operation, trigger)
            if stats:
                log._add_client_stats(stats)
            log._set_failure(err.failure_type, str(err))
            log._finish("failed")

    def _running_logs(self, operation):
        """The ``running`` rows of ``operation`` whose process is alive."""
        operations = (
            ["permits", "permit_types"] if operation == "permits" else [operation]
        )
        logs = (
            self.env["sicantik.sync.log"]
            .sudo()
            .search(
                [
                    ("config_id", "in", self.ids),
                    ("operation", "in", operations),
                    ("state", "=", "running"),
                ]
            )
        )
        now = fields.Datetime.now()
        return logs.filtered(lambda log: log._is_alive(now))

    def _ensure_not_running(self, operation):
        running = self._running_logs(operation)
        if running:
            log = running[0]
            raise UserError(
                _(
                    "A %(job)s run of %(name)s is already running (started "
                    "%(start)s, last progress %(beat)s). Wait for it to end: "
                    "its progress is in SICANTIK > Sync Logs.",
                    job=dict(log._fields["operation"]._description_selection(self.env))[
                        log.operation
                    ],
                    name=self.display_name,
                    start=log.start_date,
                    beat=log.heartbeat,
                )
            )

    def _try_run_lock(self, operation):
        """Take the run lock of ``operation`` on this connector, or False.

        A session-level advisory lock: it outlives the commits of a batch and
        PostgreSQL drops it with the connection of a process that dies, so a
        killed worker never blocks the next run.
        """
        self.ensure_one()
        self.env.cr.execute(
            SQL(
                "SELECT pg_try_advisory_lock(%s, %s)", RUN_LOCK_KEYS[operation], self.id
            )
        )
        return self.env.cr.fetchone()[0]

    def _release_run_lock(self, operation):
        self.ensure_one()
        self.env.cr.execute(
            SQL("SELECT pg_advisory_unlock(%s, %s)", RUN_LOCK_KEYS[operation], self.id)
        )

    def _current_run_log(self, operation, log):
        """The log row of the run to continue, or an empty recordset.

        A ``running`` row of this job whose heartbeat is stale belongs to a
        killed process: it is closed as interrupted and a new row starts.
        """
        Log = self.env["sicantik.sync.log"].sudo()
        now = fields.Datetime.now()
        orphans = Log.search(
            [
                ("config_id", "=", self.id),
                ("operation", "=", operation),
                ("state", "=", "running"),
                ("id", "!=", log.id),
            ]
        )
        orphans.filtered(lambda row: not row._is_alive(now))._close_interrupted()
        if log and log.state == "running":
            if log._is_alive(now):
                return log
            log._close_interrupted()
        return Log

    @api.model
    def _time_budget(self):
        """Seconds one cron callback may work before returning.

        Every ready job of a database shares one worker time limit
        (``limit_time_real_cron``, else ``limit_time_real``) and Odoo calls a
        job up to 10 times in a row: a callback takes a twentieth of it, at
        least 3 s and at most a minute. ``sicantik_connector.cron_time_budget``
        overrides it.
        """
        budget = _param_int(self.env, "sicantik_connector.cron_time_budget", 0)
        if budget > 0:
            return float(budget)
        limit = tools.config.get("limit_time_real_cron")
        if limit is None or limit < 0:
            limit = tools.config.get("limit_time_real") or 0
        if not limit or limit <= 0:
            return 60.0
        return float(min(60.0, max(3.0, limit / 20.0)))

    def _commit_progress(self, done, remaining):
        """Report progress to the cron and commit (outside tests)."""
        self.env["ir.cron"]._notify_progress(done=done, remaining=max(0, remaining))
        self.env.flush_all()
        if not getattr(threading.current_thread(), "testing", False):
            # One page or chunk per transaction: a killed worker loses at most
            # one, and the committed progress keeps the job from being counted
            # as timed out.
            self.env.cr.commit()  # pylint: disable=invalid-commit

    def _rollback(self):
        """Drop the uncommitted work of a failed callback (outside tests,
        where the test's own transaction must survive)."""
        if not getattr(threading.current_thread(), "testing", False):
            self.env.cr.rollback()

    @api.model
    def _align_cron_schedule(self):
        """Keep the scheduled jobs in line with the connectors.

        The daily jobs run at their local hour in the office's time zone (of
        the first active connector), the permit sync at the shortest sync
        interval; every job is active while an active connector exists.
        """
        configs = self.sudo().with_context(active_test=True).search([])
        neutralized = (
            self.env["ir.config_parameter"].sudo().get_param("database.is_neutralized")
        )
        active = bool(configs) and not neutralized
        now = fields.Datetime.now()
        tz = configs[:1].tz or DEFAULT_TZ
        # As superuser: a SICANTIK manager may not read scheduled actions.
        env = self.sudo().env
        for xmlid, hour in DAILY_CRONS.items():
            cron = env.ref(xmlid, raise_if_not_found=False)
            if cron:
                values = {"nextcall": next_local_time(now, tz, hour)}
                if cron.active != active:
                    values["active"] = active
                cron.try_write(values)
        cron = env.ref(PERMIT_CRON, raise_if_not_found=False)
        if cron:
            interval = min(configs.mapped("sync_interval") or [15])
            values = {}
            if (cron.interval_number, cron.interval_type) != (interval, "minutes"):
                values.update(interval_number=interval, interval_type="minutes")
            if cron.active != active:
                values["active"] = active
            if values:
                cron.try_write(values)

    # ------------------------------------------------------------
    # BUSINESS METHODS: permit sync
    # ------------------------------------------------------------

    def _permit_sync_due(self, now):
        self.ensure_one()
        if self.sync_requested or not self.sync_pass_started_at:
            return True
        # One minute of slack: the cron fires at its interval, give or take.
        due_at = self.sync_pass_started_at + timedelta(minutes=self.sync_interval)
        return due_at <= now + timedelta(minutes=1)

    def _sync_permits_batch(self, deadline, progress):
        """One cron callback's share of the permit sync of this connector.

        Returns True when this connector has more pages to sync right away.
        """
        self.ensure_one()
        config = self.with_context(tracking_disable=True, sicantik_sync=True)
        Log = self.env["sicantik.sync.log"].sudo()
        now = fields.Datetime.now()
        in_progress = config.sync_pass_state == "in_progress"
        log = config._current_run_log("permits", config.sync_log_id)
        if not log and not in_progress and not config._permit_sync_due(now):
            return False
        trigger = "button" if config.sync_requested else "schedule"
        user = config.sync_requested_by or self.env.user
        try:
            api = config._make_api()
        except SicantikError as err:
            # Settings the client refuses (say a URL stored before the
            # constraint existed): a configuration failure, not an internal one.
            log = log or Log._start(config, "permits", trigger, user=user)
            config._stop_permit_run(log, err, None)
            return False
        with api:
            try:
                if not log and not in_progress:
                    config._start_permit_pass(api, now, trigger, user)
                    api.stats.reset()
                if not log:
                    log = Log._start(
                        config,
                        "permits",
                        trigger,
                        user=user,
                        start_offset=config.sync_offset,
                        progress_done=config.sync_offset,
                        progress_total=config.sync_last_pass_rows,
                        message=_(
                            "Continues the pass at row %(offset)s.",
                            offset=config.sync_offset,
                        )
                        if config.sync_offset
                        else False,
                    )
                    config.write({"sync_log_id": log.id, "sync_requested": False})
                    config._commit_progress(progress["done"], 1)
                finished = config._sync_permit_pages(api, log, deadline, progress)
            except SicantikError as err:
                log = log or Log
                config._stop_permit_run(log, err, api)
                return False
            finally:
                if log:
                    log._add_client_stats(api.stats.as_dict())
        if finished:
            log._finish(
                message=_(
                    "Pass complete: %(rows)s rows of the permit list read.",
                    rows=config.sync_pass_rows,
                )
            )
            config.write(
                {
                    "sync_pass_state": "idle",
                    "sync_offset": 0,
                    "sync_page_digest": False,
                    "sync_log_id": False,
                    "last_sync_log_id": log.id,
                    "sync_last_pass_rows": config.sync_pass_rows,
                    "sync_requested": False,
                    "sync_requested_by": False,
                }
            )
            return False
        return True

    def _start_permit_pass(self, api, now, trigger, user):
        """Sync the permit types (their own log row), then open a pass."""
        log = (
            self.env["sicantik.sync.log"]
            .sudo()
            ._start(self, "permit_types", trigger, user=user)
        )
        try:
            remote = api.list_permit_types()
        except SicantikError as err:
            log._add_client_stats(api.stats.as_dict())
            log._set_failure(err.failure_type, str(err))
            log._finish("failed")
            self.write({"sync_requested": False, "sync_requested_by": False})
            raise
        counts = self.env["sicantik.permit.type"]._sync_from_types(self, remote)
        log._add_counts(**counts)
        log._add_client_stats(api.stats.as_dict())
        log._finish()
        self.write(
            {
                "sync_pass_state": "in_progress",
                "sync_offset": 0,
                "sync_page_digest": False,
                "sync_pass_started_at": now,
                "sync_pass_rows": 0,
            }
        )

    def _sync_permit_pages(self, api, log, deadline, progress):
        """Sync pages from the stored offset until the end of the list, the
        page cap or the deadline. Returns True at the end of the list."""
        Permit = self.env["sicantik.permit"].sudo()
        PermitType = self.env["sicantik.permit.type"].sudo()
        type_map = PermitType._get_type_map(self)
        today = self._today()
        max_pages = _param_int(self.env, "sicantik_connector.sync_pages_per_batch", 25)
        pages = 0
        for page in api.iter_issued_permits(
            self.page_size,
            start_offset=self.sync_offset,
            previous_digest=self.sync_page_digest or None,
        ):
            now = fields.Datetime.now()
            with self.env.cr.savepoint():
                type_map = PermitType._ensure_types(
                    self, [p.permit_type for p in page.permits], type_map
                )
                counts, changes = Permit._upsert_issued_page(
                    self, page.permits, type_map, now, today
                )
                self._note_list_expiry(page, now)
                self.write(
                    {
                        "sync_offset": page.next_offset,
                        "sync_page_digest": page.digest,
                        "sync_pass_rows": self.sync_pass_rows + page.raw_count,
                    }
                )
                log.write(
                    {
                        "fetched_count": log.fetched_count + len(page.permits),
                        "created_count": log.created_count + counts["created"],
                        "updated_count": log.updated_count + counts["updated"],
                        "unchanged_count": log.unchanged_count + counts["unchanged"],
                        "failed_count": log.failed_count + counts["failed"],
                        "skipped_count": log.skipped_count + len(page.skipped),
                        "progress_done": page.next_offset,
                        "end_offset": page.next_offset,
                        "heartbeat": now,
                    }
                )
            # Follow-up outside the constant-query upsert: chatter of renewals.
            Permit._post_expiry_changes(changes, _("permit list"))
            pages += 1
            progress["done"] += 1
            if page.is_last:
                return True
            left = self.sync_last_pass_rows - self.sync_offset
            self._commit_progress(
                progress["done"], max(1, left // max(1, self.page_size))
            )
            if pages >= max_pages or time.monotonic() >= deadline:
                return False
        return True

    def _note_list_expiry(self, page, now):
        """Notice when the permit list starts (or stops) carrying expiry dates."""
        if not page.permits:
            return
        has = page.has_expiry_field
        if has and not self.list_has_expiry:
            _logger.info(
                "SICANTIK %s (id %s): the permit list now carries expiry dates; "
                "the expiry sync stops asking permit by permit",
                self.name,
                self.id,
            )
            self.write({"list_has_expiry": True, "list_has_expiry_since": now})
        elif not has and self.list_has_expiry:
            _logger.warning(
                "SICANTIK %s (id %s): the permit list no longer carries expiry "
                "dates; the expiry sync asks permit by permit again",
                self.name,
                self.id,
            )
            self.write({"list_has_expiry": False, "list_has_expiry_since": False})
            self.env["sicantik.permit"].flush_model()
            self.env.cr.execute(
                SQL(
                    "UPDATE sicantik_permit SET next_expiry_check = %s "
                    "WHERE config_id = %s AND next_expiry_check IS NULL",
                    now,
                    self.id,
                )
            )
            self.env["sicantik.permit"].invalidate_model(["next_expiry_check"])

    def _stop_permit_run(self, log, err, api):
        """A system error stopped the permit sync: log it, keep the cursor."""
        _logger.warning(
            "SICANTIK %s (id %s): permit sync stopped at row %s: %s",
            self.name,
            self.id,
            self.sync_offset,
            err,
        )
        if log:
            log._set_failure(err.failure_type, str(err))
            log._finish(
                message=_(
                    "Stopped at row %(offset)s; the next run continues from there.",
                    offset=self.sync_offset,
                )
            )
            self.write(
                {
                    "sync_log_id": False,
                    "last_sync_log_id": log.id,
                    "sync_requested": False,
                    "sync_requested_by": False,
                }
            )
        # Compared once: if exactly a page of permits was added meanwhile, the
        # next run must not take that true page for a repeat again.
        self.write({"sync_page_digest": False})
        if err.retry_after:
            at = fields.Datetime.now() + timedelta(seconds=err.retry_after)
            self.env.ref(PERMIT_CRON).sudo()._trigger(at=at)

    # ------------------------------------------------------------
    # BUSINESS METHODS: expiry sync
    # ------------------------------------------------------------

    def _sync_expiry_batch(self, deadline, progress):
        """One cron callback's share of the expiry sync of this connector.

        Returns True when this connector has more permits to check right away.
        """
        self.ensure_one()
        config = self.with_context(tracking_disable=True, sicantik_sync=True)
        Permit = self.env["sicantik.permit"].sudo()
        now = fields.Datetime.now()
        log = config._current_run_log("expiry", config.expiry_log_id)
        if not log:
            log = config._start_expiry_run(now)
            if not log:
                return False
        if config.list_has_expiry:
            log._finish(
                "done",
                _(
                    "The permit list carries the expiry dates since %(since)s: "
                    "no permit needs a separate request.",
                    since=config.list_has_expiry_since,
                ),
            )
            config._end_expiry_run(log)
            return False
        left = log.progress_total - log.progress_done if log.run_limit else None
        rate = config.rate_limit if config.rate_limit_enabled else 0
        budget = max(1.0, deadline - time.monotonic())
        batch = _param_int(self.env, "sicantik_connector.expiry_batch_size", 500)
        if rate:
            batch = min(batch, int(rate * budget * 1.2) + config.max_workers)
        if left is not None:
            batch = min(batch, left)
        rows = Permit._select_expiry_work(config, now, batch) if batch > 0 else []
        if rows:
            try:
                config._check_expiry_rows(rows, log, deadline, progress)
            except SicantikError as err:
                config._stop_expiry_run(log, err)
                return False
        remaining = Permit._count_expiry_due(config, fields.Datetime.now())
        if log.run_limit:
            remaining = min(remaining, log.progress_total - log.progress_done)
        if remaining <= 0 or not rows:
            log._finish(
                message=_("%(checked)s permit(s) checked.", checked=log.progress_done)
            )
            config.write({"expiry_failures": 0})
            config._end_expiry_run(log)
            return False
        return True

    def _start_expiry_run(self, now):
        """Open the log row of a new expiry run (scheduled or requested)."""
        Log = self.env["sicantik.sync.log"].sudo()
        Permit = self.env["sicantik.permit"].sudo()
        requested = self.expiry_run_requested
        due = 0 if self.list_has_expiry else Permit._count_expiry_due(self, now)
        if not requested and not due:
            # Nothing to do: no row (the job may be called several times in
            # a row for other connectors).
            return Log
        limit = self.expiry_run_limit if requested else 0
        total = min(due, limit) if limit else due
        log = Log._start(
            self,
            "expiry",
            self.expiry_run_trigger if requested else "schedule",
            user=(self.expiry_run_user_id if requested else self.env.user),
            progress_total=total,
            run_limit=limit,
        )
        self.write(
            {
                "expiry_log_id": log.id,
                "expiry_run_requested": False,
                "expiry_run_limit": 0,
                "expiry_run_trigger": False,
                "expiry_run_user_id": False,
            }
        )
        return log

    def _end_expiry_run(self, log):
        self.write({"expiry_log_id": False, "last_expiry_log_id": log.id})

    def _check_expiry_rows(self, rows, log, deadline, progress, commit=True):
        """Ask cekperizinan about ``rows`` (concurrent, rate-limited) and
        write the answers chunk by chunk. Raises a system-scope error after
        writing the answers received before it."""
        Permit = self.env["sicantik.permit"].sudo()
        chunk_size = max(
            1, _param_int(self.env, "sicantik_connector.expiry_chunk_size", 50)
        )
        by_id = {row["id"]: row for row in rows}
        today = self._today()

        def items():
            for row in rows:
                if time.monotonic() >= deadline:
                    return
                yield row["id"], row["no_surat"] or "", row["pendaftaran_id"]

        written = [0]

        def write(chunk):
            now = fields.Datetime.now()
            counts, changes = Permit._apply_expiry_results(self, chunk, now, today)
            if not log.failure_type:
                self._note_bad_answer(log, chunk)
            log.write(
                {
                    "fetched_count": log.fetched_count
                    + counts["found"]
                    + counts["no_date"],
                    "updated_count": log.updated_count + counts["updated"],
                    "unchanged_count": log.unchanged_count + counts["unchanged"],
                    "failed_count": log.failed_count + counts["failed"],
                    "skipped_count": log.skipped_count + counts["unavailable"],
                    "progress_done": log.progress_done + len(chunk),
                    "heartbeat": now,
                }
            )
            Permit._post_expiry_changes(changes, "cekperizinan")
            progress["done"] += len(chunk)
            written[0] += len(chunk)
            if commit:
                self._commit_progress(progress["done"], max(1, len(rows) - written[0]))

        with self._make_api() as api:
            chunk = []
            try:
                for key, result in api.fetch_permit_details(
                    items(), max_workers=self.max_workers
                ):
                    chunk.append((by_id[key], result))
                    if len(chunk) >= chunk_size:
                        write(chunk)
                        chunk = []
            finally:
                # The answers received before a stop are settled: keep them.
                if chunk:
                    write(chunk)
                log._add_client_stats(api.stats.as_dict())

    @api.model
    def _note_bad_answer(self, log, results):
        """Give the log the reason of the first unusable answer of a chunk
        (the permit keeps its stored data and is asked again later), so that
        the log says why, not only the permit."""
        for row, result in results:
            if isinstance(result, Exception):
                if not (row["no_surat"] or "").strip():
                    continue  # never asked: no number, not the server's fault
                problem = str(result)
            elif result is not None and result.expiry_invalid:
                problem = f"impossible expiry date {result.expiry_raw!r}"
            else:
                continue
            log._set_failure(
                const.FT_DATA,
                f"registration {row['pendaftaran_id']} ({row['no_surat']}): "
                f"{problem}",
            )
            return

    def _stop_expiry_run(self, log, err):
        """A system error stopped the expiry sync: log it and retry later."""
        _logger.warning(
            "SICANTIK %s (id %s): expiry sync stopped: %s", self.name, self.id, err
        )
        failures = self.expiry_failures + 1
        log._set_failure(err.failure_type, str(err))
        retry_at = None
        if err.retryable:
            delay = timedelta(minutes=15) * (2 ** min(failures - 1, 5))
            if err.retry_after:
                delay = max(delay, timedelta(seconds=err.retry_after))
            retry_at = fields.Datetime.now() + delay
            self.env.ref(EXPIRY_CRON).sudo()._trigger(at=retry_at)
        log._finish(
            message=_(
                "Stopped; the permits not checked stay due and are checked "
                "by the next run (%(when)s).",
                when=retry_at or _("the next scheduled run"),
            )
        )
        self.write({"expiry_failures": failures})
        self._end_expiry_run(log)

    def _run_test_expiry_sync(self, count):
        """Test Expiry Sync: the two steps on ``count`` permits, inline.

        With no permit synced yet it first reads the permit types and the
        first page of the permit list (step 1), then asks cekperizinan about
        ``count`` permits (step 2): those due first, else those checked
        longest ago.
        """
        self.ensure_one()
        config = self.with_context(tracking_disable=True, sicantik_sync=True)
        Log = self.env["sicantik.sync.log"].sudo()
        Permit = self.env["sicantik.permit"].sudo()
        log = Log._start(config, "expiry", "button", run_limit=count)
        now = fields.Datetime.now()
        progress = {"done": 0}
        try:
            if not Permit.search_count([("config_id", "=", config.id)], limit=1):
                with config._make_api() as api:
                    try:
                        remote = api.list_permit_types()
                        config.env["sicantik.permit.type"].sudo()._sync_from_types(
                            config, remote
                        )
                        page = api.list_issued_permits(limit=count, offset=0)
                        type_map = (
                            config.env["sicantik.permit.type"]
                            .sudo()
                            ._ensure_types(
                                config,
                                [p.permit_type for p in page.permits],
                                config.env["sicantik.permit.type"]._get_type_map(
                                    config
                                ),
                            )
                        )
                        config._note_list_expiry(page, now)
                        counts, _changes = Permit._upsert_issued_page(
                            config, page.permits, type_map, now, config._today()
                        )
                        log.write({"created_count": counts["created"]})
                    finally:
                        log._add_client_stats(api.stats.as_dict())
            if not config.list_has_expiry:
                rows = Permit._select_expiry_work(config, now, count)
                if not rows:
                    rows = Permit._select_expiry_work(
                        config, now, count, due_only=False
                    )
                log.write({"progress_total": len(rows)})
                if rows:
                    config._check_expiry_rows(
                        rows,
                        log,
                        time.monotonic() + 3600,
                        progress,
                        commit=False,
                    )
        except SicantikError as err:
            log._set_failure(err.failure_type, str(err))
            log._finish()
            config._end_expiry_run(log)
            return self._notification(
                _(
                    "Test Expiry Sync stopped: %(reason)s",
                    reason=log.failure_reason,
                ),
                "danger",
                _("Test Expiry Sync failed"),
                sticky=True,
            )
        if config.list_has_expiry:
            message = _(
                "The permit list carries the expiry dates: no permit needs a "
                "separate request."
            )
        else:
            message = _(
                "%(checked)s permit(s) checked in %(seconds)s s: %(found)s expiry "
                "date(s) found or confirmed, %(unavailable)s not available from "
                "SICANTIK (no company), %(failed)s error(s).",
                checked=log.progress_done,
                seconds=round(
                    (fields.Datetime.now() - log.start_date).total_seconds(), 1
                ),
                found=log.fetched_count,
                unavailable=log.skipped_count,
                failed=log.failed_count,
            )
        log._finish(message=message)
        config._end_expiry_run(log)
        return self._notification(
            message,
            "success" if log.state == "done" else "warning",
            _("Test Expiry Sync"),
        )

    # ------------------------------------------------------------
    # CRON
    # ------------------------------------------------------------

    @api.model
    def _cron_sync_permits(self):
        """Permit sync: types, then pages of the permit list, resumable."""
        self._cron_run_batches("permits", "_sync_permits_batch")

    @api.model
    def _cron_sync_expiry_dates(self):
        """Expiry sync: ask cekperizinan about the due permits, resumable."""
        self._cron_run_batches("expiry", "_sync_expiry_batch")

    @api.model
    def _cron_run_batches(self, operation, batch_method):
        """Give every connector its batch of ``operation`` within the time
        budget; one connector's failure is logged and never stops the others."""
        deadline = time.monotonic() + self._time_budget()
        progress = {"done": 0}
        more = 0
        for config in self.search([]):
            if time.monotonic() >= deadline:
                more += 1
                continue
            if not config._try_run_lock(operation):
                # Another callback runs this job for this connector (another
                # worker, "Run manually", Test Expiry Sync): never twice at
                # once. Look again in a minute, when it may have ended.
                _logger.info(
                    "SICANTIK %s (id %s): %s sync already running elsewhere",
                    config.name,
                    config.id,
                    operation,
                )
                self.env.ref(RUN_CRONS[operation]).sudo()._trigger(
                    at=fields.Datetime.now() + timedelta(minutes=1)
                )
                continue
            try:
                more += bool(getattr(config, batch_method)(deadline, progress))
            except Exception:
                _logger.exception(
                    "SICANTIK %s (id %s): %s sync failed",
                    config.name,
                    config.id,
                    operation,
                )
                self._rollback()
                config._log_internal_error(operation)
            finally:
                # After the rollback above: the unlock needs a sane transaction.
                config._release_run_lock(operation)
        self._commit_progress(progress["done"], more)

    def _log_internal_error(self, operation):
        """Close the running row of ``operation`` after an unexpected error."""
        detail = traceback.format_exc()
        config = self.with_context(tracking_disable=True)
        log = config.sync_log_id if operation == "permits" else config.expiry_log_id
        if not log:
            log = self.env["sicantik.sync.log"].sudo()._start(config, operation)
        log._set_failure("internal", detail[-4000:])
        log._finish()
        field = "sync_log_id" if operation == "permits" else "expiry_log_id"
        config.write({field: False})
