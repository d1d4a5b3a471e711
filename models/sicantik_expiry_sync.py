import logging
import time
import weakref
from datetime import timedelta

from odoo import _, api, fields, models
from odoo.tools import SQL

from odoo.addons.base.models.ir_cron import MAX_BATCH_PER_CRON_JOB

from ..tools import const
from ..tools.sicantik_details import PARKED, CarriedBatch
from ..tools.sicantik_exceptions import SicantikError

_logger = logging.getLogger(__name__)

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

# The callbacks seen per cron cursor: Odoo runs one job's callbacks in a row
# on one cursor, so their number says which one is the round's last.
_CALLBACKS = weakref.WeakKeyDictionary()


def _items(rows):
    """The fetcher's items of work rows: plain data, no cursor."""
    return [(row["id"], row["no_surat"] or "", row["pendaftaran_id"]) for row in rows]


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
    _inherit = ["sicantik.job.mixin", "sicantik.expiry.answers"]

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
            self._drop_carried(config)
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
        carried = self._take_carried(config, log)
        try:
            carried, given = self._ask_turn(config, log, carried, deadline, progress)
        except SicantikError as err:
            self._stop(config, log, err)
            return False
        if carried:
            return True  # its answers are this run's next turn
        remaining = self._count_due(config, fields.Datetime.now())
        if log.run_limit:
            remaining = min(remaining, log.progress_total - log.progress_done)
        if remaining <= 0 or not given:
            log._finish(
                message=_("%(checked)s permit(s) checked.", checked=log.progress_done)
            )
            config.write({"expiry_failures": 0})
            self._end_run(config, log)
            return False
        return True

    @api.model
    def _batch_size(self, config, deadline, log, outstanding=0, given=0):
        """How many more permits this callback can give the fetcher within
        its budget: ``outstanding`` it still holds (asked, not written),
        ``given`` this callback gave it already (at most
        ``sicantik_connector.expiry_batch_size`` per callback)."""
        batch = self._job_param_int("sicantik_connector.expiry_batch_size", 500)
        batch -= given
        rate = config.rate_limit if config.rate_limit_enabled else 0
        if rate:
            budget = max(1.0, deadline - time.monotonic())
            batch = min(batch, int(rate * budget * 1.2) + config.max_workers)
        batch -= outstanding
        if log.run_limit:
            batch = min(batch, log.progress_total - log.progress_done - outstanding)
        return max(0, batch)

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
        write the answers chunk by chunk, all in this call (Test Expiry
        Sync). Raises a system-scope error after writing the answers
        received before it. At the deadline no new permit is asked; the
        answers in flight are still written."""
        carried = self._open_carried(config)
        try:
            carried.rows.update((row["id"], row) for row in rows)
            carried.batch.add(_items(rows))
            carried.batch.close_input()
            self._read_answers(config, carried, log, deadline, progress, commit)
            self._drain(config, carried, log, progress, commit)
        finally:
            carried.close()

    @api.model
    def _ask_turn(self, config, log, carried, deadline, progress):
        """One cron callback's turn: give the fetcher the due permits it can
        ask within the budget, write the answers until ``deadline``, and
        return ``(batch, given)``: the batch still running, parked for the
        next callback of this process (or None when it is over), and the
        number of permits given this turn.

        Pipelined across callbacks: the requests go on while this callback
        commits, ends and the next one starts, so the window never drains
        at a callback boundary. Where no next callback can take it (a test,
        the cron's last callback of its round), the deadline stops new
        requests and the answers in flight are written, as in one call.
        """
        carried = carried or self._open_carried(config)
        batch, given, parked = carried.batch, 0, False
        try:
            while True:
                added = 0
                if not batch.input_closed:
                    added = self._give_work(config, log, carried, deadline, given)
                    given += added
                self._read_answers(config, carried, log, deadline, progress)
                if batch.over or time.monotonic() >= deadline or not added:
                    break  # else it ran dry: give it more
            if not batch.over and self._may_park():
                carried.mark = self._carry_mark(config, log)
                PARKED.park(
                    self._carry_key(config, log), carried, 2 * self._job_time_budget()
                )
                parked = True
                return carried, given
            self._drain(config, carried, log, progress)
            return None, given
        finally:
            if not parked:
                carried.close()

    @api.model
    def _open_carried(self, config):
        api = config._make_api()
        try:
            batch = api.open_permit_details(max_workers=config.max_workers)
        except BaseException:
            api.close()
            raise
        return CarriedBatch(api, batch, {}, None)

    @api.model
    def _drain(self, config, carried, log, progress, commit=True):
        """No new permit is asked; the answers in flight are written."""
        carried.batch.stop_input()
        self._read_answers(config, carried, log, None, progress, commit)

    @api.model
    def _give_work(self, config, log, carried, deadline, given):
        """Give the fetcher the next due permits its budget has room for
        (``given``: how many this callback gave already); close its input
        once the run's last ones are given. Returns how many were given."""
        batch = carried.batch
        outstanding = batch.outstanding()
        room = self._batch_size(config, deadline, log, len(outstanding), given)
        rows = (
            self._select_work(config, fields.Datetime.now(), room, exclude=outstanding)
            if room > 0
            else []
        )
        carried.rows.update((row["id"], row) for row in rows)
        batch.add(_items(rows))
        # The last permits of the run: nothing more is due, or the number
        # asked for is reached.
        if len(rows) < room or (
            log.run_limit
            and log.progress_done + len(outstanding) + len(rows) >= log.progress_total
        ):
            batch.close_input()
        return len(rows)

    @api.model
    def _read_answers(self, config, carried, log, deadline, progress, commit=True):
        """Write the answers ``carried`` hands out, chunk by chunk, until its
        batch is over or ``deadline`` passed; then add its client's figures
        to the log. Raises the batch's system error after writing the
        answers received before it. Each answer is handed out, so written,
        once."""
        chunk_size = max(
            1, self._job_param_int("sicantik_connector.expiry_chunk_size", 50)
        )
        today = config._today()

        def write(chunk):
            self._write_chunk(config, chunk, log, today)
            progress["done"] += len(chunk)
            if commit:
                left = len(carried.batch.outstanding())
                self._job_commit(progress["done"], max(1, left))

        chunk = []
        try:
            for key, result in carried.batch.results(deadline):
                chunk.append((carried.rows.pop(key), result))
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
            log._add_client_stats(carried.api.stats.take())

    # ------------------------------------------------------------
    # A BATCH CARRIED TO THE NEXT CALLBACK
    # ------------------------------------------------------------

    @api.model
    def _may_park(self):
        """True when a next callback of this process can take a running
        batch: a cron worker's callback (``cron_id`` in the context; "Run
        manually" runs once) that is not the last of its round (Odoo runs a
        job at most ``MAX_BATCH_PER_CRON_JOB`` times in a row, all on one
        cursor)."""
        if not self._job_can_commit() or not self.env.context.get("cron_id"):
            return False
        seen = _CALLBACKS.setdefault(self.env.cr, set())
        seen.add(self.env.context.get("ir_cron_progress_id"))
        return len(seen) < MAX_BATCH_PER_CRON_JOB

    @api.model
    def _carry_key(self, config, log):
        return (self.env.cr.dbname, config.id, log.id)

    @api.model
    def _carry_mark(self, config, log):
        """What must not have moved for a carried batch to be taken back:
        the run's progress (another process resumed it otherwise) and the
        settings its client was made with."""
        return (
            log.progress_done,
            config.api_url,
            config.rate_limit_enabled,
            config.rate_limit,
            config.max_workers,
            config.timeout,
        )

    @api.model
    def _take_carried(self, config, log):
        """The batch this process's last callback left running for ``log``,
        or None (absent, expired, or the run moved on without it: then its
        answers are dropped and those permits asked again)."""
        carried = PARKED.take(self._carry_key(config, log))
        if carried is not None and carried.mark != self._carry_mark(config, log):
            _logger.info(
                "SICANTIK %s (id %s): the expiry run moved on meanwhile; the "
                "answers of the last callback are dropped",
                config.name,
                config.id,
            )
            carried.close()
            carried = None
        return carried

    @api.model
    def _drop_carried(self, config):
        dbname = self.env.cr.dbname
        PARKED.drop(lambda key: key[:2] == (dbname, config.id))

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
    def _select_work(self, config, now, limit, due_only=True, exclude=()):
        """The permits the expiry sync asks about next, as dicts.

        Permits without an expiry date first, then the re-checks, oldest due
        first. With ``due_only=False`` (Test Expiry Sync when nothing is due)
        the permits checked longest ago. ``exclude``: ids the fetcher still
        holds (asked, not written yet).
        """
        self.env["sicantik.permit"].flush_model()
        where = (
            self._due_sql(config, now) if due_only else SQL("config_id = %s", config.id)
        )
        if exclude:
            where = SQL("%s AND id != ALL(%s)", where, sorted(exclude))
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
