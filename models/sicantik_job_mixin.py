import logging
import threading
import time
import traceback
from datetime import datetime, timedelta
from datetime import time as dt_time

import pytz

from odoo import api, fields, models, tools
from odoo.tools import SQL

from .bulk_sql import CONCURRENCY_ERRORS, ConcurrentUpdate

_logger = logging.getLogger(__name__)

DEFAULT_TZ = "Asia/Jakarta"
DEFAULT_LANG = "id_ID"
# The connector field that says a manager asked for a run of the job: such
# a run may use an address no test has passed yet (it proves it).
REQUEST_FIELDS = {"permits": "sync_requested", "expiry": "expiry_run_requested"}
PERMIT_CRON = "sicantik_connector.ir_cron_sync_permits"
# The daily jobs and their local hour in the office's time zone.
DAILY_CRONS = {
    "sicantik_connector.ir_cron_update_status": 0,
    "sicantik_connector.ir_cron_sync_expiry_dates": 2,
    "sicantik_connector.ir_cron_check_expiring": 9,
}


def next_local_time(now_utc, tz_name, hour):
    """The next ``hour``:00 in ``tz_name`` after ``now_utc``, as naive UTC."""
    zone = pytz.timezone(tz_name or DEFAULT_TZ)
    local_now = pytz.utc.localize(now_utc).astimezone(zone)
    candidate = zone.localize(datetime.combine(local_now.date(), dt_time(hour)))
    if candidate <= local_now:
        candidate = zone.localize(
            datetime.combine(local_now.date() + timedelta(days=1), dt_time(hour))
        )
    return candidate.astimezone(pytz.utc).replace(tzinfo=None)


