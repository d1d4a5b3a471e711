import logging
from datetime import datetime, time, timedelta

import psycopg2
from markupsafe import Markup, escape

from odoo import _, api, fields, models
from odoo.exceptions import AccessError
from odoo.tools import SQL

from .bulk_sql import bulk_insert, bulk_update
from .sicantik_permit_type import normalise_type_name

_logger = logging.getLogger(__name__)

MANAGER_GROUP = "sicantik_connector.sicantik_connector_group_manager"

# Expiry states, by days left until the expiry date (inclusive bounds).
CRITICAL_DAYS = 30
WARNING_DAYS = 60

# Re-check window of the expiry sync: a renewal changes the date, and a
# reminder must not go to someone who renewed.
RECHECK_BEFORE_DAYS = 90
RECHECK_AFTER_DAYS = 30

# When to ask cekperizinan again, by outcome.
RECHECK_NEAR = timedelta(days=7)
RECHECK_UNLIMITED = timedelta(days=180)
RECHECK_NO_DATE = timedelta(days=30)
RECHECK_UNAVAILABLE = timedelta(days=180)
RECHECK_LONG_EXPIRED = timedelta(days=180)
ERROR_BACKOFF_FIRST = timedelta(hours=6)
ERROR_BACKOFF_MAX = timedelta(days=30)

# Columns the permit list manages, and the cekperizinan details never erased
# by an empty answer.
LIST_COLUMNS = ("no_surat", "applicant_name", "permit_type_id", "permit_type_name")
LIST_EXPIRY_COLUMNS = (
    "expiry_date",
    "expiry_unlimited",
    "expiry_source",
    "expiry_obtained_at",
    "expiry_check_state",
    "next_expiry_check",
    "expiry_state",
    "status",
)
DETAIL_COLUMNS = {
    "received_date": "received_date",
    "issue_date": "issue_date",
    "applicant_address": "applicant_address",
    "applicant_phone": "applicant_phone",
    "company_name": "company_name",
    "npwp": "npwp",
    "company_address": "company_address",
    "kelurahan": "kelurahan",
    "kecamatan": "kecamatan",
}


def expiry_state_for(expiry_date, unlimited, today):
    """The expiry state of a permit on ``today`` (kept in line with the SQL of
    ``_update_expiry_states``)."""
    if unlimited:
        return "ok"
    if not expiry_date:
        return "none"
    days = (expiry_date - today).days
    if days < 0:
        return "expired"
    if days <= CRITICAL_DAYS:
        return "critical"
    if days <= WARNING_DAYS:
        return "warning"
    return "ok"


def status_for(expiry_state, current=None):
    """The status that goes with an expiry state; ``revoked`` is kept."""
    if current == "revoked":
        return "revoked"
    if expiry_state == "expired":
        return "expired"
    if expiry_state == "none":
        return "unknown"
    return "active"


def next_expiry_check(outcome, now, today, expiry_date=None, attempts=0):
    """When the expiry sync asks cekperizinan about a permit again."""
    if outcome == "found":
        if not expiry_date:  # valid as long as the business runs
            return now + RECHECK_UNLIMITED
        days = (expiry_date - today).days
        if days > RECHECK_BEFORE_DAYS:
            return datetime.combine(
                expiry_date - timedelta(days=RECHECK_BEFORE_DAYS), time.min
            )
        if days >= -RECHECK_AFTER_DAYS:
            return now + RECHECK_NEAR
        return now + RECHECK_LONG_EXPIRED
    if outcome == "no_date":
        return now + RECHECK_NO_DATE
    if outcome == "unavailable":
        return now + RECHECK_UNAVAILABLE
    # error: back off with the number of failed attempts
    delay = ERROR_BACKOFF_FIRST * (2 ** max(0, attempts - 1))
    return now + min(delay, ERROR_BACKOFF_MAX)


def _is_details(result):
    return result is not None and not isinstance(result, Exception)


