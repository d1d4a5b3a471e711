"""Any text a server can send is stored or reported, never an exception.

Property tests (Hypothesis): whatever SICANTIK or a gateway sends, what the
tools hand to the ORM holds nothing PostgreSQL, its driver or a b-tree index
refuses, and nothing that would make a name or a WhatsApp message display as
something else.
"""

import dataclasses
import unicodedata
from datetime import date

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tools import storable as st_mod
from tools.normalise import (
    normalise_issued_rows,
    normalise_permit_types,
    reduce_permit_details,
)
from tools.reminders import DEFAULT_TEMPLATE, render, template_params
from tools.sicantik_exceptions import SicantikError
from tools.storable import BIDI_CONTROLS, INVISIBLE, message_safe, storable
from tools.whatsapp_webhook import WebhookGateway

# Every code point, surrogates and controls included, and the ones that
# matter most drawn often.
HOSTILE_CHARS = st.one_of(
    st.characters(codec=None),
    st.sampled_from(["\x00", "\x1b", "\x7f", "\x85", "\ud800", "\u202e", "\u2066"]),
    st.sampled_from(["e\u0301", "\ufb01", "\u200b", "\t", "\n", "\r", " "]),
)
HOSTILE_TEXT = st.lists(HOSTILE_CHARS, max_size=300).map("".join)
LONG_TEXT = st.integers(min_value=1, max_value=5000).map(lambda n: "Ā" * n)
ANY_TEXT = st.one_of(HOSTILE_TEXT, LONG_TEXT)
# What a JSON/XML decoder can hand to normalisation for one field.
FIELD = st.one_of(st.none(), ANY_TEXT, st.integers(), st.floats(), st.booleans())
PROPERTY = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
B_TREE_MAX_BYTES = 2704


def assert_storable(text, limit, *, multiline=False, keep_bidi=False):
    assert isinstance(text, str) and text
    assert len(text) <= limit
    if limit < st_mod.MESSAGE_MAX:  # messages go to unindexed text columns
        assert len(text.encode("utf-8")) <= B_TREE_MAX_BYTES
    for char in text:
        category = unicodedata.category(char)
        if not (multiline and char in "\t\n"):
            assert category not in ("Cc", "Cs"), repr(char)
        if not keep_bidi:
            assert char not in BIDI_CONTROLS, repr(char)
            assert char not in INVISIBLE, repr(char)


@PROPERTY
@given(ANY_TEXT, st.sampled_from([st_mod.ID_MAX, st_mod.NAME_MAX, st_mod.TEXT_MAX]))
def test_storable_text_fits_its_column_and_every_index(text, limit):
    cleaned = storable(text, limit)
    if cleaned is not None:
        assert_storable(cleaned, limit)
        assert cleaned == cleaned.strip()
        assert storable(cleaned, limit) == cleaned  # cleaning is idempotent


@PROPERTY
@given(ANY_TEXT)
def test_multiline_keeps_lines_and_nothing_else(text):
    cleaned = storable(text, st_mod.MESSAGE_MAX, multiline=True)
    if cleaned is not None:
        assert_storable(cleaned, st_mod.MESSAGE_MAX, multiline=True)
        assert "\r" not in cleaned


@PROPERTY
@given(ANY_TEXT)
def test_a_permit_number_is_kept_as_served_less_what_cannot_be_stored(text):
    cleaned = storable(
        text, st_mod.NUMBER_MAX, normalise=False, keep_bidi=True, collapse=False
    )
    if cleaned is not None:
        assert_storable(cleaned, st_mod.NUMBER_MAX, keep_bidi=True)
        # Only unstorable characters go: the rest is the served text, in order.
        kept = [c for c in text if unicodedata.category(c) not in ("Cc", "Cs")]
        assert cleaned == "".join(kept)[: st_mod.NUMBER_MAX]


def test_examples():
    assert storable("PT\x00 MAJU\u202e  JAYA ", 64) == "PT MAJU JAYA"
    assert storable("Cafe\u0301", 64) == "Café"  # NFC: one character
    assert storable("\x00\x1b \u202e", 64) is None
    assert storable("x" * 300, 256) == "x" * 256
    assert storable("baris 1\r\nbaris\x00 2", 64, multiline=True) == "baris 1\nbaris 2"


