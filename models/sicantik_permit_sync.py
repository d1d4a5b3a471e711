import logging
import time
from datetime import datetime, timedelta

from odoo import _, api, fields, models
from odoo.tools import SQL

from ..tools import expiry
from ..tools.sicantik_exceptions import SicantikError
from .bulk_sql import ROW_ERRORS, bulk_insert, bulk_update, row_attempt
from .sicantik_permit_type import normalise_type_name

_logger = logging.getLogger(__name__)

# Columns the permit list manages (with the expiry ones when it carries
# d_berlaku_izin), and the stored row a page is compared with. The letter
# (no_surat) is part of a permit's key: set when the permit is created.
LIST_COLUMNS = ("applicant_name", "permit_type_id", "permit_type_name")
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
PRESENCE_COLUMNS = ("listed_pass", "missed_passes", "delisted_date")
STORED_COLUMNS = (
    "pendaftaran_id",
    "no_surat",
    "id",
    *LIST_COLUMNS,
    *LIST_EXPIRY_COLUMNS,
    *PRESENCE_COLUMNS,
)
# The unique index a permit's key lives in (sicantik.permit.init()).
PERMIT_KEY = SQL("config_id, pendaftaran_id, COALESCE(no_surat, '')")


def _error_code(err):
    return getattr(err, "pgcode", None) or type(err).__name__


