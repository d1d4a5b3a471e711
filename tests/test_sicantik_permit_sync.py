import time
from datetime import timedelta
from unittest.mock import patch

from odoo.tests import tagged
from odoo.tools import mute_logger

from odoo.addons.sicantik_connector.models.sicantik_permit_sync import (
    SicantikPermitSync,
)
from odoo.addons.sicantik_connector.sandbox import generate_dataset
from odoo.addons.sicantik_connector.sandbox.data import ZERO_DATE

from .common import SicantikSandboxCase

PERMIT_CRON = "sicantik_connector.ir_cron_sync_permits"


class Killed(BaseException):
    """Stands for the worker being killed: not an Exception, nothing catches it."""


def run_killed_after_page(env, page):
    """Run the permit sync once, "killed" after writing page ``page`` and
    before its commit; True when the kill happened."""
    original = SicantikPermitSync._upsert_page
    calls = []

    def upsert_then_die(self_, *args, **kwargs):
        result = original(self_, *args, **kwargs)
        calls.append(1)
        if len(calls) == page:
            raise Killed()
        return result

    with patch.object(SicantikPermitSync, "_upsert_page", upsert_then_die):
        try:  # not assertRaises: its savepoint would undo the earlier pages
            env.ref(PERMIT_CRON).method_direct_trigger()
        except Killed:
            return True
    return False


