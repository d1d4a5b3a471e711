"""Sandbox faults of hostile content and hostile pages: the payload
alterations and the trickle writer as plain functions, then over HTTP."""

import unicodedata

import pytest

from sandbox import KNOB_DEFAULTS, faults
from sandbox.faults import (
    ADDRESS_FIELDS,
    COMBINING_SUFFIX,
    ESC,
    LONG_CHARS,
    LONG_MULTIBYTE_CHARS,
    NAME_FIELDS,
    PDF,
    RLO,
    ZWSP,
    alter_payload,
    long_text,
    multibyte_text,
    trickle,
    with_controls,
    with_nul,
)

PAGE = "/listpermohonanterbit?limit=6&offset=0&format=json"
TEXT_FIELDS = NAME_FIELDS + ADDRESS_FIELDS
ROW = {
    "pendaftaran_id": "0000100700012025",
    "n_pemohon": "Ukur Kaban",
    "n_perizinan": "IZIN REKLAME",
    "no_surat": "503/0001/I/REK/DPM-PPTSP/2025",
    "a_pemohon": "Jl. Veteran No. 5, Kabanjahe",
    "n_perusahaan": "CV Sinar Jos\u00e9",
    "a_perusahaan": "Jl. Kapten Pala Bangun",
    "d_berlaku_izin": "2026-01-31",
    "npwp": None,
}
OTHER = dict(ROW, pendaftaran_id="0000100700022025", n_pemohon="Sabar Pandia")


def untouched(before, after, keys):
    return all(after[k] == before[k] for k in before if k not in keys)


# -- the alterations, one value at a time -------------------------------------


@pytest.mark.parametrize("text", ["a", "Ukur Kaban", "Jos\u00e9 Ginting"])
def test_with_nul_puts_one_nul_inside(text):
    served = with_nul(text)
    assert served.count("\x00") == 1 and served.replace("\x00", "") == text
    if len(text) > 1:
        assert not served.startswith("\x00") and not served.endswith("\x00")


def test_long_text_repeats_the_value_to_the_length():
    served = long_text("Ukur Kaban")
    assert len(served) == LONG_CHARS == 5000
    assert served.startswith("Ukur Kaban Ukur Kaban ")
    assert len(long_text("x", 7)) == 7


def test_multibyte_text_has_no_ascii_character():
    served = multibyte_text()
    assert len(served) == LONG_MULTIBYTE_CHARS == 3000
    assert not any(char.isascii() for char in served)
    # UTF-8 of several kilobytes: far over a b-tree entry (2,704 bytes).
    assert len(served.encode("utf-8")) > 3 * 2704
    assert unicodedata.is_normalized("NFC", served)


@pytest.mark.parametrize("text", ["Ukur Kaban", "Jos\u00e9 Ginting", "\u00c9"])
def test_with_controls_cleaned_reads_the_name_and_jose(text):
    served = with_controls(text)
    for char in (RLO, PDF, ESC, ZWSP, "\u0301"):
        assert char in served
    assert "\u00e9" not in served  # every accent decomposed
    cleaned = "".join(c for c in served if c not in (RLO, PDF, ESC))
    assert unicodedata.normalize("NFC", cleaned).replace(ZWSP, "") == (
        f"{text} Jos\u00e9"
    )
    assert COMBINING_SUFFIX == " Jose\u0301"


# -- the alterations, on a payload ---------------------------------------------


def test_nul_bytes_alters_names_and_addresses_only():
    (served,) = alter_payload("nul-bytes", [ROW])
    for key in TEXT_FIELDS:
        assert served[key] == with_nul(ROW[key])
    assert untouched(ROW, served, TEXT_FIELDS)


def test_control_chars_alters_names_only():
    (served,) = alter_payload("control-chars", [ROW])
    for key in NAME_FIELDS:
        assert served[key] == with_controls(ROW[key])
    assert untouched(ROW, served, NAME_FIELDS)


def test_long_values_alternates_ascii_and_multibyte_names():
    rows = alter_payload("long-values", [ROW, OTHER, ROW])
    assert [len(r["n_pemohon"]) for r in rows] == [5000, 3000, 5000]
    assert rows[0]["n_pemohon"] == long_text(ROW["n_pemohon"])
    assert rows[1]["n_pemohon"] == multibyte_text()
    for row in rows:
        assert row["n_perusahaan"] == multibyte_text()
        for key in ADDRESS_FIELDS:
            assert len(row[key]) == LONG_CHARS
        assert untouched(ROW, row, (*TEXT_FIELDS, "pendaftaran_id"))


@pytest.mark.parametrize("fault", sorted(faults.HOSTILE_FAULTS))
def test_hostile_faults_leave_missing_values_and_the_input_alone(fault):
    row = dict(ROW, n_perusahaan=None, a_perusahaan="")
    before = dict(row)
    (served,) = alter_payload(fault, [row, "not a row"])[:1]
    assert row == before  # the dataset's own rows are never changed
    assert served["n_perusahaan"] is None and served["a_perusahaan"] == ""
    assert alter_payload(fault, {"error": "Tidak ada data.."}) == {
        "error": "Tidak ada data.."
    }


def test_same_id_puts_every_row_under_the_first_id():
    rows = alter_payload("same-id", ["junk", ROW, OTHER, OTHER])
    assert rows[0] == "junk"
    assert {r["pendaftaran_id"] for r in rows[1:]} == {ROW["pendaftaran_id"]}
    assert [r["n_pemohon"] for r in rows[1:]] == ["Ukur Kaban", *["Sabar Pandia"] * 2]
    assert alter_payload("same-id", []) == []


# -- the trickle writer ----------------------------------------------------------


class FakeClock:
    """Stands in for ``stopping.wait``: records the waits, never sleeps."""

    def __init__(self, stop_at=None):
        self.waits = []
        self.stop_at = stop_at

    def __call__(self, seconds):
        self.waits.append(seconds)
        return self.stop_at is not None and len(self.waits) > self.stop_at


def test_trickle_writes_one_byte_per_interval():
    written, wait = [], FakeClock()
    sent = trickle(b"[1,2]", written.append, wait, interval=0.4, max_bytes=100)
    assert sent == 5 and written == [b"[", b"1", b",", b"2", b"]"]
    assert wait.waits == [0.4] * 5


def test_trickle_stops_after_max_bytes():
    written, wait = [], FakeClock()
    assert trickle(b"x" * 1000, written.append, wait, interval=1, max_bytes=3) == 3
    assert b"".join(written) == b"xxx" and len(wait.waits) == 3


def test_trickle_stops_when_the_server_stops():
    written, wait = [], FakeClock(stop_at=2)
    assert trickle(b"abcdef", written.append, wait, interval=1, max_bytes=99) == 2
    assert written == [b"a", b"b"]


def test_trickle_of_an_empty_body_writes_nothing():
    written, wait = [], FakeClock()
    assert trickle(b"", written.append, wait, interval=1, max_bytes=9) == 0
    assert written == [] and wait.waits == []


@pytest.mark.parametrize("value", [0, 1.5, -1, True, "3"])
def test_trickle_bytes_must_be_a_whole_number(value):
    with pytest.raises(ValueError):
        faults.validate_knob("trickle_bytes", value)


def test_trickle_knobs_have_defaults():
    assert KNOB_DEFAULTS["trickle_interval"] == 0.4
    assert faults.validate_knob("trickle_bytes", 8.0) == 8
