"""Oversized and duplicate-heavy pages: cut, merged in linear time, logged."""

import logging

from tools.normalise import _unique, normalise_issued_rows
from tools.sicantik_pages import build_page


def _row(index, pid=None):
    return {
        "pendaftaran_id": pid or f"{index + 1:016d}",
        # The rows of one registration share its letter: one permit.
        "no_surat": f"503/{0 if pid else index}/2025",
        "n_pemohon": f"Pemohon {index}",
        "n_perizinan": "IZIN USAHA",
    }


def test_a_page_larger_than_asked_is_cut_and_logged(caplog):
    rows = [_row(i) for i in range(120)]
    with caplog.at_level(logging.WARNING, logger="odoo.addons"):
        caplog.set_level(logging.WARNING)
        page = build_page(rows, offset=100, limit=50)
    assert page.raw_count == 50
    assert page.next_offset == 150  # the rows cut are served again next page
    assert [p.pendaftaran_id for p in page.permits] == [
        f"{i + 1:016d}" for i in range(50)
    ]
    assert not page.is_last
    assert any("120 rows served for a page of 50" in r.message for r in caplog.records)


def test_a_page_of_one_registration_merges_every_row():
    rows = [_row(i, pid="1111222233334444") for i in range(100_000)]
    permits, skipped = normalise_issued_rows(rows)
    assert not skipped
    (permit,) = permits
    assert permit.row_count == 100_000
    assert len(permit.applicant_names) == 100_000
    assert permit.applicant_names[:2] == ("Pemohon 0", "Pemohon 1")


class _Counted:
    """A value that counts the comparisons made on it."""

    calls = 0

    def __init__(self, value):
        self.value = value

    def __hash__(self):
        return hash(self.value)

    def __eq__(self, other):
        type(self).calls += 1
        return self.value == other.value


def test_merging_is_linear_in_the_rows():
    """Counted, not timed: distinct values cost a bounded number of
    comparisons each (a list scan would cost n**2 / 2 = 2 million here)."""
    _Counted.calls = 0
    values = [_Counted(i % 1000) for i in range(2000)]
    assert len(_unique(values)) == 1000
    assert _Counted.calls <= 4 * len(values)