class SicantikPermit(models.Model):
    """An issued permit, as listed by SICANTIK, with its expiry date."""

    _name = "sicantik.permit"
    _description = "SICANTIK Permit"
    _inherit = ["mail.thread"]
    _order = "id desc"
    _rec_names_search = ["no_surat", "pendaftaran_id", "applicant_name"]

    # --- identity (from the permit list)
    config_id = fields.Many2one(
        "sicantik.config",
        string="Connector",
        required=True,
        index=True,
        ondelete="cascade",
    )
    company_id = fields.Many2one(
        related="config_id.company_id", store=True, index=True, readonly=True
    )
    pendaftaran_id = fields.Char(
        string="Registration ID",
        required=True,
        readonly=True,
        tracking=True,
        help="SICANTIK's registration number, the stable key of a permit.",
    )
    no_surat = fields.Char(string="Permit Number", index="trigram", tracking=True)
    applicant_name = fields.Char(index="trigram", tracking=True)
    permit_type_id = fields.Many2one(
        "sicantik.permit.type",
        string="Permit Type",
        index=True,
        ondelete="restrict",
        tracking=True,
    )
    permit_type_name = fields.Char(
        string="Type as listed", help="The type name the permit list gave."
    )

    # --- details (from cekperizinan)
    partner_id = fields.Many2one(
        "res.partner",
        string="Holder",
        index="btree_not_null",
        tracking=True,
        ondelete="set null",
        help="The contact reminders go to; linked by a stable key (NPWP or "
        "registration id) once SICANTIK gave the permit's details.",
    )
    received_date = fields.Date()
    issue_date = fields.Date()
    applicant_address = fields.Char()
    applicant_phone = fields.Char()
    company_name = fields.Char()
    npwp = fields.Char(string="NPWP")
    company_address = fields.Char()
    kelurahan = fields.Char(string="Village")
    kecamatan = fields.Char(string="District")

    # --- expiry
    expiry_date = fields.Date(index=True, tracking=True)
    expiry_unlimited = fields.Boolean(
        string="No Expiry",
        tracking=True,
        help="SICANTIK gives the zero date: valid as long as the business runs.",
    )
    expiry_source = fields.Selection(
        [
            ("list", "Permit list"),
            ("cekperizinan", "Permit details (cekperizinan)"),
            ("manual", "Entered by hand"),
        ],
        readonly=True,
    )
    expiry_obtained_at = fields.Datetime(string="Expiry Obtained", readonly=True)
    days_to_expiry = fields.Integer(compute="_compute_days_to_expiry")
    expiry_state = fields.Selection(
        [
            ("expired", "Expired"),
            ("critical", "Critical (≤ 30 days)"),
            ("warning", "Warning (≤ 60 days)"),
            ("ok", "OK"),
            ("none", "No expiry date"),
        ],
        compute="_compute_expiry_state",
        store=True,
        precompute=True,
        index=True,
        help="Recomputed for every permit each night at 00:00.",
    )
    status = fields.Selection(
        [
            ("active", "Active"),
            ("expired", "Expired"),
            ("revoked", "Revoked"),
            ("unknown", "Unknown"),
        ],
        compute="_compute_status",
        store=True,
        precompute=True,
        readonly=False,
        index=True,
        tracking=True,
        help="Revoked is set by staff and never changed by a sync.",
    )

    # --- expiry check bookkeeping
    expiry_check_state = fields.Selection(
        [
            ("pending", "Not checked yet"),
            ("found", "Date found"),
            ("no_date", "No date on SICANTIK"),
            ("unavailable", "Not available (no company)"),
            ("error", "Error"),
        ],
        default="pending",
        readonly=True,
        index=True,
    )
    next_expiry_check = fields.Datetime(
        index=True,
        readonly=True,
        help="When the expiry sync asks SICANTIK about this permit again "
        "(empty: never, the permit list carries the date).",
    )
    expiry_checked_at = fields.Datetime(string="Last Expiry Check", readonly=True)
    expiry_check_attempts = fields.Integer(readonly=True)
    expiry_check_error = fields.Char(readonly=True)

    _sql_constraints = [
        (
            "pendaftaran_config_unique",
            "UNIQUE(config_id, pendaftaran_id)",
            "A registration ID must be unique per connector.",
        ),
    ]

    # ------------------------------------------------------------
    # COMPUTE METHODS
    # ------------------------------------------------------------

    @api.depends("no_surat", "pendaftaran_id", "applicant_name")
    def _compute_display_name(self):
        for permit in self:
            number = permit.no_surat or permit.pendaftaran_id or ""
            permit.display_name = (
                f"{number} ({permit.applicant_name})"
                if permit.applicant_name
                else number
            )

    @api.depends("expiry_date")
    @api.depends_context("tz")
    def _compute_days_to_expiry(self):
        todays = self._today_by_config()
        for permit in self:
            if permit.expiry_date:
                today = todays[permit.config_id.id]
                permit.days_to_expiry = (permit.expiry_date - today).days
            else:
                permit.days_to_expiry = 0

    @api.depends("expiry_date", "expiry_unlimited")
    def _compute_expiry_state(self):
        todays = self._today_by_config()
        for permit in self:
            permit.expiry_state = expiry_state_for(
                permit.expiry_date,
                permit.expiry_unlimited,
                todays[permit.config_id.id],
            )

    @api.depends("expiry_state")
    def _compute_status(self):
        for permit in self:
            permit.status = status_for(permit.expiry_state, permit.status)

    # ------------------------------------------------------------
    # CRUD METHODS
    # ------------------------------------------------------------

    @api.model_create_multi
    def create(self, vals_list):
        now = fields.Datetime.now()
        for vals in vals_list:
            if vals.get("expiry_date") or vals.get("expiry_unlimited"):
                vals.setdefault("expiry_source", "manual")
                vals.setdefault("expiry_obtained_at", now)
                vals.setdefault("expiry_check_state", "found")
            else:
                vals.setdefault("next_expiry_check", now)
        return super().create(vals_list)

    def write(self, vals):
        if ("expiry_date" in vals or "expiry_unlimited" in vals) and not (
            self.env.context.get("sicantik_sync")
        ):
            # Staff entered the date: say so, and stop asking SICANTIK soon.
            vals = dict(vals, expiry_source="manual")
            vals.setdefault("expiry_obtained_at", fields.Datetime.now())
        return super().write(vals)

    # ------------------------------------------------------------
    # ACTIONS
    # ------------------------------------------------------------

    def action_revoke(self):
        self._check_manager()
        self.write({"status": "revoked"})
        return True

    def action_restore(self):
        self._check_manager()
        todays = self._today_by_config()
        for permit in self.filtered(lambda p: p.status == "revoked"):
            state = expiry_state_for(
                permit.expiry_date,
                permit.expiry_unlimited,
                todays[permit.config_id.id],
            )
            permit.status = status_for(state)
        return True

    def action_check_expiry_now(self):
        """Ask the expiry sync to check these permits at its next run."""
        self._check_manager()
        self.sudo().write(
            {"next_expiry_check": fields.Datetime.now(), "expiry_check_attempts": 0}
        )
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "type": "info",
                "message": _(
                    "%(count)s permit(s) will be checked at the next expiry sync.",
                    count=len(self),
                ),
            },
        }

    # ------------------------------------------------------------
    # BUSINESS METHODS
    # ------------------------------------------------------------

    def _check_manager(self):
        if not self.env.user.has_group(MANAGER_GROUP):
            raise AccessError(
                _("Only a SICANTIK manager can change permits or run a sync.")
            )

    def _today_by_config(self):
        """{config id: today's date in the office's time zone}."""
        todays = {}
        for config in self.config_id:
            todays[config.id] = config._today()
        todays.setdefault(False, fields.Date.context_today(self))
        return todays

    @api.model
    def _prepare_issued_values(self, config, issued, type_map, now, today):
        """Column values of a new permit from an ``IssuedPermit``."""
        values = {
            "config_id": config.id,
            "company_id": config.company_id.id or None,
            "pendaftaran_id": issued.pendaftaran_id,
            "no_surat": issued.no_surat,
            "applicant_name": issued.applicant_name,
            "permit_type_id": type_map.get(normalise_type_name(issued.permit_type)),
            "permit_type_name": issued.permit_type,
            "expiry_date": None,
            "expiry_unlimited": False,
            "expiry_source": None,
            "expiry_obtained_at": None,
            "expiry_check_state": "pending",
            "next_expiry_check": now,
            "expiry_check_attempts": 0,
        }
        if issued.has_expiry_field:
            values.update(self._list_expiry_values(issued, None, False, now))
        state = expiry_state_for(
            values["expiry_date"], values["expiry_unlimited"], today
        )
        values["expiry_state"] = state
        values["status"] = status_for(state)
        return values

    @api.model
    def _list_expiry_values(self, issued, old_date, old_unlimited, now):
        """Expiry columns when the permit list carries ``d_berlaku_izin``.

        An empty value on the list never erases a known date.
        """
        if issued.expiry_unlimited:
            date, unlimited = None, True
        elif issued.expiry_date:
            date, unlimited = issued.expiry_date, False
        else:
            date, unlimited = old_date, old_unlimited
        found = bool(issued.expiry_date or issued.expiry_unlimited)
        return {
            "expiry_date": date,
            "expiry_unlimited": unlimited,
            "expiry_source": "list" if found else None,
            "expiry_obtained_at": now if found else None,
            "expiry_check_state": "found" if (date or unlimited) else "no_date",
            # The list keeps the date current: cekperizinan is not needed.
            "next_expiry_check": None,
        }

    @api.model
    def _upsert_issued_page(self, config, issued_permits, type_map, now, today):
        """Create or update the permits of one page of the permit list.

        A constant number of queries whatever the page size: one SELECT of
        the stored rows, one INSERT of the new ones, one UPDATE of the changed
        ones. Returns ``(counts, changes)`` where ``changes`` lists the
        ``(id, old_date, new_date)`` expiry changes for the chatter follow-up.
        """
        counts = dict.fromkeys(("created", "updated", "unchanged", "failed"), 0)
        if not issued_permits:
            return counts, []
        self.flush_model()
        pids = [p.pendaftaran_id for p in issued_permits]
        self.env.cr.execute(
            SQL(
                """SELECT pendaftaran_id, id, no_surat, applicant_name,
                          permit_type_id, permit_type_name, expiry_date,
                          expiry_unlimited, expiry_source, expiry_obtained_at,
                          expiry_check_state, next_expiry_check, expiry_state,
                          status
                     FROM sicantik_permit
                    WHERE config_id = %s AND pendaftaran_id = ANY(%s)""",
                config.id,
                pids,
            )
        )
        columns = [d[0] for d in self.env.cr.description]
        existing = {
            row[0]: dict(zip(columns, row, strict=True))
            for row in self.env.cr.fetchall()
        }
        with_expiry = any(p.has_expiry_field for p in issued_permits)
        update_columns = LIST_COLUMNS + (LIST_EXPIRY_COLUMNS if with_expiry else ())
        new_rows, updates, changes = [], {}, []
        for issued in issued_permits:
            old = existing.get(issued.pendaftaran_id)
            if old is None:
                new_rows.append(
                    self._prepare_issued_values(config, issued, type_map, now, today)
                )
                continue
            new = self._merge_issued(old, issued, type_map, now, today)
            stored = {c: old[c] for c in update_columns}
            wanted = {c: new[c] for c in update_columns}
            if self._differs(stored, wanted):
                updates[old["id"]] = wanted
                if (
                    with_expiry
                    and old["expiry_date"]
                    and wanted["expiry_date"] != old["expiry_date"]
                ):
                    changes.append(
                        (old["id"], old["expiry_date"], wanted["expiry_date"])
                    )
            else:
                counts["unchanged"] += 1
        try:
            with self.env.cr.savepoint(flush=False):
                created = bulk_insert(
                    self, new_rows, conflict=("config_id", "pendaftaran_id")
                )
                bulk_update(self, updates)
            counts["created"] += len(created)
            counts["unchanged"] += len(new_rows) - len(created)
            counts["updated"] += len(updates)
        except psycopg2.Error as err:
            # One bad row must not cost the page: redo it row by row.
            _logger.warning(
                "SICANTIK %s (id %s): page write failed (%s); retrying row by row",
                config.name,
                config.id,
                err,
            )
            for row in new_rows:
                ok = self._try_write(
                    lambda row=row: bulk_insert(
                        self, [row], conflict=("config_id", "pendaftaran_id")
                    )
                )
                counts["created" if ok else "failed"] += 1
            for record_id, vals in updates.items():
                ok = self._try_write(
                    lambda record_id=record_id, vals=vals: bulk_update(
                        self, {record_id: vals}
                    )
                )
                counts["updated" if ok else "failed"] += 1
        self.invalidate_model()
        return counts, changes

    def _try_write(self, write):
        try:
            with self.env.cr.savepoint(flush=False):
                write()
            return True
        except psycopg2.Error as err:
            _logger.warning("SICANTIK: a permit row was skipped: %s", err)
            return False

    @staticmethod
    def _differs(stored, wanted):
        for key, value in wanted.items():
            old = stored[key]
            if isinstance(old, datetime) and isinstance(value, datetime):
                if abs((old - value).total_seconds()) >= 1:
                    return True
            elif (old or None) != (value or None) and old != value:
                return True
        return False

    @api.model
    def _merge_issued(self, old, issued, type_map, now, today):
        """The list-managed columns of a stored permit after a list row.

        A field missing or empty in the answer keeps the stored value.
        """
        type_id = type_map.get(normalise_type_name(issued.permit_type))
        new = {
            "no_surat": issued.no_surat or old["no_surat"],
            # A permit with two applicants can straddle two pages, each naming
            # one of them: a stored name is kept, so passes do not flip it.
            "applicant_name": old["applicant_name"] or issued.applicant_name,
            "permit_type_id": type_id or old["permit_type_id"],
            "permit_type_name": issued.permit_type or old["permit_type_name"],
        }
        if issued.has_expiry_field:
            expiry = self._list_expiry_values(
                issued, old["expiry_date"], old["expiry_unlimited"], now
            )
            changed = expiry["expiry_date"] != old["expiry_date"] or expiry[
                "expiry_unlimited"
            ] != bool(old["expiry_unlimited"])
            if not changed:
                # Same date again: keep where and when it was first obtained.
                expiry["expiry_source"] = (
                    old["expiry_source"] or expiry["expiry_source"]
                )
                expiry["expiry_obtained_at"] = (
                    old["expiry_obtained_at"] or expiry["expiry_obtained_at"]
                )
            state = expiry_state_for(
                expiry["expiry_date"], expiry["expiry_unlimited"], today
            )
            expiry["expiry_state"] = state
            expiry["status"] = status_for(state, old["status"])
            new.update(expiry)
        return new

    @api.model
    def _apply_expiry_results(self, config, results, now, today):
        """Write one chunk of cekperizinan results with ONE set-based UPDATE.

        ``results`` is a list of ``(row, result)`` where ``row`` is the dict
        selected by ``_select_expiry_work`` and ``result`` a ``PermitDetails``,
        None (404: no data, e.g. a permit without a company) or a record-scope
        ``SicantikError``. Returns ``(counts, changes)``.
        """
        counts = dict.fromkeys(
            ("found", "no_date", "unavailable", "failed", "updated", "unchanged"), 0
        )
        changes = []
        updates = {}
        for row, result in results:
            values = self._expiry_result_values(row, result, now, today)
            outcome = values["expiry_check_state"]
            counts["failed" if outcome == "error" else outcome] += 1
            old_date = row["expiry_date"]
            if old_date and values["expiry_date"] != old_date:
                changes.append((row["id"], old_date, values["expiry_date"]))
            if values["expiry_date"] != row["expiry_date"] or values[
                "expiry_unlimited"
            ] != bool(row["expiry_unlimited"]):
                counts["updated"] += 1
            else:
                counts["unchanged"] += 1
            updates[row["id"]] = values
        if updates:
            self.flush_model()
            bulk_update(self, updates, keep_null=DETAIL_COLUMNS)
            self.invalidate_model()
        answered = [row["id"] for row, result in results if _is_details(result)]
        self.browse(answered)._link_partners()
        return counts, changes

    @api.model
    def _expiry_result_values(self, row, result, now, today):
        """Columns of one permit after its cekperizinan answer."""
        attempts = row["expiry_check_attempts"] or 0
        date, unlimited = row["expiry_date"], bool(row["expiry_unlimited"])
        source, obtained = row["expiry_source"], row["expiry_obtained_at"]
        details = dict.fromkeys(DETAIL_COLUMNS)
        error = None
        if result is None:
            outcome = "unavailable"
        elif isinstance(result, Exception) and not (row["no_surat"] or "").strip():
            # Without a permit number SICANTIK cannot be asked: not an error
            # of the run; the number may come with a later permit sync.
            outcome = "unavailable"
            error = _("No permit number: SICANTIK cannot be asked about it.")
        elif isinstance(result, Exception):
            outcome = "error"
            attempts += 1
            error = str(result)[:250]
        else:
            details = {
                "received_date": result.received_date,
                "issue_date": result.issue_date,
                "applicant_address": result.applicant_address,
                "applicant_phone": result.applicant_phone,
                "company_name": result.company_name,
                "npwp": result.npwp,
                "company_address": result.company_address,
                "kelurahan": result.kelurahan,
                "kecamatan": result.kecamatan,
            }
            if result.expiry_unlimited or result.expiry_date:
                outcome = "found"
                new_date = None if result.expiry_unlimited else result.expiry_date
                if new_date != date or result.expiry_unlimited != unlimited:
                    source, obtained = "cekperizinan", now
                date, unlimited = new_date, bool(result.expiry_unlimited)
                if not source:
                    source, obtained = "cekperizinan", now
            else:
                # NULL or an impossible date: keep what we had.
                outcome = "no_date"
                if result.expiry_invalid:
                    error = _(
                        "SICANTIK gave an impossible expiry date: %(raw)s",
                        raw=result.expiry_raw,
                    )
            attempts = 0
        state = expiry_state_for(date, unlimited, today)
        return {
            "expiry_date": date,
            "expiry_unlimited": unlimited,
            "expiry_source": source,
            "expiry_obtained_at": obtained,
            "expiry_check_state": outcome,
            "next_expiry_check": next_expiry_check(
                outcome, now, today, None if unlimited else date, attempts
            ),
            "expiry_checked_at": now,
            "expiry_check_attempts": attempts,
            "expiry_check_error": error,
            "expiry_state": state,
            "status": status_for(state, row["status"]),
            **details,
        }

    def _post_expiry_changes(self, changes, source_label):
        """Log expiry date changes (renewals) on the permits' chatter.

        A follow-up step, outside the constant-query upsert, only for the
        permits whose known date changed; one batched message creation.
        """
        if not changes:
            return
        bodies = {}
        for permit_id, old_date, new_date in changes:
            if new_date and new_date > old_date:
                text = _(
                    "Renewed: the expiry date moved from %(old)s to %(new)s "
                    "(source: %(origin)s).",
                    old=old_date,
                    new=new_date,
                    origin=source_label,
                )
            else:
                text = _(
                    "The expiry date changed from %(old)s to %(new)s "
                    "(source: %(origin)s).",
                    old=old_date,
                    new=new_date or _("no expiry"),
                    origin=source_label,
                )
            bodies[permit_id] = Markup("<p>%s</p>") % escape(text)
        self.browse(list(bodies)).sudo()._message_log_batch(bodies=bodies)

    @api.model
    def _expiry_due_domain_sql(self, config, now):
        return SQL(
            "config_id = %s AND next_expiry_check IS NOT NULL "
            "AND next_expiry_check <= %s",
            config.id,
            now,
        )

    @api.model
    def _count_expiry_due(self, config, now):
        self.flush_model(["next_expiry_check"])
        self.env.cr.execute(
            SQL(
                "SELECT count(*) FROM sicantik_permit WHERE %s",
                self._expiry_due_domain_sql(config, now),
            )
        )
        return self.env.cr.fetchone()[0]

    @api.model
    def _select_expiry_work(self, config, now, limit, due_only=True):
        """The permits the expiry sync asks about next, as dicts.

        Permits without an expiry date first, then the re-checks, oldest due
        first. With ``due_only=False`` (Test Expiry Sync when nothing is due)
        the permits checked longest ago.
        """
        self.flush_model()
        where = (
            self._expiry_due_domain_sql(config, now)
            if due_only
            else SQL("config_id = %s", config.id)
        )
        self.env.cr.execute(
            SQL(
                """SELECT id, pendaftaran_id, no_surat, expiry_date,
                          expiry_unlimited, expiry_source, expiry_obtained_at,
                          expiry_check_attempts, status
                     FROM sicantik_permit
                    WHERE %s
                 ORDER BY (expiry_date IS NOT NULL OR expiry_unlimited),
                          next_expiry_check NULLS FIRST, id
                    LIMIT %s""",
                where,
                limit,
            )
        )
        columns = [d[0] for d in self.env.cr.description]
        return [dict(zip(columns, row, strict=True)) for row in self.env.cr.fetchall()]

    @api.model
    def _update_expiry_states(self, config, today):
        """Recompute expiry state and status of every permit of ``config``
        for ``today``: one set-based UPDATE of the rows that change.

        Returns ``(changed, newly_expired)``.
        """
        self.flush_model()
        self.env.cr.execute(
            SQL(
                """
                WITH computed AS (
                    SELECT id,
                           CASE WHEN expiry_unlimited THEN 'ok'
                                WHEN expiry_date IS NULL THEN 'none'
                                WHEN expiry_date < %(today)s THEN 'expired'
                                WHEN expiry_date <= %(critical)s THEN 'critical'
                                WHEN expiry_date <= %(warning)s THEN 'warning'
                                ELSE 'ok'
                           END AS state
                      FROM sicantik_permit
                     WHERE config_id = %(config)s
                ), wanted AS (
                    SELECT c.id, c.state,
                           CASE WHEN p.status = 'revoked' THEN 'revoked'
                                WHEN c.state = 'expired' THEN 'expired'
                                WHEN c.state = 'none' THEN 'unknown'
                                ELSE 'active'
                           END AS status
                      FROM computed c
                      JOIN sicantik_permit p ON p.id = c.id
                )
                UPDATE sicantik_permit p
                   SET expiry_state = w.state, status = w.status
                  FROM wanted w
                 WHERE p.id = w.id
                   AND (p.expiry_state IS DISTINCT FROM w.state
                        OR p.status IS DISTINCT FROM w.status)
             RETURNING w.status
                """,
                today=today,
                critical=today + timedelta(days=CRITICAL_DAYS),
                warning=today + timedelta(days=WARNING_DAYS),
                config=config.id,
            )
        )
        statuses = [row[0] for row in self.env.cr.fetchall()]
        self.invalidate_model(["expiry_state", "status"])
        return len(statuses), statuses.count("expired")

    # ------------------------------------------------------------
    # CRON
    # ------------------------------------------------------------

    @api.model
    def _cron_update_status(self):
        """00:00: recompute expiry state and status of every permit."""
        Log = self.env["sicantik.sync.log"]
        for config in self.env["sicantik.config"].search([]):
            log = Log._start(config, "status")
            changed, expired = self._update_expiry_states(config, config._today())
            log.write({"updated_count": changed, "progress_done": changed})
            log._finish(
                "done",
                _(
                    "%(changed)s permit(s) changed state, %(expired)s of them "
                    "expired.",
                    changed=changed,
                    expired=expired,
                ),
            )

    @api.model
    def _cron_check_expiring(self):
        """09:00: queue the due WhatsApp reminder of every expiring permit;
        the sender job sends them at the provider's pace."""
        Log = self.env["sicantik.sync.log"]
        Notification = self.env["sicantik.notification"]
        for config in self.env["sicantik.config"].search([]):
            log = Log._start(config, "notifications")
            counts = Notification._queue_reminders(config, config._today())
            log.write(
                {
                    "fetched_count": counts["queued"]
                    + counts["already"]
                    + counts["unreachable"]
                    + counts["opted_out"],
                    "created_count": counts["queued"],
                    "unchanged_count": counts["already"],
                    "skipped_count": counts["unreachable"] + counts["opted_out"],
                    "progress_done": counts["queued"],
                }
            )
            log._finish(
                "done",
                _(
                    "%(queued)s reminder(s) queued, %(already)s already queued "
                    "earlier, %(unreachable)s holder(s) without a usable WhatsApp "
                    "number, %(opted_out)s opted out, %(superseded)s older "
                    "reminder(s) overtaken.",
                    **counts,
                ),
            )
        if self.env["sicantik.notification"].search_count(
            [("state", "=", "queued")], limit=1
        ):
            self.env.ref("sicantik_connector.ir_cron_send_reminders")._trigger()

    # ------------------------------------------------------------
    # HOLDERS
    # ------------------------------------------------------------

    def _link_partners(self):
        """Give each permit its holder contact, found by a stable key (the
        company's NPWP, else the registration id) and created when missing.

        A new contact takes SICANTIK's name, address and phone; an existing one
        only gets a WhatsApp number when it has none and staff never set one.
        """
        Partner = self.env["res.partner"].sudo().with_context(sicantik_sync=True)
        # A permit staff linked to a contact keeps it.
        keyed = {p: p._holder_key() for p in self if not p.partner_id}
        holders = {
            partner.sicantik_key: partner
            for partner in Partner.with_context(active_test=False).search(
                [("sicantik_key", "in", list(set(keyed.values())))]
            )
        }
        missing = {}
        for permit, key in keyed.items():
            if key not in holders and key not in missing:
                missing[key] = permit._holder_values(key)
        if missing:
            for partner in Partner.create(list(missing.values())):
                holders[partner.sicantik_key] = partner
        by_partner = {}
        for permit, key in keyed.items():
            by_partner.setdefault(holders[key], []).append(permit.id)
        for partner, permit_ids in by_partner.items():
            self.browse(permit_ids).write({"partner_id": partner.id})
        for permit in self:
            partner = permit.partner_id.sudo().with_context(sicantik_sync=True)
            if (
                permit.applicant_phone
                and not partner.whatsapp_number
                and not partner.whatsapp_number_manual
            ):
                partner.whatsapp_number = permit.applicant_phone

    def _holder_key(self):
        self.ensure_one()
        digits = "".join(ch for ch in self.npwp or "" if ch.isdigit())
        company = self.company_id.id or 0
        # NPWP has 15 digits (16 since 2024); anything shorter is not one.
        if len(digits) >= 15 and digits.strip("0"):
            return f"{company}:npwp:{digits}"
        return f"{company}:reg:{self.pendaftaran_id}"

    def _holder_values(self, key):
        is_company = ":npwp:" in key and bool(self.company_name)
        name = (self.company_name if is_company else self.applicant_name) or (
            self.pendaftaran_id
        )
        return {
            "name": name,
            "sicantik_key": key,
            "is_company": is_company,
            "company_id": self.company_id.id,
            "street": (self.company_address if is_company else self.applicant_address)
            or False,
            "city": self.kecamatan or False,
            "vat": self.npwp if is_company else False,
            "whatsapp_number": self.applicant_phone or False,
        }
