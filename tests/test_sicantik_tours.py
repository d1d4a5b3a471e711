import base64
import importlib.util
import json
import os
import random
import re
import unittest
from datetime import timedelta
from pathlib import Path
from unittest.mock import patch

from odoo import fields
from odoo.tests import HttpCase, new_test_user, tagged
from odoo.tests import common as odoo_test_common
from odoo.tools.misc import file_path
from odoo.tools.translate import PoFileReader

from odoo.addons.sicantik_connector.sandbox import SandboxServer
from odoo.addons.sicantik_connector.sandbox.data import PERMIT_TYPE_SPECS

from .common import ALLOWED_LOOPBACK, use_loopback_send

# Where the README's screenshot goes (taken with SICANTIK_SCREENSHOT=1).
SCREENSHOT = Path(__file__).resolve().parents[1] / "static/description/dashboard.png"
ADDON = "sicantik_connector"
LANG = "id_ID"
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]|%[sd]|\{\w*\}")
REGEX_SPECIALS = re.compile(r"([\\^$.*+?()\[\]{}|/])")


def english_patterns(env):
    """JavaScript patterns of the addon's msgids that Indonesian translates
    differently: seen verbatim by an Indonesian user, they are English left
    untranslated. A placeholder matches any text. Msgids that another
    installed module also translates (Odoo's own "Activities", "Company",
    ...) are left to that module's catalogue; HTML help texts, and msgids
    with fewer than three letters outside their placeholders, are skipped."""
    core = set()
    modules = env["ir.module.module"].search(
        [("state", "=", "installed"), ("name", "!=", ADDON)]
    )
    for module in modules.mapped("name"):
        try:
            path = file_path(f"{module}/i18n/id.po")
        except FileNotFoundError:
            continue
        core.update(row["src"] for row in PoFileReader(path))
    patterns = set()
    for row in PoFileReader(file_path(f"{ADDON}/i18n/id.po")):
        source = " ".join(row["src"].split())
        value = " ".join((row["value"] or "").split())
        if not value or value == source or row["src"] in core or "<" in source:
            continue
        parts = PLACEHOLDER.split(source)
        if sum(ch.isalpha() for ch in "".join(parts)) < 3:
            continue
        escaped = [REGEX_SPECIALS.sub(r"\\\1", part) for part in parts]
        patterns.add("^" + ".+?".join(escaped) + "$")
    return sorted(patterns)


def browser_problem():
    """Why Odoo's browser tests cannot run here, or None."""
    if importlib.util.find_spec("websocket") is None:
        return "the websocket-client Python package is missing"
    try:
        odoo_test_common._find_executable()
    except unittest.SkipTest:
        return (
            "no chromium, chromium-browser or google-chrome on PATH "
            "(Debian: apt-get install chromium)"
        )
    return None


