"""A manager's button during a permit pass, on real connections: the page
commits of the permit sync never make the button's write of the connector
row fail (deploy-test saw SerializationFailure after Odoo's five retries)."""

import contextlib
import time
from unittest.mock import patch

import psycopg2.errors

from odoo import SUPERUSER_ID, api, fields, sql_db
from odoo.tests import TransactionCase, tagged
from odoo.tools import mute_logger

from ..tools.records import IssuedPermit, Page
from ..tools.sicantik_api import SicantikApi

CONTEXT = {"tracking_disable": True, "lang": "en_US"}


@contextlib.contextmanager
def connection(dbname):
    """A cursor on a connection of its own, as another worker would hold."""
    cr = sql_db.db_connect(dbname).cursor()
    try:
        yield api.Environment(cr, SUPERUSER_ID, CONTEXT)
    finally:
        cr.rollback()
        cr.close()


def one_page(api_, page_size, start_offset=0, previous_digest=None):
    """The next page of a permit list that has more: two permits."""
    permits = tuple(
        IssuedPermit(
            pendaftaran_id=f"00{start_offset + n:014d}",
            no_surat=f"503/{start_offset + n}/RACE/2026",
            permit_type="IZIN RACE",
            applicant_names=("Ukur Kaban",),
            letter_numbers=(f"503/{start_offset + n}/RACE/2026",),
        )
        for n in (1, 2)
    )
    yield Page(
        offset=start_offset,
        limit=page_size,
        raw_count=len(permits),
        permits=permits,
        digest=f"digest-{start_offset}",
    )


@tagged("post_install", "-at_install", "sicantik")
class TestPermitPassRace(TransactionCase):
    """Everything here is committed on connections of its own (the test's
    transaction would hide it from them), and removed afterwards."""

    def setUp(self):
        super().setUp()
        self.dbname = self.env.cr.dbname
        with connection(self.dbname) as env:
            config = env["sicantik.config"].create(
                {
                    "name": "Race",
                    "api_url": "https://sicantik.example.com/backoffice/api",
                    "rate_limit_enabled": False,
                    "lang": "en_US",
                }
            )
            self.addCleanup(self._remove, config.id)
            # A pass under way: its run's log row is running (and alive).
            log = env["sicantik.sync.log"]._start(config, "permits")
            config.write(
                {
                    "sync_pass_state": "in_progress",
                    "sync_pass_started_at": fields.Datetime.now(),
                    "sync_log_id": log.id,
                }
            )
            env.flush_all()
            env.cr.commit()  # pylint: disable=invalid-commit
        self.config_id = config.id

    def _remove(self, config_id):
        with connection(self.dbname) as env:
            config = env["sicantik.config"].browse(config_id).exists()
            env["sicantik.permit"].search([("config_id", "=", config_id)]).unlink()
            config.unlink()
            env.flush_all()
            env.cr.commit()  # pylint: disable=invalid-commit

    # The page names a type jenisperizinanlist was not asked for.
    @mute_logger("odoo.addons.sicantik_connector.models.sicantik_permit_type")
    def _run_one_page(self, env):
        """One callback of the permit sync that reads one page and stops (its
        deadline has passed), under the job's run lock, committed."""
        Sync = env["sicantik.permit.sync"]
        config = env["sicantik.config"].browse(self.config_id)
        self.assertTrue(Sync._job_try_lock(config))
        try:
            with patch.object(SicantikApi, "iter_issued_permits", one_page):
                more = Sync._job_batch(config, time.monotonic(), {"done": 0})
            env.flush_all()
        finally:
            Sync._job_release_lock(config)
        env.cr.commit()  # pylint: disable=invalid-commit
        self.assertTrue(more, "the pass goes on")

    def test_a_button_writing_the_connector_outlives_page_commits(self):
        with connection(self.dbname) as button, connection(self.dbname) as job:
            # The button's request starts (Test Expiry Sync, say, which then
            # spends seconds on its requests): its snapshot is taken here.
            pressed = button["sicantik.config"].browse(self.config_id)
            self.assertEqual(pressed.sync_pass_state, "in_progress")
            # Meanwhile the permit sync reads and commits pages.
            self._run_one_page(job)
            self._run_one_page(job)
            # The button now writes the connector's row, as Sync All Expiry
            # Dates does: refused under REPEATABLE READ if a page wrote it.
            try:
                pressed.write(
                    {
                        "expiry_run_requested": True,
                        "expiry_run_limit": 10,
                        "expiry_run_trigger": "button",
                    }
                )
                button.flush_all()
            except psycopg2.errors.SerializationFailure as err:
                self.fail(f"the button lost the race to a page commit: {err}")
            button.cr.commit()  # pylint: disable=invalid-commit
        with connection(self.dbname) as env:
            config = env["sicantik.config"].browse(self.config_id)
            self.assertTrue(config.expiry_run_requested)
            self.assertEqual(config.sync_offset, 4, "both pages were committed")
            self.assertEqual(config.sync_pass_rows, 4)
            self.assertEqual(config.sync_page_digest, "digest-2")
            permits = env["sicantik.permit"].search([("config_id", "=", config.id)])
            self.assertEqual(len(permits), 4)
