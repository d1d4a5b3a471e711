import logging
import time
from datetime import timedelta

from odoo import _, api, fields, models
from odoo.tools import SQL

from ..tools import const, expiry
from ..tools.sicantik_exceptions import SicantikError
from .bulk_sql import ROW_ERRORS, bulk_update, row_attempt

_logger = logging.getLogger(__name__)

# The cekperizinan details an empty answer never erases.
DETAIL_COLUMNS = (
    "received_date",
    "issue_date",
    "applicant_address",
    "applicant_phone",
    "company_name",
    "npwp",
    "company_address",
    "kelurahan",
    "kecamatan",
)
WORK_COLUMNS = (
    "id",
    "pendaftaran_id",
    "no_surat",
    "expiry_date",
    "expiry_unlimited",
    "expiry_source",
    "expiry_obtained_at",
    "expiry_check_attempts",
    "status",
)


def _is_details(result):
    return result is not None and not isinstance(result, Exception)


class SicantikExpirySync(models.AbstractModel):
    """The expiry job, step two of the two-step process: one ``cekperizinan``
    call per due permit, concurrent within the rate limit, the answers
    written chunk by chunk.

    Which permits are due lives on the permits (``next_expiry_check``), the
    running run on the connector (``expiry_log_id``), so a callback resumes
    from the database.
    """

    _name = "sicantik.expiry.sync"
    _description = "SICANTIK Expiry Sync"
    _inherit = ["sicantik.job.mixin"]

    _job_operation = "expiry"
    _job_cron = "sicantik_connector.ir_cron_sync_expiry_dates"
    _job_lock_key = 0x51C40002
    _job_log_field = "expiry_log_id"

    # ------------------------------------------------------------
    # CRON
    # ------------------------------------------------------------

    @api.model
    def _cron_sync_expiry_dates(self):
        """Expiry sync: ask cekperizinan about the due permits, resumable."""
        self._job_run()

    # ------------------------------------------------------------
    # ONE CALLBACK
    # ------------------------------------------------------------

    @api.model
    def _job_batch(self, config, deadline, progress):
        """One cron callback's share of the expiry sync of ``config``.

        Returns True when this connector has more permits to check right away.
        """
        config = config.with_context(tracking_disable=True, sicantik_sync=True)
        now = fields.Datetime.now()
        log = self.env["sicantik.sync.log"]._resume_run(
            config, "expiry", config.expiry_log_id
        )
        if not log:
            log = self._start_run(config, now)
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
            self._end_run(config, log)
            return False
        batch = self._batch_size(config, deadline, log)
        rows = self._select_work(config, now, batch) if batch > 0 else []
        if rows:
            try:
                self._ask_rows(config, rows, log, deadline, progress)
            except SicantikError as err:
                self._stop(config, log, err)
                return False
        remaining = self._count_due(config, fields.Datetime.now())
        if log.run_limit:
            remaining = min(remaining, log.progress_total - log.progress_done)
        if remaining <= 0 or not rows:
            log._finish(
                message=_("%(checked)s permit(s) checked.", checked=log.progress_done)
            )
            config.write({"expiry_failures": 0})
            self._end_run(config, log)
            return False
        return True

    @api.model
    def _batch_size(self, config, deadline, log):
        """How many permits this callback can ask about within its budget."""
        batch = self._job_param_int("sicantik_connector.expiry_batch_size", 500)
        rate = config.rate_limit if config.rate_limit_enabled else 0
        if rate:
            budget = max(1.0, deadline - time.monotonic())
            batch = min(batch, int(rate * budget * 1.2) + config.max_workers)
        if log.run_limit:
            batch = min(batch, log.progress_total - log.progress_done)
        return batch

    @api.model
    def _start_run(self, config, now):
        """Open the log row of a new expiry run (scheduled or requested)."""
        Log = self.env["sicantik.sync.log"].sudo()
        requested = config.expiry_run_requested
        due = 0 if config.list_has_expiry else self._count_due(config, now)
        if not requested and not due:
            # Nothing to do: no row (the job may be called several times in
            # a row for other connectors).
            return Log
        limit = config.expiry_run_limit if requested else 0
        log = Log._start(
            config,
            "expiry",
            config.expiry_run_trigger if requested else "schedule",
            user=(config.expiry_run_user_id if requested else self.env.user),
            progress_total=min(due, limit) if limit else due,
            run_limit=limit,
        )
        config.write(
            {
                "expiry_log_id": log.id,
                "expiry_run_requested": False,
                "expiry_run_limit": 0,
                "expiry_run_trigger": False,
                "expiry_run_user_id": False,
            }
        )
        return log

    @api.model
    def _end_run(self, config, log):
        config.write({"expiry_log_id": False, "last_expiry_log_id": log.id})

    @api.model
    def _stop(self, config, log, err):
        """A system error stopped the expiry sync: log it and retry later."""
        _logger.warning(
            "SICANTIK %s (id %s): expiry sync stopped: %s", config.name, config.id, err
        )
        failures = config.expiry_failures + 1
        log._set_failure(err.failure_type, str(err))
        retry_at = None
        if err.retryable:
            delay = timedelta(minutes=15) * (2 ** min(failures - 1, 5))
            if err.retry_after:
                delay = max(delay, timedelta(seconds=err.retry_after))
            retry_at = fields.Datetime.now() + delay
            self.env.ref(self._job_cron).sudo()._trigger(at=retry_at)
        log._finish(
            message=_(
                "Stopped; the permits not checked stay due and are checked "
                "by the next run (%(when)s).",
                when=retry_at or _("the next scheduled run"),
            )
        )
        config.write({"expiry_failures": failures})
        self._end_run(config, log)

    @api.model
    def _ask_rows(self, config, rows, log, deadline, progress, commit=True):
        """Ask cekperizinan about ``rows`` (concurrent, rate-limited) and
        write the answers chunk by chunk. Raises a system-scope error after
        writing the answers received before it.

        Pipelined: the fetcher's own threads keep the requests going while
        this thread writes and commits a chunk (the cursor is only ever used
        here). At the deadline no new permit is asked; the answers in flight
        are still written. Each answer is handed out, so written, once."""
        chunk_size = max(
            1, self._job_param_int("sicantik_connector.expiry_chunk_size", 50)
        )
        by_id = {row["id"]: row for row in rows}
        today = config._today()
        written = [0]

        def items():
            # Iterated by the fetcher's feeder thread: plain data, no cursor.
            for row in rows:
                if time.monotonic() >= deadline:
                    return
                yield row["id"], row["no_surat"] or "", row["pendaftaran_id"]

        def write(chunk):
            self._write_chunk(config, chunk, log, today)
            progress["done"] += len(chunk)
            written[0] += len(chunk)
            if commit:
                self._job_commit(progress["done"], max(1, len(rows) - written[0]))

        with config._make_api() as api:
            chunk = []
            try:
                for key, result in api.fetch_permit_details(
                    items(), max_workers=config.max_workers
                ):
                    chunk.append((by_id[key], result))
                    if len(chunk) >= chunk_size:
                        # Emptied first: a chunk the database refused (a lost
                        # race) is not written again by the ``finally`` below,
                        # in a transaction that is already aborted.
                        pending, chunk = chunk, []
                        write(pending)
            finally:
                # The answers received before a stop are settled: keep them.
                if chunk:
                    write(chunk)
                log._add_client_stats(api.stats.as_dict())

    @api.model
    def _write_chunk(self, config, chunk, log, today):
        now = fields.Datetime.now()
        counts, changes = self._apply_results(config, chunk, now, today)
        if not log.failure_type:
            self._note_bad_answer(log, chunk)
        log._add_expiry_chunk(counts, len(chunk), now)
        self.env["sicantik.permit"]._post_expiry_changes(changes, "cekperizinan")

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

    # ------------------------------------------------------------
    # TEST EXPIRY SYNC (a button, inline)
    # ------------------------------------------------------------

    @api.model
    def _run_test(self, config, count):
        """Test Expiry Sync: the two steps on ``count`` permits, inline.

        With no permit synced yet it first reads the permit types and the
        first page of the permit list (step 1), then asks cekperizinan about
        ``count`` permits (step 2): those due first, else those checked
        longest ago. Returns the log row and whether a system error stopped
        the run.
        """
        config = config.with_context(tracking_disable=True, sicantik_sync=True)
        log = self.env["sicantik.sync.log"]._start(
            config, "expiry", "button", run_limit=count
        )
        now = fields.Datetime.now()
        try:
            if not self.env["sicantik.permit"].search_count(
                [("config_id", "=", config.id)], limit=1
            ):
                self._test_first_page(config, log, count, now)
            if not config.list_has_expiry:
                rows = self._select_work(config, now, count) or self._select_work(
                    config, now, count, due_only=False
                )
                log.write({"progress_total": len(rows)})
                if rows:
                    self._ask_rows(
                        config,
                        rows,
                        log,
                        time.monotonic() + 3600,
                        {"done": 0},
                        commit=False,
                    )
        except SicantikError as err:
            log._set_failure(err.failure_type, str(err))
            log._finish()
            self._end_run(config, log)
            return log, True
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
                seconds=log._number(
                    (fields.Datetime.now() - log.start_date).total_seconds(), 1
                ),
                found=log.fetched_count,
                unavailable=log.skipped_count,
                failed=log.failed_count,
            )
        log._finish(message=message)
        self._end_run(config, log)
        return log, False

    @api.model
    def _test_first_page(self, config, log, count, now):
        """Step 1 for Test Expiry Sync on a connector never synced: the types
        and the first ``count`` rows of the permit list."""
        PermitType = self.env["sicantik.permit.type"].sudo()
        PermitSync = self.env["sicantik.permit.sync"]
        with config._make_api() as api:
            try:
                PermitType._sync_from_types(config, api.list_permit_types())
                page = api.list_issued_permits(limit=count, offset=0)
                type_map = PermitType._ensure_types(
                    config,
                    [p.permit_type for p in page.permits],
                    PermitType._get_type_map(config),
                )
                PermitSync._note_list_expiry(config, page, now)
                counts, _changes = PermitSync._upsert_page(
                    config, page.permits, type_map, now, config._today()
                )
                log.write({"created_count": counts["created"]})
            finally:
                log._add_client_stats(api.stats.as_dict())

    # ------------------------------------------------------------
    # WORK LIST
    # ------------------------------------------------------------

    @api.model
    def _due_sql(self, config, now):
        return SQL(
            "config_id = %s AND next_expiry_check IS NOT NULL "
            "AND next_expiry_check <= %s",
            config.id,
            now,
        )

    @api.model
    def _count_due(self, config, now):
        self.env["sicantik.permit"].flush_model(["next_expiry_check"])
        self.env.cr.execute(
            SQL(
                "SELECT count(*) FROM sicantik_permit WHERE %s",
                self._due_sql(config, now),
            )
        )
        return self.env.cr.fetchone()[0]

    @api.model
    def _select_work(self, config, now, limit, due_only=True):
        """The permits the expiry sync asks about next, as dicts.

        Permits without an expiry date first, then the re-checks, oldest due
        first. With ``due_only=False`` (Test Expiry Sync when nothing is due)
        the permits checked longest ago.
        """
        self.env["sicantik.permit"].flush_model()
        where = (
            self._due_sql(config, now) if due_only else SQL("config_id = %s", config.id)
        )
        self.env.cr.execute(
            SQL(
                """SELECT %s FROM sicantik_permit
                    WHERE %s
                 ORDER BY (expiry_date IS NOT NULL OR expiry_unlimited),
                          next_expiry_check NULLS FIRST, id
                    LIMIT %s""",
                SQL(", ").join(SQL.identifier(c) for c in WORK_COLUMNS),
                where,
                limit,
            )
        )
        return [
            dict(zip(WORK_COLUMNS, row, strict=True)) for row in self.env.cr.fetchall()
        ]

    # ------------------------------------------------------------
    # ANSWERS INTO PERMITS
    # ------------------------------------------------------------

    @api.model
    def _apply_results(self, config, results, now, today):
        """Write one chunk of cekperizinan results with ONE set-based UPDATE.

        ``results`` is a list of ``(row, result)`` where ``row`` is the dict
        selected by ``_select_work`` and ``result`` a ``PermitDetails``, None
        (404: no data, e.g. a permit without a company) or a record-scope
        ``SicantikError``. Returns ``(counts, changes)``.
        """
        counts = dict.fromkeys(
            ("found", "no_date", "unavailable", "failed", "updated", "unchanged"), 0
        )
        counts["set_aside"] = []
        changes = []
        updates = {}
        for row, result in results:
            values = self._result_values(row, result, now, today)
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
        refused = self._write_results(results, updates, now, today, counts)
        answered = [
            row["id"]
            for row, result in results
            if _is_details(result) and row["id"] not in refused
        ]
        self._link_holders(self.env["sicantik.permit"].sudo().browse(answered))
        return counts, [change for change in changes if change[0] not in refused]

    @api.model
    def _write_results(self, results, updates, now, today, counts):
        """One UPDATE for the chunk; when the database refuses a row, row by
        row: a refused answer is set aside (the permit keeps its stored data,
        counts as an error and is asked again later). Returns the refused
        permit ids."""
        Permit = self.env["sicantik.permit"].sudo()
        Log = self.env["sicantik.sync.log"]
        if not updates:
            return set()
        Permit.flush_model()
        refused = set()
        try:
            with row_attempt(self.env.cr):
                bulk_update(Permit, updates, keep_null=DETAIL_COLUMNS)
        except ROW_ERRORS:
            for row, _result in results:
                try:
                    with row_attempt(self.env.cr):
                        bulk_update(
                            Permit,
                            {row["id"]: updates[row["id"]]},
                            keep_null=DETAIL_COLUMNS,
                        )
                except ROW_ERRORS as err:
                    reason = Log._row_refusal_reason(err)
                    refused.add(row["id"])
                    counts["set_aside"].append((row["pendaftaran_id"], reason))
                    self._count_refused(counts, row, updates[row["id"]])
                    values = self._result_values(row, ValueError(reason), now, today)
                    bulk_update(Permit, {row["id"]: values}, keep_null=DETAIL_COLUMNS)
        Permit.invalidate_model()
        return refused

    @api.model
    def _count_refused(self, counts, row, values):
        """A refused answer counts as an error, not as what it said."""
        outcome = values["expiry_check_state"]
        counts["failed" if outcome == "error" else outcome] -= 1
        counts["failed"] += 1
        changed = values["expiry_date"] != row["expiry_date"] or values[
            "expiry_unlimited"
        ] != bool(row["expiry_unlimited"])
        counts["updated" if changed else "unchanged"] -= 1
        counts["unchanged"] += 1

    @api.model
    def _link_holders(self, permits):
        """Link the answered permits to their holders; a holder the database
        refuses leaves its permit unlinked (tried again with its next answer)
        and never costs the chunk."""
        try:
            with row_attempt(self.env.cr, flush=True):
                permits._link_partners()
        except ROW_ERRORS:
            for permit in permits:
                try:
                    with row_attempt(self.env.cr, flush=True):
                        permit._link_partners()
                except ROW_ERRORS as err:
                    _logger.warning(
                        "SICANTIK: holder of permit %s not linked (%s)",
                        permit.pendaftaran_id,
                        getattr(err, "pgcode", None) or type(err).__name__,
                    )

    @api.model
    def _result_values(self, row, result, now, today):
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
            details = {column: getattr(result, column) for column in DETAIL_COLUMNS}
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
        state = expiry.state_for(date, unlimited, today)
        return {
            "expiry_date": date,
            "expiry_unlimited": unlimited,
            "expiry_source": source,
            "expiry_obtained_at": obtained,
            "expiry_check_state": outcome,
            "next_expiry_check": expiry.next_check(
                outcome, now, today, None if unlimited else date, attempts
            ),
            "expiry_checked_at": now,
            "expiry_check_attempts": attempts,
            "expiry_check_error": error,
            "expiry_state": state,
            "status": expiry.status_for(state, row["status"]),
            **details,
        }
