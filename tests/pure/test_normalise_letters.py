"""One permit per letter, and the one rule for SICANTIK's placeholders."""

from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from tools.normalise import (
    OTHER_LETTER,
    clean_name,
    clean_phone,
    normalise_issued_rows,
    reduce_permit_details,
    stored_text,
)
from tools.placeholders import PLACEHOLDER_WORDS, blank_placeholder, is_placeholder

PID = "0004700301102025"
LETTER_A = "503/0940/XI/TDP/DPM-PPTSP/2025"
LETTER_B = "503/0941/XI/TDP/DPM-PPTSP/2025"


def _row(pid=PID, letter=LETTER_A, name="Ukur Kaban"):
    return {
        "pendaftaran_id": pid,
        "n_pemohon": name,
        "n_perizinan": "TANDA DAFTAR PERUSAHAAN (TDP)",
        "no_surat": letter,
        "num_rows": "6",
    }


# --------------------------------------------------------------------------
# Placeholders
# --------------------------------------------------------------------------

# What "nothing" looks like: dashes, dots, slashes, zeros and blanks.
_junk = st.text(alphabet=" -–—./_0\t", max_size=30)
# A text that means something: at least one letter or a digit 1-9.
_meaningful = st.builds(
    lambda head, core, tail: head + core + tail,
    _junk,
    st.one_of(
        st.characters(categories=("Lu", "Ll", "Lo")),
        st.sampled_from("123456789"),
    ),
    _junk,
)


@given(_junk)
def test_dashes_dots_zeros_and_blanks_are_placeholders(value):
    assert is_placeholder(value)
    assert blank_placeholder(value) is None
    assert stored_text(value) is None


@given(_meaningful)
def test_a_letter_or_a_digit_other_than_zero_means_something(value):
    assert not is_placeholder(value)
    assert blank_placeholder(value) == value


@given(
    st.sampled_from(sorted(PLACEHOLDER_WORDS)),
    st.booleans(),
    st.text(alphabet=" \t", max_size=5),
)
def test_placeholder_words_in_any_case(word, upper, space):
    value = f"{space}{word.upper() if upper else word.title()}{space}"
    assert is_placeholder(value)


def test_real_values_are_kept():
    for value in ("0812-3456-7890", "Jl. Udara No. 0", "Kedai 0", "José", "N/A 2"):
        assert not is_placeholder(value), value
    assert is_placeholder(None)
    assert is_placeholder("00.000.000.0-000.000")  # a tax number of zeros


@given(_junk)
def test_every_stored_text_path_uses_the_rule(value):
    """Names, phones, addresses and letters of the list and of cekperizinan."""
    assert clean_name(value) is None
    assert clean_phone(value) is None
    permits, _ = normalise_issued_rows([_row(letter=value, name=value)])
    (permit,) = permits
    assert permit.no_surat is None and permit.applicant_name is None
    details, _ = reduce_permit_details(
        [
            {
                "pendaftaran_id": PID,
                "no_surat": value,
                "n_pemohon": value,
                "a_pemohon": value,
                "telp_pemohon": value,
                "npwp": value,
                "n_kelurahan": value,
            }
        ]
    )
    assert (
        details.no_surat,
        details.applicant_name,
        details.applicant_address,
        details.applicant_phone,
        details.npwp,
        details.kelurahan,
    ) == (None,) * 6


def test_a_registration_id_that_is_a_placeholder_skips_the_row():
    permits, skipped = normalise_issued_rows([_row(pid="0000"), _row()])
    assert [p.pendaftaran_id for p in permits] == [PID]
    assert [s.reason for s in skipped] == ["no pendaftaran_id"]


# --------------------------------------------------------------------------
# One permit per (registration, letter)
# --------------------------------------------------------------------------


def test_two_letters_of_one_registration_are_two_permits():
    permits, _ = normalise_issued_rows(
        [_row(), _row(letter=LETTER_B), _row(letter=""), _row(letter="-")]
    )
    assert [(p.pendaftaran_id, p.no_surat) for p in permits] == [
        (PID, LETTER_A),
        (PID, LETTER_B),
        (PID, None),  # no letter: a permit of its own, once
    ]
    assert permits[2].row_count == 2


_NAMES = ["Ukur Kaban", "sri br ginting", "Benta Tarigan", "ÉRSADA SEMBIRING"]
_ROWS = [
    _row(letter=letter, name=name) for letter in (LETTER_A, LETTER_B) for name in _NAMES
]


@given(st.permutations(_ROWS))
def test_the_applicant_does_not_depend_on_the_order_of_the_rows(rows):
    permits, _ = normalise_issued_rows(rows)
    by_letter = {p.no_surat: p for p in permits}
    assert set(by_letter) == {LETTER_A, LETTER_B}
    for permit in permits:
        assert permit.applicant_name == "Benta Tarigan"
        # Case-insensitive order of code points: É sorts after the Latin letters.
        assert permit.applicant_names == (
            "Benta Tarigan",
            "sri br ginting",
            "Ukur Kaban",
            "ÉRSADA SEMBIRING",
        )
        assert permit.row_count == len(_NAMES)


def _detail(letter, expiry, name="Ukur Kaban", company="Kedai Kopi Keliat"):
    return {
        "pendaftaran_id": PID,
        "n_pemohon": name,
        "no_surat": letter,
        "d_berlaku_izin": expiry,
        "n_perusahaan": company,
    }


def test_cekperizinan_items_of_another_letter_are_left_out():
    rows = [
        _detail(LETTER_B, "2031-01-01"),
        _detail(LETTER_A, "2027-03-04", name="Sri Br Ginting"),
        _detail(LETTER_A, "2027-03-04", company="CV. Karo"),
        _detail(None, "2026-01-01"),  # no letter in the item: the one asked
    ]
    details, skipped = reduce_permit_details(rows, PID, LETTER_A)
    assert details.no_surat == LETTER_A
    assert details.expiry_date == date(2027, 3, 4)  # not the other letter's
    assert details.company_names == ("Kedai Kopi Keliat", "CV. Karo")
    assert details.row_count == 3
    assert [(s.index, s.reason) for s in skipped] == [(0, OTHER_LETTER)]
    other, skipped = reduce_permit_details([rows[0]], PID, LETTER_A)
    assert other is None and skipped[0].reason == OTHER_LETTER