def _strings_of(record):
    for value in dataclasses.asdict(record).values():
        items = value if isinstance(value, tuple) else (value,)
        for item in items:
            if isinstance(item, str):
                yield item


@PROPERTY
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(
                ["pendaftaran_id", "no_surat", "n_pemohon", "n_perizinan"]
                + ["d_berlaku_izin", "unknown"]
            ),
            FIELD,
        ),
        max_size=8,
    )
)
def test_any_permit_list_rows_are_stored_or_reported(rows):
    permits, skipped = normalise_issued_rows(rows)
    assert len(permits) + len(skipped) <= max(len(rows), 1) * 1
    for permit in permits:
        assert_storable(permit.pendaftaran_id, st_mod.ID_MAX)
        for name in permit.applicant_names:
            assert_storable(name, st_mod.NAME_MAX)
        if permit.permit_type:
            assert_storable(permit.permit_type, st_mod.NAME_MAX)
        if permit.no_surat:
            assert_storable(permit.no_surat, st_mod.NUMBER_MAX, keep_bidi=True)
    for record in skipped:
        assert isinstance(record.reason, str)


@PROPERTY
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(
                ["pendaftaran_id", "no_surat", "n_pemohon", "n_perusahaan"]
                + ["a_pemohon", "telp_pemohon", "npwp", "a_perusahaan"]
                + ["n_kelurahan", "n_kecamatan", "d_berlaku_izin", "tgl_surat"]
            ),
            FIELD,
        ),
        max_size=4,
    )
)
def test_any_permit_details_are_stored_or_reported(rows):
    details, _skipped = reduce_permit_details(rows)
    if details is None:
        return
    for text in _strings_of(details):
        if text is details.no_surat:
            continue
        # Warnings quote values with repr(): printable, one line.
        assert "\x00" not in text
        assert not any(unicodedata.category(c) == "Cs" for c in text)
    for name in details.company_names + details.applicant_names:
        assert_storable(name, st_mod.NAME_MAX)
    for value in (details.applicant_address, details.company_address):
        if value:
            assert_storable(value, st_mod.TEXT_MAX)


@PROPERTY
@given(st.lists(st.dictionaries(st.just("jenis_perizinan"), FIELD), max_size=5))
def test_any_permit_types_are_stored_or_reported(rows):
    types, _skipped = normalise_permit_types(rows)
    for permit_type in types:
        assert_storable(permit_type.name, st_mod.NAME_MAX)
        assert "\x00" not in permit_type.raw_name


@PROPERTY
@given(ANY_TEXT, ANY_TEXT, ANY_TEXT)
def test_a_whatsapp_message_shows_no_override_or_control(holder, kind, number):
    values = {
        "holder": holder,
        "permit_type": kind,
        "permit_number": number,
        "expiry_date": date(2026, 1, 5),
        "days": 30,
    }
    text = render(DEFAULT_TEMPLATE, values)
    template_chars = set(DEFAULT_TEMPLATE)
    for char in text:
        assert char not in BIDI_CONTROLS
        if unicodedata.category(char) == "Cc":
            assert char in template_chars  # the template's own line break
    for param in template_params(values):
        assert param == message_safe(param)


@PROPERTY
@given(ANY_TEXT)
def test_error_messages_are_storable(text):
    message = str(SicantikError(text, failure_type="bad_response"))
    assert "\x00" not in message
    assert len(message) <= st_mod.MESSAGE_MAX
    message.encode("utf-8")


@PROPERTY
@given(st.text(alphabet=st.characters(categories=["L", "N"]), min_size=1, max_size=40))
def test_a_secret_of_any_length_is_redacted(secret):
    gateway = WebhookGateway(
        "https://hooks.example.test/send", {"Authorization": f"Bearer {secret}"}
    )
    shown = gateway._remote_text(f"invalid token {secret}; token={secret}.")
    assert secret not in shown
