import json
import logging
from datetime import timedelta

from odoo import fields
from odoo.tests import tagged
from odoo.tools import mute_logger

from ..sandbox.gateways import GatewayServer
from .common import use_loopback_send
from .test_sicantik_reminders import ReminderCase

QUIET = "odoo.addons.sicantik_connector.tools"


class GatewayCase(ReminderCase):
    """The reminders of a connector go through a real provider type talking
    to a loopback server that speaks that gateway's contract."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        use_loopback_send(cls)
        cls.gw = GatewayServer().start()
        cls.addClassCleanup(cls.gw.stop)
        # Never quiet in these tests: the sender runs whenever it is asked.
        cls.config.write({"quiet_hours_start": 0, "quiet_hours_end": 0})

    def setUp(self):
        super().setUp()
        self.gw.reset()

    def use(self, provider_type, **vals):
        credentials = {
            "meta": {
                "api_url": self.gw.url,
                "api_token": self.gw.meta_token,
                "meta_phone_number_id": self.gw.meta_phone_number_id,
                "meta_template_name": "sicantik_reminder",
            },
            "fonnte": {"api_url": self.gw.url, "api_token": self.gw.fonnte_token},
            "waha": {"api_url": self.gw.url, "api_token": self.gw.waha_api_key},
            "webhook": {
                "api_url": self.gw.webhook_url,
                "webhook_headers": json.dumps(self.gw.webhook_headers),
            },
        }[provider_type]
        provider = self.env["sicantik.whatsapp.provider"].create(
            {
                "name": f"{provider_type} loopback",
                "provider_type": provider_type,
                "rate_limit": 50,
                "timeout": 2,
                **credentials,
                **vals,
            }
        )
        self.config.whatsapp_provider_id = provider
        return provider

    def queue_one(self, days=7, **partner_vals):
        permit = self.make_permit(days, **partner_vals)
        self.check_expiring()
        return permit, self.notifications(permit)

    def send(self, at=None):
        self.env.ref(
            "sicantik_connector.ir_cron_send_reminders"
        ).method_direct_trigger()


@tagged("post_install", "-at_install", "sicantik")
class TestGatewaySuccess(GatewayCase):
    def test_each_provider_delivers_once(self):
        for provider_type in ("meta", "fonnte", "waha", "webhook"):
            with self.subTest(provider_type):
                self.gw.reset()
                provider = self.use(provider_type)
                permit, reminder = self.queue_one()
                self.send()
                self.assertEqual(reminder.state, "sent", reminder.failure_reason)
                self.assertEqual(reminder.provider_id, provider)
                delivered = self.gw.messages(provider_type)
                self.assertEqual(len(delivered), 1)
                self.assertEqual(delivered[0].to.lstrip("+"), "6281234567890")
                self.assertEqual(reminder.provider_message_id, delivered[0].message_id)
                if provider_type == "meta":
                    # An approved template with the five body parameters.
                    self.assertEqual(delivered[0].template, "sicantik_reminder")
                    self.assertEqual(delivered[0].params[2], permit.no_surat)
                    self.assertEqual(
                        delivered[0].params[3],
                        permit.expiry_date.strftime("%d-%m-%Y"),
                    )
                else:
                    self.assertIn(permit.no_surat, delivered[0].text)
                self.assertIn("sent to +6281234567890", permit.message_ids[0].body)
                self.send()
                self.assertEqual(len(self.gw.messages(provider_type)), 1)


@tagged("post_install", "-at_install", "sicantik")
class TestGatewayFailures(GatewayCase):
    @mute_logger(QUIET)
    def test_rate_limit_and_server_errors_are_retried_later(self):
        self.use("fonnte")
        _permit, reminder = self.queue_one()
        self.gw.queue("fonnte", {"status": 429, "retry_after": 120})
        before = fields.Datetime.now()
        self.send()
        self.assertEqual(reminder.state, "queued")
        self.assertEqual(reminder.failure_type, "rate_limited")
        self.assertGreaterEqual(reminder.next_try, before + timedelta(seconds=119))
        self.assertFalse(self.gw.messages("fonnte"))
        # Not due yet: the sender leaves it alone.
        self.send()
        self.assertEqual(len(self.gw.requests("fonnte")), 1)
        reminder.next_try = fields.Datetime.now()
        self.gw.queue("fonnte", "503")
        self.send()
        self.assertEqual(reminder.state, "queued")
        self.assertEqual(reminder.failure_type, "retryable")
        reminder.next_try = fields.Datetime.now()
        self.send()
        self.assertEqual(reminder.state, "sent")
        self.assertEqual(reminder.attempts, 3)
        self.assertEqual(len(self.gw.messages("fonnte")), 1)

    @mute_logger(QUIET)
    def test_retries_stop_at_the_limit(self):
        self.use("webhook")
        _permit, reminder = self.queue_one()
        for _attempt in range(5):
            self.gw.queue("webhook", "500")
            reminder.next_try = fields.Datetime.now()
            self.send()
        self.assertEqual(reminder.state, "failed")
        self.assertEqual(reminder.attempts, 5)
        self.assertFalse(self.gw.messages("webhook"))

    @mute_logger(QUIET)
    def test_failure_inside_a_200_answer_is_a_failure(self):
        self.use("fonnte")
        _permit, reminder = self.queue_one()
        # HTTP 200, "status": false: out of quota is worth another try...
        self.gw.queue("fonnte", {"refuse": True, "reason": "insufficient quota"})
        self.send()
        self.assertEqual(reminder.state, "queued")
        self.assertEqual(reminder.failure_type, "retryable")
        # ...a refusal for any other reason is final.
        reminder.next_try = fields.Datetime.now()
        self.gw.queue("fonnte", {"refuse": True, "reason": "message rejected"})
        self.send()
        self.assertEqual(reminder.state, "failed")
        self.assertEqual(reminder.failure_type, "permanent")
        self.assertIn("message rejected", reminder.failure_reason)
        self.assertFalse(self.gw.messages("fonnte"))

    @mute_logger(QUIET)
    def test_invalid_number_fails_and_flags_the_holder(self):
        self.use("meta")
        permit, reminder = self.queue_one()
        self.gw.queue("meta", "invalid_number")
        self.send()
        self.assertEqual(reminder.state, "failed")
        self.assertEqual(reminder.failure_type, "invalid_number")
        self.assertEqual(permit.partner_id.whatsapp_number_state, "invalid")
        self.assertIn("not sent", permit.message_ids[0].body)
        # The next morning the holder counts as unreachable.
        self.assertEqual(self.check_expiring().skipped_count, 1)

    @mute_logger(QUIET)
    def test_an_answer_lost_after_delivery_is_never_resent(self):
        self.use("webhook")
        _permit, reminder = self.queue_one()
        self.gw.queue("webhook", {"close": True, "deliver": True})
        self.send()
        self.assertEqual(reminder.state, "failed")
        self.assertEqual(reminder.failure_type, "unknown")
        self.send()
        self.assertEqual(len(self.gw.messages("webhook")), 1, "delivered once")

    @mute_logger(QUIET)
    def test_a_timeout_is_an_unknown_outcome_not_a_resend(self):
        self.use("waha", timeout=1)
        _permit, reminder = self.queue_one()
        self.gw.queue("waha", {"hang": 5})
        self.send()
        self.assertEqual(reminder.state, "failed")
        self.assertEqual(reminder.failure_type, "unknown")
        self.send()
        self.assertEqual(len(self.gw.messages("waha")), 1)

    @mute_logger(QUIET)
    def test_a_crash_between_claim_and_answer_sends_nothing_twice(self):
        self.use("fonnte")
        _permit, reminder = self.queue_one()
        self.send()
        self.assertEqual(reminder.state, "sent")
        # Another reminder was claimed (committed) by a worker that then died.
        _other, claimed = self.queue_one(days=0)
        claimed.write(
            {
                "state": "sending",
                "attempts": 1,
                "claimed_at": fields.Datetime.now() - timedelta(hours=2),
            }
        )
        self.send()
        self.assertEqual(claimed.state, "failed")
        self.assertEqual(claimed.failure_type, "unknown")
        self.assertEqual(len(self.gw.messages("fonnte")), 1)

    def test_secrets_never_reach_logs_or_messages(self):
        provider = self.use("fonnte")
        _permit, reminder = self.queue_one()
        self.gw.queue("fonnte", "500")
        with self.assertLogs(level=logging.DEBUG) as logs:
            logging.getLogger("odoo.addons.sicantik_connector").debug("probe")
            self.send()
            reminder.next_try = fields.Datetime.now()
            self.gw.queue("fonnte", {"status": 401})
            self.send()
        token = provider.sudo().api_token
        text = "\n".join(logs.output)
        self.assertNotIn(token, text)
        self.assertNotIn(token, reminder.failure_reason or "")
        self.assertEqual(reminder.failure_type, "config")
