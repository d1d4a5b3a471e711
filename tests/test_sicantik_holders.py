from lxml import etree

from odoo.exceptions import UserError
from odoo.tests import tagged
from odoo.tools.safe_eval import safe_eval

from ..models.res_partner import COUNT_OPERATORS
from ..models.sicantik_dashboard import STATE_DECORATIONS
from ..tools import phone
from .common import SicantikCommon

ADDON = "sicantik_connector"


@tagged("post_install", "-at_install", "sicantik")
class TestSicantikHolders(SicantikCommon):
    """Holders as staff reach them: the Holders and Numbers to fix menus,
    their counts, and what the holder and permit screens show."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env["sicantik.config"].search([]).write({"active": False})
        cls.config = cls.env["sicantik.config"].create(
            {"name": "Karo", "api_url": "http://127.0.0.1:9/backoffice/api"}
        )
        Partner = cls.env["res.partner"]
        # Numbers typed by a manager: the state follows the number.
        cls.two = Partner.create(
            {"name": "CV Dua Izin", "whatsapp_number": "0812 3456 7890"}
        )
        cls.none = Partner.create({"name": "Tanpa Nomor"})
        cls.landline = Partner.create(
            {"name": "Telepon Rumah", "whatsapp_number": "0628 20123"}
        )
        cls.opted_out = Partner.create({"name": "Tidak Mau", "whatsapp_opt_out": True})
        cls.contact = Partner.create({"name": "Bukan Pemegang Izin"})
        cls.seq = 0
        cls.permit_a = cls.make_permit(cls.two, "0811 1111 111")
        cls.permit_b = cls.make_permit(cls.two, "0812 2222 222")
        cls.make_permit(cls.none, False)
        cls.make_permit(cls.landline, "0628 20123")
        cls.make_permit(cls.opted_out, False)

    @classmethod
    def make_permit(cls, partner, phone):
        cls.seq += 1
        return cls.env["sicantik.permit"].create(
            {
                "config_id": cls.config.id,
                "pendaftaran_id": f"77777{cls.seq:011d}",
                "no_surat": f"503/{cls.seq:04d}/SIUP/2025",
                "applicant_name": partner.name,
                "applicant_phone": phone,
                "partner_id": partner.id,
            }
        )

    def action_partners(self, xmlid, user=None):
        """The contacts the window action ``xmlid`` lists to ``user``."""
        action = self.env["ir.actions.act_window"]._for_xml_id(f"{ADDON}.{xmlid}")
        domain = safe_eval(action["domain"] or "[]")
        Partner = self.env["res.partner"].with_user(user or self.user_sicantik)
        return Partner.search(domain)

    # ------------------------------------------------------------

    def test_holders_menu_lists_contacts_with_permits_and_counts_them(self):
        holders = self.action_partners("res_partner_action_sicantik_holders")
        self.assertEqual(holders, self.two | self.none | self.landline | self.opted_out)
        self.assertNotIn(self.contact, holders)
        counts = {p.name: p.sicantik_permit_count for p in holders.sudo()}
        self.assertEqual(
            counts,
            {"CV Dua Izin": 2, "Tanpa Nomor": 1, "Telepon Rumah": 1, "Tidak Mau": 1},
        )
        # The menu's domain is the model's, which the dashboard counts with.
        action = self.env["ir.actions.act_window"]._for_xml_id(
            f"{ADDON}.res_partner_action_sicantik_holders"
        )
        self.assertEqual(
            safe_eval(action["domain"]),
            self.env["res.partner"]._sicantik_holder_domain(),
        )

    def test_permit_count_follows_the_permits(self):
        self.permit_b.partner_id = self.none
        self.assertEqual(self.two.sicantik_permit_count, 1)
        self.assertEqual(self.none.sicantik_permit_count, 2)
        self.permit_a.partner_id = False
        self.assertEqual(self.two.sicantik_permit_count, 0)
        self.assertNotIn(
            self.two, self.action_partners("res_partner_action_sicantik_holders")
        )
        self.permit_b.unlink()
        self.assertEqual(self.none.sicantik_permit_count, 1)

    def test_searching_by_permit_count_agrees_with_the_count(self):
        """The count is computed when read; a search by it (menus, filters)
        gives the contacts whose count matches, contacts without permits
        (a count of 0) included or not as the comparison says."""
        Partner = self.env["res.partner"].with_context(active_test=False)
        mine = self.two | self.none | self.landline | self.opted_out | self.contact
        for operator, value in [
            (">", 0),
            (">", 1),
            (">=", 1),
            ("=", 0),
            ("=", 2),
            ("!=", 1),
            ("<", 2),
            ("<=", 0),
        ]:
            found = Partner.search([("sicantik_permit_count", operator, value)]) & mine
            expected = mine.filtered(
                lambda p, o=operator, v=value: COUNT_OPERATORS[o][0](
                    p.sicantik_permit_count, v
                )
            )
            self.assertEqual(found, expected, (operator, value))
        with self.assertRaises(UserError):
            Partner.search([("sicantik_permit_count", "like", "1")])

    def test_linking_a_permit_does_not_write_its_holder(self):
        """A sync linking permits of one holder must not rewrite the holder's
        row: two syncs doing it at once would lose PostgreSQL's
        concurrent-update check and ask SICANTIK again."""

        def row_version():
            # The transaction that last wrote the row (each test runs in a
            # savepoint, whose writes get a transaction id of their own).
            self.env.flush_all()
            self.env.cr.execute(
                "SELECT xmin::text FROM res_partner WHERE id = %s", [self.none.id]
            )
            return self.env.cr.fetchone()[0]

        before = row_version()
        self.make_permit(self.none, False)
        self.permit_a.partner_id = self.none
        self.assertEqual(row_version(), before)
        self.assertEqual(self.none.sicantik_permit_count, 3)

    def test_numbers_to_fix(self):
        to_fix = self.action_partners("action_sicantik_numbers_to_fix")
        # No number and a landline; not the opted-out holder (never
        # contacted), not a contact without permits, not a mobile number.
        self.assertEqual(to_fix, self.none | self.landline)
        action = self.env["ir.actions.act_window"]._for_xml_id(
            f"{ADDON}.action_sicantik_numbers_to_fix"
        )
        self.assertEqual(
            safe_eval(action["domain"]),
            self.env["res.partner"]._sicantik_numbers_to_fix_domain(),
        )
        # A gateway refusing the number puts the holder on the list; a
        # number typed by staff (SICANTIK users) takes them off it.
        self.two._sicantik_flag_invalid_number("not on WhatsApp")
        self.assertIn(self.two, self.action_partners("action_sicantik_numbers_to_fix"))
        self.none.with_user(self.user_sicantik).whatsapp_number = "+62 813-9999-0000"
        self.assertEqual(self.none.whatsapp_number_state, "valid")
        self.assertEqual(
            self.action_partners("action_sicantik_numbers_to_fix"),
            self.landline | self.two,
        )

    def test_sicantik_phone_beside_the_whatsapp_number(self):
        two = self.two.with_user(self.user_sicantik)
        # Every phone the holder's permits carry, the latest first.
        self.assertEqual(two.sicantik_phone, "0812 2222 222, 0811 1111 111")
        self.assertFalse(self.none.with_user(self.user_sicantik).sicantik_phone)
        form = (
            self.env["res.partner"]
            .with_user(self.user_sicantik)
            .get_view(self.env.ref("base.view_partner_form").id, "form")
        )
        page = etree.fromstring(form["arch"]).xpath(
            "//page[@name='sicantik_whatsapp']"
        )[0]
        names = [node.get("name") for node in page.iter("field")]
        self.assertEqual(
            names[names.index("whatsapp_number") + 1], "sicantik_phone", names
        )
        self.assertIn("whatsapp_opt_out", names)
        self.assertIn("whatsapp_number_state", names)

    def test_holder_key_for_debug_mode_only(self):
        View = self.env["ir.ui.view"]
        for xmlid in (
            "base.view_partner_form",
            f"{ADDON}.res_partner_view_list_sicantik_holder",
        ):
            view = self.env.ref(xmlid)
            combined = view._get_combined_arch()
            keys = combined.xpath("//field[@name='sicantik_key']")
            self.assertTrue(keys, xmlid)
            for node in keys:
                self.assertEqual(node.get("groups"), "base.group_no_one", xmlid)
            # Outside debug mode the field is not even sent to the browser.
            arch = (
                View.env["res.partner"]
                .with_user(self.user_sicantik)
                .get_view(view.id, view.type)["arch"]
            )
            self.assertNotIn("sicantik_key", arch, xmlid)

    # ------------------------------------------------------------
    # the permit screens

    def permit_view(self, view_type):
        arch = self.env["sicantik.permit"].get_view(view_type=view_type)["arch"]
        return etree.fromstring(arch)

    def test_permits_come_from_sicantik_only(self):
        for view_type in ("list", "form", "kanban", "calendar"):
            with self.subTest(view=view_type):
                self.assertEqual(self.permit_view(view_type).get("create"), "0")
        form = self.permit_view("form")
        for name in ("action_revoke", "action_restore", "action_check_expiry_now"):
            button = form.xpath(f"//header/button[@name='{name}']")[0]
            self.assertTrue(
                button.get("invisible", "").startswith("not id"),
                f"{name} shows on an unsaved permit",
            )

    def test_permit_form_shows_holder_status_badge_and_activities(self):
        form = self.permit_view("form")
        self.assertTrue(form.xpath("//sheet//field[@name='partner_id']"))
        self.assertFalse(form.xpath("//field[@widget='statusbar']"))
        status = form.xpath("//field[@name='status']")[0]
        self.assertEqual(status.get("widget"), "badge")
        self.assertTrue(form.xpath("//chatter"))
        self.assertIn("mail.activity.mixin", self.env["sicantik.permit"]._inherit)
        ribbons = {
            ribbon.get("title"): ribbon.get("invisible")
            for ribbon in form.xpath("//widget[@name='web_ribbon']")
        }
        self.assertIn("delisted_date", ribbons["No longer listed by SICANTIK"])
        listing = self.permit_view("list")
        shown = [
            node.get("name")
            for node in listing.iter("field")
            if node.get("optional") != "hide" and not node.get("column_invisible")
        ]
        self.assertIn("expiry_state", shown)
        self.assertNotIn("status", shown, "Status repeats Expiry State")
        self.assertIn("activity_ids", shown)
        search = self.permit_view("search")
        delisted = search.xpath("//filter[@name='delisted']")[0]
        self.assertEqual(
            safe_eval(delisted.get("domain")), [("delisted_date", "!=", False)]
        )

    def test_one_colour_per_state_everywhere(self):
        """The badges of the permit views and the dashboard's cards give each
        expiry state the same colour."""
        views = {
            "list": self.permit_view("list"),
            "form": self.permit_view("form"),
            "kanban": self.permit_view("kanban"),
        }
        holder_form = etree.fromstring(
            self.env["res.partner"].get_view(self.env.ref("base.view_partner_form").id)[
                "arch"
            ]
        )
        views["holder permits"] = holder_form.xpath(
            "//field[@name='sicantik_permit_ids']"
        )[0]
        for where, arch in views.items():
            badges = [
                node
                for node in arch.iter("field")
                if node.get("name") == "expiry_state" and node.get("widget") == "badge"
            ]
            self.assertTrue(badges, where)
            for badge in badges:
                colours = {}
                for attr, expr in badge.attrib.items():
                    if not attr.startswith("decoration-"):
                        continue
                    for state in STATE_DECORATIONS:
                        if safe_eval(expr, {"expiry_state": state}):
                            colours[state] = attr[len("decoration-") :]
                expected = {
                    k: v for k, v in STATE_DECORATIONS.items() if k != "revoked"
                }
                self.assertEqual(colours, expected, where)
        # Rows of the list: critical red, warning amber, expired grey.
        row = views["list"]
        for state in ("critical", "warning", "expired"):
            values = {"expiry_state": state, "status": "active", "delisted_date": False}
            hit = [
                attr[len("decoration-") :]
                for attr, expr in row.attrib.items()
                if attr.startswith("decoration-") and safe_eval(expr, values)
            ]
            self.assertEqual(hit, [STATE_DECORATIONS[state]], state)

    def test_number_notes_are_in_the_staff_language(self):
        """Every reason tools.phone can give reaches an Indonesian user in
        Indonesian: the Numbers to fix list shows it."""
        reasons = {
            "no phone number",
            "not a phone number",
            "not a valid phone number",
            "a landline cannot receive WhatsApp",
            "cannot tell whether this number is a mobile; enter a mobile number",
            *phone._IMPOSSIBLE.values(),
            *(
                f"{kind} cannot receive WhatsApp"
                for kind in phone._NOT_A_PHONE.values()
            ),
        }
        reasons |= {
            phone.normalize_phone("0812 3456 7890 / 0813 1111 2222").reason,
            phone.normalize_phone("0628 209845").reason,
        }
        Partner = self.env["res.partner"].with_context(lang="id_ID")
        for reason in sorted(reasons):
            with self.subTest(reason=reason):
                note = Partner._number_note(reason)
                self.assertTrue(note)
                self.assertNotEqual(note, reason)
        self.assertIn(
            "0628", Partner._number_note(phone.normalize_phone("0628 209845").reason)
        )

    def test_the_0900_run_links_to_its_numbers_to_fix(self):
        self.env.ref(
            "sicantik_connector.ir_cron_check_expiring"
        ).method_direct_trigger()
        log = self.env["sicantik.sync.log"].search(
            [("config_id", "=", self.config.id), ("operation", "=", "notifications")],
            limit=1,
        )
        action = log.action_open_numbers_to_fix()
        listed = self.env["res.partner"].search(action["domain"])
        self.assertEqual(listed, self.none | self.landline)
        # The button shows on that log's form only when someone was skipped.
        arch = self.env["sicantik.sync.log"].get_view(view_type="form")["arch"]
        self.assertIn("action_open_numbers_to_fix", arch)
