"""Gateway receipts and replies through real HTTP into Odoo (HttpCase)."""

import hashlib
import hmac
import importlib.util
import json
import time
from datetime import datetime
from unittest.mock import patch

from odoo import fields
from odoo.modules import neutralize
from odoo.tests import HttpCase, tagged
from odoo.tools import mute_logger
from odoo.tools.misc import file_path

from ..sandbox.gateways import GatewayServer
from ..tools import reminders
from ..tools import whatsapp_webhooks as wh
from .common import use_loopback_send
from .test_sicantik_reminders import ReminderCase

ROUTE = "/sicantik/whatsapp"
QUIET = "odoo.addons.sicantik_connector.controllers.whatsapp_webhook"
SECRET = "app-secret-0123456789"


def meta_body(*statuses, messages=()):
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "62811", "phone_number_id": "1065"},
    }
    if statuses:
        value["statuses"] = list(statuses)
    if messages:
        value["messages"] = list(messages)
    return json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
        }
    ).encode()


def meta_status(message_id, status, at=1_700_000_000, **extra):
    return {
        "id": message_id,
        "status": status,
        "timestamp": str(at),
        "recipient_id": "6281234567890",
        **extra,
    }


def meta_headers(body, secret=SECRET):
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": f"sha256={digest}",
    }


class WebhookCase(ReminderCase, HttpCase):
    """A reminder the gateway accepted, and its provider's webhook URL."""

    def make_provider(self, provider_type, **vals):
        return self.env["sicantik.whatsapp.provider"].create(
            {
                "name": f"{provider_type} receipts",
                "provider_type": provider_type,
                "api_url": "http://127.0.0.1:9",
                "api_token": "t0ken",
                "meta_phone_number_id": "1065",
                "meta_template_name": "sicantik_reminder",
                "webhook_secret": SECRET,
                **vals,
            }
        )

    def sent_reminder(self, provider, message_id, days=7, phone="0812 3456 7890"):
        """A reminder as the sender leaves it once the gateway accepted it."""
        permit = self.make_permit(days, phone=phone)
        self.check_expiring()
        reminder = self.notifications(permit)
        reminder.write(
            {
                "state": "sent",
                "provider_id": provider.id,
                "provider_message_id": message_id,
                "phone": permit.partner_id.whatsapp_number,
                "sent_at": fields.Datetime.now(),
            }
        )
        return reminder

    def post(self, provider, body, headers=None, query=""):
        response = self.url_open(
            f"{ROUTE}/{provider.webhook_token}{query}",
            data=body,
            headers=headers or {"Content-Type": "application/json"},
        )
        self.env.invalidate_all()
        return response

    def events(self, provider):
        return self.env["sicantik.whatsapp.event"].search(
            [("provider_id", "=", provider.id)]
        )