@tagged("post_install", "-at_install", "sicantik")
class TestSicantikPermitSync(SicantikSandboxCase):
    PERMITS = 300  # more than two pages of 100

    def permits(self, config=None):
        return self.env["sicantik.permit"].search(
            [("config_id", "=", (config or self.config).id)]
        )

    def test_sync_through_the_cron(self):
        self.sync_permits()
        permits = self.permits()
        listed = self.listed_ids()
        self.assertEqual(set(permits.mapped("pendaftaran_id")), listed)
        self.assertEqual(len(permits), len(listed), "one record per registration")
        # Types first, matched by name with runs of spaces collapsed.
        types = self.env["sicantik.permit.type"].search(
            [("config_id", "=", self.config.id)]
        )
        self.assertEqual(len(types), len(self.sandbox.dataset.permit_types))
        dataset = self.sandbox.dataset.by_pendaftaran_id
        for permit in permits:
            source = dataset[permit.pendaftaran_id]
            expected = source.no_surat if source.no_surat.strip() else ""
            self.assertEqual(permit.no_surat or "", expected)
            self.assertEqual(
                permit.permit_type_id.name, " ".join(source.n_perizinan.split())
            )
        ho = types.filtered(lambda t: "GANGGUAN" in t.name)
        self.assertEqual(ho.name, "IZIN GANGGUAN USAHA (HO)")
        self.assertEqual(ho.raw_name, "IZIN GANGGUAN  USAHA (HO)")
        # New permits wait for their expiry check.
        self.assertEqual(set(permits.mapped("expiry_check_state")), {"pending"})
        self.assertEqual(set(permits.mapped("status")), {"unknown"})
        # The logs: types, then one row for the whole pass.
        self.assertEqual(self.logs("permit_types").state, "done")
        log = self.logs("permits")
        self.assertEqual(log.state, "done")
        self.assertEqual(log.created_count, len(listed))
        rows = len(self.sandbox.dataset.rows)
        self.assertEqual(log.end_offset, rows)
        self.assertEqual(self.config.sync_pass_state, "idle")
        self.assertEqual(self.config.sync_offset, 0)
        self.assertEqual(self.config.sync_last_pass_rows, rows)
        self.assertEqual(self.config.last_sync_log_id, log)
        pages = -(-rows // self.config.page_size) + (rows % self.config.page_size == 0)
        self.assertEqual(self.requests_to("listpermohonanterbit"), pages)
        self.assertEqual(log.request_count, pages)

        # A second pass creates nothing; a permit gone from the list stays; an
        # empty field does not erase the stored value.
        gone_pid = next(iter(listed))
        rows_before = list(self.sandbox.dataset.rows)
        self.addCleanup(self.sandbox.dataset.rows.__setitem__, slice(None), rows_before)
        self.sandbox.dataset.rows[:] = [
            row
            for row in self.sandbox.dataset.rows
            if row[0].pendaftaran_id != gone_pid
        ]
        blanked = next(
            p
            for p, _who in self.sandbox.dataset.rows
            if p.pendaftaran_id != gone_pid
            and len(p.applicants) == 1
            and p.applicants[0].n_pemohon.strip("0- ")
        )
        applicants = blanked.applicants
        blanked.applicants = (applicants[0]._replace(n_pemohon="-"),)
        try:
            self.sync_permits()
        finally:
            blanked.applicants = applicants
        second = self.logs("permits")[0]
        self.assertEqual(second.state, "done")
        self.assertEqual(second.created_count, 0)
        self.assertEqual(second.updated_count, 0)
        self.assertEqual(second.unchanged_count, len(listed) - 1)
        self.assertEqual(len(self.permits()), len(listed))
        self.assertTrue(self.permits().filtered(lambda p: p.pendaftaran_id == gone_pid))
        kept = self.permits().filtered(
            lambda p: p.pendaftaran_id == blanked.pendaftaran_id
        )
        self.assertEqual(kept.applicant_name, applicants[0].n_pemohon)

    def test_scheduled_run_waits_for_the_interval(self):
        self.sync_permits()
        self.sandbox.reset_stats()
        # No button, interval not elapsed: the job does nothing.
        self.run_cron(PERMIT_CRON)
        self.assertEqual(self.requests_to(), 0)
        self.config.sync_pass_started_at -= timedelta(minutes=self.config.sync_interval)
        self.run_cron(PERMIT_CRON)
        self.assertGreater(self.requests_to("listpermohonanterbit"), 0)
        self.assertEqual(self.logs("permits")[0].trigger, "schedule")

    def _count_page_queries(self, page_size):
        """SQL queries of the cron callback that syncs one page (of new permits)."""
        config = self.config.copy(
            {"name": f"Pages of {page_size}", "page_size": page_size}
        )
        progress = {"done": 0}
        with self.param("sicantik_connector.sync_pages_per_batch", 1):
            config.action_sync_now()
            engine = self.env["sicantik.permit.sync"]
            engine._job_batch(config, time.monotonic() + 60, progress)  # types + page 1
            self.env.invalidate_all()
            before = self.cr.sql_log_count
            more = engine._job_batch(config, time.monotonic() + 60, progress)
            self.env.flush_all()
            queries = self.cr.sql_log_count - before
        self.assertTrue(more)
        self.assertEqual(config.sync_offset, 2 * page_size)
        log = config.sync_log_id
        self.assertEqual(log.created_count, len(self.permits(config)))
        return queries

    def test_queries_per_page_do_not_grow_with_the_page_size(self):
        # Once, to warm the process-wide caches the first bus notification
        # of a process fills (one query, never again): not a per-page cost.
        self._count_page_queries(10)
        small = self._count_page_queries(10)
        large = self._count_page_queries(100)
        self.assertEqual(small, large)
        self.assertLessEqual(small, 20)

    @mute_logger(
        "odoo.addons.sicantik_connector.tools.sicantik_api",
        "odoo.addons.sicantik_connector.models.sicantik_config",
    )
    def test_a_fault_mid_run_keeps_the_data_and_the_next_run_completes(self):
        with self.param("sicantik_connector.sync_pages_per_batch", 2):
            self.config.action_sync_now()
            self.env.ref(PERMIT_CRON).method_direct_trigger()  # types + 2 pages
        stored = {
            p.pendaftaran_id: (p.no_surat, p.applicant_name, p.permit_type_id)
            for p in self.permits()
        }
        self.assertEqual(self.config.sync_offset, 100)
        # The server fails on the third page, every retry included.
        self.sandbox.queue_faults(500, 500, 500, 500)
        self.env.ref(PERMIT_CRON).method_direct_trigger()
        log = self.logs("permits")[0]
        self.assertEqual(log.state, "partial")
        self.assertEqual(log.failure_type, "server")
        self.assertIn("internal error", log.failure_reason)
        self.assertIn("row 100", log.message)
        self.assertEqual(log.status_5xx, 4)
        self.assertEqual(self.config.sync_offset, 100, "the cursor stays")
        self.assertEqual(self.config.sync_pass_state, "in_progress")
        after = {
            p.pendaftaran_id: (p.no_surat, p.applicant_name, p.permit_type_id)
            for p in self.permits()
        }
        self.assertEqual(after, stored, "nothing stored is changed or lost")
        # An unreadable answer is handled the same way.
        self.sandbox.queue_faults("malformed", "malformed", "malformed", "malformed")
        self.env.ref(PERMIT_CRON).method_direct_trigger()
        self.assertEqual(self.logs("permits")[0].failure_type, "bad_response")
        # The next runs continue from row 100 and complete the pass.
        self.run_cron(PERMIT_CRON)
        last = self.logs("permits")[0]
        self.assertEqual(last.state, "done")
        self.assertEqual(last.start_offset, 100)
        self.assertEqual(
            set(self.permits().mapped("pendaftaran_id")), self.listed_ids()
        )

    def test_killed_run_resumes_without_loss_or_duplicate(self):
        self.config.action_sync_now()
        self.assertTrue(run_killed_after_page(self.env, 3), "the run was killed")
        # Pages 1 and 2 are kept, page 3 is rolled back with its offset.
        self.assertEqual(self.config.sync_offset, 100)
        self.assertEqual(
            len(self.permits()),
            len({p.pendaftaran_id for p, _who in self.sandbox.dataset.rows[:100]}),
        )
        log = self.logs("permits")
        self.assertEqual(log.state, "running")
        # Much later, the next run closes the dead row and resumes at row 100.
        log.heartbeat -= log.STALE_AFTER * 2
        self.run_cron(PERMIT_CRON)
        self.assertEqual(log.state, "interrupted")
        resumed = self.logs("permits")[0]
        self.assertNotEqual(resumed, log)
        self.assertEqual(resumed.state, "done")
        self.assertEqual(resumed.start_offset, 100)
        permits = self.permits()
        self.assertEqual(len(permits), len(self.listed_ids()))
        self.assertEqual(set(permits.mapped("pendaftaran_id")), self.listed_ids())
        self.assertEqual(log.created_count + resumed.created_count, len(permits))
        # The page that died was fetched again, no other one.
        rows = len(self.sandbox.dataset.rows)
        pages = -(-rows // 50) + (rows % 50 == 0)
        self.assertEqual(self.requests_to("listpermohonanterbit"), pages + 1)

    def test_future_api_list_with_expiry_dates(self):
        self.sandbox.configure(future_api=True)
        self.sync_permits()
        self.assertTrue(self.config.list_has_expiry)
        self.assertTrue(self.config.list_has_expiry_since)
        permits = self.permits()
        dataset = self.sandbox.dataset.by_pendaftaran_id
        dated = permits.filtered("expiry_date")
        self.assertTrue(dated)
        for permit in dated:
            self.assertEqual(
                str(permit.expiry_date), dataset[permit.pendaftaran_id].d_berlaku_izin
            )
            self.assertEqual(permit.expiry_source, "list")
        self.assertFalse(permits.filtered("next_expiry_check"))
        # The expiry sync asks nothing, permit by permit or otherwise.
        self.sandbox.reset_stats()
        self.sync_expiry()
        self.config.action_test_expiry_sync()
        self.assertEqual(self.requests_to("cekperizinan"), 0)
        # A renewal shows up on the next pass, with a chatter message.
        permit = dated[0]
        source = dataset[permit.pendaftaran_id]
        old = source.d_berlaku_izin
        source.d_berlaku_izin = "2099-12-31"
        try:
            self.sync_permits()
        finally:
            source.d_berlaku_izin = old
        self.assertEqual(str(permit.expiry_date), "2099-12-31")
        self.assertIn("Renewed", permit.message_ids[0].body)
        # The switch goes back by itself when the field disappears.
        self.sandbox.configure(future_api=False)
        self.sync_permits()
        self.assertFalse(self.config.list_has_expiry)
        self.assertEqual(
            len(self.permits().filtered("next_expiry_check")), len(permits)
        )


@tagged("post_install", "-at_install", "sicantik")
class TestPermitLetters(SicantikSandboxCase):
    """One permit per letter of a registration, on a list whose order of
    ties changes from pass to pass; departures and returns."""

    PERMITS = 240

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # Registrations with two letters, and two applicants (the default).
        cls.sandbox.dataset = generate_dataset(
            permits=cls.PERMITS, seed=cls.SEED, second_letters=0.06
        )
        cls.pairs = [
            letters
            for letters in cls.sandbox.dataset.letters.values()
            if len(letters) == 2
        ]
        assert len(cls.pairs) >= 10

    def setUp(self):
        super().setUp()
        dataset = self.sandbox.dataset
        self.served = list(dataset.rows)
        self.addCleanup(dataset.rows.__setitem__, slice(None), self.served)
        self.addCleanup(setattr, dataset, "shuffle_ties", None)

    def permits(self):
        return self.env["sicantik.permit"].search([("config_id", "=", self.config.id)])

    def served_keys(self):
        return {
            (p.pendaftaran_id, p.no_surat.strip() and p.no_surat or False)
            for p, _who in self.sandbox.dataset.rows
        }

    def stored_keys(self, permits=None):
        return {(p.pendaftaran_id, p.no_surat) for p in (permits or self.permits())}

    def letter(self, source):
        return self.permits().filtered(
            lambda p: p.pendaftaran_id == source.pendaftaran_id
            and p.no_surat == source.no_surat
        )

    def drop(self, *sources):
        """SICANTIK stops listing these letters."""
        keys = {(p.pendaftaran_id, p.no_surat) for p in sources}
        rows = self.sandbox.dataset.rows
        rows[:] = [
            row for row in rows if (row[0].pendaftaran_id, row[0].no_surat) not in keys
        ]

    def pages_of(self, source):
        size = self.config.page_size
        return {
            index // size
            for index, (p, _who) in enumerate(self.sandbox.dataset.rows)
            if p is source
        }

    def test_no_letter_is_lost_when_the_page_order_changes_between_passes(self):
        self.sandbox.dataset.shuffle_ties = "pass"
        # Small pages: the letters of one registration fall on two pages.
        self.config.page_size = 5
        orders, straddling, names = [], 0, None
        for _run in range(3):
            self.sync_permits()
            names = names or {
                (p.pendaftaran_id, p.no_surat): p.applicant_name for p in self.permits()
            }
            dataset = self.sandbox.dataset
            orders.append([(p.no_surat, who) for p, who in dataset.rows])
            straddling += sum(
                self.pages_of(first) != self.pages_of(second)
                for first, second in self.pairs
            )
            permits = self.permits()
            self.assertEqual(self.stored_keys(permits), self.served_keys())
            self.assertEqual(len(permits), len(self.served_keys()), "stored once")
            self.assertFalse(permits.filtered("delisted_date"))
        self.assertNotEqual(orders[0], orders[1], "the ties were reordered")
        self.assertTrue(straddling, "some letters of one registration on two pages")
        logs = self.logs("permits")
        self.assertEqual(logs[0].created_count + logs[1].created_count, 0)
        # Two applicants of one letter: one permit, named after one of them,
        # the same name every pass.
        shared = [p for p in self.sandbox.dataset.permits if len(p.applicants) == 2]
        self.assertTrue(shared)
        for source in shared:
            name = names[(source.pendaftaran_id, source.no_surat)]
            self.assertIn(name, {who.n_pemohon for who in source.applicants})
            self.assertEqual(self.letter(source).applicant_name, name)

    def test_each_letter_gets_its_own_expiry_date_and_they_share_the_holder(self):
        self.sync_permits()
        self.sync_expiry()
        checked = 0
        for first, second in self.pairs:
            if not (first.answers_cekperizinan and first.no_surat.strip()):
                continue
            letters = self.letter(first) | self.letter(second)
            self.assertEqual(len(letters), 2)
            for source in (first, second):
                permit = self.letter(source)
                expected = source.d_berlaku_izin
                if expected in (None, ZERO_DATE):
                    self.assertFalse(permit.expiry_date)
                    self.assertEqual(permit.expiry_unlimited, expected == ZERO_DATE)
                else:
                    self.assertEqual(str(permit.expiry_date), expected)
            self.assertNotEqual(
                (letters[0].expiry_date, letters[0].expiry_unlimited),
                (letters[1].expiry_date, letters[1].expiry_unlimited),
            )
            self.assertTrue(letters[0].partner_id)
            self.assertEqual(letters[0].partner_id, letters[1].partner_id)
            checked += 1
        self.assertGreaterEqual(checked, 5)

    def test_a_departed_permit_is_kept_marked_and_reminded_no_more(self):
        self.sync_permits()
        source = self.pairs[0][1]  # the second letter of a registration
        permit = self.letter(source)
        sibling = self.letter(self.pairs[0][0])
        today = self.config._today()
        permit.partner_id = self.env["res.partner"].create(
            {"name": "Holder", "whatsapp_number": "0812 3456 7890"}
        )
        permit.expiry_date = today + timedelta(days=5)
        Notification = self.env["sicantik.notification"]
        self.assertEqual(Notification._queue_reminders(self.config, today)["queued"], 1)
        reminder = Notification.search([("permit_id", "=", permit.id)])
        self.assertEqual(reminder.state, "queued")

        self.drop(source)
        self.sync_permits()
        self.assertFalse(permit.delisted_date, "one pass may miss a row: not yet")
        self.assertEqual(permit.missed_passes, 1)
        self.sync_permits()
        log = self.logs("permits")[0]
        self.assertEqual(permit.delisted_date, today)
        self.assertEqual(log.delisted_count, 1)
        self.assertIn("1 permit(s) no longer listed", log.message)
        self.assertTrue(permit.exists(), "never deleted")
        self.assertFalse(sibling.delisted_date, "the other letter stays listed")
        self.assertEqual(reminder.state, "cancelled")
        self.assertIn("No longer listed by SICANTIK", permit.message_ids[0].body)
        counts = Notification._queue_reminders(self.config, today)
        self.assertEqual((counts["queued"], counts["already"]), (0, 0))
        self.assertEqual(Notification.search_count([("permit_id", "=", permit.id)]), 1)
        # A third pass without it changes nothing more.
        self.sync_permits()
        self.assertEqual(self.logs("permits")[0].delisted_count, 0)
        self.assertEqual(permit.delisted_date, today)

        # SICANTIK lists it again: restored, with a note.
        self.sandbox.dataset.rows[:] = self.served
        self.sync_permits()
        self.assertFalse(permit.delisted_date)
        self.assertEqual(permit.missed_passes, 0)
        self.assertIn("Listed by SICANTIK again", permit.message_ids[0].body)
        self.assertEqual(self.logs("permits")[0].created_count, 0)

    @mute_logger(
        "odoo.addons.sicantik_connector.tools.sicantik_api",
        "odoo.addons.sicantik_connector.models.sicantik_permit_sync",
    )
    def test_a_pass_that_ends_early_marks_nothing(self):
        self.sync_permits()
        source = self.pairs[1][0]
        permit = self.letter(source)
        self.drop(source)
        self.sync_permits()
        self.assertEqual(permit.missed_passes, 1)
        # The next pass stops on page 2 (every retry fails), then again.
        with self.param("sicantik_connector.sync_pages_per_batch", 1):
            self.config.action_sync_now()
            self.env.ref(PERMIT_CRON).method_direct_trigger()  # types + page 1
            self.sandbox.queue_faults(500, 500, 500, 500)
            self.env.ref(PERMIT_CRON).method_direct_trigger()
        self.assertEqual(self.logs("permits")[0].state, "partial")
        self.assertEqual(self.config.sync_pass_state, "in_progress")
        self.assertFalse(self.permits().filtered("delisted_date"))
        self.assertEqual(permit.missed_passes, 1, "an unfinished pass counts nothing")
        # Resumed to the end, the pass is complete: now it leaves.
        self.run_cron(PERMIT_CRON)
        self.assertEqual(self.config.sync_pass_state, "idle")
        self.assertEqual(self.permits().filtered("delisted_date"), permit)

    def test_a_pass_resumed_after_a_kill_marks_only_what_it_did_not_list(self):
        self.sync_permits()
        source = self.pairs[2][1]
        permit = self.letter(source)
        self.drop(source)
        self.sync_permits()
        self.config.action_sync_now()
        self.assertTrue(run_killed_after_page(self.env, 3))
        self.assertEqual(self.config.sync_offset, 100)
        log = self.logs("permits")[0]
        log.heartbeat -= log.STALE_AFTER * 2
        self.run_cron(PERMIT_CRON)
        self.assertEqual(self.logs("permits")[0].start_offset, 100)
        # Pages 1 and 2, read before the kill, count as listed by the pass.
        self.assertEqual(self.permits().filtered("delisted_date"), permit)
        self.assertFalse(
            self.permits().filtered(lambda p: p.missed_passes and p != permit)
        )

    def test_a_list_far_shorter_than_stored_marks_nothing(self):
        self.sync_permits()
        rows = self.sandbox.dataset.rows
        kept = rows[: len(rows) // 2]
        rows[:] = kept
        self.sync_permits()
        self.sync_permits()
        log = self.logs("permits")[0]
        self.assertFalse(self.permits().filtered("delisted_date"))
        self.assertEqual(log.delisted_count, 0)
        self.assertIn("the list looks incomplete", log.message)
        # An administrator who knows they left lets them go.
        with self.param("sicantik_connector.delist_max_percent", 100):
            self.sync_permits()
        self.assertEqual(
            self.stored_keys(self.permits().filtered(lambda p: not p.delisted_date)),
            self.served_keys(),
        )
