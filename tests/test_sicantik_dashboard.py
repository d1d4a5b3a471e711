from datetime import date, datetime, timedelta
from unittest.mock import patch

from dateutil.relativedelta import relativedelta
from freezegun import freeze_time
from lxml import etree

from odoo import Command
from odoo.exceptions import AccessError
from odoo.osv import expression
from odoo.tests import new_test_user, tagged
from odoo.tools import mute_logger
from odoo.tools.safe_eval import safe_eval

from ..models import sicantik_dashboard
from .common import SicantikCommon

TODAY = date(2025, 6, 15)


@freeze_time("2025-06-15 03:00:00")  # 10:00 in Jakarta, the same day in UTC
@tagged("post_install", "-at_install", "sicantik")
class TestSicantikDashboard(SicantikCommon):
    """The dashboard's figures on a small known dataset, the lists they open,
    multi-company isolation and access rights."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env["sicantik.config"].search([]).write({"active": False})
        cls.company_b = cls.env["res.company"].create({"name": "Kabupaten B"})
        # Job texts (failure reasons) in the language asserted below.
        cls.config = cls.env["sicantik.config"].create(
            {
                "name": "Karo",
                "api_url": "http://127.0.0.1:9/backoffice/api",
                "lang": "en_US",
            }
        )
        cls.config_b = cls.env["sicantik.config"].create(
            {
                "name": "B",
                "api_url": "http://127.0.0.1:9/backoffice/api",
                "company_id": cls.company_b.id,
            }
        )
        Type = cls.env["sicantik.permit.type"]
        cls.type_siup = Type.create({"name": "SIUP", "config_id": cls.config.id})
        cls.type_imb = Type.create({"name": "IMB", "config_id": cls.config.id})
        cls.seq = 0
        # (days to expiry or None, unlimited, revoked, type)
        rows = [
            (-10, False, False, cls.type_siup),  # expired
            (-400, False, False, cls.type_siup),  # expired
            (0, False, False, cls.type_siup),  # critical (today)
            (30, False, False, cls.type_siup),  # critical (last day)
            (31, False, False, cls.type_siup),  # warning
            (60, False, False, cls.type_imb),  # warning (last day)
            (61, False, False, cls.type_imb),  # ok
            (200, False, False, cls.type_imb),  # ok, 2026-01-01
            (None, True, False, cls.type_imb),  # ok (no expiry)
            (None, False, False, False),  # without expiry date
            (None, False, False, False),  # without expiry date
            (5, False, True, cls.type_siup),  # revoked
            (None, False, True, cls.type_siup),  # revoked, without date
        ]
        cls.permits = cls.env["sicantik.permit"]
        for days, unlimited, revoked, permit_type in rows:
            cls.permits |= cls.make_permit(
                cls.config, days, unlimited, revoked, permit_type
            )
        # Another company's permits, expiring in 10 days.
        cls.permits_b = cls.make_permit(cls.config_b, 10) | cls.make_permit(
            cls.config_b, 10
        )

    @classmethod
    def make_permit(cls, config, days, unlimited=False, revoked=False, ptype=False):
        cls.seq += 1
        permit = cls.env["sicantik.permit"].create(
            {
                "config_id": config.id,
                "pendaftaran_id": f"88888{cls.seq:011d}",
                "no_surat": f"503/{cls.seq:04d}/VI/DPM-PPTSP/2025",
                "applicant_name": f"Holder {cls.seq}",
                "permit_type_id": ptype and ptype.id,
                "expiry_date": days is not None and TODAY + timedelta(days=days),
                "expiry_unlimited": unlimited,
            }
        )
        if revoked:
            permit.status = "revoked"
        return permit

    def data(self, user=None, companies=None, config=None):
        Dashboard = self.env["sicantik.dashboard"]
        if user:
            Dashboard = Dashboard.with_user(user)
        if companies:
            Dashboard = Dashboard.with_context(allowed_company_ids=companies.ids)
        return Dashboard.get_dashboard_data(config_id=config.id if config else False)

    def filter_domain(self, name):
        """The domain of a filter of the permit search view, evaluated as the
        web client does."""
        arch = self.env["sicantik.permit"].get_view(view_type="search")["arch"]
        node = etree.fromstring(arch).xpath(f"//filter[@name='{name}']")[0]
        return safe_eval(
            node.get("domain"),
            {"context_today": lambda: TODAY, "relativedelta": relativedelta},
        )

    def count_of(self, action, user=None):
        """The number of records the list of ``action`` shows to ``user``."""
        domain = list(action.get("domain") or [])
        context = action.get("context") or {}
        filters = [
            self.filter_domain(key[len("search_default_") :])
            for key in context
            if key.startswith("search_default_")
            and key != "search_default_permit_type_id"
        ]
        if filters:  # filters of one group combine with OR
            domain = expression.AND([domain, expression.OR(filters)])
        if "search_default_permit_type_id" in context:
            domain += [
                ("permit_type_id", "=", context["search_default_permit_type_id"])
            ]
        return (
            self.env[action["res_model"]]
            .with_user(user or self.env.user)
            .search_count(domain)
        )

    # ------------------------------------------------------------

    def test_figures(self):
        data = self.data(self.user_sicantik)
        self.assertEqual(data["today"], "2025-06-15")
        self.assertEqual(data["total"], 13)
        states = {f["key"]: f["count"] for f in data["states"]}
        self.assertEqual(
            states,
            {
                "expired": 2,
                "critical": 2,
                "warning": 2,
                "ok": 3,
                "none": 2,
                "revoked": 2,
            },
        )
        self.assertEqual(sum(states.values()), data["total"])
        horizons = {f["key"]: f["count"] for f in data["horizons"]}
        self.assertEqual(horizons, {"days_30": 2, "days_60": 4, "days_90": 5})

        types = data["types"]
        by_type = {t["key"]: t["count"] for t in types["top"]}
        self.assertEqual(by_type, {self.type_siup.id: 7, self.type_imb.id: 4, 0: 2})
        self.assertEqual(types["top"][0]["key"], self.type_siup.id)
        # "No type" is listed (it has permits) but is not a type.
        self.assertEqual((types["count"], types["others"]), (2, 0))
        self.assertFalse(types["others_action"])

        months = data["months"]
        self.assertEqual(len(months), 12)
        self.assertEqual(
            (months[0]["key"], months[-1]["key"]), ("2025-06-01", "2026-05-01")
        )
        counts = {m["key"]: m["count"] for m in months if m["count"]}
        self.assertEqual(
            counts,
            {"2025-06-01": 1, "2025-07-01": 2, "2025-08-01": 2, "2026-01-01": 1},
        )

    def test_figures_open_their_lists(self):
        """Each figure opens a list with exactly the permits it counted, the
        search view's own filters included."""
        data = self.data(self.user_sicantik)
        figures = (
            data["states"] + data["horizons"] + data["types"]["top"] + data["months"]
        )
        for figure in figures:
            with self.subTest(figure=figure["key"]):
                self.assertEqual(figure["action"]["res_model"], "sicantik.permit")
                self.assertEqual(
                    self.count_of(figure["action"], self.user_sicantik),
                    figure["count"],
                    figure["action"],
                )
        critical = next(f for f in data["states"] if f["key"] == "critical")
        self.assertEqual(critical["action"]["context"], {"search_default_critical": 1})

    def test_other_types_open_their_permits(self):
        """Past the top types, "Other types" counts the rest and opens them,
        with or without "No type" among the rows shown."""
        Type = self.env["sicantik.permit.type"]
        for index in range(11):
            extra = Type.create({"name": f"IZIN {index}", "config_id": self.config.id})
            self.make_permit(self.config, 100 + index, ptype=extra)
        types = self.data(self.user_sicantik)["types"]
        # SIUP 7, IMB 4, no type 2 and 7 of the 11 one-permit types shown.
        self.assertEqual(len(types["top"]), 10)
        self.assertIn(0, [t["key"] for t in types["top"]])
        self.assertEqual((types["count"], types["others"]), (13, 4))
        self.assertEqual(types["others_count"], 4)
        self.assertEqual(self.count_of(types["others_action"], self.user_sicantik), 4)
        with patch.object(sicantik_dashboard, "TOP_TYPES", 1):
            types = self.data(self.user_sicantik)["types"]
        # Only SIUP shown: the others are IMB, the 11 and the untyped ones
        # (12 types: "No type" is none).
        self.assertEqual([t["key"] for t in types["top"]], [self.type_siup.id])
        self.assertEqual((types["others"], types["others_count"]), (17, 12))
        self.assertEqual(self.count_of(types["others_action"], self.user_sicantik), 17)

    def test_connector_filter(self):
        """With a connector chosen every figure counts its permits only, and
        opens a list of as many."""
        user = new_test_user(
            self.env,
            login="sicantik_two_offices",
            groups="sicantik_connector.sicantik_connector_group_user",
            company_ids=[Command.set((self.env.company | self.company_b).ids)],
        )
        both = self.env.company | self.company_b
        data = self.data(user, both)
        self.assertEqual(
            {c["id"] for c in data["connectors"]}, {self.config.id, self.config_b.id}
        )
        self.assertFalse(data["config_id"])
        self.assertEqual(data["total"], 15)
        data = self.data(user, both, self.config_b)
        self.assertEqual(data["config_id"], self.config_b.id)
        self.assertEqual(data["total"], 2)
        states = {f["key"]: f["count"] for f in data["states"]}
        self.assertEqual(states["critical"], 2)
        self.assertEqual(states["expired"], 0)
        self.assertEqual(data["types"]["count"], 0)
        figures = (
            data["states"] + data["horizons"] + data["types"]["top"] + data["months"]
        )
        for figure in figures:
            with self.subTest(figure=figure["key"]):
                self.assertEqual(self.count_of(figure["action"], user), figure["count"])
        data = self.data(user, both, self.config)
        self.assertEqual(data["total"], 13)
        self.assertEqual(data["types"]["count"], 2)
        # A connector the user may not read is no filter at all.
        self.assertEqual(
            self.data(self.user_sicantik, config=self.config_b)["total"], 13
        )

    def test_state_colours(self):
        """Critical red, warning amber, expired grey, valid green: the
        dashboard's cards carry the decoration the permit views use."""
        decorations = {f["key"]: f["decoration"] for f in self.data()["states"]}
        self.assertEqual(
            decorations,
            {
                "expired": "muted",
                "critical": "danger",
                "warning": "warning",
                "ok": "success",
                "none": "info",
                "revoked": "muted",
            },
        )

    def test_first_sync_progress(self):
        """On a database without permits, a running permit sync shows on the
        dashboard with its progress."""
        fresh = self.env["sicantik.config"].create(
            {"name": "Baru", "api_url": "http://127.0.0.1:9/backoffice/api"}
        )
        self.assertFalse(self.data(config=fresh)["sync"])
        log = self.env["sicantik.sync.log"]._start(fresh, "permits", "button")
        log.write({"progress_done": 150, "progress_total": 600})
        sync = self.data(self.user_sicantik, config=fresh)["sync"]
        self.assertEqual(sync["id"], log.id)
        self.assertTrue(sync["first"])
        self.assertEqual(
            (sync["done"], sync["total"], sync["progress"]), (150, 600, 25)
        )
        self.assertEqual(sync["action"]["res_id"], log.id)
        # With permits already there it is a sync, not the first one.
        self.assertFalse(self.data(self.user_sicantik)["sync"]["first"])
        log._finish("done")
        self.assertFalse(self.data(config=fresh)["sync"])

    def test_numbers_to_fix_figure(self):
        Partner = self.env["res.partner"]
        mobile = Partner.create({"name": "Ada", "whatsapp_number": "0812 3456 7890"})
        missing = Partner.create({"name": "Tidak Ada"})
        self.permits[0].partner_id = mobile
        self.permits[1].partner_id = missing
        self.permits_b[0].partner_id = missing
        holders = self.data(self.user_sicantik)["holders"]
        self.assertEqual(holders["count"], 1)
        self.assertEqual(
            holders["action"]["id"],
            self.env.ref("sicantik_connector.action_sicantik_numbers_to_fix").id,
        )
        found = Partner.with_user(self.user_sicantik).search(
            safe_eval(holders["action"]["domain"])
            if isinstance(holders["action"]["domain"], str)
            else holders["action"]["domain"]
        )
        self.assertEqual(found, missing)
        # Per connector: the holders of that connector's permits.
        self.permits[1].partner_id = mobile
        self.assertEqual(self.data(config=self.config)["holders"]["count"], 0)
        self.assertEqual(self.data(config=self.config_b)["holders"]["count"], 1)

    def test_stat_buttons(self):
        """The stat buttons of a connector and a permit type open lists with
        as many permits as they show."""
        buttons = {
            "critical": "critical_count",
            "expired": "expired_count",
            "no_expiry": "no_expiry_count",
        }
        for record in (self.config, self.type_siup, self.type_imb):
            for permit_filter, field in buttons.items():
                with self.subTest(record=record.display_name, button=permit_filter):
                    action = record.with_context(
                        sicantik_permit_filter=permit_filter
                    ).action_view_permits()
                    self.assertEqual(
                        action["context"].get(f"search_default_{permit_filter}"), 1
                    )
                    self.assertEqual(self.count_of(action), record[field])
        self.assertEqual(
            (
                self.config.critical_count,
                self.config.expired_count,
                self.config.no_expiry_count,
            ),
            (2, 2, 3),
        )

    def test_multi_company(self):
        user_a = new_test_user(
            self.env,
            login="sicantik_company_a",
            groups="sicantik_connector.sicantik_connector_group_user",
        )
        self.assertEqual(self.data(user_a)["total"], 13)
        user_ab = new_test_user(
            self.env,
            login="sicantik_company_ab",
            groups="sicantik_connector.sicantik_connector_group_user",
            company_ids=[Command.set((self.env.company | self.company_b).ids)],
        )
        both = self.env.company | self.company_b
        data = self.data(user_ab, both)
        self.assertEqual(data["total"], 15)
        self.assertEqual({f["key"]: f["count"] for f in data["horizons"]}["days_30"], 4)
        # Only the companies selected in the switcher count.
        data = self.data(user_ab, self.company_b)
        self.assertEqual(data["total"], 2)
        self.assertEqual({f["key"]: f["count"] for f in data["states"]}["critical"], 2)

    @mute_logger("odoo.addons.base.models.ir_model", "odoo.models")
    def test_access(self):
        with self.assertRaises(AccessError):
            self.data(self.user_internal)
        # A SICANTIK user reads it all.
        self.assertTrue(self.data(self.user_sicantik)["states"])

    def test_run_health(self):
        Log = self.env["sicantik.sync.log"]
        old = Log._start(self.config, "permits")
        old.write({"start_date": datetime(2025, 5, 1)})
        old._finish("done")
        done = Log._start(self.config, "permits")
        done._add_client_stats(
            {
                "requests": 40,
                "retries": 2,
                "by_status": {"2xx": 40},
                "latency_p50_ms": 120.0,
                "latency_p95_ms": 310.0,
            }
        )
        done._finish("done")
        failed = Log._start(self.config, "expiry")
        failed._set_failure("timeout", "read timed out")
        failed._finish()
        Log._start(self.config, "status")  # still running

        health = self.data(self.user_sicantik)["health"]
        self.assertEqual(health["last_success"]["id"], done.id)
        self.assertEqual(health["last_success"]["requests"], 40)
        self.assertEqual(health["last_success"]["latency_p95_ms"], 310)
        self.assertEqual(health["last_failure"]["id"], failed.id)
        self.assertEqual(health["last_failure"]["state"], "failed")
        self.assertIn("did not answer in time", health["last_failure"]["reason"])
        self.assertEqual(
            (health["runs"], health["problems"], health["running"]), (3, 1, 1)
        )
        self.assertEqual(health["requests"], 40)
        self.assertEqual(health["latency_p95_ms"], 310)
        self.assertEqual(
            Log.search_count(
                health["problems_action"]["domain"]
                + [("state", "in", ("failed", "partial", "interrupted"))]
            ),
            1,
        )

    def test_reminders(self):
        if "sicantik.notification" not in self.env:
            self.assertFalse(self.data()["reminders"])
            return
        Notification = self.env["sicantik.notification"]
        permit = self.permits[2]

        def remind(stage, state, **vals):
            return Notification.create(
                {
                    "permit_id": permit.id,
                    "config_id": self.config.id,
                    "company_id": self.env.company.id,
                    "stage": stage,
                    "expiry_date": permit.expiry_date,
                    "state": state,
                    **vals,
                }
            )

        remind(30, "sent", sent_at=datetime(2025, 6, 2, 2, 0))
        remind(7, "sent", sent_at=datetime(2025, 5, 28, 2, 0))  # last month
        remind(0, "failed")
        remind(1, "queued")
        old_failure = remind(2, "failed")
        self.env.flush_all()
        self.env.cr.execute(
            "UPDATE sicantik_notification SET write_date = %s WHERE id = %s",
            (datetime(2025, 5, 30), old_failure.id),
        )
        figures = {f["key"]: f for f in self.data(self.user_sicantik)["reminders"]}
        self.assertEqual(figures["sent"]["count"], 1)
        self.assertEqual(figures["failed"]["count"], 1)
        for figure in figures.values():
            self.assertEqual(
                self.count_of(figure["action"], self.user_sicantik), figure["count"]
            )