@tagged("post_install", "-at_install", "sicantik")
class TestMetaReceipts(WebhookCase):
    def test_signed_receipts_move_the_reminder_forward(self):
        provider = self.make_provider("meta")
        reminder = self.sent_reminder(provider, "wamid.A1")
        body = meta_body(meta_status("wamid.A1", "delivered", 1_700_000_000))
        response = self.post(provider, body, meta_headers(body))
        self.assertEqual(response.status_code, 200)
        self.assertEqual(reminder.state, "delivered")
        self.assertEqual(reminder.delivery_at, datetime(2023, 11, 14, 22, 13, 20))
        body = meta_body(meta_status("wamid.A1", "read", 1_700_000_060))
        self.post(provider, body, meta_headers(body))
        self.assertEqual(reminder.state, "read")
        self.assertEqual(self.events(provider).mapped("outcome"), ["applied"] * 2)
        self.assertTrue(provider.last_receipt_at)
        self.assertTrue(provider.receipts_recent)

    @mute_logger(QUIET)
    def test_bad_and_missing_signatures_get_a_bare_403(self):
        provider = self.make_provider("meta")
        reminder = self.sent_reminder(provider, "wamid.B1")
        body = meta_body(meta_status("wamid.B1", "read"))
        for headers in (
            {"Content-Type": "application/json"},
            meta_headers(body, secret="another-secret"),
            meta_headers(body + b" "),
        ):
            response = self.post(provider, body, headers)
            self.assertEqual(response.status_code, 403)
            self.assertEqual(response.text, "Forbidden")
        self.assertEqual(reminder.state, "sent")
        self.assertFalse(self.events(provider))
        # an unknown path, and a log-only provider, have no webhook at all
        response = self.url_open(
            f"{ROUTE}/{'x' * 43}", data=body, headers=meta_headers(body)
        )
        self.assertEqual(response.status_code, 403)
        log = self.env.ref("sicantik_connector.sicantik_whatsapp_provider_log")
        self.assertEqual(self.post(log, body, meta_headers(body)).status_code, 403)

    def test_verification_challenge(self):
        provider = self.make_provider("meta", meta_verify_token="my-verify-token")
        ok = self.url_open(
            f"{ROUTE}/{provider.webhook_token}?hub.mode=subscribe"
            "&hub.verify_token=my-verify-token&hub.challenge=1158201444"
        )
        self.assertEqual((ok.status_code, ok.text), (200, "1158201444"))
        wrong = self.url_open(
            f"{ROUTE}/{provider.webhook_token}?hub.mode=subscribe"
            "&hub.verify_token=guess&hub.challenge=1158201444"
        )
        self.assertEqual(wrong.status_code, 403)
        self.assertNotIn("1158201444", wrong.text)

    def test_replays_duplicates_and_out_of_order_states_change_nothing(self):
        provider = self.make_provider("meta")
        reminder = self.sent_reminder(provider, "wamid.C1")
        read = meta_body(meta_status("wamid.C1", "read", 1_700_000_100))
        self.post(provider, read, meta_headers(read))
        self.assertEqual(reminder.state, "read")
        # the very same call again: recognised, nothing recorded twice
        response = self.post(provider, read, meta_headers(read))
        self.assertEqual((response.status_code, response.text), (200, "duplicate"))
        self.assertEqual(len(self.events(provider)), 1)
        # an older state arriving late, and a duplicate in another body
        for status in ("delivered", "sent", "read"):
            late = meta_body(meta_status("wamid.C1", status, 1_700_000_000))
            self.assertEqual(
                self.post(provider, late, meta_headers(late)).status_code, 200
            )
        self.assertEqual(reminder.state, "read")
        self.assertEqual(reminder.delivery_at, datetime(2023, 11, 14, 22, 15))
        self.assertEqual(
            sorted(self.events(provider).mapped("outcome")),
            ["applied", "no_change", "no_change", "no_change"],
        )

    def test_one_call_with_states_out_of_order_ends_on_the_latest(self):
        provider = self.make_provider("meta")
        reminder = self.sent_reminder(provider, "wamid.D1")
        body = meta_body(
            meta_status("wamid.D1", "read", 1_700_000_100),
            meta_status("wamid.D1", "delivered", 1_700_000_050),
        )
        self.post(provider, body, meta_headers(body))
        self.assertEqual(reminder.state, "read")

    def test_unknown_message_ids_are_kept_for_staff(self):
        provider = self.make_provider("meta")
        body = meta_body(meta_status("wamid.NOBODY", "delivered"))
        self.assertEqual(self.post(provider, body, meta_headers(body)).status_code, 200)
        event = self.events(provider)
        self.assertEqual(
            (event.outcome, event.message_id), ("unmatched", "wamid.NOBODY")
        )
        # the send is recorded later (the gateway was quicker): applied then
        reminder = self.sent_reminder(provider, "wamid.NOBODY")
        self.env["sicantik.whatsapp.event"]._reapply_for(reminder)
        self.assertEqual(reminder.state, "delivered")
        self.assertEqual(event.outcome, "applied")

    def test_oversized_bodies_are_refused_unread(self):
        provider = self.make_provider("meta")
        body = (
            b'{"object": "whatsapp_business_account", "pad": "'
            + b"x" * (wh.MAX_BODY_BYTES + 10)
            + b'"}'
        )
        response = self.post(provider, body, meta_headers(body))
        self.assertEqual(response.status_code, 413)
        self.assertFalse(self.events(provider))

    def test_invalid_number_failure_flags_the_holder(self):
        provider = self.make_provider("meta")
        reminder = self.sent_reminder(provider, "wamid.E1")
        partner = reminder.partner_id
        body = meta_body(
            meta_status(
                "wamid.E1",
                "failed",
                errors=[{"code": 131026, "title": "Message undeliverable"}],
            )
        )
        self.post(provider, body, meta_headers(body))
        self.assertEqual(reminder.state, "failed")
        self.assertEqual(reminder.failure_type, "invalid_number")
        self.assertIn("Message undeliverable", reminder.failure_reason)
        self.assertEqual(partner.whatsapp_number_state, "invalid")
        # the holder's next reminders wait for a corrected number
        permit = self.env["sicantik.permit"].create(
            {
                "config_id": self.config.id,
                "pendaftaran_id": "99999000000001",
                "no_surat": "503/9/2025",
                "applicant_name": partner.name,
                "expiry_date": reminder.expiry_date,
                "partner_id": partner.id,
            }
        )
        self.check_expiring()
        self.assertFalse(self.notifications(permit))
        partner.whatsapp_number = "0813 1111 2222"  # staff corrected it
        self.check_expiring()
        self.assertEqual(self.notifications(permit).state, "queued")
        # a failure after delivery is not believed: the holder got it
        other = self.sent_reminder(provider, "wamid.E2", phone="0812 9999 0000")
        delivered = meta_body(meta_status("wamid.E2", "delivered"))
        self.post(provider, delivered, meta_headers(delivered))
        failed = meta_body(meta_status("wamid.E2", "failed", errors=[{"code": 131026}]))
        self.post(provider, failed, meta_headers(failed))
        self.assertEqual(other.state, "delivered")
        self.assertEqual(other.partner_id.whatsapp_number_state, "valid")

    @mute_logger(QUIET)
    def test_a_processing_error_still_answers_200_and_is_kept(self):
        provider = self.make_provider("meta")
        body = meta_body(meta_status("wamid.F1", "read"))
        with patch.object(
            type(self.env["sicantik.whatsapp.event"]),
            "_apply",
            side_effect=RuntimeError("boom"),
        ):
            response = self.post(provider, body, meta_headers(body))
        self.assertEqual(response.status_code, 200)
        self.assertEqual(self.events(provider).outcome, "error")
        # and the gateway's retry of it is not processed a second time
        self.assertEqual(
            self.post(provider, body, meta_headers(body)).text, "duplicate"
        )


