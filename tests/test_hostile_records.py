from dataclasses import replace
from datetime import date, timedelta

from odoo import fields
from odoo.exceptions import AccessError
from odoo.tests import tagged

from ..tools.records import IssuedPermit, PermitDetails
from .common import SicantikCommon

NUL_NAME = "PT MAJU\x00 JAYA RAHASIA"


@tagged("post_install", "-at_install", "sicantik")
class TestRowsTheDatabaseRefuses(SicantikCommon):
    """The models' own safety net, under the tools' cleaning: a row the
    database refuses is set aside, the rest of its page or chunk is stored,
    and no statement carrying personal data reaches the server log."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env["sicantik.config"].search([]).write({"active": False})
        cls.config = cls.env["sicantik.config"].create(
            {"name": "Hostile", "api_url": "http://127.0.0.1:9/backoffice/api"}
        )
        cls.engine = cls.env["sicantik.permit.sync"]
        cls.now = fields.Datetime.now()
        cls.today = cls.config._today()

    def issued(self, pid, name="Ukur Kaban", number=None):
        return IssuedPermit(
            pendaftaran_id=pid,
            no_surat=number or f"503/{pid[-4:]}/2025",
            permit_type=None,
            applicant_names=(name,),
        )

    def upsert(self, permits):
        return self.engine._upsert_page(self.config, permits, {}, self.now, self.today)

    def stored(self):
        return self.env["sicantik.permit"].search([("config_id", "=", self.config.id)])

    def test_a_new_row_with_a_nul_byte_is_set_aside_the_page_kept(self):
        page = [
            self.issued("1000000000000001"),
            self.issued("1000000000000002", name=NUL_NAME),
            self.issued("1000000000000003"),
        ]
        with self.assert_no_secret_in_logs("RAHASIA", "Ukur Kaban"):
            counts, _changes = self.upsert(page)
        self.assertEqual(counts["created"], 2)
        self.assertEqual(counts["failed"], 1)
        self.assertEqual(
            set(self.stored().mapped("pendaftaran_id")),
            {"1000000000000001", "1000000000000003"},
        )
        ((pid, reason),) = counts["set_aside"]
        self.assertEqual(pid, "1000000000000002")
        self.assertIn("character", reason)

    def test_an_update_the_database_refuses_keeps_the_stored_row(self):
        self.upsert([self.issued("1000000000000011"), self.issued("1000000000000012")])
        # The letter is the permit's key: the type the list gives is updated.
        bad = replace(self.issued("1000000000000011"), permit_type="IZIN\x00 X")
        renamed = replace(self.issued("1000000000000012"), permit_type="IZIN REKLAME")
        counts, _changes = self.upsert([bad, renamed])
        self.assertEqual((counts["updated"], counts["failed"]), (1, 1))
        by_id = {p.pendaftaran_id: p for p in self.stored()}
        self.assertFalse(by_id["1000000000000011"].permit_type_name)
        self.assertEqual(by_id["1000000000000012"].permit_type_name, "IZIN REKLAME")

    def test_the_log_lists_what_was_set_aside_in_staff_words(self):
        log = self.env["sicantik.sync.log"]._start(self.config, "permits")
        counts, _changes = self.upsert([self.issued("1000000000000021", NUL_NAME)])
        log._add_page(_FakePage(1), counts, self.now)
        self.assertEqual(log.failed_count, 1)
        self.assertIn("1000000000000021:", log.set_aside)
        self.assertNotIn("RAHASIA", log.set_aside)

    def test_an_expiry_answer_the_database_refuses_keeps_the_chunk(self):
        self.upsert([self.issued("1000000000000031"), self.issued("1000000000000032")])
        expiry = self.env["sicantik.expiry.sync"]
        rows = expiry._select_work(self.config, self.now, 10)
        by_pid = {row["pendaftaran_id"]: row for row in rows}
        good_date = self.today + timedelta(days=400)
        answers = [
            (
                by_pid["1000000000000031"],
                PermitDetails(
                    pendaftaran_id="1000000000000031",
                    no_surat="503/0031/2025",
                    expiry_date=date(2030, 1, 1),
                    company_names=(NUL_NAME,),
                ),
            ),
            (
                by_pid["1000000000000032"],
                PermitDetails(
                    pendaftaran_id="1000000000000032",
                    no_surat="503/0032/2025",
                    expiry_date=good_date,
                ),
            ),
        ]
        with self.assert_no_secret_in_logs("RAHASIA"):
            counts, _changes = expiry._apply_results(
                self.config, answers, self.now, self.today
            )
        self.assertEqual(counts["found"], 1)
        self.assertEqual(counts["failed"], 1)
        self.assertEqual([pid for pid, _r in counts["set_aside"]], ["1000000000000031"])
        by_id = {p.pendaftaran_id: p for p in self.stored()}
        refused, good = by_id["1000000000000031"], by_id["1000000000000032"]
        self.assertFalse(refused.expiry_date, "nothing of the refused answer kept")
        self.assertEqual(refused.expiry_check_state, "error")
        self.assertTrue(refused.next_expiry_check, "asked again later")
        self.assertEqual(good.expiry_date, good_date)


class _FakePage:
    """The page figures ``_add_page`` reads."""

    def __init__(self, rows):
        self.permits = ()
        self.skipped = ()
        self.next_offset = rows


@tagged("post_install", "-at_install", "sicantik")
class TestHoldersCannotBeHijacked(SicantikCommon):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # Internal users who may edit contacts, with and without SICANTIK.
        partner_manager = cls.env.ref("base.group_partner_manager")
        for user in (cls.user_internal, cls.user_sicantik, cls.user_manager):
            user.groups_id += partner_manager

    def test_a_user_cannot_mark_a_number_valid(self):
        partner = self.env["res.partner"].create({"name": "Holder"})
        partner.with_user(self.user_internal).write({"whatsapp_number": "021 555 1234"})
        self.assertEqual(partner.whatsapp_number_state, "landline")
        with self.assertRaises(AccessError):
            partner.with_user(self.user_internal).write(
                {"whatsapp_number": "12", "whatsapp_number_state": "valid"}
            )
        # Even a manager's "valid" follows the number, never skips its check.
        partner.with_user(self.user_manager).write(
            {"whatsapp_number": "12", "whatsapp_number_state": "valid"}
        )
        self.assertEqual(partner.whatsapp_number_state, "invalid")

    def test_only_the_sync_or_a_manager_sets_the_holder_key_or_opt_out(self):
        Partner = self.env["res.partner"]
        for field, value in (("sicantik_key", "1:reg:1000000000000099"),) + (
            ("whatsapp_opt_out", True),
        ):
            for user in (self.user_internal, self.user_sicantik):
                with self.subTest(field=field, user=user.login):
                    with self.assertRaises(AccessError):
                        Partner.with_user(user).create(
                            {"name": "Squatter", field: value}
                        )
                    # A context key from an RPC call proves nothing.
                    with self.assertRaises(AccessError):
                        Partner.with_user(user).with_context(sicantik_sync=True).create(
                            {"name": "Squatter", field: value}
                        )
        manager_made = Partner.with_user(self.user_manager).create(
            {"name": "Linked by a manager", "sicantik_key": "1:reg:1000000000000098"}
        )
        self.assertEqual(manager_made.sicantik_key, "1:reg:1000000000000098")

    def test_contacts_read_without_sicantik_rights(self):
        partner = self.env["res.partner"].create({"name": "Plain contact"})
        values = partner.with_user(self.user_internal).read()[0]
        self.assertNotIn("sicantik_permit_ids", values)
        self.assertIn("whatsapp_number", values)