class SicantikJobMixin(models.AbstractModel):
    """What every long SICANTIK job shares: its time budget, the one rule of
    when to commit, the run lock per connector and the batch loop.

    A job (the permit sync, the expiry sync) sets ``_job_operation``,
    ``_job_cron`` and ``_job_lock_key`` and implements ``_job_batch``; the
    reminder sender uses the budget and the commit guard.
    """

    _name = "sicantik.job.mixin"
    _description = "SICANTIK Long Job"

    # The sync log operation, the cron xmlid, the advisory lock key of the
    # job (the lock's second key is the connector id) and the connector field
    # that holds its running log row.
    _job_operation = None
    _job_cron = None
    _job_lock_key = None
    _job_log_field = None

    # ------------------------------------------------------------
    # TIME BUDGET
    # ------------------------------------------------------------

    @api.model
    def _job_param_int(self, key, default):
        """An integer system parameter, ``default`` when unset or not a number."""
        value = self.env["ir.config_parameter"].sudo().get_param(key)
        try:
            return int(value) if value not in (None, False, "") else default
        except ValueError:
            _logger.warning("SICANTIK: parameter %s=%r is not a number", key, value)
            return default

    @api.model
    def _job_time_budget(self):
        """Seconds one cron callback may work before returning.

        Every ready job of a database shares one worker time limit
        (``limit_time_real_cron``, else ``limit_time_real``) and Odoo calls a
        job up to 10 times in a row: a callback takes a twentieth of it, at
        least 3 s and at most a minute. ``sicantik_connector.cron_time_budget``
        overrides it.
        """
        budget = self._job_param_int("sicantik_connector.cron_time_budget", 0)
        if budget > 0:
            return float(budget)
        limit = tools.config.get("limit_time_real_cron")
        if limit is None or limit < 0:
            limit = tools.config.get("limit_time_real") or 0
        if not limit or limit <= 0:
            return 60.0
        return float(min(60.0, max(3.0, limit / 20.0)))

    # ------------------------------------------------------------
    # TRANSACTIONS
    # ------------------------------------------------------------

    @api.model
    def _job_can_commit(self):
        """Commits belong to a worker running the job (a cron run or "Run
        manually"), never to a test, a button or a module installation."""
        return bool(self.env.context.get("ir_cron_progress_id")) and not getattr(
            threading.current_thread(), "testing", False
        )

    @api.model
    def _job_commit(self, done=None, remaining=None):
        """Report progress to the cron (when given) and commit.

        One page, chunk or message per transaction: a killed worker loses at
        most one, and the committed progress keeps the job from being counted
        as timed out.
        """
        if done is not None:
            self.env["ir.cron"]._notify_progress(done=done, remaining=max(0, remaining))
        self.env.flush_all()
        if self._job_can_commit():
            self.env.cr.commit()  # pylint: disable=invalid-commit

    @api.model
    def _job_rollback(self):
        """Drop the uncommitted work of a failed step, where the transaction
        is the job's own (see ``_job_can_commit``)."""
        if self._job_can_commit():
            self.env.cr.rollback()

    # ------------------------------------------------------------
    # RUN LOCKS
    # ------------------------------------------------------------

    @api.model
    def _job_try_lock(self, config):
        """Take this job's run lock on ``config``, or return False.

        A session-level advisory lock: it outlives the commits of a batch and
        PostgreSQL drops it with the connection of a process that dies, so a
        killed worker never blocks the next run.
        """
        self.env.cr.execute(
            SQL("SELECT pg_try_advisory_lock(%s, %s)", self._job_lock_key, config.id)
        )
        return self.env.cr.fetchone()[0]

    @api.model
    def _job_release_lock(self, config):
        self.env.cr.execute(
            SQL("SELECT pg_advisory_unlock(%s, %s)", self._job_lock_key, config.id)
        )

    # ------------------------------------------------------------
    # BATCH LOOP
    # ------------------------------------------------------------

    @api.model
    def _job_batch(self, config, deadline, progress):
        """One callback's share of the job for ``config``; True when it has
        more to do right away. Implemented by each job."""
        raise NotImplementedError

    @api.model
    def _job_log_internal_error(self, config, detail):
        """Close the running row of this job after an unexpected error."""
        config = config.with_context(tracking_disable=True)
        self.env["sicantik.sync.log"]._close_internal_error(
            config, self._job_operation, config[self._job_log_field], detail
        )
        config.write({self._job_log_field: False})

    @api.model
    def _job_address_ok(self, config):
        """True when this job may call ``config``'s server now.

        The schedule starts work only on an address that passed Test
        Connection (or a complete pass); a run a manager asked for (Sync
        Now, the wizard) may use a new one, and a run under way (its log
        still running, after a restart too) goes on to its end. Otherwise
        the skip is logged, once a day, instead of a failure every run.
        """
        if config.address_state == "tested":
            return True
        field = REQUEST_FIELDS.get(self._job_operation)
        if field and config[field]:
            return True
        log = config[self._job_log_field] if self._job_log_field else None
        if log and log.state == "running":
            return True
        _logger.info(
            "SICANTIK %s (id %s): %s sync skipped, the API URL has not passed "
            "Test Connection",
            config.name,
            config.id,
            self._job_operation,
        )
        self.env["sicantik.sync.log"]._note_untested_address(
            config, self._job_operation
        )
        return False

    @api.model
    def _job_run(self):
        """Give every active connector its batch within the time budget; one
        connector's failure is logged and never stops the others.

        Each connector's batch runs in the connector's language, so every
        text the job writes (summaries, reasons, chatter notes) is in it,
        whoever runs the job (OdooBot for the schedule, a manager).
        """
        deadline = time.monotonic() + self._job_time_budget()
        progress = {"done": 0}
        more = 0
        for config in self.env["sicantik.config"].search([]):
            if time.monotonic() >= deadline:
                more += 1
                continue
            lang = config.lang or DEFAULT_LANG
            job = self.with_context(lang=lang)
            config = config.with_context(lang=lang)
            if not job._job_address_ok(config):
                continue
            if not self._job_try_lock(config):
                # Another callback runs this job for this connector (another
                # worker, "Run manually", Test Expiry Sync): never twice at
                # once. Look again in a minute, when it may have ended.
                _logger.info(
                    "SICANTIK %s (id %s): %s sync already running elsewhere",
                    config.name,
                    config.id,
                    self._job_operation,
                )
                self.env.ref(self._job_cron).sudo()._trigger(
                    at=fields.Datetime.now() + timedelta(minutes=1)
                )
                continue
            try:
                more += bool(job._job_batch(config, deadline, progress))
                self.env.flush_all()
            except (ConcurrentUpdate, *CONCURRENCY_ERRORS) as err:
                if not self._job_can_commit():
                    # Not our transaction to roll back (a button, a test): the
                    # driver's own error lets Odoo's request retry take it.
                    raise (err.__cause__ or err) from None
                # Another job of this connector committed first (the permit
                # and the expiry sync both write the connector's row and
                # shared holders). The step is dropped; its run stays open
                # and the next callback resumes it from the last commit.
                _logger.info(
                    "SICANTIK %s (id %s): %s sync step lost a race with another "
                    "job (%s); it runs again",
                    config.name,
                    config.id,
                    self._job_operation,
                    err,
                )
                self._job_rollback()
                more += 1
            except Exception:
                _logger.exception(
                    "SICANTIK %s (id %s): %s sync failed",
                    config.name,
                    config.id,
                    self._job_operation,
                )
                self._job_rollback()
                job._job_log_internal_error(config, traceback.format_exc())
            finally:
                # After the rollback above: the unlock needs a sane transaction.
                self._job_release_lock(config)
        self._job_commit(progress["done"], more)

    # ------------------------------------------------------------
    # SCHEDULE
    # ------------------------------------------------------------

    @api.model
    def _job_align_schedule(self):
        """Keep the scheduled jobs in line with the connectors.

        The daily jobs run at their local hour in the office's time zone (of
        the first active connector), the permit sync at the shortest sync
        interval; every job is active while an active connector exists.
        """
        configs = self.env["sicantik.config"].sudo().with_context(active_test=True)
        configs = configs.search([])
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
