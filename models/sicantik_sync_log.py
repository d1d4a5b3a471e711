"""The sync log: one row per run of one job of a connector.

The row itself: what it counts, how it starts, makes progress (the client's
statistics, the pages and chunks it adds, the live progress on the bus),
fails, finishes, resumes or is closed as interrupted, and how long it is
kept. Its texts live in ``sicantik.sync.log.text``, the per connector and
job bookkeeping in ``sicantik.sync.log.bookkeeping``; it inherits both.
"""

import logging
from datetime import timedelta

from odoo import _, api, fields, models

from ..tools import const
from ..tools.api_errors import FT_LIMITER

_logger = logging.getLogger(__name__)

FAILURE_TYPE_SELECTION = [
    (const.FT_TIMEOUT, "Timeout"),
    (const.FT_CONNECTION, "Connection / DNS"),
    (const.FT_TLS, "TLS certificate"),
    (const.FT_SERVER, "Server error"),
    (const.FT_RATE_LIMITED, "Throttled"),
    (const.FT_BAD_REQUEST, "Request refused"),
    (const.FT_NOT_FOUND, "Not found"),
    (const.FT_BAD_RESPONSE, "Unreadable answer"),
    (const.FT_TOO_LARGE, "Answer too large"),
    (const.FT_DATA, "Bad record"),
    (const.FT_CONFIG, "Configuration"),
    (FT_LIMITER, "Rate limit unavailable"),
    ("interrupted", "Interrupted"),
    ("internal", "Internal error"),
    ("untested", "Untested address"),
]

# The bus message a running log sends.
BUS_PROGRESS = "sicantik_sync_log/progress"


# Lines of the "set aside" list one run keeps.
SET_ASIDE_MAX_LINES = 200