@tagged("post_install", "-at_install", "sicantik")
class TestRepliesAndStop(WebhookCase):
    def waha_message(self, text, sender="6281234567890"):
        return json.dumps(
            {
                "event": "message",
                "session": "default",
                "timestamp": int(time.time() * 1000),
                "payload": {
                    "id": f"false_{sender}@c.us_{abs(hash(text)):X}",
                    "from": f"{sender}@c.us",
                    "fromMe": False,
                    "body": text,
                },
            }
        ).encode()

    def waha_headers(self, body, key=SECRET):
        return {
            "Content-Type": "application/json",
            "X-Webhook-Hmac": hmac.new(key.encode(), body, hashlib.sha512).hexdigest(),
            "X-Webhook-Hmac-Algorithm": "sha512",
        }

    def test_a_reply_is_posted_on_the_permit(self):
        provider = self.make_provider("waha")
        reminder = self.sent_reminder(provider, "true_6281234567890@c.us_AA")
        body = self.waha_message("Sudah diperpanjang, terima kasih")
        self.assertEqual(
            self.post(provider, body, self.waha_headers(body)).status_code, 200
        )
        note = reminder.permit_id.message_ids[0]
        self.assertIn("Sudah diperpanjang", note.body)
        self.assertEqual(note.author_id, reminder.partner_id)
        self.assertFalse(reminder.partner_id.whatsapp_opt_out)
        self.assertEqual(self.events(provider).outcome, "posted")

    def test_stop_opts_the_holder_out_and_cancels_the_queue(self):
        provider = self.make_provider("waha")
        reminder = self.sent_reminder(provider, "true_6281234567890@c.us_BB")
        partner = reminder.partner_id
        # another permit of the same holder, queued
        queued_permit = self.env["sicantik.permit"].create(
            {
                "config_id": self.config.id,
                "pendaftaran_id": "99999000000002",
                "no_surat": "503/10/2025",
                "applicant_name": partner.name,
                "expiry_date": reminder.expiry_date,
                "partner_id": partner.id,
            }
        )
        self.check_expiring()
        queued = self.notifications(queued_permit)
        self.assertEqual(queued.state, "queued")
        self.config.whatsapp_stop_words = "STOP, BERHENTI, unsubscribe, cukup"
        body = self.waha_message("  Berhenti. ")
        self.post(provider, body, self.waha_headers(body))
        self.assertTrue(partner.whatsapp_opt_out)
        self.assertEqual(queued.state, "cancelled")
        self.assertIn("asked to stop", queued.failure_reason)
        self.assertIn("asked to stop", "".join(partner.message_ids.mapped("body")))
        self.assertEqual(self.events(provider).outcome, "opt_out")
        # the edited list counts: another holder's "cukup" stops too
        other = self.sent_reminder(
            provider, "true_6281299990000@c.us_CC", phone="0812 9999 0000"
        )
        body = self.waha_message("CUKUP", sender="6281299990000")
        self.post(provider, body, self.waha_headers(body))
        self.assertTrue(other.partner_id.whatsapp_opt_out)
        # a sentence containing the word is no stop request
        third = self.sent_reminder(
            provider, "true_6281277770000@c.us_DD", phone="0812 7777 0000"
        )
        body = self.waha_message("jangan stop dulu", sender="6281277770000")
        self.post(provider, body, self.waha_headers(body))
        self.assertFalse(third.partner_id.whatsapp_opt_out)

    @mute_logger(QUIET)
    def test_waha_acks_and_signature(self):
        provider = self.make_provider("waha")
        message_id = "true_6281234567890@c.us_3EB0AA"
        reminder = self.sent_reminder(provider, message_id)

        def ack(n):
            return json.dumps(
                {
                    "event": "message.ack",
                    "session": "default",
                    "payload": {"id": message_id, "fromMe": True, "ack": n},
                }
            ).encode()

        body = ack(3)
        self.assertEqual(self.post(provider, body).status_code, 403)  # unsigned
        bad = self.waha_headers(body, key="wrong")
        self.assertEqual(self.post(provider, body, bad).status_code, 403)
        self.assertEqual(reminder.state, "sent")
        self.post(provider, body, self.waha_headers(body))
        self.assertEqual(reminder.state, "read")
        self.post(provider, ack(2), self.waha_headers(ack(2)))
        self.assertEqual(reminder.state, "read")
        # without a key WAHA signs nothing: the secret path is the check
        provider.webhook_secret = False
        late = json.dumps({"event": "message.ack", "payload": {"id": "x", "ack": 2}})
        self.assertEqual(self.post(provider, late.encode()).status_code, 200)


