import socket

from odoo.exceptions import AccessError, UserError
from odoo.tests import Form, tagged
from odoo.tools import mute_logger

from .common import SicantikSandboxCase

PERMIT_CRON = "sicantik_connector.ir_cron_sync_permits"
EXPIRY_CRON = "sicantik_connector.ir_cron_sync_expiry_dates"


def _closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@tagged("post_install", "-at_install", "sicantik")
class TestSicantikActions(SicantikSandboxCase):
    # ------------------------------------------------------------------
    # Test Connection
    # ------------------------------------------------------------------

    def test_test_connection_reports_permit_types(self):
        action = self.config.action_test_connection()
        self.assertEqual(action["tag"], "display_notification")
        self.assertEqual(action["params"]["type"], "success")
        count = len(self.sandbox.dataset.permit_types)
        self.assertIn(f"{count} permit types", action["params"]["message"])
        self.assertEqual(self.requests_to("jumlahPerizinan"), 1)
        # One row of the permit list: approved only when the sync can read it.
        self.assertEqual(self.requests_to("listpermohonanterbit"), 1)
        log = self.logs("test_connection")[:1]
        self.assertEqual(log.state, "done")
        self.assertEqual(log.fetched_count, count)
        self.assertEqual(log.request_count, 2)
        self.assertEqual(log.trigger, "button")

    @mute_logger("odoo.addons.sicantik_connector.tools.sicantik_api")
    def test_test_connection_failure_families(self):
        port = self.sandbox.port
        self.sandbox.configure(hang_seconds=3)
        cases = [
            # (what to break, words of the message, failure type logged)
            ("timeout", "did not answer in time", "timeout"),
            ("connection", "could not reach", "connection"),
            ("tls", "certificate", "tls"),
            ("status", "HTTP error 500", "server"),
            ("unreadable", "cannot read", "bad_response"),
        ]
        for case, words, failure_type in cases:
            with self.subTest(case=case):
                config = self.config.copy({"name": f"Broken {case}", "timeout": 1})
                if case == "timeout":
                    self.sandbox.queue_faults("hang", "hang")
                elif case == "connection":
                    config.api_url = f"http://127.0.0.1:{_closed_port()}/backoffice/api"
                elif case == "tls":
                    config.api_url = f"https://127.0.0.1:{port}/backoffice/api"
                elif case == "status":
                    self.sandbox.queue_faults(500, 500)
                else:
                    self.sandbox.queue_faults("html", "html")
                # Not assertRaises: its savepoint would also undo the log row
                # written in its own transaction.
                message = None
                try:
                    config.action_test_connection()
                except UserError as error:
                    message = str(error)
                else:
                    self.fail("the connection test did not fail")
                self.assertIn(words, message)
                self.sandbox.clear_faults()
                log = self.logs("test_connection", config)
                self.assertEqual(len(log), 1, "the failure is logged")
                self.assertEqual(log.state, "failed")
                self.assertEqual(log.failure_type, failure_type)
                self.assertTrue(log.failure_reason)
                # One table of reasons: the button says what the log says.
                self.assertIn(log.failure_reason, message)
                self.assertTrue(log.sudo().error_detail)

    # ------------------------------------------------------------------
    # Sync Now
    # ------------------------------------------------------------------

    def test_sync_now_triggers_the_job_and_does_not_sync_inline(self):
        cron = self.env.ref(PERMIT_CRON)
        triggers = self.env["ir.cron.trigger"].search_count([("cron_id", "=", cron.id)])
        action = self.config.action_sync_now()
        self.assertEqual(action["tag"], "display_notification")
        self.assertEqual(self.requests_to(), 0, "nothing is fetched in the request")
        self.assertFalse(self.env["sicantik.permit"].search_count([]))
        self.assertEqual(
            self.env["ir.cron.trigger"].search_count([("cron_id", "=", cron.id)]),
            triggers + 1,
        )
        self.assertTrue(self.config.sync_requested)
        # The job then does the work, logged as started by the button.
        self.run_cron(PERMIT_CRON)
        log = self.logs("permits")
        self.assertEqual(log.trigger, "button")
        self.assertEqual(log.state, "done")
        self.assertFalse(self.config.sync_requested)

    def test_manual_run_refused_while_the_same_job_runs(self):
        Log = self.env["sicantik.sync.log"]
        running = Log._start(self.config, "permits")
        # A friendly notice linking to the running log, not an error.
        notice = self.config.action_sync_now()
        self.assertEqual(notice["params"]["type"], "warning")
        self.assertIn("still working", notice["params"]["message"])
        self.assertEqual(notice["params"]["links"][0]["url"], running._url())
        self.assertFalse(self.config.sync_requested)
        # The expiry job is another job: it may start.
        self.config.action_test_expiry_sync()
        expiry = Log._start(self.config, "expiry")
        notice = self.config.action_test_expiry_sync()
        self.assertEqual(notice["params"]["type"], "warning")
        self.assertEqual(notice["params"]["links"][0]["url"], expiry._url())
        notice = (
            Form(
                self.env["sicantik.config.expiry.sync"].with_context(
                    default_config_id=self.config.id
                )
            )
            .save()
            .action_start()
        )
        self.assertEqual(notice["params"]["type"], "warning")
        self.assertFalse(self.config.expiry_run_requested)
        # A row whose process died (stale heartbeat) does not block: the next
        # run closes it as interrupted.
        stale = Log.STALE_AFTER * 2
        (running | expiry).write({"heartbeat": running.heartbeat - stale})
        self.config.action_sync_now()
        self.run_cron(PERMIT_CRON)
        self.assertEqual(running.state, "interrupted")
        self.assertEqual(running.failure_type, "interrupted")

    # ------------------------------------------------------------------
    # Test Expiry Sync
    # ------------------------------------------------------------------

    def test_test_expiry_sync_runs_both_steps_on_ten_permits(self):
        action = self.config.action_test_expiry_sync()
        self.assertEqual(action["tag"], "display_notification")
        self.assertIn("10 permit(s) checked", action["params"]["message"])
        # Step 1: types and one page of ten; step 2: ten cekperizinan.
        self.assertEqual(self.requests_to("jenisperizinanlist"), 1)
        self.assertEqual(self.requests_to("listpermohonanterbit"), 1)
        self.assertLessEqual(self.requests_to("cekperizinan"), 10)
        permits = self.env["sicantik.permit"].search(
            [("config_id", "=", self.config.id)]
        )
        self.assertEqual(len(permits), 10)
        self.assertFalse(permits.filtered(lambda p: p.expiry_check_state == "pending"))
        log = self.logs("expiry")
        self.assertEqual(log.state, "done")
        self.assertEqual(log.progress_done, 10)
        self.assertEqual(log.trigger, "button")
        self.assertEqual(self.config.last_expiry_log_id, log)
        # Checked against the sandbox's own data.
        dataset = self.sandbox.dataset.by_pendaftaran_id
        for permit in permits.filtered(lambda p: p.expiry_check_state == "found"):
            raw = dataset[permit.pendaftaran_id].d_berlaku_izin
            if permit.expiry_unlimited:
                self.assertEqual(raw, "0000-00-00")
            else:
                self.assertEqual(str(permit.expiry_date), raw)

    # ------------------------------------------------------------------
    # Wizard
    # ------------------------------------------------------------------

    def test_wizard_runs_a_bounded_expiry_sync_in_the_background(self):
        self.sync_permits()
        due = self.config.expiry_due_count
        self.assertEqual(due, len(self.listed_ids()))
        self.sandbox.reset_stats()
        action = self.config.action_open_expiry_sync_wizard()
        wizard_form = Form(
            self.env[action["res_model"]].with_context(**action["context"])
        )
        self.assertEqual(wizard_form.due_count, due)
        self.assertEqual(wizard_form.run_count, due)
        wizard_form.mode = "test"
        self.assertEqual(wizard_form.run_count, 10)
        wizard_form.mode = "limit"
        wizard_form.limit = 7
        self.assertEqual(wizard_form.run_count, 7)
        # 7 requests at 200 req/s (paced 3 % below): a few seconds at most.
        self.assertIn("seconds", wizard_form.estimate)
        wizard = wizard_form.save()
        result = wizard.action_start()
        self.assertEqual(result["tag"], "display_notification")
        self.assertEqual(self.requests_to(), 0, "the wizard only queues the run")
        self.assertTrue(self.config.expiry_run_requested)
        self.sync_expiry()
        log = self.logs("expiry")
        self.assertEqual(log.trigger, "wizard")
        self.assertEqual(log.run_limit, 7)
        self.assertEqual(log.progress_done, 7)
        self.assertEqual(log.state, "done")
        self.assertEqual(self.requests_to("cekperizinan"), 7)
        self.env.invalidate_all()  # statistics are computed, not stored
        self.assertEqual(self.config.expiry_due_count, due - 7)

    # ------------------------------------------------------------------
    # Access rights
    # ------------------------------------------------------------------

    @mute_logger("odoo.addons.base.models.ir_model", "odoo.addons.base.models.ir_rule")
    def test_a_sicantik_user_cannot_sync_nor_configure(self):
        config = self.config.with_user(self.user_sicantik)
        for action in (
            "action_test_connection",
            "action_sync_now",
            "action_test_expiry_sync",
            "action_open_expiry_sync_wizard",
        ):
            with self.subTest(action=action), self.assertRaises(AccessError):
                getattr(config, action)()
        with self.assertRaises(AccessError):
            config.write({"api_url": "http://127.0.0.1:1/backoffice/api"})
        with self.assertRaises(AccessError):
            self.env["sicantik.config.expiry.sync"].with_user(
                self.user_sicantik
            ).create({"config_id": self.config.id})
        self.assertEqual(self.requests_to(), 0, "refused before any request")
        self.assertFalse(self.config.sync_requested)
        # The user reads permits, types and logs, but not the technical detail.
        self.config.action_test_expiry_sync()
        self.assertTrue(
            self.env["sicantik.permit"].with_user(self.user_sicantik).search([])
        )
        log = self.logs("expiry").with_user(self.user_sicantik)
        self.assertEqual(log.state, "done")
        with self.assertRaises(AccessError):
            log.read(["error_detail"])
        self.assertTrue(
            self.env["sicantik.permit.type"].with_user(self.user_sicantik).search([])
        )
        # The manager does it all.
        self.config.with_user(self.user_manager).action_sync_now()
        self.assertTrue(self.config.sync_requested)

    @mute_logger("odoo.addons.base.models.ir_rule")
    def test_company_rules_on_synced_records(self):
        other = self.env["res.company"].create({"name": "Kabupaten Lain"})
        self.config.company_id = other
        self.config.action_test_expiry_sync()
        Permit = self.env["sicantik.permit"].with_user(self.user_sicantik)
        self.assertFalse(Permit.search([("config_id", "=", self.config.id)]))
        self.assertFalse(
            self.env["sicantik.sync.log"]
            .with_user(self.user_sicantik)
            .search([("config_id", "=", self.config.id)])
        )
        self.user_sicantik.company_ids |= other
        self.assertEqual(
            len(
                Permit.with_context(allowed_company_ids=[other.id]).search(
                    [("config_id", "=", self.config.id)]
                )
            ),
            10,
        )
