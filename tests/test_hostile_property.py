import unicodedata

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from odoo import fields
from odoo.tests import tagged

from ..tools.normalise import normalise_issued_rows, reduce_permit_details
from .common import SicantikCommon

# Any code point (NUL, controls, surrogates, overrides drawn often) and
# values far longer than any column.
CHARS = st.one_of(
    st.characters(codec=None),
    st.sampled_from(["\x00", "\x1b", "\ud800", "\u202e", "e\u0301", "\n"]),
)
TEXT = st.one_of(
    st.lists(CHARS, max_size=60).map("".join),
    st.integers(min_value=300, max_value=3000).map(lambda n: "Ā" * n),
)
PID = st.sampled_from([f"20250000000000{i:02d}" for i in range(6)])


def _list_row():
    return st.fixed_dictionaries(
        {"pendaftaran_id": PID, "no_surat": TEXT, "n_pemohon": TEXT},
        optional={"n_perizinan": TEXT},
    )


def _detail_row():
    return st.fixed_dictionaries(
        {"pendaftaran_id": PID, "d_berlaku_izin": st.just("2030-01-31")},
        optional={
            "n_perusahaan": TEXT,
            "n_pemohon": TEXT,
            "a_perusahaan": TEXT,
            "telp_pemohon": TEXT,
            "npwp": st.sampled_from(["01.234.567.8-901.000", "", "0"]) | TEXT,
        },
    )


@tagged("post_install", "-at_install", "sicantik")
class TestAnyServerTextIsStored(SicantikCommon):
    """Generated permit-list pages and cekperizinan answers through the real
    upsert and partner linking: every permit is stored or set aside with a
    reason, none raises, and what is stored is what the tools cleaned."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env["sicantik.config"].search([]).write({"active": False})
        cls.config = cls.env["sicantik.config"].create(
            {"name": "Property", "api_url": "http://127.0.0.1:9/backoffice/api"}
        )

    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        st.lists(_list_row(), min_size=1, max_size=8),
        st.lists(_detail_row(), min_size=1, max_size=3),
    )
    def test_generated_rows_through_the_upsert_and_holders(self, rows, details):
        with self.env.cr.savepoint(flush=False) as savepoint:
            self._run(rows, details)
            savepoint.rollback()
        self.env.invalidate_all()

    def _run(self, rows, details):
        now, today = fields.Datetime.now(), self.config._today()
        permits, _skipped = normalise_issued_rows(rows)
        counts, _changes = self.env["sicantik.permit.sync"]._upsert_page(
            self.config, permits, {}, now, today
        )
        self.assertEqual(counts["created"] + counts["failed"], len(permits))
        # One permit per registration and letter.
        stored = {
            (permit.pendaftaran_id, permit.no_surat or None): permit
            for permit in self.env["sicantik.permit"].search(
                [("config_id", "=", self.config.id)]
            )
        }
        set_aside = {pid for pid, _reason in counts["set_aside"]}
        for permit in permits:
            key = (permit.pendaftaran_id, permit.no_surat)
            self.assertTrue(key in stored or permit.pendaftaran_id in set_aside)
            if key in stored:
                record = stored[key]
                self.assertEqual(record.applicant_name or None, permit.applicant_name)
                self.assertEqual(record.no_surat or None, permit.no_surat)
        # Step two: the details of a stored permit, and its holder.
        answer, _skipped = reduce_permit_details(details)
        expiry = self.env["sicantik.expiry.sync"]
        rows_due = [
            row
            for row in expiry._select_work(self.config, now, 10, due_only=False)
            if answer and row["pendaftaran_id"] == answer.pendaftaran_id
        ]
        if not rows_due:
            return
        counts, _changes = expiry._apply_results(
            self.config, [(rows_due[0], answer)], now, today
        )
        permit = self.env["sicantik.permit"].browse(rows_due[0]["id"])
        if counts["set_aside"]:
            return
        self.assertTrue(permit.partner_id, "an answered permit gets its holder")
        for text in (permit.partner_id.name, permit.company_name or ""):
            self.assertNotIn("\x00", text)
            self.assertFalse(
                [c for c in text if unicodedata.category(c) in ("Cc", "Cs")]
            )