@tagged("post_install", "-at_install", "sicantik")
class TestFonnteAndGenericReceipts(WebhookCase):
    @mute_logger(QUIET)
    def test_fonnte_token_and_second_id(self):
        provider = self.make_provider("fonnte", webhook_secret="shared-token")
        reminder = self.sent_reminder(provider, "80367171")
        first = json.dumps(
            {"device": "62811", "id": "80367171", "stateid": "st-9", "status": "sent"}
        ).encode()
        self.assertEqual(self.post(provider, first).status_code, 403)
        wrong = self.post(provider, first, query="?token=guess")
        self.assertEqual(wrong.status_code, 403)
        self.assertEqual(
            self.post(provider, first, query="?token=shared-token").status_code, 200
        )
        self.assertEqual(reminder.provider_state_id, "st-9")
        later = json.dumps(
            {"device": "62811", "stateid": "st-9", "state": "read"}
        ).encode()
        self.post(provider, later, query="?token=shared-token")
        self.assertEqual(reminder.state, "read")
        # an incoming message as a form, the way Fonnte can post it
        response = self.url_open(
            f"{ROUTE}/{provider.webhook_token}?token=shared-token",
            data={"device": "62811", "sender": "6281234567890", "message": "STOP"},
        )
        self.env.invalidate_all()
        self.assertEqual(response.status_code, 200)
        self.assertTrue(reminder.partner_id.whatsapp_opt_out)

    def test_fonnte_invalid_target_flags_the_number(self):
        provider = self.make_provider("fonnte", webhook_secret=False)
        reminder = self.sent_reminder(provider, "80367172")
        body = json.dumps({"id": "80367172", "status": "invalid"}).encode()
        self.post(provider, body)
        self.assertEqual(reminder.state, "failed")
        self.assertEqual(reminder.failure_type, "invalid_number")
        self.assertEqual(reminder.partner_id.whatsapp_number_state, "invalid")

    @mute_logger(QUIET)
    def test_generic_signature_with_a_stale_window(self):
        provider = self.make_provider("webhook", api_url="http://127.0.0.1:9/hook")
        reminder = self.sent_reminder(provider, "hook-000001")
        body = json.dumps(
            {"type": "status", "id": "hook-000001", "status": "delivered"}
        ).encode()
        stale = wh.sign_generic(SECRET, body, time.time() - wh.STALE_AFTER_S - 60)
        self.assertEqual(
            self.post(
                provider, body, {**stale, "Content-Type": "application/json"}
            ).status_code,
            403,
        )
        self.assertEqual(self.post(provider, body).status_code, 403)
        fresh = wh.sign_generic(SECRET, body, time.time())
        response = self.post(
            provider, body, {**fresh, "Content-Type": "application/json"}
        )
        self.assertEqual(response.status_code, 200)
        self.assertEqual(reminder.state, "delivered")

    def test_secrets_are_for_managers_and_regenerable(self):
        provider = self.make_provider("meta", meta_verify_token="vt")
        as_user = provider.with_user(self.user_sicantik)
        for field in (
            "webhook_token",
            "webhook_secret",
            "meta_verify_token",
            "webhook_url",
        ):
            with self.subTest(field=field):
                self.assertNotIn(field, as_user.fields_get())
        self.assertTrue(as_user.last_receipt_at is False)
        old = provider.webhook_token
        self.assertIn(old, provider.webhook_url)
        self.assertTrue(provider.webhook_url.endswith(f"{ROUTE}/{old}"))
        provider.with_user(self.user_manager).action_regenerate_webhook_token()
        self.assertNotEqual(provider.webhook_token, old)
        body = meta_body(meta_status("wamid.X", "read"))
        response = self.url_open(
            f"{ROUTE}/{old}", data=body, headers=meta_headers(body)
        )
        self.assertEqual(response.status_code, 403)