@tagged("post_install", "-at_install", "sicantik")
class TestSicantikTours(HttpCase):
    """Browser tours in headless Chromium: the dashboard, its lists, the
    Critical filter, a permit, and Test Connection against the sandbox."""

    browser_size = "1440x1080"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        use_loopback_send(cls)
        cls.sandbox = SandboxServer(permits=50, seed=3).start()
        cls.addClassCleanup(cls.sandbox.stop)
        cls.env = cls.env(context=dict(cls.env.context, tracking_disable=True))
        cls.env["ir.config_parameter"].sudo().set_param(
            "sicantik_connector.allowed_hosts", ALLOWED_LOOPBACK
        )
        cls.env["sicantik.config"].search([]).write({"active": False})
        cls.config = cls.env["sicantik.config"].create(
            {
                "name": "Sandbox",
                "api_url": cls.sandbox.url,
                "timeout": 5,
                "rate_limit": 200,
            }
        )
        cls.today = fields.Date.context_today(cls.env.user)
        cls.seq = 0

    def setUp(self):
        super().setUp()
        problem = browser_problem()
        if problem:
            self.skipTest(f"no Chromium: {problem}")

    @classmethod
    def make_permits(cls, rows):
        """Permits from ``(days to expiry or None, permit type)`` rows."""
        values = []
        for days, permit_type in rows:
            cls.seq += 1
            values.append(
                {
                    "config_id": cls.config.id,
                    "pendaftaran_id": f"99999{cls.seq:011d}",
                    "no_surat": f"503/{cls.seq:04d}/TDP/DPM-PPTSP/2025",
                    "applicant_name": f"Pemohon {cls.seq}",
                    "permit_type_id": permit_type.id,
                    "expiry_date": days is not None
                    and cls.today + timedelta(days=days),
                }
            )
        return cls.env["sicantik.permit"].create(values)

    def test_dashboard_tour(self):
        permit_type = self.env["sicantik.permit.type"].create(
            {"name": "SURAT IZIN USAHA PERDAGANGAN (SIUP)", "config_id": self.config.id}
        )
        # Away from the 30/60/90-day bounds: the browser's "today" may be
        # another time zone's.
        self.make_permits([(d, permit_type) for d in (3, 20, 45, 80, -15, None, 200)])
        self.start_tour("/odoo", "sicantik_dashboard_tour", login="admin")
        log = self.env["sicantik.sync.log"].search(
            [("config_id", "=", self.config.id), ("operation", "=", "test_connection")]
        )
        self.assertEqual(log.state, "done")
        self.assertGreaterEqual(self.sandbox.stats()["requests"], 1)

    def test_holder_tour_in_indonesian(self):
        """A SICANTIK User in Indonesian: dashboard, Numbers to fix, a holder,
        their permit, a note; no English string of ours on the way."""
        self.env["res.lang"]._activate_lang(LANG)
        self.env["ir.module.module"].search(
            [("name", "=", ADDON)]
        )._update_translations([LANG])
        clerk = new_test_user(
            self.env,
            login="petugas",
            name="Petugas Perizinan",
            groups="sicantik_connector.sicantik_connector_group_user",
            lang=LANG,
            tz="Asia/Jakarta",
        )
        self.assertFalse(clerk.has_group("base.group_system"))
        permit_type = self.env["sicantik.permit.type"].create(
            {"name": "IZIN USAHA PERDAGANGAN", "config_id": self.config.id}
        )
        Partner = self.env["res.partner"]
        holder = Partner.create({"name": "CV Sinar Karo", "is_company": True})
        reachable = Partner.create(
            {"name": "Toko Berastagi", "whatsapp_number": "0812 3456 7890"}
        )
        permits = self.make_permits(
            [
                (20, permit_type),
                (200, permit_type),
                (45, permit_type),
                (-3, permit_type),
            ]
        )
        permits[:2].write({"partner_id": holder.id, "applicant_phone": "0628 20555"})
        permits[2].partner_id = reachable
        terms = english_patterns(self.env)
        self.assertIn("^Numbers to fix$", terms)
        self.assertIn("^.+? permits$", terms)
        self.start_tour(
            "/odoo/action-sicantik_connector.sicantik_dashboard_action",
            "sicantik_holder_tour",
            login="petugas",
            code=f"window.sicantikEnglishTerms = {json.dumps(terms)}; "
            "odoo.startTour('sicantik_holder_tour', {stepDelay: 0, "
            "keepWatchBrowser: false, debug: false, startUrl: "
            "'/odoo/action-sicantik_connector.sicantik_dashboard_action', "
            "delayToCheckUndeterminisms: 0})",
        )
        note = permits[:2].message_ids.filtered(
            lambda m: "Pemegang izin sudah dihubungi" in (m.body or "")
        )
        self.assertEqual(len(note), 1)
        self.assertEqual(note.author_id, clerk.partner_id)
        self.assertTrue(note.subtype_id.internal, "a note, not a message")

    def test_screenshots(self):
        """The dashboard, the Numbers to fix list and a permit as an office
        sees them; with SICANTIK_SCREENSHOT=1 their pictures are saved for
        the README."""
        permits = self.fill_office()
        holders = self.fill_holders(permits)
        # A permit close to expiry, the kind staff call the holder about.
        permit = permits.filtered(lambda p: p.expiry_state == "critical")[:1]
        permit.partner_id = holders[0]
        permit.message_post(
            body="Pemegang izin sudah ditelepon: perpanjangan diajukan minggu ini.",
            message_type="comment",
            subtype_xmlid="mail.mt_note",
        )
        permit.activity_schedule(
            "mail.mail_activity_data_call",
            summary="Tanyakan nomor WhatsApp pemegang izin",
            user_id=self.env.ref("base.user_admin").id,
        )
        original_stop = odoo_test_common.ChromeBrowser.stop
        target = {}

        def stop(browser):
            # The tour ended on the drawn screen: take it before closing.
            if hasattr(browser, "ws"):
                shot = browser._websocket_request(
                    "Page.captureScreenshot", params={"format": "png"}, timeout=30
                )
                target["path"].write_bytes(base64.b64decode(shot["data"]))
            original_stop(browser)

        screenshot = os.environ.get("SICANTIK_SCREENSHOT") == "1"
        screens = [
            (
                "dashboard.png",
                "/odoo/action-sicantik_connector.sicantik_dashboard_action",
                "sicantik_dashboard_screenshot_tour",
            ),
            (
                "holders.png",
                "/odoo/action-sicantik_connector.action_sicantik_numbers_to_fix",
                "sicantik_holders_screenshot_tour",
            ),
            (
                "permit.png",
                f"/odoo/action-sicantik_connector.sicantik_permit_action/{permit.id}",
                "sicantik_permit_screenshot_tour",
            ),
        ]
        with patch.object(
            odoo_test_common.ChromeBrowser,
            "stop",
            stop if screenshot else original_stop,
        ):
            for name, url, tour in screens:
                target["path"] = SCREENSHOT.with_name(name)
                self.start_tour(url, tour, login="admin")

    def fill_holders(self, permits):
        """Holders for 40 of the permits: most with a mobile number, some to
        fix (no number, a landline, a number the gateway refused)."""
        rng = random.Random(2)
        names = [
            "CV Sinar Karo",
            "UD Tani Makmur",
            "PT Berastagi Segar",
            "Toko Sumber Rejeki",
            "CV Jeruk Manis",
            "Koperasi Tanah Karo",
            "Rumah Makan Lau Kawar",
            "UD Kopi Sibayak",
            "Apotek Kabanjahe",
            "Bengkel Simpang Empat",
        ]
        numbers = [
            False,
            "0628 20123",
            "0812 6011 2345",
            "0813 7022 3456",
            "0852 6133 4567",
        ]
        Partner = self.env["res.partner"]
        holders = Partner
        for index, name in enumerate(names):
            number = numbers[index % len(numbers)]
            holders |= Partner.create(
                {"name": name, "is_company": True, "whatsapp_number": number}
            )
        holders[-1]._sicantik_flag_invalid_number("The number is not on WhatsApp.")
        chosen = rng.sample(list(permits), 40)
        for index, permit in enumerate(chosen):
            permit.write(
                {
                    "partner_id": holders[index % len(holders)].id,
                    "applicant_phone": f"0812 60{index:02d} 1{index:03d}",
                }
            )
        return holders

    def fill_office(self):
        """About 1,000 permits over the sandbox's permit types, a few runs and
        reminders."""
        rng = random.Random(1)
        Type = self.env["sicantik.permit.type"]
        rows = []
        for spec in PERMIT_TYPE_SPECS:
            permit_type = Type.create(
                {"name": " ".join(spec[1].split()), "config_id": self.config.id}
            )
            for _i in range(round(spec[6] * 12)):
                days = None if rng.random() < 0.06 else rng.randint(-90, 400)
                rows.append((days, permit_type))
        permits = self.make_permits(rows)
        Log = self.env["sicantik.sync.log"]
        done = Log._start(self.config, "permits")
        done._add_client_stats(
            {
                "requests": 214,
                "retries": 3,
                "by_status": {"2xx": 211, "5xx": 3},
                "latency_p50_ms": 182.0,
                "latency_p95_ms": 412.0,
            }
        )
        done.write({"fetched_count": len(permits), "created_count": len(permits)})
        done._finish("done")
        failed = Log._start(self.config, "expiry")
        failed._set_failure("timeout", "read timed out (read timeout=20)")
        failed._finish()
        if "sicantik.notification" in self.env:
            now = fields.Datetime.now()
            soon = permits.filtered(
                lambda p: p.expiry_date and 0 <= (p.expiry_date - self.today).days <= 30
            )
            self.env["sicantik.notification"].create(
                [
                    {
                        "permit_id": permit.id,
                        "config_id": self.config.id,
                        "company_id": permit.company_id.id,
                        "stage": 30,
                        "expiry_date": permit.expiry_date,
                        "state": "failed" if index % 9 == 0 else "sent",
                        "sent_at": now if index % 9 else False,
                    }
                    for index, permit in enumerate(soon)
                ]
            )
        return permits
