import threading
from datetime import timedelta
from unittest.mock import patch

from freezegun import freeze_time

from odoo import fields
from odoo.tests import tagged
from odoo.tools import mute_logger

from ..tools.pg_rate_limiter import PgRateLimiter
from ..tools.sicantik_api import SicantikApi
from ..tools.sicantik_details import PARKED
from ..tools.sicantik_exceptions import SicantikLimiterUnavailable
from ..tools.stats import ClientStats
from .common import SicantikSandboxCase

EXPIRY_CRON = "sicantik_connector.ir_cron_sync_expiry_dates"
WAIT = 10  # seconds: a bound on waiting for the sandbox, never a measure


@tagged("post_install", "-at_install", "sicantik")
class TestSicantikExpirySync(SicantikSandboxCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.config.action_sync_now()
        cls.env.ref("sicantik_connector.ir_cron_sync_permits").method_direct_trigger()
        cls.permits = cls.env["sicantik.permit"].search(
            [("config_id", "=", cls.config.id)]
        )

    def test_expiry_sync_through_the_cron(self):
        due = self.config.expiry_due_count
        self.assertEqual(due, len(self.permits))
        self.sync_expiry()
        log = self.logs("expiry")
        self.assertEqual(len(log), 1, "one row for the whole run")
        self.assertEqual(log.trigger, "schedule")
        self.assertEqual(log.progress_done, due)
        self.assertEqual(log.progress_total, due)
        self.assertIn(log.state, ("done", "partial"))
        self.assertEqual(self.config.last_expiry_log_id, log)
        self.assertFalse(self.config.expiry_log_id)
        self.assertGreaterEqual(log.request_count, self.requests_to("cekperizinan"))
        self.assertTrue(log.latency_p95_ms >= log.latency_p50_ms > 0)
        dataset = self.sandbox.dataset.by_pendaftaran_id
        today = self.config._today()
        for permit in self.permits:
            source = dataset[permit.pendaftaran_id]
            with self.subTest(permit=permit.pendaftaran_id):
                self.assertNotEqual(permit.expiry_check_state, "pending")
                self.assertGreater(permit.next_expiry_check, fields.Datetime.now())
                if not source.no_surat.strip():
                    self.assertEqual(permit.expiry_check_state, "unavailable")
                elif not source.answers_cekperizinan:
                    # The server's 404 for permits without a company.
                    self.assertEqual(permit.expiry_check_state, "unavailable")
                    self.assertGreaterEqual(
                        permit.next_expiry_check,
                        fields.Datetime.now() + timedelta(days=179),
                    )
                elif source.d_berlaku_izin == "0000-00-00":
                    self.assertTrue(permit.expiry_unlimited)
                    self.assertEqual(permit.expiry_state, "ok")
                elif source.d_berlaku_izin:
                    self.assertEqual(str(permit.expiry_date), source.d_berlaku_izin)
                    self.assertEqual(permit.expiry_source, "cekperizinan")
                    days = (permit.expiry_date - today).days
                    expected = (
                        "expired"
                        if days < 0
                        else "critical"
                        if days <= 30
                        else "warning"
                        if days <= 60
                        else "ok"
                    )
                    self.assertEqual(permit.expiry_state, expected)
                    if days > 90:
                        # Next look: 90 days before the expiry date.
                        self.assertEqual(
                            permit.next_expiry_check.date(),
                            permit.expiry_date - timedelta(days=90),
                        )
                    elif days >= -30:
                        self.assertLessEqual(
                            permit.next_expiry_check,
                            fields.Datetime.now() + timedelta(days=7),
                        )
                else:
                    self.assertEqual(permit.expiry_check_state, "no_date")
        self.assertTrue(
            self.permits.filtered(lambda p: p.expiry_check_state == "unavailable")
        )
        # The next night nothing is due: the 404 permits are not asked again.
        self.sandbox.reset_stats()
        tomorrow = fields.Datetime.now() + timedelta(days=1)
        self.assertFalse(
            self.env["sicantik.expiry.sync"]._count_due(self.config, tomorrow)
        )
        with freeze_time(tomorrow, tick=True):
            self.sync_expiry()
        self.assertEqual(self.requests_to("cekperizinan"), 0)

    def test_renewal_replaces_the_date_and_is_posted(self):
        self.sync_expiry()
        permit = self.permits.filtered(
            lambda p: p.expiry_date and p.expiry_check_state == "found"
        )[0]
        source = self.sandbox.dataset.by_pendaftaran_id[permit.pendaftaran_id]
        old = permit.expiry_date
        renewed = old + timedelta(days=5 * 365)
        source.d_berlaku_izin = renewed.isoformat()
        self.addCleanup(setattr, source, "d_berlaku_izin", old.isoformat())
        permit.action_check_expiry_now()
        self.sandbox.reset_stats()
        self.sync_expiry()
        self.assertEqual(self.requests_to("cekperizinan"), 1)
        self.assertEqual(permit.expiry_date, renewed)
        self.assertEqual(permit.expiry_source, "cekperizinan")
        message = permit.message_ids[0]
        self.assertIn("Renewed", message.body)
        self.assertIn(str(old), message.body)
        self.assertIn(str(renewed), message.body)
        self.assertEqual(self.logs("expiry")[0].updated_count, 1)

    def test_an_answer_missing_fields_keeps_the_stored_values(self):
        self.sync_expiry()
        permit = self.permits.filtered(
            lambda p: p.expiry_check_state == "found" and p.applicant_phone and p.npwp
        )[0]
        kept = permit.read(["applicant_phone", "npwp", "expiry_date"])[0]
        source = self.sandbox.dataset.by_pendaftaran_id[permit.pendaftaran_id]
        applicants, company = source.applicants, source.company
        self.addCleanup(setattr, source, "applicants", applicants)
        self.addCleanup(setattr, source, "company", company)
        source.applicants = [applicants[0]._replace(telp_pemohon=None)]
        source.company = company._replace(npwp=None)
        permit.action_check_expiry_now()
        self.sync_expiry()
        self.assertEqual(permit.expiry_check_state, "found")
        self.assertEqual(
            permit.read(["applicant_phone", "npwp", "expiry_date"])[0], kept
        )

    @mute_logger(
        "odoo.addons.sicantik_connector.tools.sicantik_api",
        "odoo.addons.sicantik_connector.models.sicantik_config",
    )
    def test_server_down_stops_the_run_and_leaves_the_rest_due(self):
        with self.param("sicantik_connector.expiry_chunk_size", 5):
            # Every request fails: the first system error stops the run.
            self.sandbox.configure(error_rate=1.0, error_statuses=[500])
            self.env.ref(EXPIRY_CRON).method_direct_trigger()
        log = self.logs("expiry")
        # Permits without a number are settled without a request, so the run
        # may have done a little before the server's error stopped it.
        no_number = self.permits.filtered(lambda p: not p.no_surat)
        self.assertIn(log.state, ("failed", "partial"))
        self.assertEqual(log.failure_type, "server")
        self.assertTrue(log.failure_reason)
        self.assertLessEqual(log.progress_done, len(no_number))
        self.assertEqual(
            self.config.expiry_due_count, len(self.permits) - log.progress_done
        )
        self.assertEqual(self.config.expiry_failures, 1)
        trigger = self.env["ir.cron.trigger"].search(
            [("cron_id", "=", self.env.ref(EXPIRY_CRON).id)], order="id desc", limit=1
        )
        self.assertGreater(trigger.call_at, fields.Datetime.now())
        # Back up: the next run checks everything.
        self.sandbox.configure(error_rate=0.0)
        self.sync_expiry()
        self.env.invalidate_all()  # statistics are computed, not stored
        self.assertEqual(self.config.expiry_due_count, 0)
        self.assertEqual(self.config.expiry_failures, 0)

    def test_a_chunk_write_does_not_drain_the_window(self):
        """While the job writes a chunk, the fetcher keeps asking: more
        requests reach the sandbox during the write than were in flight
        when it began (without the pipeline: at most ``max_workers``)."""
        ExpirySync = type(self.env["sicantik.expiry.sync"])
        stats = self.sandbox._stats
        arrive, write_chunk = stats.arrive, ExpirySync._write_chunk
        arrived = threading.Condition()
        count = [0]
        during_write = []

        def counting_arrive(endpoint, at=None):
            arrival = arrive(endpoint, at)
            with arrived:
                count[0] += 1
                arrived.notify_all()
            return arrival

        def slow_first_write(this, config, chunk, log, today):
            if not during_write:
                with arrived:
                    start = count[0]
                    during_write.append(
                        arrived.wait_for(
                            lambda: count[0] >= start + self.config.max_workers + 2,
                            timeout=WAIT,
                        )
                    )
            return write_chunk(this, config, chunk, log, today)

        self.sandbox.configure(latency=0.02)
        with (
            self.param("sicantik_connector.expiry_chunk_size", 5),
            patch.object(stats, "arrive", counting_arrive),
            patch.object(ExpirySync, "_write_chunk", slow_first_write),
        ):
            self.sync_expiry()
        self.assertEqual(during_write, [True])
        self.assertEqual(self.config.expiry_due_count, 0)
        self.assertEqual(self.logs("expiry").progress_done, len(self.permits))

    def test_a_stopped_run_resumes_without_asking_twice(self):
        """Callbacks of 7 permits (a callback's budget ends, the next one
        resumes): every permit with a number is asked once, none twice."""
        asked = []
        permit_details = SicantikApi._permit_details

        def recording(api, no_surat, pendaftaran_id, cancel):
            asked.append((pendaftaran_id, no_surat))  # atomic across threads
            return permit_details(api, no_surat, pendaftaran_id, cancel)

        with (
            self.param("sicantik_connector.expiry_batch_size", 7),
            self.param("sicantik_connector.expiry_chunk_size", 3),
            patch.object(SicantikApi, "_permit_details", recording),
        ):
            callbacks = self.sync_expiry()
        self.assertGreaterEqual(callbacks, len(self.permits) // 7)
        self.assertEqual(len(asked), len(set(asked)), "a permit was asked twice")
        with_number = self.permits.filtered(lambda p: (p.no_surat or "").strip())
        self.assertEqual(
            set(asked), {(p.pendaftaran_id, p.no_surat) for p in with_number}
        )
        self.assertEqual(self.requests_to("cekperizinan"), len(asked))
        log = self.logs("expiry")
        self.assertEqual(len(log), 1)
        self.assertEqual(log.progress_done, len(self.permits))
        self.assertFalse(
            self.permits.filtered(lambda p: p.expiry_check_state == "pending")
        )

    @mute_logger(
        "odoo.addons.sicantik_connector.tools.sicantik_api",
        "odoo.addons.sicantik_connector.models.sicantik_expiry_sync",
        "odoo.addons.sicantik_connector.models.sicantik_permit_sync",
    )
    def _run_parking_callbacks(self, max_calls=50, between=None):
        """Callbacks of 1 s (the sandbox needs about 2 s for all permits),
        each allowed to park its running batch for the next; ``between``
        runs after each. Returns the cekperizinan calls, as asked."""
        asked = []
        permit_details = SicantikApi._permit_details

        def recording(api, no_surat, pendaftaran_id, cancel):
            asked.append((pendaftaran_id, no_surat))  # atomic across threads
            return permit_details(api, no_surat, pendaftaran_id, cancel)

        ExpirySync = type(self.env["sicantik.expiry.sync"])
        self.sandbox.configure(latency=0.05)
        self.addCleanup(PARKED.close_all)
        with (
            self.param("sicantik_connector.cron_time_budget", 1),
            patch.object(SicantikApi, "_permit_details", recording),
            patch.object(ExpirySync, "_may_park", lambda job: True),
        ):
            for _call in range(max_calls):
                self.env["sicantik.expiry.sync"]._cron_sync_expiry_dates()
                if between:
                    between()
                if not self.config.expiry_log_id:
                    break
        return asked

    def test_a_running_batch_is_carried_to_the_next_callback(self):
        """The window does not drain at a callback's end: the batch goes on
        and the next callback takes it back. Every permit is asked once and
        counted once in the log, whatever callback wrote its answer."""
        taken = PARKED.taken
        asked = self._run_parking_callbacks()
        self.assertGreater(PARKED.taken, taken, "no batch was carried")
        self.assertEqual(len(PARKED), 0, "the finished run left a batch")
        self.assertEqual(len(asked), len(set(asked)), "a permit was asked twice")
        with_number = self.permits.filtered(lambda p: (p.no_surat or "").strip())
        self.assertEqual(
            set(asked), {(p.pendaftaran_id, p.no_surat) for p in with_number}
        )
        log = self.logs("expiry")
        self.assertEqual(log.progress_done, len(self.permits))
        self.assertEqual(log.request_count, self.requests_to("cekperizinan"))
        self.assertEqual(self.config.expiry_due_count, 0)

    def test_a_carried_batch_is_dropped_when_the_run_moved_on(self):
        """Another process resumed the run meanwhile (its progress moved):
        the answers this process still holds are dropped, not written, and
        those permits are asked again."""
        dropped = []

        def another_process_moves_the_run():
            if dropped or not len(PARKED):
                return
            dropped.append(next(iter(PARKED._parked.values()))[0])
            log = self.config.expiry_log_id
            log.progress_done += 1  # what another process's write looks like

        asked = self._run_parking_callbacks(between=another_process_moves_the_run)
        self.assertEqual(len(dropped), 1)
        self.assertTrue(dropped[0].batch._closed and dropped[0].api._closed)
        self.assertFalse(self.config.expiry_log_id, "the run ended")
        with_number = self.permits.filtered(lambda p: (p.no_surat or "").strip())
        self.assertEqual(
            set(asked), {(p.pendaftaran_id, p.no_surat) for p in with_number}
        )
        self.assertGreater(len(asked), len(set(asked)), "nothing was asked again")
        self.assertEqual(self.config.expiry_due_count, 0)

    def test_a_long_lived_clients_figures_are_added_once(self):
        """A batch carried across callbacks adds its client's figures in
        parts (``ClientStats.take``): each request, retry and re-taken
        turn counts once in the log."""
        stats = ClientStats()
        log = self.env["sicantik.sync.log"]._start(self.config, "expiry")
        for part in range(2):
            for _n in range(3):
                stats.record_attempt("cekperizinan", 200, 0.1)
            stats.record_late_slot(0.05)
            if part:
                stats.record_retry()
            log._add_client_stats(stats.take())
        log._add_client_stats(stats.take())  # nothing new: adds nothing
        self.assertEqual(
            (log.request_count, log.status_2xx, log.retry_count, log.late_slot_count),
            (6, 6, 1, 2),
        )

    def test_an_unreachable_rate_limit_is_a_logged_failure(self):
        """No send time from the database: nothing is sent, each sync logs
        the staff reason and stays due; nothing crashes."""

        def unavailable(limiter):
            raise SicantikLimiterUnavailable(
                "rate bucket: database unreachable for 60 s (OperationalError)"
            )

        Log = self.env["sicantik.sync.log"]
        reason = Log._failure_reason("limiter")
        with patch.object(PgRateLimiter, "acquire", unavailable):
            self.env.ref(EXPIRY_CRON).method_direct_trigger()
            self.config.action_sync_now()
            self.env.ref(
                "sicantik_connector.ir_cron_sync_permits"
            ).method_direct_trigger()
        self.assertEqual(self.requests_to(), 0)
        expiry = self.logs("expiry")
        self.assertEqual(expiry.failure_type, "limiter")
        self.assertEqual(expiry.failure_reason, reason)
        self.assertIn("database", reason)
        self.assertEqual(expiry.state, "failed")
        self.assertEqual(self.config.expiry_due_count, len(self.permits))
        self.assertEqual(self.config.expiry_failures, 1)
        permits = self.logs("permit_types") | self.logs("permits")
        self.assertIn("limiter", permits.mapped("failure_type"))
        self.assertFalse(Log.search([("failure_type", "=", "internal")]))

    def test_nightly_status_update(self):
        Permit = self.env["sicantik.permit"]
        today = self.config._today()
        soon, later, revoked = Permit.create(
            [
                {
                    "config_id": self.config.id,
                    "pendaftaran_id": f"99999{i:011d}",
                    "expiry_date": today + timedelta(days=days),
                }
                for i, days in enumerate((1, 31, 1))
            ]
        )
        revoked.action_revoke()
        self.assertEqual(soon.expiry_state, "critical")
        self.assertEqual(soon.status, "active")
        self.assertEqual(later.expiry_state, "warning")
        self.assertEqual(revoked.status, "revoked")
        in_two_days = fields.Datetime.now() + timedelta(days=2)
        with freeze_time(in_two_days):
            # Filters compare dates with today: exact before the job runs.
            expired = Permit.search(
                [
                    ("id", "in", (soon | later | revoked).ids),
                    # The office's day (17:00 UTC is already tomorrow in
                    # Jakarta): the same day the job counts in.
                    (
                        "expiry_date",
                        "<",
                        fields.Date.context_today(
                            Permit.with_context(tz=self.config.tz)
                        ),
                    ),
                ]
            )
            self.assertEqual(expired, soon | revoked)
            self.assertEqual(soon.expiry_state, "critical", "stored until the job")
            self.env.ref(
                "sicantik_connector.ir_cron_update_status"
            ).method_direct_trigger()
            self.assertEqual(soon.expiry_state, "expired")
            self.assertEqual(soon.status, "expired")
            self.assertEqual(later.expiry_state, "critical")
            self.assertEqual(revoked.expiry_state, "expired")
            self.assertEqual(revoked.status, "revoked", "never overwritten")
            log = self.logs("status")
            self.assertEqual(log.state, "done")
            self.assertEqual(log.updated_count, 3)
            self.assertIn("1 of them expired", log.message)

    def test_sync_log_purge(self):
        Log = self.env["sicantik.sync.log"]
        now = fields.Datetime.now()
        old_done = Log._start(
            self.config, "status", start_date=now - timedelta(days=100)
        )
        old_done._finish("done")
        old_running = Log._start(
            self.config, "permits", start_date=now - timedelta(days=100)
        )
        recent = Log._start(self.config, "status", start_date=now - timedelta(days=20))
        recent._finish("done")
        Log._gc_sync_logs()
        self.assertFalse(old_done.exists())
        self.assertTrue(old_running.exists(), "a running row is never purged")
        self.assertTrue(recent.exists())
        with self.param("sicantik_connector.sync_log_retention_days", "10"):
            Log._gc_sync_logs()
        self.assertFalse(recent.exists())

    def test_daily_jobs_follow_the_office_time_zone(self):
        status = self.env.ref("sicantik_connector.ir_cron_update_status")
        expiry = self.env.ref(EXPIRY_CRON)
        check = self.env.ref("sicantik_connector.ir_cron_check_expiring")
        permits = self.env.ref("sicantik_connector.ir_cron_sync_permits")
        # Asia/Jakarta is UTC+7: 00:00, 02:00 and 09:00 local are 17:00,
        # 19:00 and 02:00 UTC.
        self.assertEqual(self.config.tz, "Asia/Jakarta")
        self.assertEqual(
            (status.nextcall.hour, expiry.nextcall.hour, check.nextcall.hour),
            (17, 19, 2),
        )
        self.config.tz = "Asia/Jayapura"  # UTC+9
        self.assertEqual(
            (status.nextcall.hour, expiry.nextcall.hour, check.nextcall.hour),
            (15, 17, 0),
        )
        self.assertGreater(status.nextcall, fields.Datetime.now())
        self.config.sync_interval = 30
        self.assertEqual(
            (permits.interval_number, permits.interval_type), (30, "minutes")
        )

    def test_permit_type_statistics(self):
        self.sync_expiry()
        types = self.env["sicantik.permit.type"].search(
            [("config_id", "=", self.config.id)]
        )
        self.assertEqual(sum(types.mapped("permit_count")), len(self.permits))
        for permit_type in types:
            permits = self.permits.filtered(
                lambda p, t=permit_type: p.permit_type_id == t
            )
            self.assertEqual(permit_type.permit_count, len(permits))
            self.assertEqual(
                permit_type.expired_count,
                len(permits.filtered(lambda p: p.expiry_state == "expired")),
            )
            self.assertEqual(
                permit_type.no_expiry_count,
                len(permits.filtered(lambda p: p.expiry_state == "none")),
            )
        action = types[0].action_view_permits()
        self.assertEqual(
            self.env["sicantik.permit"].search_count(action["domain"]),
            types[0].permit_count,
        )