@tagged("post_install", "-at_install", "sicantik")
class TestReceiptLoop(WebhookCase):
    """The whole loop over real HTTP: the sender job sends through a loopback
    gateway, which posts its receipts back into Odoo's webhook."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        use_loopback_send(cls)
        cls.gw = GatewayServer().start()
        cls.addClassCleanup(cls.gw.stop)

    def setUp(self):
        super().setUp()
        self.gw.reset()

    def loop(self, gateway, credentials, **receipt_options):
        provider = self.make_provider(gateway, rate_limit=50, timeout=2, **credentials)
        self.config.whatsapp_provider_id = provider
        self.gw.send_receipts(
            gateway,
            f"{self.base_url()}{ROUTE}/{provider.webhook_token}",
            secret=provider.webhook_secret,
            **receipt_options,
        )
        self.addCleanup(self.gw.send_receipts, gateway, None)
        return provider

    def send_and_settle(self):
        # receipts wait until the sender job is done with the test cursor
        self.gw.receipts.pause()
        self.send()
        self.gw.receipts.pause(False)
        self.assertTrue(self.gw.receipts.wait_idle(30), "receipts left untaken")
        self.env.invalidate_all()

    def test_every_gateway_ends_read_even_duplicated_and_out_of_order(self):
        setups = {
            "meta": {
                "api_url": self.gw.url,
                "api_token": self.gw.meta_token,
                "meta_phone_number_id": self.gw.meta_phone_number_id,
            },
            "fonnte": {
                "api_url": self.gw.url,
                "api_token": self.gw.fonnte_token,
                "webhook_secret": False,
            },
            "waha": {"api_url": self.gw.url, "api_token": self.gw.waha_api_key},
            "webhook": {
                "api_url": self.gw.webhook_url,
                "webhook_headers": json.dumps(self.gw.webhook_headers),
            },
        }
        for gateway, credentials in setups.items():
            with self.subTest(gateway):
                self.gw.reset()
                provider = self.loop(
                    gateway, credentials, duplicate=True, out_of_order=True
                )
                permit = self.make_permit(7)
                self.check_expiring()
                self.send_and_settle()
                reminder = self.notifications(permit)
                self.assertEqual(reminder.state, "read", reminder.failure_reason)
                self.assertTrue(reminder.delivery_at)
                posted = self.gw.receipts.posted()
                self.assertTrue(posted)
                self.assertTrue(all(p.status == 200 for p in posted))
                outcomes = self.events(provider).mapped("outcome")
                self.assertIn("applied", outcomes)
                self.assertNotIn("unmatched", outcomes)

    def test_a_number_without_whatsapp_fails_later_and_is_flagged(self):
        self.loop(
            "webhook",
            {
                "api_url": self.gw.webhook_url,
                "webhook_headers": json.dumps(self.gw.webhook_headers),
            },
            fail_numbers=["+6281234567890"],
        )
        permit = self.make_permit(7)
        self.check_expiring()
        self.send_and_settle()
        reminder = self.notifications(permit)
        self.assertEqual(reminder.state, "failed")
        self.assertTrue(reminder.sent_at)  # failed after sending
        self.assertEqual(permit.partner_id.whatsapp_number_state, "invalid")
        failed_after = self.env["sicantik.notification"].search(
            [("state", "=", "failed"), ("sent_at", "!=", False)]
        )
        self.assertIn(reminder, failed_after)

    @mute_logger("odoo.addons.sicantik_connector.tools")
    def test_a_429_slows_the_providers_bucket(self):
        provider = self.make_provider(
            "fonnte",
            api_url=self.gw.url,
            api_token=self.gw.fonnte_token,
            rate_limit=50,
            timeout=2,
        )
        self.config.whatsapp_provider_id = provider
        self.make_permit(7)
        self.check_expiring()
        self.assertEqual(provider._limiter().pace_factor(), 1.0)
        self.gw.queue("fonnte", {"status": 429, "retry_after": 1})
        self.send()
        self.assertLess(provider._limiter().pace_factor(), 1.0)


@tagged("post_install", "-at_install", "sicantik")
class TestReminderText(ReminderCase):
    def test_one_note_per_reminder_and_logged_is_not_sent(self):
        permit = self.make_permit(7)
        self.check_expiring()
        before = len(permit.message_ids)
        self.send()
        reminder = self.notifications(permit)
        self.assertEqual(reminder.state, "logged")
        self.assertEqual(len(permit.message_ids) - before, 1)
        self.assertIn("not sent", permit.message_ids[0].body)
        figures = {
            f["key"]: f["count"]
            for f in self.env["sicantik.dashboard"]._reminders(self.today)
        }
        self.assertEqual(figures["sent"], 0)

    def test_default_text_never_doubles_izin(self):
        permit = self.make_permit(7)
        permit.permit_type_name = "IZIN GANGGUAN USAHA"
        self.check_expiring()
        self.send()
        body = self.notifications(permit).body
        self.assertIn("IZIN GANGGUAN USAHA", body)
        self.assertNotRegex(body.casefold(), r"izin\W+izin")

    def test_log_only_provider_name_in_indonesian(self):
        self.env["res.lang"]._activate_lang("id_ID")
        module = self.env["ir.module.module"].search(
            [("name", "=", "sicantik_connector")]
        )
        module._update_translations(["id_ID"])
        provider = self.env.ref("sicantik_connector.sicantik_whatsapp_provider_log")
        self.assertEqual(provider.with_context(lang="id_ID").name, "Hanya dicatat")
        self.assertEqual(provider.with_context(lang="en_US").name, "Log only")

    def test_upgrade_marks_log_only_sends_logged(self):
        permit = self.make_permit(7)
        self.check_expiring()
        reminder = self.notifications(permit)
        reminder.write({"state": "sent", "provider_id": self.provider.id})
        old_template = next(iter(reminders.OLD_DEFAULT_TEMPLATES))
        self.config.reminder_template = old_template
        edited = self.config.copy(
            {"name": "Edited", "reminder_template": "Yth. {holder}"}
        )
        self.env.flush_all()
        path = file_path(
            "sicantik_connector/migrations/18.0.1.2.0/post-whatsapp-outcomes.py"
        )
        spec = importlib.util.spec_from_file_location("hook_migration", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.migrate(self.env.cr, "18.0.1.1.0")
        self.env.invalidate_all()
        self.assertEqual(reminder.state, "logged")
        self.assertEqual(self.config.reminder_template, reminders.DEFAULT_TEMPLATE)
        self.assertEqual(edited.reminder_template, "Yth. {holder}")

    def test_neutralize_blanks_webhook_secrets_and_changes_the_urls(self):
        provider = self.env["sicantik.whatsapp.provider"].create(
            {
                "name": "Meta",
                "provider_type": "meta",
                "api_token": "t",
                "meta_phone_number_id": "1065",
                "meta_template_name": "x",
                "webhook_secret": "app-secret",
                "meta_verify_token": "verify",
            }
        )
        token = provider.webhook_token
        (query,) = neutralize.get_neutralization_queries(["sicantik_connector"])
        self.env.flush_all()
        self.env.cr.execute(query)
        self.env.invalidate_all()
        self.assertFalse(provider.webhook_secret or provider.meta_verify_token)
        self.assertNotEqual(provider.webhook_token, token)
        self.assertRegex(provider.webhook_token, r"^[0-9a-f]{64}$")
