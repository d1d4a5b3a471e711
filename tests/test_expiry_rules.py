from datetime import date, timedelta

from dateutil.relativedelta import relativedelta
from freezegun import freeze_time
from lxml import etree

from odoo.tests import tagged
from odoo.tools.safe_eval import safe_eval

from ..tools import expiry
from .common import SicantikCommon

TODAY = date(2025, 6, 15)
# Every day around each band edge, and both ends of the re-check window.
OFFSETS = range(-3, expiry.WARNING_DAYS + 4)


@freeze_time("2025-06-15 03:00:00")  # 10:00 in Jakarta, the same day in UTC
@tagged("post_install", "-at_install", "sicantik")
class TestExpiryRules(SicantikCommon):
    """The expiry bands are written once (``tools/expiry.py``): the stored
    state, the nightly SQL, the search filters and the dashboard agree."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env["sicantik.config"].search([]).write({"active": False})
        cls.config = cls.env["sicantik.config"].create(
            {"name": "Rules", "api_url": "http://127.0.0.1:9/backoffice/api"}
        )
        values = [
            {
                "config_id": cls.config.id,
                "pendaftaran_id": f"88888{index:011d}",
                "expiry_date": TODAY + timedelta(days=days),
            }
            for index, days in enumerate(OFFSETS)
        ]
        values += [
            {"config_id": cls.config.id, "pendaftaran_id": "8888899999999998"},
            {
                "config_id": cls.config.id,
                "pendaftaran_id": "8888899999999999",
                "expiry_unlimited": True,
            },
        ]
        cls.permits = cls.env["sicantik.permit"].create(values)

    def filter_domain(self, name):
        arch = self.env["sicantik.permit"].get_view(view_type="search")["arch"]
        node = etree.fromstring(arch).xpath(f"//filter[@name='{name}']")[0]
        return safe_eval(
            node.get("domain"),
            {"context_today": lambda: TODAY, "relativedelta": relativedelta},
        )

    def in_band(self, state):
        return self.permits.filtered(
            lambda p: expiry.state_for(p.expiry_date, p.expiry_unlimited, TODAY)
            == state
        )

    def test_nightly_sql_agrees_with_state_for(self):
        # Yesterday's states are wrong for today: the SQL must set each one.
        self.env.cr.execute(
            "UPDATE sicantik_permit SET expiry_state = 'ok', status = 'active' "
            "WHERE id = ANY(%s)",
            [self.permits.ids],
        )
        self.permits.invalidate_recordset()
        self.env["sicantik.permit"]._update_expiry_states(self.config, TODAY)
        for permit in self.permits:
            wanted = expiry.state_for(
                permit.expiry_date, permit.expiry_unlimited, TODAY
            )
            self.assertEqual(permit.expiry_state, wanted, permit.expiry_date)
            self.assertEqual(permit.status, expiry.status_for(wanted))

    def test_search_filters_and_band_domains_select_the_same_permits(self):
        Permit = self.env["sicantik.permit"]
        for name, state in (
            ("expired", expiry.EXPIRED),
            ("critical", expiry.CRITICAL),
            ("warning", expiry.WARNING),
            ("no_expiry", expiry.NO_DATE),
        ):
            with self.subTest(filter=name):
                scope = [("id", "in", self.permits.ids)]
                by_filter = Permit.search(scope + self.filter_domain(name))
                by_band = Permit.search(scope + expiry.band_domain(state, TODAY))
                self.assertEqual(by_filter, by_band)
                self.assertEqual(by_band, self.in_band(state))
                self.assertTrue(by_band, "the dataset covers the band")

    def test_dashboard_counts_are_the_bands(self):
        states, _horizons, _total = self.env["sicantik.dashboard"]._permit_buckets(
            TODAY
        )
        counts = {figure["key"]: figure["count"] for figure in states}
        for state in expiry.STATES:
            self.assertEqual(counts[state], len(self.in_band(state)), state)

    def test_statistics_count_the_stored_bands(self):
        self.config.invalidate_recordset()
        self.assertEqual(self.config.expired_count, len(self.in_band(expiry.EXPIRED)))
        self.assertEqual(self.config.critical_count, len(self.in_band(expiry.CRITICAL)))
        self.assertEqual(
            self.config.expiring_count,
            len(self.in_band(expiry.CRITICAL) | self.in_band(expiry.WARNING)),
        )
        self.assertEqual(self.config.no_expiry_count, len(self.in_band(expiry.NO_DATE)))
