from datetime import datetime, time, timedelta

from dateutil.relativedelta import relativedelta

from odoo import _, api, fields, models
from odoo.tools import SQL
from odoo.tools.misc import format_date

from ..tools import expiry

HORIZONS = (30, 60, 90)
NOT_REVOKED = [("status", "!=", "revoked")]
TOP_TYPES = 10
MONTHS = 12
HEALTH_DAYS = 7
PROBLEM_STATES = ("failed", "partial", "interrupted")
# Runs whose progress the dashboard shows while they go (the first sync of a
# fresh database, then any pass of the permit list).
SYNC_OPERATIONS = ("permit_types", "permits")
# One colour per state everywhere: the dashboard's cards, and the badges and
# row decorations of the permit views (decoration-<name>; a test compares).
# Critical red, warning amber, expired grey, valid green, no date blue.
STATE_DECORATIONS = {
    expiry.EXPIRED: "muted",
    expiry.CRITICAL: "danger",
    expiry.WARNING: "warning",
    expiry.OK: "success",
    expiry.NO_DATE: "info",
    "revoked": "muted",
}
PERMIT_VIEWS = [
    [False, "list"],
    [False, "kanban"],
    [False, "form"],
    [False, "calendar"],
    [False, "graph"],
    [False, "pivot"],
]


