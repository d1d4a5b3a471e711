"""Two things at once: a button during a run, two workers, two connectors."""

import contextlib
from unittest.mock import patch

import psycopg2.errors

from odoo import SUPERUSER_ID, api, fields, sql_db
from odoo.exceptions import UserError
from odoo.tests import tagged
from odoo.tools import mute_logger

from odoo.addons.base.models.ir_cron import ir_cron

from ..models.bulk_sql import ConcurrentUpdate, row_attempt
from ..models.sicantik_expiry_sync import SicantikExpirySync
from ..models.sicantik_permit_sync import SicantikPermitSync
from .common import SicantikSandboxCase

RUN_LOCK_KEYS = {
    "permits": SicantikPermitSync._job_lock_key,
    "expiry": SicantikExpirySync._job_lock_key,
}
PERMIT_CRON = "sicantik_connector.ir_cron_sync_permits"
EXPIRY_CRON = "sicantik_connector.ir_cron_sync_expiry_dates"


@contextlib.contextmanager
def other_connection(dbname):
    """A cursor on a connection of its own, as another worker would hold:
    it sees only what is committed and its locks are its own."""
    cr = sql_db.db_connect(dbname).cursor()
    try:
        yield cr
    finally:
        cr.rollback()
        cr.close()


@tagged("post_install", "-at_install", "sicantik")
class TestConcurrency(SicantikSandboxCase):
    PERMITS = 120

    def pages(self, config=None):
        """Requests one pass of the permit list takes (a short last page or
        the 404 end marker ends it)."""
        rows = len(self.sandbox.dataset.rows)
        size = (config or self.config).page_size
        return rows // size + 1

    # ------------------------------------------------------------------
    # Sync Now during a run
    # ------------------------------------------------------------------

    def test_sync_now_while_the_job_runs_is_refused(self):
        original = SicantikPermitSync._upsert_page
        presses = []

        def upsert_and_press(model, *args, **kwargs):
            result = original(model, *args, **kwargs)
            if not presses:
                # Staff press the button while the job writes page 1.
                before = self.requests_to()
                action = self.config.with_user(self.user_manager).action_sync_now()
                # A friendly warning (not an error), linking to the run's log.
                notice = action["params"]
                presses.append(
                    (
                        notice["message"] if notice["type"] == "warning" else "",
                        self.requests_to() - before,
                    )
                )
            return result

        self.config.action_sync_now()
        with patch.object(SicantikPermitSync, "_upsert_page", upsert_and_press):
            self.run_cron(PERMIT_CRON)
        (message, requests), *others = presses
        self.assertFalse(others)
        self.assertIn("still working", message)
        self.assertEqual(requests, 0, "refused before any request")
        # One pass, every page fetched once, nothing queued behind it.
        self.assertEqual(len(self.logs("permits")), 1)
        self.assertEqual(self.logs("permits").state, "done")
        self.assertEqual(self.requests_to("listpermohonanterbit"), self.pages())
        self.assertFalse(self.config.sync_requested)
        self.sandbox.reset_stats()
        self.run_cron(PERMIT_CRON)
        self.assertEqual(self.requests_to(), 0, "no second pass")

    def test_sync_now_pressed_twice_before_the_job_runs_is_one_pass(self):
        cron = self.env.ref(PERMIT_CRON)
        self.config.action_sync_now()
        self.config.with_user(self.user_manager).action_sync_now()
        self.assertEqual(
            self.env["ir.cron.trigger"].search_count([("cron_id", "=", cron.id)]), 2
        )
        # The worker answers each trigger; the second finds nothing to do.
        self.run_cron(PERMIT_CRON)
        self.run_cron(PERMIT_CRON)
        self.assertEqual(len(self.logs("permits")), 1)
        self.assertEqual(self.requests_to("listpermohonanterbit"), self.pages())
        self.assertEqual(
            len(self.env["sicantik.permit"].search([])), len(self.listed_ids())
        )

    # ------------------------------------------------------------------
    # Two cron workers on one database
    # ------------------------------------------------------------------

    @mute_logger("odoo.sql_db")
    def test_two_workers_never_run_one_job_at_once(self):
        """Odoo's row lock on the job: while one worker runs it (here this
        test's transaction holds the row, as a worker's cron cursor does), a
        second worker skips the job and "Run manually" is refused."""
        job_id = self.env.ref(PERMIT_CRON).id
        self.env.cr.execute(
            "SELECT id FROM ir_cron WHERE id = %s FOR NO KEY UPDATE", [job_id]
        )
        with other_connection(self.env.cr.dbname) as second:
            second.execute(
                """SELECT id FROM ir_cron WHERE id = %s AND active
                   AND nextcall <= (now() at time zone 'UTC')""",
                [job_id],
            )
            self.assertTrue(second.fetchall(), "the job is due for every worker")
            self.assertIsNone(ir_cron._acquire_one_job(second, job_id))
            manual = api.Environment(second, SUPERUSER_ID, {})
            with self.assertRaisesRegex(UserError, "currently being executed"):
                manual["ir.cron"].browse(job_id).method_direct_trigger()

    @mute_logger("odoo.addons.sicantik_connector.models.sicantik_config")
    def test_a_second_callback_of_a_job_skips_a_connector_in_use(self):
        """What the row lock leaves open (our commits release "Run manually"'s
        lock; Test Expiry Sync runs inline): the connector's run lock, held by
        another connection here, makes the callback skip the connector and
        look again a minute later."""
        dbname = self.env.cr.dbname
        cron = self.env.ref(PERMIT_CRON)
        self.config.action_sync_now()
        with other_connection(dbname) as other:
            other.execute(
                "SELECT pg_advisory_lock(%s, %s)",
                (RUN_LOCK_KEYS["permits"], self.config.id),
            )
            cron.method_direct_trigger()
            self.assertEqual(self.requests_to(), 0)
            self.assertFalse(self.logs("permits") | self.logs("permit_types"))
            self.assertTrue(self.config.sync_requested, "the request waits")
            later = self.env["ir.cron.trigger"].search(
                [("cron_id", "=", cron.id), ("call_at", ">", fields.Datetime.now())]
            )
            self.assertTrue(later)
            # The inline test run is refused too while the expiry job runs.
            other.execute(
                "SELECT pg_advisory_lock(%s, %s)",
                (RUN_LOCK_KEYS["expiry"], self.config.id),
            )
            notice = self.config.action_test_expiry_sync()
            self.assertEqual(notice["params"]["type"], "warning")
            self.assertIn("running in the background", notice["params"]["message"])
            self.assertEqual(self.requests_to(), 0)
            other.execute("SELECT pg_advisory_unlock_all()")
        self.run_cron(PERMIT_CRON)
        self.assertEqual(self.logs("permits").state, "done")
        self.assertEqual(self.requests_to("listpermohonanterbit"), self.pages())

    def test_the_run_lock_is_released_after_every_callback(self):
        self.config.action_sync_now()
        with self.param("sicantik_connector.sync_pages_per_batch", 1):
            self.env.ref(PERMIT_CRON).method_direct_trigger()
        with other_connection(self.env.cr.dbname) as other:
            for operation, key in RUN_LOCK_KEYS.items():
                other.execute(
                    "SELECT pg_try_advisory_lock(%s, %s)", (key, self.config.id)
                )
                self.assertTrue(other.fetchone()[0], f"{operation} lock left held")
            other.execute("SELECT pg_advisory_unlock_all()")

    # ------------------------------------------------------------------
    # Two connectors, one server
    # ------------------------------------------------------------------

    def test_two_connectors_on_one_server_share_its_rate_limit(self):
        self.config.active = False
        first, second = self.env["sicantik.config"].create(
            [
                {
                    "name": name,
                    "api_url": self.sandbox.url,
                    "rate_limit": 10,
                    "page_size": 10,
                    "timeout": 5,
                }
                for name in ("Kabanjahe office", "Berastagi office")
            ]
        )
        self.assertIs(first._shared_limiter(), second._shared_limiter())
        first.action_sync_now()
        second.action_sync_now()
        self.run_cron(PERMIT_CRON)
        stats = self.sandbox.stats()
        expected = 2 * (self.pages(first) + 1)  # types, then the pages
        self.assertEqual(stats["requests"], expected)
        self.assertLessEqual(stats["peak_rate"], 10, "the server's limit held")
        for config in (first, second):
            self.assertEqual(self.logs("permits", config).state, "done")

    # ------------------------------------------------------------------
    # A lost race is not bad data
    # ------------------------------------------------------------------

    def _race_on_a_committed_row(self):
        """Make another worker commit a change to a row this transaction
        (whose snapshot is older) then writes: PostgreSQL refuses the write."""
        partner = self.env.ref("base.partner_admin")
        self.env.cr.execute(
            "SELECT comment FROM res_partner WHERE id = %s", [partner.id]
        )
        before = self.env.cr.fetchone()[0]

        def restore():
            with other_connection(self.env.cr.dbname) as cr:
                cr.execute(
                    "UPDATE res_partner SET comment = %s WHERE id = %s",
                    [before, partner.id],
                )
                cr.commit()  # pylint: disable=invalid-commit

        with other_connection(self.env.cr.dbname) as cr:
            cr.execute(
                "UPDATE res_partner SET comment = 'raced' WHERE id = %s", [partner.id]
            )
            cr.commit()  # pylint: disable=invalid-commit
        self.addCleanup(restore)
        return partner

    def test_a_lost_race_is_not_a_row_set_aside(self):
        partner = self._race_on_a_committed_row()
        Sync = self.env["sicantik.permit.sync"]

        def write():
            self.env.cr.execute(
                "UPDATE res_partner SET comment = 'ours' WHERE id = %s", [partner.id]
            )

        # Set aside row by row, the race would refuse every row of the page.
        with self.assertRaises(ConcurrentUpdate), mute_logger("odoo.sql_db"):
            Sync._try_write(write)
        # The savepoint was rolled back: the transaction goes on.
        self.env.cr.execute("SELECT 1")
        self.assertEqual(self.env.cr.fetchone(), (1,))

    def test_bad_data_is_still_set_aside(self):
        Sync = self.env["sicantik.permit.sync"]

        def write():
            self.env.cr.execute("SELECT 1 / 0")

        with mute_logger("odoo.sql_db"):
            reason = Sync._try_write(write)
        self.assertTrue(reason)

    def test_a_lost_race_of_a_button_is_left_to_the_request_retry(self):
        """Outside a cron worker the job does not roll back a transaction it
        does not own: the driver's error reaches Odoo's request retry."""
        partner = self._race_on_a_committed_row()

        def batch(model, config, deadline, progress):
            with row_attempt(model.env.cr):
                model.env.cr.execute(
                    "UPDATE res_partner SET comment = 'ours' WHERE id = %s",
                    [partner.id],
                )

        with (
            patch.object(SicantikPermitSync, "_job_batch", batch),
            self.assertRaises(psycopg2.errors.SerializationFailure),
            mute_logger("odoo.sql_db"),
        ):
            self.env["sicantik.permit.sync"]._job_run()