class SicantikSyncLog(models.Model):
    """One run of one job of a connector: what it did, how fast, how it ended.

    Rows are written by the jobs themselves (as superuser); staff read them.
    A run that spans several cron callbacks keeps one row, updated and
    committed after every page or chunk, so its progress is visible while it
    runs and survives the process being killed.
    """

    _name = "sicantik.sync.log"
    _description = "SICANTIK Sync Log"
    _inherit = [
        "sicantik.connector.record",
        "sicantik.sync.log.text",
        "sicantik.sync.log.bookkeeping",
    ]
    _order = "id desc"

    # A ``running`` row whose heartbeat is older than this belongs to a process
    # that died: the next run of the same job closes it as interrupted.
    STALE_AFTER = timedelta(minutes=10)

    # --- what and who
    operation = fields.Selection(
        [
            ("test_connection", "Test connection"),
            ("permit_types", "Permit types"),
            ("permits", "Permits"),
            ("expiry", "Expiry dates"),
            ("status", "Status update"),
            ("notifications", "Expiring permits check"),
            ("reminders", "WhatsApp reminders"),
        ],
        required=True,
        index=True,
    )
    trigger = fields.Selection(
        [("schedule", "Schedule"), ("button", "Button"), ("wizard", "Wizard")],
        required=True,
        default="schedule",
    )
    user_id = fields.Many2one(
        "res.users",
        string="Started by",
        default=lambda self: self.env.user,
        ondelete="set null",
    )

    # --- when and how it ended
    state = fields.Selection(
        [
            ("running", "Running"),
            ("done", "Done"),
            ("partial", "Partial"),
            ("failed", "Failed"),
            ("interrupted", "Interrupted"),
        ],
        required=True,
        default="running",
        index=True,
    )
    start_date = fields.Datetime(
        string="Started", required=True, default=fields.Datetime.now
    )
    end_date = fields.Datetime(string="Ended")
    heartbeat = fields.Datetime(
        default=fields.Datetime.now,
        help="Last time the run reported progress.",
    )
    duration = fields.Float(string="Duration (s)", digits=(16, 1))

    # --- counts
    fetched_count = fields.Integer(string="Fetched")
    created_count = fields.Integer(string="Created")
    updated_count = fields.Integer(string="Updated")
    unchanged_count = fields.Integer(string="Unchanged")
    failed_count = fields.Integer(string="Failed")
    skipped_count = fields.Integer(string="Skipped")
    delisted_count = fields.Integer(
        string="No Longer Listed",
        help="Permits a complete pass marked as no longer listed by SICANTIK.",
    )

    # --- progress while running
    progress_done = fields.Integer()
    progress_total = fields.Integer(
        help="What the run expects to handle in total (0 when unknown)."
    )
    progress = fields.Float(compute="_compute_progress", string="Progress (%)")
    run_limit = fields.Integer(
        help="The most permits this run checks (0: every permit due)."
    )
    start_offset = fields.Integer(
        help="Row of the permit list the run started from (a resumed pass "
        "starts where the previous run stopped)."
    )
    end_offset = fields.Integer(help="Row of the permit list the run reached.")
    rows_read = fields.Integer(
        help="Rows of the permit list served to this run. A letter with two "
        "applicants comes as two rows: rows read = permits + repeated rows "
        "+ unusable rows.",
    )

    # --- client statistics
    request_count = fields.Integer(string="Requests")
    retry_count = fields.Integer(string="Retries")
    status_2xx = fields.Integer(string="2xx answers")
    status_4xx = fields.Integer(string="4xx answers")
    status_5xx = fields.Integer(string="5xx answers")
    status_none = fields.Integer(
        string="No answer", help="Attempts that got no HTTP answer at all."
    )
    latency_p50_ms = fields.Float(string="Latency p50 (ms)", digits=(16, 1))
    latency_p95_ms = fields.Float(string="Latency p95 (ms)", digits=(16, 1))
    rate_limit_wait = fields.Float(
        string="Waiting on the rate limit (s)",
        digits=(16, 2),
        help="Wall-clock time during which at least one request waited for "
        "its turn, so as not to exceed the requests per second. Requests "
        "waiting side by side count once: it never exceeds the duration.",
    )
    pace_lowest = fields.Float(
        string="Lowest pace (%)",
        digits=(16, 1),
        help="The slowest pace the run went at, in percent of the requests per "
        "second: the server's 429/503 answers or a climbing latency lower it "
        "for a while.",
    )
    slowdown_count = fields.Integer(
        string="Slow-downs",
        help="Times the server's answers made this run lower its pace.",
    )
    late_slot_count = fields.Integer(
        string="Turns taken again",
        help="Requests that were ready to go only after their turn had "
        "passed (a slow connection set-up, a busy server machine) and so "
        "waited for a new turn: the server never gets two requests closer "
        "together than the requests per second allow. Many of them mean "
        "the Odoo server is overloaded.",
    )

    # --- outcome
    summary = fields.Char(
        help="The run in one sentence, in the connector's language.",
    )
    message = fields.Text(string="Notes")
    set_aside = fields.Text(
        help="Permits (registration ids) the database could not store, and "
        "why. The rest of their page was stored; they are tried again by the "
        "next pass.",
    )
    failure_type = fields.Selection(FAILURE_TYPE_SELECTION)
    failure_reason = fields.Text(string="What happened")
    error_detail = fields.Text(
        string="Technical detail",
        groups="sicantik_connector.sicantik_connector_group_manager",
    )

    # ------------------------------------------------------------
    # COMPUTE METHODS
    # ------------------------------------------------------------

    @api.depends("config_id", "operation", "start_date")
    def _compute_display_name(self):
        operations = dict(self._fields["operation"]._description_selection(self.env))
        for log in self:
            when = (
                fields.Datetime.context_timestamp(log, log.start_date).strftime(
                    "%Y-%m-%d %H:%M"
                )
                if log.start_date
                else ""
            )
            log.display_name = f"{operations.get(log.operation, '')} {when}".strip()

    @api.depends("progress_done", "progress_total", "state")
    def _compute_progress(self):
        for log in self:
            if log.state == "done":
                log.progress = 100.0
            elif log.progress_total:
                log.progress = min(
                    100.0, 100.0 * log.progress_done / log.progress_total
                )
            else:
                log.progress = 0.0

    # ------------------------------------------------------------
    # ACTION METHODS
    # ------------------------------------------------------------

    def action_open_numbers_to_fix(self):
        """From a 09:00 run: the holders of this connector it could not remind
        for want of a usable number, where staff type the right one."""
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "sicantik_connector.action_sicantik_numbers_to_fix"
        )
        action["domain"] = self.env["res.partner"]._sicantik_numbers_to_fix_domain() + [
            ("sicantik_permit_ids.config_id", "=", self.config_id.id)
        ]
        return action

    # ------------------------------------------------------------
    # BUSINESS METHODS
    # ------------------------------------------------------------

    @api.model
    def _prepare_sync_log_values(self, config, operation, trigger="schedule", **vals):
        """Values of a new ``running`` row for ``operation`` on ``config``."""
        now = fields.Datetime.now()
        user = vals.pop("user", None) or self.env.user
        return {
            "config_id": config.id,
            "operation": operation,
            "trigger": trigger,
            "user_id": user.id,
            "state": "running",
            "start_date": now,
            "heartbeat": now,
            **vals,
        }

    @api.model
    def _start(self, config, operation, trigger="schedule", **vals):
        values = self._prepare_sync_log_values(config, operation, trigger, **vals)
        log = self.sudo().create(values)
        log._bus_progress()
        return log

    def _is_alive(self, now=None):
        """True when this ``running`` row reported progress recently."""
        self.ensure_one()
        now = now or fields.Datetime.now()
        return self.state == "running" and bool(
            self.heartbeat and self.heartbeat > now - self.STALE_AFTER
        )

    def _add_counts(self, **counts):
        """Add ``fetched=``, ``created=`` ... to the row's counters."""
        self.ensure_one()
        values = {
            f"{name}_count": self[f"{name}_count"] + value
            for name, value in counts.items()
            if value
        }
        values["heartbeat"] = fields.Datetime.now()
        self.write(values)

    def _add_client_stats(self, stats):
        """Add one client's ``ClientStats.as_dict()`` to the row.

        Counters add up. Latency percentiles cannot be merged exactly across
        the clients of several callbacks: p50 is weighted by requests, p95 is
        the worst seen.
        """
        self.ensure_one()
        requests = stats.get("requests") or 0
        if not requests:
            return
        by_status = stats.get("by_status") or {}
        values = {
            "request_count": self.request_count + requests,
            "retry_count": self.retry_count + (stats.get("retries") or 0),
            "status_2xx": self.status_2xx + by_status.get("2xx", 0),
            "status_4xx": self.status_4xx + by_status.get("4xx", 0),
            "status_5xx": self.status_5xx + by_status.get("5xx", 0),
            "status_none": self.status_none + by_status.get("none", 0),
            "rate_limit_wait": self.rate_limit_wait
            + (stats.get("rate_limit_wait_s") or 0.0),
        }
        pace = stats.get("pace_lowest")
        if pace is not None:
            percent = 100.0 * pace
            values["pace_lowest"] = (
                min(self.pace_lowest, percent) if self.pace_lowest else percent
            )
        if stats.get("slowdowns"):
            values["slowdown_count"] = self.slowdown_count + stats["slowdowns"]
        if stats.get("late_slots"):
            values["late_slot_count"] = self.late_slot_count + stats["late_slots"]
        p50, p95 = stats.get("latency_p50_ms"), stats.get("latency_p95_ms")
        if p50 is not None:
            before = self.request_count
            values["latency_p50_ms"] = (
                self.latency_p50_ms * before + p50 * requests
            ) / (before + requests)
        if p95 is not None:
            values["latency_p95_ms"] = max(self.latency_p95_ms, p95)
        self.write(values)

    def _set_failure(self, failure_type, detail=None):
        self.ensure_one()
        self.sudo().write(
            {
                "failure_type": failure_type,
                # In the connector's language, whoever records it.
                "failure_reason": self._in_job_lang()._failure_reason(failure_type),
                "error_detail": detail or False,
            }
        )

    def _finish(self, state=None, message=None):
        """Close the row: end date, duration and final state.

        Without ``state``: ``partial`` when records failed or a failure was
        recorded after some work, ``failed`` when a failure stopped it before
        any work, else ``done``.
        """
        now = fields.Datetime.now()
        for log in self:
            final = state
            if final is None:
                worked = (
                    log.created_count
                    or log.updated_count
                    or log.unchanged_count
                    or log.progress_done
                )
                if log.failure_type:
                    final = "partial" if worked else "failed"
                elif log.failed_count:
                    final = "partial"
                else:
                    final = "done"
            values = {
                "state": final,
                "end_date": now,
                "heartbeat": now,
                "duration": (now - log.start_date).total_seconds(),
            }
            if message:
                values["message"] = (
                    f"{log.message}\n{message}" if log.message else message
                )
            log.write(values)
            log.summary = log._in_job_lang()._summary_text()
            if (
                log.operation == "permits"
                and final in ("done", "partial")
                and not log.failure_type
            ):
                # A pass that reached the end of the list proves the address
                # as well as a test does (partial: rows the database refused).
                log.config_id._mark_address_tested(now)
        self._bus_progress()
        return self

    def _add_page(self, page, counts, now):
        """Add one page of the permit list to a permits run (one write)."""
        self.ensure_one()
        self.write(
            {
                **self._set_aside_values(counts.get("set_aside")),
                "fetched_count": self.fetched_count + len(page.permits),
                "rows_read": self.rows_read
                + getattr(page, "raw_count", len(page.permits)),
                "created_count": self.created_count + counts["created"],
                "updated_count": self.updated_count + counts["updated"],
                "unchanged_count": self.unchanged_count + counts["unchanged"],
                "failed_count": self.failed_count + counts["failed"],
                "skipped_count": self.skipped_count + len(page.skipped),
                "progress_done": page.next_offset,
                "end_offset": page.next_offset,
                "heartbeat": now,
            }
        )
        self.summary = self._in_job_lang()._summary_text()
        self._bus_progress()

    def _add_expiry_chunk(self, counts, checked, now):
        """Add one chunk of cekperizinan answers to an expiry run (one write)."""
        self.ensure_one()
        self.write(
            {
                **self._set_aside_values(counts.get("set_aside")),
                "fetched_count": self.fetched_count
                + counts["found"]
                + counts["no_date"],
                "updated_count": self.updated_count + counts["updated"],
                "unchanged_count": self.unchanged_count + counts["unchanged"],
                "failed_count": self.failed_count + counts["failed"],
                "skipped_count": self.skipped_count + counts["unavailable"],
                "progress_done": self.progress_done + checked,
                "heartbeat": now,
            }
        )
        self.summary = self._in_job_lang()._summary_text()
        self._bus_progress()

    def _set_aside_values(self, set_aside):
        """The ``set_aside`` text with ``(registration id, reason)`` lines
        added; capped, so a run of bad pages cannot grow the row for ever."""
        if not set_aside:
            return {}
        lines = (self.set_aside or "").splitlines()
        lines += [f"{pid}: {reason}" for pid, reason in set_aside]
        if len(lines) > SET_ASIDE_MAX_LINES:
            more = len(lines) - SET_ASIDE_MAX_LINES + 1
            lines = lines[: SET_ASIDE_MAX_LINES - 1] + [
                _("… and %(count)s more.", count=more)
            ]
        return {"set_aside": "\n".join(lines)}

    @api.model
    def _resume_run(self, config, operation, log):
        """The log row of the run to continue, or an empty recordset.

        A ``running`` row of this job whose heartbeat is stale belongs to a
        killed process: it is closed as interrupted and a new row starts.
        """
        Log = self.sudo()
        now = fields.Datetime.now()
        orphans = Log.search(
            [
                ("config_id", "=", config.id),
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

    def _close_interrupted(self):
        """Close stale ``running`` rows: their process died."""
        for log in self:
            log._set_failure("interrupted")
            log._finish(
                "interrupted",
                _(
                    "No progress since %(when)s: closed by the next run.",
                    when=log.heartbeat,
                ),
            )
        return self

    # ------------------------------------------------------------
    # LIVE PROGRESS (Odoo's bus)
    # ------------------------------------------------------------

    def _bus_progress(self):
        """Tell the open log and connector views to reload: every SICANTIK
        user listens on the channel of the SICANTIK / User group. One row
        in the bus per call, sent when the transaction commits."""
        # The id from the cached xmlid table: no query per page.
        group_id = self.env["ir.model.data"]._xmlid_to_res_id(
            "sicantik_connector.sicantik_connector_group_user",
            raise_if_not_found=False,
        )
        if not group_id or not self:
            return
        group = self.env["res.groups"].browse(group_id)
        bus = self.env["bus.bus"].sudo()
        for log in self:
            bus._sendone(
                group,
                BUS_PROGRESS,
                {
                    "id": log.id,
                    "config_id": log.config_id.id,
                    "operation": log.operation,
                    "state": log.state,
                    "progress": log.progress,
                },
            )

    # ------------------------------------------------------------
    # AUTOVACUUM
    # ------------------------------------------------------------

    @api.autovacuum
    def _gc_sync_logs(self):
        """Delete finished rows older than the retention (days) in the
        ``sicantik_connector.sync_log_retention_days`` parameter (0 keeps all)."""
        param = (
            self.env["ir.config_parameter"]
            .sudo()
            .get_param("sicantik_connector.sync_log_retention_days", "90")
        )
        try:
            days = int(param)
        except ValueError:
            _logger.warning(
                "SICANTIK: sync log retention %r is not a number of days; " "using 90",
                param,
            )
            days = 90
        if days <= 0:
            return
        limit = fields.Datetime.now() - timedelta(days=days)
        old = self.sudo().search(
            [("start_date", "<", limit), ("state", "!=", "running")],
            limit=models.GC_UNLINK_LIMIT,
        )
        if len(old) >= models.GC_UNLINK_LIMIT:
            self.env.ref("base.autovacuum_job")._trigger()
        old.unlink()
