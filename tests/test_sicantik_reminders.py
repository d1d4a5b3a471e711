from datetime import datetime, timedelta
from unittest.mock import patch

import psycopg2
from freezegun import freeze_time

from odoo import fields
from odoo.exceptions import AccessError, UserError
from odoo.tests import Form, tagged
from odoo.tools import mute_logger

from .common import SicantikCommon, SicantikSandboxCase

CHECK_CRON = "sicantik_connector.ir_cron_check_expiring"
SEND_CRON = "sicantik_connector.ir_cron_send_reminders"


class ReminderCase(SicantikCommon):
    """A connector with a log-only provider and holders with numbers; no
    SICANTIK server is needed to queue and send reminders."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env["sicantik.config"].search([]).write({"active": False})
        cls.provider = cls.env.ref("sicantik_connector.sicantik_whatsapp_provider_log")
        cls.config = cls.env["sicantik.config"].create(
            {
                "name": "Reminders",
                "api_url": "http://127.0.0.1:9/backoffice/api",
                "whatsapp_provider_id": cls.provider.id,
                "quiet_hours_start": 21.0,
                "quiet_hours_end": 7.0,
                # The assertions read the job texts in English (the default
                # is Indonesian: TestJobLanguage covers that).
                "lang": "en_US",
            }
        )
        cls.today = cls.config._today()
        cls.seq = 0

    def make_permit(self, days, phone="0812 3456 7890", **partner_vals):
        """A permit expiring in ``days`` days whose holder has ``phone``."""
        type(self).seq += 1
        partner = self.env["res.partner"].create(
            {"name": f"Holder {self.seq}", "whatsapp_number": phone, **partner_vals}
        )
        return self.env["sicantik.permit"].create(
            {
                "config_id": self.config.id,
                "pendaftaran_id": f"77777{self.seq:011d}",
                "no_surat": f"503/{self.seq:04d}/XI/TDP/DPM-PPTSP/2025",
                "applicant_name": partner.name,
                "permit_type_name": "SURAT IZIN USAHA PERDAGANGAN (SIUP)",
                "expiry_date": self.today + timedelta(days=days),
                "partner_id": partner.id,
            }
        )

    def check_expiring(self):
        self.env.ref(CHECK_CRON).method_direct_trigger()
        return self.env["sicantik.sync.log"].search(
            [("config_id", "=", self.config.id), ("operation", "=", "notifications")],
            limit=1,
        )

    def send(self, at=None):
        """Run the sender job now, or at office-local ``at`` (naive, Jakarta),
        with quiet hours off unless a time is given."""
        if at is None:
            quiet = self.config.read(["quiet_hours_start", "quiet_hours_end"])[0]
            self.config.write({"quiet_hours_start": 0, "quiet_hours_end": 0})
            self.env.ref(SEND_CRON).method_direct_trigger()
            del quiet["id"]
            self.config.write(quiet)
            return
        with freeze_time(at - timedelta(hours=7), tick=True):
            self.env.ref(SEND_CRON).method_direct_trigger()

    def notifications(self, permits):
        return self.env["sicantik.notification"].search(
            [("permit_id", "in", permits.ids)], order="stage desc, id"
        )


@tagged("post_install", "-at_install", "sicantik")
class TestReminderQueue(ReminderCase):
    def test_each_permit_gets_its_most_urgent_stage_once(self):
        permits = {d: self.make_permit(d) for d in (0, 3, 7, 8, 45, 90, 91, -1)}
        log = self.check_expiring()
        self.assertEqual(log.state, "done")
        queued = self.notifications(
            self.env["sicantik.permit"].concat(*permits.values())
        )
        self.assertEqual(
            sorted((n.permit_id.expiry_date - self.today).days for n in queued),
            [0, 3, 7, 8, 45, 90],
        )
        stage = {n.permit_id: n.stage for n in queued}
        self.assertEqual(
            [stage[permits[d]] for d in (0, 3, 7, 8, 45, 90)], [0, 7, 7, 30, 60, 90]
        )
        self.assertEqual(set(queued.mapped("state")), {"queued"})
        self.assertEqual(log.created_count, 6)
        # A second run right after queues nothing: the database says so.
        again = self.check_expiring()
        self.assertNotEqual(again, log)
        self.assertEqual(again.created_count, 0)
        self.assertEqual(again.unchanged_count, 6)
        self.assertEqual(len(self.notifications(queued.permit_id)), 6)

    def test_a_connector_that_loses_a_race_is_queued_again_soon(self):
        """The sender changing a reminder while the 09:00 job writes it makes
        PostgreSQL refuse that connector's step: its work is undone, the
        other connectors are queued, and the job runs again in seconds (not
        at tomorrow's 09:00)."""
        other = self.config.copy({"name": "Other office"})
        mine, theirs = self.make_permit(7), self.make_permit(7)
        theirs.config_id = other
        Notification = type(self.env["sicantik.notification"])
        queue = Notification._queue_reminders

        def losing(this, config, today):
            counts = queue(this, config, today)  # written, then refused
            if config == self.config:
                raise psycopg2.errors.SerializationFailure("concurrent update")
            return counts

        cron = self.env.ref(CHECK_CRON)
        before = fields.Datetime.now()
        with (
            patch.object(Notification, "_queue_reminders", losing),
            mute_logger("odoo.addons.sicantik_connector.models.sicantik_notification"),
        ):
            cron.method_direct_trigger()
        self.assertFalse(self.notifications(mine))
        self.assertEqual(self.notifications(theirs).mapped("state"), ["queued"])
        self.assertFalse(
            self.env["sicantik.sync.log"].search(
                [
                    ("config_id", "=", self.config.id),
                    ("operation", "=", "notifications"),
                ]
            )
        )
        retry = self.env["ir.cron.trigger"].search(
            [("cron_id", "=", cron.id), ("call_at", ">", before)]
        )
        self.assertTrue(retry)
        self.assertLessEqual(
            min(retry.mapped("call_at")), before + timedelta(minutes=1)
        )
        self.check_expiring()  # the retry: nothing refused this time
        self.assertEqual(self.notifications(mine).mapped("state"), ["queued"])

    def test_queued_stage_follows_the_ladder_rule_for_every_day(self):
        """The 09:00 SQL chooses the stage; it must agree with the ladder's
        rule: the most urgent stage reached, none before the ladder or after
        expiry."""
        self.config.reminder_stages = "45, 30, 14, 7, 1, 0"
        stages = self.config._reminder_stages()
        days_range = range(-2, max(stages) + 3)
        permits = {days: self.make_permit(days) for days in days_range}
        self.check_expiring()
        queued = {
            n.permit_id: n.stage
            for n in self.notifications(
                self.env["sicantik.permit"].concat(*permits.values())
            )
        }
        for days, permit in permits.items():
            reached = [stage for stage in stages if stage >= days]
            expected = min(reached) if days >= 0 and reached else None
            self.assertEqual(queued.get(permit), expected, f"{days} days left")

    def test_database_refuses_a_second_row_for_the_same_stage(self):
        permit = self.make_permit(30)
        self.check_expiring()
        with (
            mute_logger("odoo.sql_db"),
            self.assertRaises(psycopg2.errors.UniqueViolation),
            self.cr.savepoint(),
        ):
            self.env["sicantik.notification"].create(
                {
                    "permit_id": permit.id,
                    "config_id": self.config.id,
                    "stage": 30,
                    "expiry_date": permit.expiry_date,
                }
            )

    def test_opted_out_landline_and_missing_numbers_are_skipped(self):
        opted = self.make_permit(7, whatsapp_opt_out=True)
        landline = self.make_permit(7, phone="0628 20123")
        invalid = self.make_permit(7, phone="12")
        nobody = self.make_permit(7)
        nobody.partner_id = False
        ok = self.make_permit(7)
        self.assertEqual(landline.partner_id.whatsapp_number_state, "landline")
        self.assertEqual(invalid.partner_id.whatsapp_number_state, "invalid")
        log = self.check_expiring()
        self.assertEqual(
            self.notifications(opted | landline | invalid | nobody | ok).permit_id, ok
        )
        self.assertEqual(log.skipped_count, 4)
        self.assertIn("1 opted out", log.message)

    def test_revoked_permits_get_no_reminder(self):
        permit = self.make_permit(7)
        permit.status = "revoked"
        self.check_expiring()
        self.assertFalse(self.notifications(permit))

    def test_after_downtime_only_the_most_urgent_missed_stage(self):
        permit = self.make_permit(100)
        # Nothing ran for 75 days: 25 days left, stages 90 and 60 were missed.
        with freeze_time(fields.Datetime.now() + timedelta(days=75)):
            self.check_expiring()
        self.assertEqual(self.notifications(permit).mapped("stage"), [30])

    def test_a_more_urgent_stage_cancels_the_unsent_older_one(self):
        permit = self.make_permit(10)
        self.check_expiring()
        older = self.notifications(permit)
        self.assertEqual(older.stage, 30)
        with freeze_time(fields.Datetime.now() + timedelta(days=4)):
            self.check_expiring()
        rows = self.notifications(permit)
        self.assertEqual(rows.mapped("stage"), [30, 7])
        self.assertEqual(older.state, "cancelled")
        self.assertIn("more urgent", older.failure_reason)

    def test_renewal_starts_the_ladder_again(self):
        permit = self.make_permit(30)
        self.check_expiring()
        self.send()
        first = self.notifications(permit)
        self.assertEqual(first.state, "logged")
        permit.expiry_date = self.today + timedelta(days=365 + 60)
        with freeze_time(fields.Datetime.now() + timedelta(days=365)):
            self.check_expiring()
        rows = self.notifications(permit)
        self.assertEqual(len(rows), 2)
        self.assertEqual((rows - first).stage, 60)
        self.assertEqual((rows - first).expiry_date, permit.expiry_date)

    def test_settings_are_checked(self):
        with self.assertRaises(UserError):
            self.config.reminder_stages = "30, seminggu"
        with self.assertRaises(UserError):
            self.config.reminder_template = "Yth. {nama}"
        self.config.reminder_stages = "14 3 0"
        permit = self.make_permit(10)
        self.check_expiring()
        self.assertEqual(self.notifications(permit).stage, 14)


@tagged("post_install", "-at_install", "sicantik")
class TestReminderSending(ReminderCase):
    def test_log_only_provider_sends_and_posts_on_the_permit(self):
        permit = self.make_permit(7)
        self.check_expiring()
        self.send()
        reminder = self.notifications(permit)
        self.assertEqual(reminder.state, "logged")
        self.assertEqual(reminder.phone, "+6281234567890")
        self.assertTrue(reminder.provider_message_id)
        expected_date = permit.expiry_date.strftime("%d-%m-%Y")
        self.assertIn(expected_date, reminder.body)
        self.assertIn(permit.no_surat, reminder.body)
        self.assertIn("7 hari lagi", reminder.body)
        chatter = "\n".join(permit.message_ids.mapped("body"))
        self.assertIn("+6281234567890", chatter)
        self.assertIn(expected_date, chatter)
        # Sent once: another run sends nothing more.
        self.send()
        self.assertEqual(len(self.notifications(permit)), 1)
        self.assertEqual(reminder.attempts, 1)

    def test_log_only_messages_draw_no_rate_slot(self):
        """Nothing leaves Odoo: no bucket is asked (the demo data sends while
        the module installs, when the bucket table is not yet visible to the
        limiter's own connection)."""
        permit = self.make_permit(7)
        self.check_expiring()
        with patch.object(
            type(self.provider), "_limiter", side_effect=AssertionError("paced")
        ):
            self.send()
        self.assertEqual(self.notifications(permit).state, "logged")

    def test_expiry_day_uses_its_own_template(self):
        permit = self.make_permit(0)
        self.check_expiring()
        self.send()
        self.assertIn("berakhir hari ini", self.notifications(permit).body)

    def test_quiet_hours_hold_the_queue(self):
        permit = self.make_permit(7)
        self.check_expiring()
        tomorrow = self.today + timedelta(days=1)
        late = datetime.combine(tomorrow, datetime.min.time()).replace(hour=22)
        self.send(at=late)
        reminder = self.notifications(permit)
        self.assertEqual(reminder.state, "queued")
        self.send(at=late.replace(hour=6, minute=59) + timedelta(days=1))
        self.assertEqual(reminder.state, "queued")
        self.send(at=late.replace(hour=7) + timedelta(days=1))
        self.assertEqual(reminder.state, "logged")

    def test_changes_before_sending_cancel_the_reminder(self):
        renewed, opted, revoked = (self.make_permit(7) for _i in range(3))
        self.check_expiring()
        renewed.expiry_date = self.today + timedelta(days=400)
        opted.partner_id.whatsapp_opt_out = True
        revoked.status = "revoked"
        self.send()
        reminders = self.notifications(renewed | opted | revoked)
        self.assertEqual(set(reminders.mapped("state")), {"cancelled"})
        self.assertFalse(reminders.filtered("sent_at"))

    def test_a_send_cut_short_by_a_crash_is_reconciled_not_repeated(self):
        permit = self.make_permit(7)
        self.check_expiring()
        reminder = self.notifications(permit)
        # A worker claimed it (committed "sending") and died before the answer.
        reminder.write(
            {
                "state": "sending",
                "attempts": 1,
                "claimed_at": fields.Datetime.now() - timedelta(hours=1),
            }
        )
        # Log only sends nothing outside Odoo: safe to send again.
        self.send()
        self.assertEqual(reminder.state, "logged")
        self.assertEqual(reminder.attempts, 2)
        # A real gateway may have delivered it: never resent by itself.
        other = self.make_permit(7)
        self.check_expiring()
        second = self.notifications(other)
        self.provider.provider_type = "webhook"
        self.addCleanup(setattr, self.provider, "provider_type", "log")
        second.write(
            {
                "state": "sending",
                "attempts": 1,
                "claimed_at": fields.Datetime.now() - timedelta(hours=1),
            }
        )
        self.send()
        self.assertEqual(second.state, "failed")
        self.assertEqual(second.failure_type, "unknown")
        self.assertEqual(second.attempts, 1)

    def test_a_fresh_claim_is_left_to_its_worker(self):
        permit = self.make_permit(7)
        self.check_expiring()
        reminder = self.notifications(permit)
        reminder.write({"state": "sending", "claimed_at": fields.Datetime.now()})
        self.send()
        self.assertEqual(reminder.state, "sending")

    def test_retry_and_cancel_need_a_manager(self):
        permit = self.make_permit(7)
        self.check_expiring()
        reminder = self.notifications(permit)
        with self.assertRaises(UserError):  # AccessError is one too
            reminder.with_user(self.user_sicantik).action_cancel()
        reminder.with_user(self.user_manager).action_cancel()
        self.assertEqual(reminder.state, "cancelled")
        reminder.with_user(self.user_manager).action_retry()
        self.assertEqual(reminder.state, "queued")
        self.send()
        self.assertEqual(reminder.state, "logged")


@tagged("post_install", "-at_install", "sicantik")
class TestHolderPartners(SicantikSandboxCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.config.action_sync_now()
        cls.env.ref("sicantik_connector.ir_cron_sync_permits").method_direct_trigger()
        cls.env.ref(
            "sicantik_connector.ir_cron_sync_expiry_dates"
        ).method_direct_trigger()
        cls.permits = cls.env["sicantik.permit"].search(
            [("config_id", "=", cls.config.id)]
        )

    def test_permits_answered_by_sicantik_get_a_holder(self):
        answered = self.permits.filtered(lambda p: p.expiry_check_state == "found")
        self.assertTrue(answered)
        self.assertFalse(answered.filtered(lambda p: not p.partner_id))
        # The same company (NPWP) is one contact, whatever the applicant.
        by_npwp = {}
        for permit in answered:
            digits = "".join(c for c in permit.npwp or "" if c.isdigit())
            if len(digits) >= 15:
                by_npwp.setdefault(digits, set()).add(permit.partner_id)
        self.assertTrue(by_npwp)
        self.assertEqual([p for p in by_npwp.values() if len(p) != 1], [])
        # Without a usable NPWP ("-"), each registration is its own holder.
        dashes = answered.filtered(lambda p: p.npwp == "-")
        self.assertEqual(len(dashes.partner_id), len(dashes))
        with_phone = answered.filtered(
            lambda p: (p.applicant_phone or "").startswith("08")
        )
        self.assertTrue(with_phone)
        for permit in with_phone:
            partner = permit.partner_id
            if not partner.whatsapp_number_manual and partner.whatsapp_number_state:
                self.assertTrue(partner.whatsapp_number.startswith("+62"))
        unavailable = self.permits.filtered(
            lambda p: p.expiry_check_state == "unavailable"
        )
        self.assertFalse(unavailable.partner_id, "no details, no holder yet")

    def test_a_sync_never_overwrites_what_staff_edited(self):
        permit = self.permits.filtered(lambda p: p.partner_id and p.applicant_phone)[0]
        partner = permit.partner_id
        partner.write({"name": "Edited by staff", "whatsapp_number": "0813 1111 2222"})
        self.assertTrue(partner.whatsapp_number_manual)
        permit.action_check_expiry_now()
        self.env.ref(
            "sicantik_connector.ir_cron_sync_expiry_dates"
        ).method_direct_trigger()
        self.assertEqual(partner.name, "Edited by staff")
        self.assertEqual(partner.whatsapp_number, "+6281311112222")
        self.assertEqual(permit.partner_id, partner)
        # A permit staff moved to another contact stays there.
        other = self.env["res.partner"].create({"name": "Another holder"})
        permit.partner_id = other
        permit.action_check_expiry_now()
        self.env.ref(
            "sicantik_connector.ir_cron_sync_expiry_dates"
        ).method_direct_trigger()
        self.assertEqual(permit.partner_id, other)

    def test_partner_smart_button_lists_its_permits(self):
        partner = self.permits.filtered("partner_id")[0].partner_id
        self.assertEqual(
            partner.sicantik_permit_count,
            len(self.permits.filtered(lambda p: p.partner_id == partner)),
        )
        action = partner.action_view_sicantik_permits()
        self.assertEqual(
            self.env["sicantik.permit"].search(action["domain"]).partner_id, partner
        )


@tagged("post_install", "-at_install", "sicantik")
class TestProviderAccess(ReminderCase):
    def test_credentials_are_for_managers_only(self):
        self.provider.sudo().write({"api_token": "secret-token-123"})
        as_user = self.provider.with_user(self.user_sicantik)
        self.assertEqual(as_user.name, self.provider.name)
        with self.assertRaises(AccessError):
            as_user.read(["api_token"])
        with self.assertRaises(AccessError):
            as_user.write({"rate_limit": 5})
        manager = self.provider.with_user(self.user_manager)
        self.assertEqual(
            manager.read(["api_token"])[0]["api_token"], "secret-token-123"
        )

    def test_send_test_message_wizard(self):
        action = self.provider.with_user(self.user_manager).action_open_test_message()
        wizard = Form(
            self.env[action["res_model"]]
            .with_user(self.user_manager)
            .with_context(**action["context"])
        )
        wizard.phone = "0812-3456-7890"
        result = wizard.save().action_send()
        self.assertEqual(result["params"]["type"], "success")
        self.assertIn("+6281234567890", result["params"]["message"])
        wizard = Form(
            self.env[action["res_model"]]
            .with_user(self.user_manager)
            .with_context(**action["context"])
        )
        wizard.phone = "0628 20123"
        with self.assertRaises(UserError):
            wizard.save().action_send()
        with self.assertRaises(UserError):  # AccessError is one too
            self.provider.with_user(self.user_sicantik).action_open_test_message()