class SicantikDashboard(models.AbstractModel):
    """The figures of SICANTIK > Dashboard, each with the list it opens.

    Everything comes from one call so the page loads in one round trip; every
    count is an aggregate query under the user's access rules (so only the
    companies selected in the company switcher count), never a loop over
    records. A figure's count and the list it opens are built from the same
    domain, so they agree.
    """

    _name = "sicantik.dashboard"
    _description = "SICANTIK Dashboard"

    # ------------------------------------------------------------
    # PUBLIC (called by the dashboard client action)
    # ------------------------------------------------------------

    @api.model
    def get_dashboard_data(self, config_id=False):
        """All the figures of the dashboard, as JSON-ready dicts: of every
        connector the user may read, or of ``config_id`` only."""
        Permit = self.env["sicantik.permit"]
        # A clear AccessError for users outside SICANTIK, before any query.
        Permit.browse().check_access("read")
        self.env["sicantik.sync.log"].browse().check_access("read")
        connectors = self.env["sicantik.config"].search([])
        config = connectors.filtered(lambda c: c.id == config_id)
        # Every figure and the list it opens are narrowed by this domain.
        scope = [("config_id", "=", config.id)] if config else []
        # Same "today" as the search filters of the permit list (user's tz).
        today = fields.Date.context_today(self)
        states, horizons, total = self._permit_buckets(today, scope)
        return {
            "today": fields.Date.to_string(today),
            "config_id": config.id,
            "connectors": [{"id": c.id, "name": c.display_name} for c in connectors],
            "total": total,
            "states": states,
            "horizons": horizons,
            "types": self._permit_types(scope),
            "months": self._expiry_months(today, scope),
            "health": self._run_health(scope),
            "sync": self._running_sync(scope),
            "holders": self._holders(config),
            "reminders": self._reminders(today, scope),
        }

    # ------------------------------------------------------------
    # PERMITS
    # ------------------------------------------------------------

    @api.model
    def _permit_buckets(self, today, scope=()):
        """Counts by expiry state and by horizon: one aggregate query.

        Each bucket is a domain of ``tools.expiry`` (the same bands as the
        search filter it opens); its SQL condition is the ORM's own
        translation of that domain, evaluated with ``count(*) FILTER`` over
        the rows the user may read.
        """
        valid = expiry.band_domain(expiry.OK, today)
        # (key, label, filters the list opens with, extra domain, count domain)
        state_specs = [
            (
                expiry.EXPIRED,
                _("Expired"),
                ["expired"],
                [],
                expiry.band_domain(expiry.EXPIRED, today),
            ),
            (
                expiry.CRITICAL,
                _("Critical (≤ 30 days)"),
                ["critical"],
                [],
                expiry.band_domain(expiry.CRITICAL, today),
            ),
            (
                expiry.WARNING,
                _("Warning (≤ 60 days)"),
                ["warning"],
                [],
                expiry.band_domain(expiry.WARNING, today),
            ),
            # No search filter for "valid": the list opens on the domain.
            (expiry.OK, _("Valid > 60 days"), [], valid, valid),
            (
                expiry.NO_DATE,
                _("Without expiry date"),
                ["no_expiry"],
                NOT_REVOKED,
                NOT_REVOKED + expiry.band_domain(expiry.NO_DATE, today),
            ),
            ("revoked", _("Revoked"), ["revoked"], [], [("status", "=", "revoked")]),
        ]
        # 30 and 60 days are the Critical filter, and Critical or Warning.
        horizon_filters = {
            expiry.CRITICAL_DAYS: ["critical"],
            expiry.WARNING_DAYS: ["critical", "warning"],
        }
        horizon_specs = []
        for days in HORIZONS:
            domain = expiry.horizon_domain(days, today)
            filters = horizon_filters.get(days, [])
            horizon_specs.append(
                (
                    f"days_{days}",
                    _("Expiring in %(days)s days", days=days),
                    filters,
                    [] if filters else domain,
                    domain,
                )
            )
        specs = state_specs + horizon_specs
        counts = self._count_permits([spec[4] for spec in specs], scope)
        figures = [
            {
                "key": key,
                "label": label,
                "count": count,
                "decoration": STATE_DECORATIONS.get(key, ""),
                "action": self._permit_action(label, list(scope) + extra, filters),
            }
            for (key, label, filters, extra, _domain), count in zip(
                specs, counts[1:], strict=True
            )
        ]
        return figures[: len(state_specs)], figures[len(state_specs) :], counts[0]

    @api.model
    def _count_permits(self, domains, scope=()):
        """``[total, count of domain 1, ...]`` in one query over the permits
        the current user may read (within ``scope``)."""
        Permit = self.env["sicantik.permit"].with_context(active_test=False)
        Permit.flush_model()
        base = Permit._search(list(scope))
        columns = [SQL("count(*)")]
        for domain in domains:
            condition = Permit._where_calc(domain).where_clause
            columns.append(SQL("count(*) FILTER (WHERE %s)", condition))
        return list(self.env.execute_query(base.select(*columns))[0])

    @api.model
    def _permit_types(self, scope=()):
        """The types with the most permits, the permits of the other types
        (a figure that opens them), and how many types there are: "No type"
        is listed when it has permits, but it is not a type."""
        Permit = self.env["sicantik.permit"]
        groups = Permit._read_group(
            list(scope), ["permit_type_id"], ["__count"], order="__count desc"
        )
        top = []
        for permit_type, count in groups[:TOP_TYPES]:
            if permit_type:
                name = permit_type.display_name
                action = self._permit_action(
                    _("Permits: %(type)s", type=name),
                    list(scope),
                    context={"search_default_permit_type_id": permit_type.id},
                )
            else:
                name = _("No type")
                action = self._permit_action(
                    name, list(scope) + [("permit_type_id", "=", False)]
                )
            top.append(
                {
                    "key": permit_type.id or 0,
                    "label": name,
                    "count": count,
                    "action": action,
                }
            )
        rest = groups[TOP_TYPES:]
        others = sum(count for _type, count in rest)
        others_action = False
        if others:
            shown = [permit_type.id for permit_type, _count in groups[:TOP_TYPES]]
            # "not in" on a many2one also keeps the permits without a type:
            # exclude them when "No type" is among the rows shown.
            domain = [("permit_type_id", "not in", [i for i in shown if i])]
            if False in shown:
                domain.append(("permit_type_id", "!=", False))
            others_action = self._permit_action(
                _("Permits of the other types"), list(scope) + domain
            )
        return {
            "top": top,
            "others": others,
            "others_count": sum(1 for permit_type, _count in rest if permit_type),
            "others_action": others_action,
            "count": sum(1 for permit_type, _count in groups if permit_type),
        }

    @api.model
    def _expiry_months(self, today, scope=()):
        """Permits expiring per month, this month (from today) and the 11
        following."""
        day = fields.Date.to_string
        first = today.replace(day=1)
        last = first + relativedelta(months=MONTHS, days=-1)
        base = list(scope) + [
            ("status", "!=", "revoked"),
            ("expiry_date", ">=", day(today)),
            ("expiry_date", "<=", day(last)),
        ]
        counts = dict(
            self.env["sicantik.permit"]._read_group(
                base, ["expiry_date:month"], ["__count"]
            )
        )
        months = []
        for index in range(MONTHS):
            start = first + relativedelta(months=index)
            end = start + relativedelta(months=1, days=-1)
            label = format_date(self.env, start, date_format="MMM yyyy")
            months.append(
                {
                    "key": day(start),
                    "label": label,
                    "count": counts.get(start, 0),
                    "action": self._permit_action(
                        _("Permits expiring in %(month)s", month=label),
                        list(scope)
                        + [
                            ("status", "!=", "revoked"),
                            ("expiry_date", ">=", day(max(start, today))),
                            ("expiry_date", "<=", day(end)),
                        ],
                    ),
                }
            )
        return months

    @api.model
    def _permit_action(self, name, domain=None, filters=(), context=None):
        """The permit list, with the given search filters applied."""
        context = dict(context or {})
        context.update({f"search_default_{flt}": 1 for flt in filters})
        return {
            "type": "ir.actions.act_window",
            "name": name,
            "res_model": "sicantik.permit",
            "views": PERMIT_VIEWS,
            "domain": domain or [],
            "context": context,
        }

    # ------------------------------------------------------------
    # RUNS
    # ------------------------------------------------------------

    @api.model
    def _run_health(self, scope=()):
        """Last success, last failure and the week's figures of the jobs."""
        Log = self.env["sicantik.sync.log"]
        scope = list(scope)
        since = fields.Datetime.now() - timedelta(days=HEALTH_DAYS)
        week = scope + [("start_date", ">=", fields.Datetime.to_string(since))]
        success = Log.search(scope + [("state", "=", "done")], limit=1)
        failure = Log.search(scope + [("state", "in", PROBLEM_STATES)], limit=1)
        running = Log.search_count(scope + [("state", "=", "running")])
        ((runs, requests, retries, p50, p95),) = Log._read_group(
            week,
            [],
            [
                "__count",
                "request_count:sum",
                "retry_count:sum",
                "latency_p50_ms:avg",
                "latency_p95_ms:max",
            ],
        )
        problems = Log.search_count(week + [("state", "in", PROBLEM_STATES)])
        return {
            "last_success": self._log_values(success),
            "last_failure": self._log_values(failure),
            "running": running,
            "running_action": self._log_action(
                _("Running jobs"), scope, filters=["running"]
            ),
            "days": HEALTH_DAYS,
            "runs": runs,
            "problems": problems,
            "requests": requests or 0,
            "retries": retries or 0,
            "latency_p50_ms": round(p50 or 0.0),
            "latency_p95_ms": round(p95 or 0.0),
            "runs_action": self._log_action(
                _("Runs of the last %(days)s days", days=HEALTH_DAYS), week
            ),
            "problems_action": self._log_action(
                _("Problems of the last %(days)s days", days=HEALTH_DAYS),
                week,
                ["problems"],
            ),
        }

    @api.model
    def _log_values(self, log):
        if not log:
            return False
        operations = dict(log._fields["operation"]._description_selection(self.env))
        states = dict(log._fields["state"]._description_selection(self.env))
        return {
            "id": log.id,
            "date": fields.Datetime.to_string(log.end_date or log.start_date),
            "operation": operations.get(log.operation, log.operation),
            "state": log.state,
            "state_label": states.get(log.state, log.state),
            "config": log.config_id.display_name,
            "reason": log.failure_reason or log.message or "",
            "requests": log.request_count,
            "latency_p50_ms": round(log.latency_p50_ms),
            "latency_p95_ms": round(log.latency_p95_ms),
            "duration": log.duration,
            "action": {
                "type": "ir.actions.act_window",
                "name": log.display_name,
                "res_model": "sicantik.sync.log",
                "res_id": log.id,
                "views": [[False, "form"]],
            },
        }

    @api.model
    def _log_action(self, name, domain=None, filters=()):
        return {
            "type": "ir.actions.act_window",
            "name": name,
            "res_model": "sicantik.sync.log",
            "views": [[False, "list"], [False, "form"]],
            "domain": domain or [],
            "context": {f"search_default_{flt}": 1 for flt in filters},
        }

    @api.model
    def _running_sync(self, scope=()):
        """The permit sync under way (the oldest running one), with its
        progress: on a fresh database the first sync, before any figure."""
        Log = self.env["sicantik.sync.log"]
        log = Log.search(
            list(scope)
            + [("state", "=", "running"), ("operation", "in", SYNC_OPERATIONS)],
            order="id",
            limit=1,
        )
        if not log:
            return False
        values = self._log_values(log)
        values.update(
            {
                "first": not self.env["sicantik.permit"].search_count(
                    list(scope), limit=1
                ),
                "progress": round(log.progress),
                "done": log.progress_done,
                "total": log.progress_total,
            }
        )
        return values

    # ------------------------------------------------------------
    # HOLDERS
    # ------------------------------------------------------------

    @api.model
    def _holders(self, config):
        """Holders without a usable WhatsApp number ("Numbers to fix"), or
        False for a user who may not read contacts."""
        Partner = self.env["res.partner"]
        if not Partner.has_access("read"):
            return False
        domain = Partner._sicantik_numbers_to_fix_domain()
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "sicantik_connector.action_sicantik_numbers_to_fix"
        )
        if config:
            domain += [("sicantik_permit_ids.config_id", "=", config.id)]
            action["domain"] = domain
        return {
            "key": "numbers_to_fix",
            "label": action["name"],
            "count": Partner.search_count(domain),
            "action": action,
        }

    # ------------------------------------------------------------
    # REMINDERS
    # ------------------------------------------------------------

    @api.model
    def _reminders(self, today, scope=()):
        """WhatsApp reminders sent, delivered, read and failed this month, or
        False where the reminder model is not installed. Delivered counts the
        read ones too (a read message was delivered)."""
        if "sicantik.notification" not in self.env:
            return False
        Notification = self.env["sicantik.notification"]
        if not Notification.has_access("read"):
            return False
        # From the 1st of the month at 00:00 UTC, as the "Sent This Month"
        # filter of the reminder list counts.
        since = fields.Datetime.to_string(
            datetime.combine(today.replace(day=1), time.min)
        )
        sent_date = "sent_at" if "sent_at" in Notification._fields else "create_date"
        # A failure is recorded by writing the row: its write date is when it
        # failed (the row may have been queued the month before).
        sent_month = [(sent_date, ">=", since)]
        specs = [
            (
                "sent",
                _("Sent"),
                _("Reminders sent this month"),
                [*scope, ("state", "in", ("sent", "delivered", "read")), *sent_month],
            ),
            (
                "delivered",
                _("Delivered"),
                _("Reminders delivered this month"),
                [*scope, ("state", "in", ("delivered", "read")), *sent_month],
            ),
            (
                "read",
                _("Read"),
                _("Reminders read this month"),
                [*scope, ("state", "=", "read"), *sent_month],
            ),
            (
                "failed",
                _("Failed"),
                _("Reminders failed this month"),
                list(scope) + [("state", "=", "failed"), ("write_date", ">=", since)],
            ),
        ]
        figures = []
        for key, label, title, domain in specs:
            figures.append(
                {
                    "key": key,
                    "label": label,
                    "count": Notification.search_count(domain),
                    "action": {
                        "type": "ir.actions.act_window",
                        "name": title,
                        "res_model": "sicantik.notification",
                        "views": [[False, "list"], [False, "form"]],
                        "domain": domain,
                        "context": {},
                    },
                }
            )
        return figures