class SicantikPermitSync(models.AbstractModel):
    """The permit-list job: permit types, then pass after pass over
    ``listpermohonanterbit``, page by page, resumable.

    The pass's moving cursor (next row, last page's digest, rows read) lives
    in its own row, ``sicantik.permit.pass``, so every cron callback resumes
    from the database; each page is written with a constant number of
    queries and committed with the cursor. The connector's row is written
    only when a run or a pass starts or ends: a page never touches it, so a
    button writing the connector during a pass never loses a race to a page.
    """

    _name = "sicantik.permit.sync"
    _description = "SICANTIK Permit Sync"
    _inherit = ["sicantik.job.mixin"]

    _job_operation = "permits"
    _job_cron = "sicantik_connector.ir_cron_sync_permits"
    _job_lock_key = 0x51C40001
    _job_log_field = "sync_log_id"

    # ------------------------------------------------------------
    # CRON
    # ------------------------------------------------------------

    @api.model
    def _cron_sync_permits(self):
        """Permit sync: types, then pages of the permit list, resumable."""
        self._job_run()

    # ------------------------------------------------------------
    # ONE CALLBACK
    # ------------------------------------------------------------

    @api.model
    def _is_due(self, config, now):
        if config.sync_requested or not config.sync_pass_started_at:
            return True
        # One minute of slack: the cron fires at its interval, give or take.
        due_at = config.sync_pass_started_at + timedelta(minutes=config.sync_interval)
        return due_at <= now + timedelta(minutes=1)

    @api.model
    def _job_batch(self, config, deadline, progress):
        """One cron callback's share of the permit sync of ``config``.

        Returns True when this connector has more pages to sync right away.
        """
        config = config.with_context(tracking_disable=True, sicantik_sync=True)
        Log = self.env["sicantik.sync.log"].sudo()
        now = fields.Datetime.now()
        in_progress = config.sync_pass_state == "in_progress"
        log = Log._resume_run(config, "permits", config.sync_log_id)
        if not log and not in_progress and not self._is_due(config, now):
            return False
        trigger = "button" if config.sync_requested else "schedule"
        user = config.sync_requested_by or self.env.user
        try:
            api = config._make_api()
        except SicantikError as err:
            # Settings the client refuses (say a URL stored before the
            # constraint existed): a configuration failure, not an internal one.
            log = log or Log._start(config, "permits", trigger, user=user)
            self._stop(config, log, err)
            return False
        pass_row = self.env["sicantik.permit.pass"]._for_config(config)
        with api:
            try:
                if not log and not in_progress:
                    self._start_pass(config, pass_row, api, now, trigger, user)
                    api.stats.reset()
                if not log:
                    log = self._open_log(config, pass_row, trigger, user, progress)
                finished = self._sync_pages(
                    config, pass_row, api, log, deadline, progress
                )
            except SicantikError as err:
                self._stop(config, log or Log, err, pass_row)
                return False
            finally:
                if log:
                    log._add_client_stats(api.stats.as_dict())
        if finished:
            self._end_pass(config, pass_row, log)
        return not finished

    @api.model
    def _open_log(self, config, pass_row, trigger, user, progress):
        """The log row of this pass's run (a resumed pass says where)."""
        offset = pass_row.next_offset
        log = (
            self.env["sicantik.sync.log"]
            .sudo()
            ._start(
                config,
                "permits",
                trigger,
                user=user,
                start_offset=offset,
                progress_done=offset,
                progress_total=config.sync_last_pass_rows,
                message=_("Continues the pass at row %(offset)s.", offset=offset)
                if offset
                else False,
            )
        )
        config.write({"sync_log_id": log.id, "sync_requested": False})
        self._job_commit(progress["done"], 1)
        return log

    @api.model
    def _start_pass(self, config, pass_row, api, now, trigger, user):
        """Sync the permit types (their own log row), then open a pass."""
        log = (
            self.env["sicantik.sync.log"]
            .sudo()
            ._start(config, "permit_types", trigger, user=user)
        )
        try:
            remote = api.list_permit_types()
        except SicantikError as err:
            log._add_client_stats(api.stats.as_dict())
            log._set_failure(err.failure_type, str(err))
            log._finish("failed")
            config.write({"sync_requested": False, "sync_requested_by": False})
            raise
        counts = self.env["sicantik.permit.type"]._sync_from_types(config, remote)
        log._add_counts(**counts)
        log._add_client_stats(api.stats.as_dict())
        log._finish()
        # The pass's start is also its mark on the permits it lists
        # (``listed_pass``): strictly later than the previous pass's, even
        # when two passes start within one second.
        previous = config.sync_pass_started_at
        if previous and now <= previous:
            now = previous + timedelta(seconds=1)
        pass_row.write({"next_offset": 0, "page_digest": False, "pass_rows": 0})
        config.write({"sync_pass_state": "in_progress", "sync_pass_started_at": now})

    @api.model
    def _sync_pages(self, config, pass_row, api, log, deadline, progress):
        """Sync pages from the stored offset until the end of the list, the
        page cap or the deadline. Returns True at the end of the list.

        Per page: the permits, the pass row ``pass_row`` and the log row,
        never the connector's row (see the class docstring)."""
        PermitType = self.env["sicantik.permit.type"].sudo()
        type_map = PermitType._get_type_map(config)
        today = config._today()
        max_pages = self._job_param_int("sicantik_connector.sync_pages_per_batch", 25)
        pages = 0
        for page in api.iter_issued_permits(
            config.page_size,
            start_offset=pass_row.next_offset,
            previous_digest=pass_row.page_digest or None,
        ):
            now = fields.Datetime.now()
            with self.env.cr.savepoint():
                type_map = PermitType._ensure_types(
                    config, [p.permit_type for p in page.permits], type_map
                )
                counts, changes = self._upsert_page(
                    config,
                    page.permits,
                    type_map,
                    now,
                    today,
                    marker=config.sync_pass_started_at,
                )
                self._note_list_expiry(config, page, now)
                pass_row.write(
                    {
                        "next_offset": page.next_offset,
                        "page_digest": page.digest,
                        "pass_rows": pass_row.pass_rows + page.raw_count,
                    }
                )
                log._add_page(page, counts, now)
            # Follow-up outside the constant-query upsert: chatter of renewals
            # and of permits listed again.
            self.env["sicantik.permit"]._post_expiry_changes(changes, _("permit list"))
            self.env["sicantik.permit"]._post_listed_again(counts["restored"])
            pages += 1
            progress["done"] += 1
            if page.is_last:
                return True
            left = config.sync_last_pass_rows - pass_row.next_offset
            self._job_commit(progress["done"], max(1, left // max(1, config.page_size)))
            if pages >= max_pages or time.monotonic() >= deadline:
                return False
        return True

    @api.model
    def _end_pass(self, config, pass_row, log):
        self.env["sicantik.permit.departures"]._mark_departures(config, log)
        log._finish(
            message=_(
                "Pass complete: %(rows)s rows of the permit list read.",
                rows=pass_row.pass_rows,
            )
        )
        pass_row.write({"next_offset": 0, "page_digest": False})
        config.write(
            {
                "sync_pass_state": "idle",
                "sync_log_id": False,
                "last_sync_log_id": log.id,
                "sync_last_pass_rows": pass_row.pass_rows,
                "sync_requested": False,
                "sync_requested_by": False,
            }
        )

    @api.model
    def _stop(self, config, log, err, pass_row=None):
        """A system error stopped the permit sync: log it, keep the cursor
        (``pass_row``: the pass row, when the job got that far)."""
        pass_row = pass_row or config.sudo().sync_pass_ids[:1]
        offset = pass_row.next_offset
        _logger.warning(
            "SICANTIK %s (id %s): permit sync stopped at row %s: %s",
            config.name,
            config.id,
            offset,
            err,
        )
        if log:
            log._set_failure(err.failure_type, str(err))
            log._finish(
                message=_(
                    "Stopped at row %(offset)s; the next run continues from there.",
                    offset=offset,
                )
            )
            config.write(
                {
                    "sync_log_id": False,
                    "last_sync_log_id": log.id,
                    "sync_requested": False,
                    "sync_requested_by": False,
                }
            )
        # Compared once: if exactly a page of permits was added meanwhile, the
        # next run must not take that true page for a repeat again.
        if pass_row.page_digest:
            pass_row.write({"page_digest": False})
        if err.retry_after:
            at = fields.Datetime.now() + timedelta(seconds=err.retry_after)
            self.env.ref(self._job_cron).sudo()._trigger(at=at)

    @api.model
    def _note_list_expiry(self, config, page, now):
        """Notice when the permit list starts (or stops) carrying expiry dates."""
        if not page.permits:
            return
        has = page.has_expiry_field
        if has and not config.list_has_expiry:
            _logger.info(
                "SICANTIK %s (id %s): the permit list now carries expiry dates; "
                "the expiry sync stops asking permit by permit",
                config.name,
                config.id,
            )
            config.write({"list_has_expiry": True, "list_has_expiry_since": now})
        elif not has and config.list_has_expiry:
            _logger.warning(
                "SICANTIK %s (id %s): the permit list no longer carries expiry "
                "dates; the expiry sync asks permit by permit again",
                config.name,
                config.id,
            )
            config.write({"list_has_expiry": False, "list_has_expiry_since": False})
            Permit = self.env["sicantik.permit"]
            Permit.flush_model()
            self.env.cr.execute(
                SQL(
                    "UPDATE sicantik_permit SET next_expiry_check = %s "
                    "WHERE config_id = %s AND next_expiry_check IS NULL",
                    now,
                    config.id,
                )
            )
            Permit.invalidate_model(["next_expiry_check"])

    # ------------------------------------------------------------
    # ONE PAGE INTO PERMITS
    # ------------------------------------------------------------

    @api.model
    def _upsert_page(self, config, issued_permits, type_map, now, today, marker=None):
        """Create or update the permits of one page of the permit list, one
        per (registration, letter).

        A constant number of queries whatever the page size: one SELECT of
        the stored rows, one INSERT of the new ones, one UPDATE of the changed
        ones, one UPDATE marking the stored ones as listed by the pass
        ``marker`` (its start; None outside a pass). Returns ``(counts,
        changes)`` where ``changes`` lists the ``(id, old_date, new_date)``
        expiry changes and ``counts["restored"]`` the permits listed again,
        for the chatter follow-up.
        """
        counts = dict.fromkeys(("created", "updated", "unchanged", "failed"), 0)
        counts["set_aside"] = []
        counts["restored"] = []
        if not issued_permits:
            return counts, []
        existing = self._stored_rows(config, [p.pendaftaran_id for p in issued_permits])
        with_expiry = any(p.has_expiry_field for p in issued_permits)
        columns = LIST_COLUMNS + (LIST_EXPIRY_COLUMNS if with_expiry else ())
        new_rows, updates, changes, seen = [], {}, [], []
        for issued in issued_permits:
            old = existing.get((issued.pendaftaran_id, issued.no_surat))
            if old is None:
                values = self._prepare_permit_values(
                    config, issued, type_map, now, today
                )
                if marker:
                    values.update(listed_pass=marker, missed_passes=0)
                new_rows.append(values)
                continue
            if marker and (
                old["listed_pass"] != marker
                or old["missed_passes"]
                or old["delisted_date"]
            ):
                seen.append(old["id"])
                if old["delisted_date"]:
                    counts["restored"].append(old["id"])
            new = self._merge_issued(old, issued, type_map, now, today)
            wanted = {c: new[c] for c in columns}
            if not _differs({c: old[c] for c in columns}, wanted):
                counts["unchanged"] += 1
                continue
            updates[old["id"]] = wanted
            if with_expiry and old["expiry_date"]:
                if wanted["expiry_date"] != old["expiry_date"]:
                    changes.append(
                        (old["id"], old["expiry_date"], wanted["expiry_date"])
                    )
        keys = {old["id"]: old["pendaftaran_id"] for old in existing.values()}
        self._write_page(config, new_rows, updates, keys, counts)
        self.env["sicantik.permit.departures"]._mark_listed(seen, marker)
        self._recheck_siblings(existing, new_rows, now)
        return counts, changes

    @api.model
    def _stored_rows(self, config, pendaftaran_ids):
        """{(registration id, letter): stored columns} of the permits of a
        page's registrations, every letter of them (one query)."""
        Permit = self.env["sicantik.permit"]
        Permit.flush_model()
        self.env.cr.execute(
            SQL(
                "SELECT %s FROM sicantik_permit "
                "WHERE config_id = %s AND pendaftaran_id = ANY(%s)",
                SQL(", ").join(SQL.identifier(c) for c in STORED_COLUMNS),
                config.id,
                pendaftaran_ids,
            )
        )
        return {
            (row[0], row[1] or None): dict(zip(STORED_COLUMNS, row, strict=True))
            for row in self.env.cr.fetchall()
        }

    @api.model
    def _recheck_siblings(self, existing, new_rows, now):
        """A new letter of a registration already stored: its other letters'
        expiry dates are asked for again. Before permits were kept per
        letter, one permit carried whichever letter the list served last,
        so its date may be the other letter's. Rare after the first pass
        since the upgrade: no query when no permit needs it."""
        new_ids = {row["pendaftaran_id"] for row in new_rows}
        due = [
            old["id"]
            for old in existing.values()
            if old["pendaftaran_id"] in new_ids
            and old["expiry_source"] == "cekperizinan"
        ]
        if not due:
            return
        self.env.cr.execute(
            SQL(
                "UPDATE sicantik_permit SET next_expiry_check = %s "
                "WHERE id = ANY(%s) AND (next_expiry_check IS NULL "
                "OR next_expiry_check > %s)",
                now,
                due,
                now,
            )
        )
        self.env["sicantik.permit"].invalidate_model(["next_expiry_check"])

    @api.model
    def _write_page(self, config, new_rows, updates, keys, counts):
        """Insert and update a page's rows in two statements; when one row
        breaks them, redo the page row by row: the others are kept, the bad
        ones are set aside (and asked for again by the next pass)."""
        Permit = self.env["sicantik.permit"]
        conflict = PERMIT_KEY
        try:
            with row_attempt(self.env.cr):
                created = bulk_insert(Permit, new_rows, conflict=conflict)
                bulk_update(Permit, updates)
            counts["created"] += len(created)
            counts["unchanged"] += len(new_rows) - len(created)
            counts["updated"] += len(updates)
        except ROW_ERRORS as err:
            _logger.warning(
                "SICANTIK %s (id %s): page write refused (%s); row by row",
                config.name,
                config.id,
                _error_code(err),
            )
            for row in new_rows:
                refused = self._try_write(
                    lambda row=row: bulk_insert(Permit, [row], conflict=conflict)
                )
                self._count_row(counts, "created", row["pendaftaran_id"], refused)
            for record_id, vals in updates.items():
                refused = self._try_write(
                    lambda record_id=record_id, vals=vals: bulk_update(
                        Permit, {record_id: vals}
                    )
                )
                self._count_row(counts, "updated", keys[record_id], refused)
        Permit.invalidate_model()

    @api.model
    def _count_row(self, counts, done, pendaftaran_id, refused):
        if refused is None:
            counts[done] += 1
            return
        counts["failed"] += 1
        counts["set_aside"].append((pendaftaran_id, refused))

    @api.model
    def _try_write(self, write):
        """Run ``write`` in a savepoint; None when it worked, else the reason
        in staff words (never the values: they are personal data)."""
        try:
            with row_attempt(self.env.cr):
                write()
            return None
        except ROW_ERRORS as err:
            return self.env["sicantik.sync.log"]._row_refusal_reason(err)

    @api.model
    def _prepare_permit_values(self, config, issued, type_map, now, today):
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
        state = expiry.state_for(
            values["expiry_date"], values["expiry_unlimited"], today
        )
        values["expiry_state"] = state
        values["status"] = expiry.status_for(state)
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
    def _merge_issued(self, old, issued, type_map, now, today):
        """The list-managed columns of a stored permit after a list row.

        A field missing or empty in the answer keeps the stored value.
        """
        type_id = type_map.get(normalise_type_name(issued.permit_type))
        new = {
            # A permit with two applicants can straddle two pages, each naming
            # one of them: a stored name is kept, so passes do not flip it.
            "applicant_name": old["applicant_name"] or issued.applicant_name,
            "permit_type_id": type_id or old["permit_type_id"],
            "permit_type_name": issued.permit_type or old["permit_type_name"],
        }
        if issued.has_expiry_field:
            values = self._list_expiry_values(
                issued, old["expiry_date"], old["expiry_unlimited"], now
            )
            changed = values["expiry_date"] != old["expiry_date"] or values[
                "expiry_unlimited"
            ] != bool(old["expiry_unlimited"])
            if not changed:
                # Same date again: keep where and when it was first obtained.
                values["expiry_source"] = (
                    old["expiry_source"] or values["expiry_source"]
                )
                values["expiry_obtained_at"] = (
                    old["expiry_obtained_at"] or values["expiry_obtained_at"]
                )
            state = expiry.state_for(
                values["expiry_date"], values["expiry_unlimited"], today
            )
            values["expiry_state"] = state
            values["status"] = expiry.status_for(state, old["status"])
            new.update(values)
        return new


def _differs(stored, wanted):
    """True when a wanted column differs from the stored one (datetimes to
    the second, empty values alike)."""
    for key, value in wanted.items():
        old = stored[key]
        if isinstance(old, datetime) and isinstance(value, datetime):
            if abs((old - value).total_seconds()) >= 1:
                return True
        elif (old or None) != (value or None) and old != value:
            return True
    return False
