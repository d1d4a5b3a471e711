import importlib.util
import json
import socket
from datetime import timedelta
from unittest.mock import patch

from odoo.exceptions import UserError, ValidationError
from odoo.tests import tagged
from odoo.tools import mute_logger
from odoo.tools.misc import file_path

from odoo.addons.sicantik_connector.tools.sicantik_api import SicantikApi

from .common import SicantikSandboxCase

PERMIT_CRON = "sicantik_connector.ir_cron_sync_permits"
EXPIRY_CRON = "sicantik_connector.ir_cron_sync_expiry_dates"
PROGRESS = "sicantik_sync_log/progress"


def _closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _load_migration(version, name):
    path = file_path(f"sicantik_connector/migrations/{version}/{name}")
    spec = importlib.util.spec_from_file_location("sicantik_migration", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@tagged("post_install", "-at_install", "sicantik")
class TestConnectionTruth(SicantikSandboxCase):
    """Test Connection approves only what the sync can read, and the
    schedule uses only an address that passed it."""

    def base(self):
        return self.sandbox.url.rstrip("/")

    def test_a_method_url_is_refused_with_the_part_to_remove(self):
        for method in ("jumlahPerizinan", "listpermohonanterbit"):
            with self.subTest(method=method), self.assertRaises(ValidationError) as err:
                self.config.write({"api_url": f"{self.base()}/{method}"})
                self.config.flush_recordset()
            message = str(err.exception)
            self.assertIn(f"/{method}", message)
            self.assertIn(self.base(), message, "the base address is offered")
        self.assertEqual(self.config.api_url, self.sandbox.url)

    def test_a_url_with_a_space_is_refused_and_blanks_around_are_dropped(self):
        with self.assertRaises(ValidationError):
            self.config.write({"api_url": self.base().replace("/api", "/ api")})
            self.config.flush_recordset()
        self.config.write({"api_url": f"  {self.base()}  "})
        self.assertEqual(self.config.api_url, self.base())

    def test_a_stored_method_url_fails_the_test_without_a_request(self):
        """A URL saved before the check existed: the test refuses it."""
        url = f"{self.base()}/jumlahPerizinan"
        self.env.cr.execute(
            "UPDATE sicantik_config SET api_url = %s WHERE id = %s",
            [url, self.config.id],
        )
        self.config.invalidate_recordset()
        # Not assertRaises: its savepoint would also undo what the failed
        # test records in its own transaction.
        message = None
        try:
            self.config.action_test_connection()
        except UserError as err:
            message = str(err)
        self.assertIn("/jumlahPerizinan", message or "")
        self.config.invalidate_recordset()
        self.assertEqual(self.requests_to(), 0)
        self.assertEqual(self.config.address_state, "failed")

    def test_both_endpoints_are_asked_and_the_address_becomes_the_tested_one(self):
        other = self.config.copy({"name": "Copy"})
        self.assertEqual(other.address_state, "untested", "a copy is not tested")
        action = other.action_test_connection()
        self.assertEqual(action["params"]["type"], "success")
        self.assertEqual(self.requests_to("jumlahPerizinan"), 1)
        self.assertEqual(self.requests_to("listpermohonanterbit"), 1)
        self.assertEqual(other.tested_url, other.api_url)
        self.assertEqual(other.address_state, "tested")
        log = self.logs("test_connection", other)
        self.assertEqual(action["params"]["links"][0]["url"], log._url())
        # A new address is untested again.
        other.api_url = self.base() + "/"
        self.assertEqual(other.address_state, "untested")

    @mute_logger("odoo.addons.sicantik_connector.tools.sicantik_api")
    def test_a_permit_list_the_sync_cannot_read_fails_the_test(self):
        other = self.config.copy({"name": "Unreadable list"})
        sandbox = self.sandbox
        original = SicantikApi.list_issued_permits

        def broken_list(api, *args, **kwargs):
            sandbox.queue_faults("json-list", "json-list")
            return original(api, *args, **kwargs)

        with patch.object(SicantikApi, "list_issued_permits", broken_list):
            message = None
            try:
                other.action_test_connection()
            except UserError as err:
                message = str(err)
        self.assertTrue(message, "the test did not fail")
        self.assertIn("permit list cannot be read", message)
        self.assertEqual(self.requests_to("jumlahPerizinan"), 1)
        self.assertEqual(other.address_state, "failed")
        self.assertFalse(other.tested_url)

    @mute_logger("odoo.addons.sicantik_connector.tools.sicantik_api")
    def test_the_schedule_skips_a_failed_address_and_says_so_once_a_day(self):
        self.config.api_url = f"http://127.0.0.1:{_closed_port()}/backoffice/api"
        message = None
        try:
            self.config.action_test_connection()
        except UserError as err:
            message = str(err)
        self.assertIn("could not reach", message or "")
        self.assertEqual(self.config.address_state, "failed")
        self.sandbox.reset_stats()
        for _run in range(3):
            self.env.ref(PERMIT_CRON).method_direct_trigger()
        skipped = self.logs("permits").filtered(
            lambda log: log.failure_type == "untested"
        )
        self.assertEqual(len(skipped), 1, "one row a day, not one per run")
        self.assertEqual(skipped.state, "failed")
        self.assertIn("Test Connection", skipped.failure_reason)
        self.assertFalse(self.logs("permit_types"), "no request was tried")
        # Sync Now on an address whose test failed: a warning, nothing queued.
        notice = self.config.action_sync_now()
        self.assertEqual(notice["params"]["type"], "warning")
        self.assertFalse(self.config.sync_requested)
        # A day later the skip is said again.
        skipped.start_date -= timedelta(days=1, minutes=1)
        self.env.ref(PERMIT_CRON).method_direct_trigger()
        self.assertEqual(
            len(
                self.logs("permits").filtered(
                    lambda row: row.failure_type == "untested"
                )
            ),
            2,
        )

    def test_sync_now_uses_a_new_address_and_a_complete_pass_proves_it(self):
        self.config.api_url = self.base() + "/"
        self.assertEqual(self.config.address_state, "untested")
        # The schedule alone does not use it...
        self.env.ref(PERMIT_CRON).method_direct_trigger()
        self.assertEqual(self.requests_to(), 0)
        # ... a manager's Sync Now does, and its complete pass proves it.
        action = self.config.action_sync_now()
        self.assertEqual(action["params"]["type"], "info")
        self.assertTrue(action["params"]["links"])
        self.run_cron(PERMIT_CRON)
        self.assertEqual(self.logs("permits")[:1].state, "done")
        self.assertEqual(self.config.address_state, "tested")
        self.assertEqual(self.config.tested_url, self.config.api_url)

    def test_a_run_under_way_goes_on_to_its_end(self):
        """Sync Now on a new address: the schedule's later callbacks (no
        request pending any more) finish the pass it started."""
        self.config.api_url = self.base() + "/"
        self.config.action_sync_now()
        with self.param("sicantik_connector.sync_pages_per_batch", 1):
            self.env.ref(PERMIT_CRON).method_direct_trigger()
        self.assertFalse(self.config.sync_requested)
        self.assertEqual(self.config.sync_log_id.state, "running")
        self.assertEqual(self.config.address_state, "untested")
        self.run_cron(PERMIT_CRON)
        self.assertEqual(self.logs("permits")[:1].state, "done")
        self.assertEqual(self.config.address_state, "tested")

    def test_migration_trusts_an_address_that_synced_before(self):
        self.sync_permits()
        never = self.config.copy({"name": "Never synced"})
        (self.config | never).write({"tested_url": False, "lang": "en_US"})
        self.env.flush_all()
        _load_migration("18.0.1.2.0", "post-tested-address.py").migrate(
            self.env.cr, "18.0.1.1.0"
        )
        (self.config | never).invalidate_recordset()
        self.assertEqual(self.config.address_state, "tested")
        self.assertEqual(self.config.tested_ok_at, self.logs("permits").end_date)
        self.assertEqual(never.address_state, "untested")
        self.assertEqual(self.config.lang, "id_ID", "jobs write in Indonesian")


@tagged("post_install", "-at_install", "sicantik")
class TestSyncLogTruth(SicantikSandboxCase):
    """Sync logs say what happened in one sentence whose counts add up, and
    tell open views to refresh."""

    PERMITS = 120

    def test_the_summary_explains_rows_against_permits(self):
        self.sync_permits()
        log = self.logs("permits")
        self.assertEqual(log.state, "done")
        served = len(self.sandbox.dataset.listed_rows())
        self.assertEqual(log.rows_read, served)
        repeated = log.rows_read - log.fetched_count - log.skipped_count
        self.assertGreater(repeated, 0, "the sandbox serves repeated rows")
        self.assertEqual(
            log.created_count
            + log.updated_count
            + log.unchanged_count
            + log.failed_count,
            log.fetched_count,
        )
        self.assertIn(
            f"{log.rows_read} rows of the permit list read → "
            f"{log.fetched_count} permits ({repeated} repeated rows",
            log.summary,
        )
        self.assertIn(f"{log.created_count} new", log.summary)
        self.assertTrue(log.summary.endswith("."))
        self.assertEqual(self.config.last_sync_summary, log.summary)

    def test_the_expiry_summary_adds_up(self):
        self.sync_permits()
        self.sync_expiry()
        log = self.logs("expiry")
        self.assertEqual(
            log.fetched_count + log.skipped_count + log.failed_count,
            log.progress_done,
        )
        self.assertIn(f"{log.progress_done} permits checked", log.summary)

    def test_the_rate_limit_wait_is_never_longer_than_the_run(self):
        self.config.write({"rate_limit": 20, "max_workers": 4})
        self.sync_permits()
        self.sync_expiry()
        for log in self.logs("permits") | self.logs("expiry"):
            self.assertGreater(log.rate_limit_wait, 0, "paced runs wait")
            self.assertLessEqual(log.rate_limit_wait, log.duration + 0.5)

    def test_progress_is_sent_on_the_bus_to_sicantik_users(self):
        group = self.env.ref("sicantik_connector.sicantik_connector_group_user")
        Bus = self.env["bus.bus"].sudo()
        before = Bus.search([], order="id desc", limit=1).id or 0
        self.sync_permits()
        self.env.cr.flush()  # the bus rows are written before the commit
        log = self.logs("permits")
        sent = [
            json.loads(row.message)
            for row in Bus.search([("id", ">", before)], order="id")
            if PROGRESS in row.message
        ]
        mine = [m["payload"] for m in sent if m["payload"]["id"] == log.id]
        self.assertGreaterEqual(len(mine), 3, "start, pages and end")
        self.assertEqual(mine[0]["state"], "running")
        self.assertEqual(mine[-1]["state"], "done")
        self.assertEqual(mine[-1]["config_id"], self.config.id)
        channels = {
            tuple(json.loads(row.channel)[1:])
            for row in Bus.search([("id", ">", before)])
            if PROGRESS in row.message
        }
        self.assertEqual(channels, {("res.groups", group.id)})


@tagged("post_install", "-at_install", "sicantik")
class TestJobLanguage(SicantikSandboxCase):
    """The jobs write in the connector's language whoever runs them: here
    the schedule's user, OdooBot, whose own language is English."""

    PERMITS = 60

    def setUp(self):
        super().setUp()
        lang = self.env["res.lang"].search([("code", "=", "id_ID")])
        self.assertTrue(lang.active, "the addon activates Indonesian")
        self.config.lang = "id_ID"
        self.assertEqual(
            self.env.ref(PERMIT_CRON).user_id, self.env.ref("base.user_root")
        )
        self.assertNotEqual(self.env.ref("base.user_root").lang, "id_ID")

    def test_summaries_notes_and_reasons_are_indonesian_when_odoobot_runs(self):
        self.config.action_sync_now()
        self.run_cron(PERMIT_CRON)
        self.run_cron(EXPIRY_CRON)
        permits = self.logs("permits")
        expiry = self.logs("expiry")
        types = self.logs("permit_types")
        self.assertIn("baris daftar izin dibaca", permits.summary)
        self.assertNotIn("rows of the permit list", permits.summary)
        self.assertIn("Putaran selesai", permits.message)
        self.assertNotIn("Pass complete", permits.message)
        self.assertIn("jenis izin dibaca", types.summary)
        self.assertIn("izin diperiksa", expiry.summary)
        self.assertNotIn("permits checked", expiry.summary)
        # Durations with a decimal comma, in Indonesian words.
        self.assertRegex(permits.summary, r"\d+,\d detik")
        # A reason written by the job, in Indonesian too.
        self.config.api_url = self.sandbox.url.rstrip("/") + "/"
        self.env.ref(PERMIT_CRON).method_direct_trigger()
        skipped = self.logs("permits").filtered(
            lambda log: log.failure_type == "untested"
        )
        self.assertIn("Uji Koneksi", skipped.failure_reason)
        self.assertNotIn("Test Connection", skipped.failure_reason)
        self.assertNotIn("Test Connection", skipped.summary)

    def test_numbers_follow_the_language(self):
        Log = self.env["sicantik.sync.log"]
        self.assertEqual(Log.with_context(lang="id_ID")._number(1979), "1.979")
        self.assertEqual(Log.with_context(lang="id_ID")._number(1.0, 1), "1,0")
        self.assertEqual(Log.with_context(lang="en_US")._number(1979), "1,979")
        self.assertEqual(
            Log.with_context(lang="id_ID")._duration_text(1.0), "1,0 detik"
        )

    def test_a_manual_test_connection_logs_in_the_connector_language(self):
        action = self.config.with_context(lang="en_US").action_test_connection()
        log = self.logs("test_connection")[:1]
        self.assertIn("Terhubung ke", log.message)
        self.assertIn("Connected to", action["params"]["message"])

    def test_the_default_language_is_indonesian(self):
        config = self.env["sicantik.config"].create(
            {"name": "Baru", "api_url": self.sandbox.url}
        )
        self.assertEqual(config.lang, "id_ID")

    def test_the_daily_jobs_write_in_indonesian_when_odoobot_runs(self):
        """00:00, 09:00 and the sender: each connector's texts in its
        language, though they do not go through the sync loop."""
        self.config.write({"quiet_hours_start": 0, "quiet_hours_end": 0})
        stage = min(self.config._reminder_stages())
        holder = self.env["res.partner"].create(
            {"name": "Pemegang Uji", "whatsapp_number": "0812 3456 7890"}
        )
        permit = self.env["sicantik.permit"].create(
            {
                "config_id": self.config.id,
                "pendaftaran_id": "7777700000000001",
                "no_surat": "503/0001/XI/TDP/DPM-PPTSP/2025",
                "applicant_name": holder.name,
                "permit_type_name": "SURAT IZIN USAHA PERDAGANGAN (SIUP)",
                "expiry_date": self.config._today() + timedelta(days=stage),
                "partner_id": holder.id,
            }
        )
        for xmlid in (
            "sicantik_connector.ir_cron_update_status",
            "sicantik_connector.ir_cron_check_expiring",
            "sicantik_connector.ir_cron_send_reminders",
        ):
            self.env.ref(xmlid).method_direct_trigger()
        status = self.logs("status")[:1]
        queued = self.logs("notifications")[:1]
        sent = self.logs("reminders")[:1]
        self.assertIn("izin berubah status", status.message)
        self.assertNotIn("changed state", status.message)
        self.assertIn("pengingat masuk antrean", queued.message)
        self.assertNotIn("reminder(s) queued", queued.message)
        self.assertIn("pengingat terkirim", sent.message)
        self.assertNotIn("reminder(s) sent", sent.message)
        # The reminder's own chatter note too.
        note = permit.message_ids.filtered(lambda m: "WhatsApp" in (m.body or ""))
        self.assertTrue(note)
        self.assertNotIn("reminder", note[0].body)
