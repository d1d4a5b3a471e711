"""Safe decoding and record normalisation (no network)."""

import gzip
import json
import tracemalloc
import zlib
from datetime import date

import pytest
from lxml import etree

from tools import decoders
from tools.decoders import (
    BoundedBody,
    decode_json,
    decode_payload,
    decode_xml,
    detect_format,
    error_text,
    expect_rows,
    html_entities_to_xml,
)
from tools.normalise import (
    clean_name,
    normalise_issued_rows,
    normalise_permit_types,
    parse_date,
    pick_expiry,
    reduce_permit_details,
)
from tools.records import IssuedPermit, encode_no_izin
from tools.sicantik_exceptions import SicantikResponseError

XML_HEAD = b'<?xml version="1.0" encoding="utf-8"?>\n'


def xml_page(*items):
    body = b"".join(
        b"<item>"
        + b"".join(
            b"<%s/>" % k.encode()
            if v is None
            else b"<%s>%s</%s>" % (k.encode(), v.encode(), k.encode())
            for k, v in item.items()
        )
        + b"</item>"
        for item in items
    )
    return XML_HEAD + b"<xml>" + body + b"</xml>\n"


# --------------------------------------------------------------------------
# Format detection and JSON
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, expected",
    [
        (b'[{"a":1}]', "json"),
        (b'  \r\n\t{"error":"x"}', "json"),
        (b"\xef\xbb\xbf[]", "json"),
        (XML_HEAD + b"<xml/>", "xml"),
        (b"\n  <xml></xml>", "xml"),
        (b"Array", None),
        (b"", None),
    ],
)
def test_detect_format_by_first_non_space_byte(body, expected):
    assert detect_format(body) == expected


def test_json_is_decoded_into_plain_types():
    body = (
        b'[{"pendaftaran_id":"0004700301102025","n_pemohon":"Jos\\u00e9",'
        b'"no_surat":"503\\/0940\\/XI\\/TDP\\/DPM-PPTSP\\/2025","id":7,"x":null}]'
    )
    rows = decode_payload(body)
    assert rows == [
        {
            "pendaftaran_id": "0004700301102025",
            "n_pemohon": "José",
            "no_surat": "503/0940/XI/TDP/DPM-PPTSP/2025",
            "id": 7,
            "x": None,
        }
    ]


@pytest.mark.parametrize(
    "body",
    [
        b'[{"a": 1}',  # truncated
        b"[" * 200_000 + b"]" * 200_000,  # recursion bomb
        b"Array",  # unknown format value on the real server
        b"   ",
        b"",
        b'["\xff\xfe"]',  # not UTF-8
    ],
)
def test_unreadable_bodies_raise_a_retryable_bad_response(body):
    with pytest.raises(SicantikResponseError) as info:
        decode_payload(body, endpoint="listpermohonanterbit")
    err = info.value
    assert err.failure_type == "bad_response"
    assert err.retryable is True
    assert "listpermohonanterbit" in str(err)


def test_json_object_where_a_list_is_expected_is_a_shape_error():
    payload = decode_json(b'{"0": {"pendaftaran_id": "1"}, "2": {}}')
    with pytest.raises(SicantikResponseError) as info:
        expect_rows(payload, endpoint="cekperizinan")
    assert info.value.failure_type == "bad_response"
    assert info.value.retryable is False
    assert "object" in str(info.value)
    assert expect_rows([1, 2]) == [1, 2]


def test_error_text_reads_both_formats():
    assert error_text(decode_payload(b'{"error":"Tidak ada data.."}')) == (
        "Tidak ada data.."
    )
    xml = XML_HEAD + b"<xml><error>Tidak ada data..</error></xml>\n"
    assert error_text(decode_payload(xml)) == "Tidak ada data.."
    assert error_text([{"error": "x"}]) is None
    assert error_text({"error": 3}) is None


# --------------------------------------------------------------------------
# XML: shape, HTML entities, refused declarations
# --------------------------------------------------------------------------


def test_xml_items_become_dicts_with_null_for_empty_tags():
    body = xml_page(
        {"pendaftaran_id": "0001200204052016", "n_pemohon": None, "num_rows": "6"},
        {"pendaftaran_id": "0001300204052016", "n_pemohon": "Ukur", "num_rows": "6"},
    )
    assert decode_xml(body) == [
        {"pendaftaran_id": "0001200204052016", "n_pemohon": None, "num_rows": "6"},
        {"pendaftaran_id": "0001300204052016", "n_pemohon": "Ukur", "num_rows": "6"},
    ]
    assert decode_xml(XML_HEAD + b"<xml/>\n") == []


def test_php_htmlentities_page_keeps_every_row():
    # What PHP htmlentities() makes of José ‘Ucok’ Ginting, 12 m² & Co.
    body = xml_page(
        {
            "pendaftaran_id": "0001200204052016",
            "n_pemohon": "Jos&eacute; &lsquo;Ucok&rsquo; Ginting",
            "n_perizinan": "IZIN 12 m&sup2; &amp; CO &lt;X&gt;",
            "no_surat": "503/0247/XII/TDP-PO/DPM-PPTSP/2017  ",
        },
        {
            "pendaftaran_id": "0001300204052016",
            "n_pemohon": "PT &Agrave;LPHA &copy; &unknownname; &#233;",
            "n_perizinan": "SIUP",
            "no_surat": "503/07/Se&ntilde;or/2021",
        },
    )
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(body)  # what a strict parser does with the raw page
    rows = decode_xml(body)
    assert [r["n_pemohon"] for r in rows] == [
        "José \u2018Ucok\u2019 Ginting",
        "PT ÀLPHA © &unknownname; é",
    ]
    assert rows[0]["n_perizinan"] == "IZIN 12 m² & CO <X>"
    # Trailing spaces of the permit number survive the XML path.
    assert rows[0]["no_surat"] == "503/0247/XII/TDP-PO/DPM-PPTSP/2017  "
    assert rows[1]["no_surat"] == "503/07/Señor/2021"


def test_entity_translation_leaves_xml_entities_and_escapes_the_rest():
    assert html_entities_to_xml(b"&eacute;&amp;&lt;&gt;&quot;&apos;") == (
        b"&#233;&amp;&lt;&gt;&quot;&apos;"
    )
    assert html_entities_to_xml(b"&nosuch; A & B &#39; &#x41;") == (
        b"&amp;nosuch; A &amp; B &#39; &#x41;"
    )


XXE = (
    XML_HEAD + b'<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b"<xml><item><n_pemohon>&xxe;</n_pemohon></item></xml>"
)
BILLION_LAUGHS = (
    XML_HEAD + b'<!DOCTYPE xml [<!ENTITY a "ha"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;">'
    b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;">'
    b'<!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;"><!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;">'
    b"]><xml><item><n>&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;</n></item></xml>"
)


@pytest.mark.parametrize(
    "body",
    [
        XXE,
        BILLION_LAUGHS,
        XML_HEAD + b"<!doctype xml><xml/>",
        XML_HEAD + b'<xml><!ENTITY x "y"></xml>',
    ],
    ids=["xxe", "entity-bomb", "lowercase-doctype", "stray-entity"],
)
def test_declarations_are_refused_outright_and_not_retried(body):
    with pytest.raises(SicantikResponseError) as info:
        decode_payload(body)
    assert info.value.retryable is False
    assert "declaration" in str(info.value)
    assert "root:" not in str(info.value)


def test_the_parser_itself_never_resolves_external_entities():
    # Defence in depth: even if the declaration check were bypassed, the
    # parser configuration must not read the file.
    try:
        root = etree.fromstring(XXE, decoders._xml_parser())
    except etree.XMLSyntaxError:
        return
    assert "root:" not in etree.tostring(root, encoding="unicode")


@pytest.mark.parametrize(
    "body",
    [
        b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>",
        b"<html><head><title>Error</title></head></html>",
        XML_HEAD + b"<response><x>1</x></response>",
        XML_HEAD + b"<xml><item><a>1</a></item>",  # truncated
    ],
    ids=["html5", "html", "other-root", "truncated"],
)
def test_html_and_foreign_xml_are_retryable_bad_responses(body):
    with pytest.raises(SicantikResponseError) as info:
        decode_payload(body)
    assert info.value.failure_type == "bad_response"
    assert info.value.retryable is True


# --------------------------------------------------------------------------
# Bounded body: size cap on decoded bytes, compression
# --------------------------------------------------------------------------


def test_plain_body_over_the_cap_is_too_large_and_not_retryable():
    sink = BoundedBody(10, endpoint="cekperizinan")
    sink.feed(b"0123456789")
    with pytest.raises(SicantikResponseError) as info:
        sink.feed(b"x")
    assert info.value.failure_type == "too_large"
    assert info.value.retryable is False


def test_gzip_body_round_trip_and_multi_member():
    data = b'[{"a":"' + b"x" * 5000 + b'"}]'
    sink = BoundedBody(1 << 20, "gzip")
    packed = gzip.compress(data[:100]) + gzip.compress(data[100:])
    for i in range(0, len(packed), 7):
        sink.feed(packed[i : i + 7])
    assert sink.finish() == data
    assert sink.raw_bytes == len(packed)


@pytest.mark.parametrize("wrapped", [True, False])
def test_deflate_zlib_wrapped_or_raw(wrapped):
    data = b"<xml/>" * 100
    compressor = zlib.compressobj(wbits=15 if wrapped else -15)
    packed = compressor.compress(data) + compressor.flush()
    sink = BoundedBody(1 << 20, "deflate")
    sink.feed(packed)
    assert sink.finish() == data


def gzip_bomb(decoded_size):
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    out = [compressor.compress(block) for _ in range(decoded_size >> 20)]
    return b"".join(out) + compressor.flush()


def test_gzip_bomb_stops_at_the_cap_with_bounded_memory():
    bomb = gzip_bomb(256 << 20)  # 256 MiB of zeros in ~250 KiB
    assert len(bomb) < 400_000
    sink = BoundedBody(1 << 20, "gzip")
    tracemalloc.start()
    try:
        with pytest.raises(SicantikResponseError) as info:
            for i in range(0, len(bomb), 65536):
                sink.feed(bomb[i : i + 65536])
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.failure_type == "too_large"
    assert peak < 8 << 20, f"peak memory {peak} bytes"


def test_truncated_or_corrupt_gzip_is_a_retryable_bad_response():
    packed = gzip.compress(b"[1, 2, 3]" * 100)
    sink = BoundedBody(1 << 20, "gzip")
    sink.feed(packed[: len(packed) // 2])
    with pytest.raises(SicantikResponseError) as info:
        sink.finish()
    assert info.value.retryable is True
    assert "truncated" in str(info.value)
    sink = BoundedBody(1 << 20, "gzip")
    with pytest.raises(SicantikResponseError) as info:
        sink.feed(b"this is not gzip at all")
    assert info.value.retryable is True


def test_unknown_content_encoding_is_refused():
    with pytest.raises(SicantikResponseError) as info:
        BoundedBody(100, "br")
    assert info.value.retryable is False
    assert BoundedBody(100, "identity").compressed is False
    assert BoundedBody(100, "X-GZIP").compressed is True


# --------------------------------------------------------------------------
# Values: dates, names, base64
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, value, zero, invalid",
    [
        ("2021-05-24", date(2021, 5, 24), False, False),
        (" 2024-02-29 ", date(2024, 2, 29), False, False),
        ("0000-00-00", None, True, False),
        (None, None, False, False),
        ("", None, False, False),
        ("2021-02-30", None, False, True),
        ("2023-02-29", None, False, True),
        ("2021-13-01", None, False, True),
        ("2016-00-00", None, False, True),
        ("2021-5-4", None, False, True),
        ("24/05/2021", None, False, True),
        ("2021-05-24 10:00:00", None, False, True),
    ],
)
def test_parse_date_never_raises(raw, value, zero, invalid):
    parsed = parse_date(raw)
    assert (parsed.value, parsed.zero, parsed.invalid) == (value, zero, invalid)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("  Ukur   Kaban\t", "Ukur Kaban"),
        ("IZIN GANGGUAN  USAHA (HO)", "IZIN GANGGUAN USAHA (HO)"),
        ("Jos\u00e9\n Ginting", "José Ginting"),
        ("0", None),
        (" 0 ", None),
        ("", None),
        ("   ", None),
        (None, None),
        ("-", None),
    ],
)
def test_clean_name(raw, expected):
    assert clean_name(raw) == expected


@pytest.mark.parametrize(
    "no_surat, expected",
    [
        (
            "503/0247/XII/TDP-PO/DPM-PPTSP/2017",
            "NTAzLzAyNDcvWElJL1REUC1QTy9EUE0tUFBUU1AvMjAxNw==",
        ),
        (
            "503.530.570/0110/DPMPPTSP-DS/08/YYY/KK",
            "NTAzLjUzMC41NzAvMDExMC9EUE1QUFRTUC1EUy8wOC9ZWVkvS0s=",
        ),
        (
            "503/0940/XI/TDP/DPM-PPTSP/2025  ",
            "NTAzLzA5NDAvWEkvVERQL0RQTS1QUFRTUC8yMDI1ICA=",
        ),
        ("503/12/A  B/2020", "NTAzLzEyL0EgIEIvMjAyMA=="),
        ("503/07/Señor/2021", "NTAzLzA3L1Nlw7Fvci8yMDIx"),
        ("503/07/Señor/2021 ", "NTAzLzA3L1Nlw7Fvci8yMDIxIA=="),
        ("503/~~~/2020", "NTAzL35+fi8yMDIw"),
        ("ab?", "YWI/"),
    ],
)
def test_no_izin_is_standard_padded_base64_of_the_exact_number(no_surat, expected):
    assert encode_no_izin(no_surat) == expected


# --------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------

ROW = {
    "pendaftaran_id": "0004700301102025",
    "n_pemohon": "Ukur  Kaban",
    "n_perizinan": "TANDA DAFTAR PERUSAHAAN (TDP)",
    "no_surat": "503/0940/XI/TDP/DPM-PPTSP/2025  ",
    "num_rows": "6",
}


def test_issued_rows_are_one_permit_per_registration_and_letter():
    rows = [
        ROW,
        {"pendaftaran_id": "0001200204052016", "n_pemohon": "0", "no_surat": ""},
        dict(ROW, n_pemohon="Ukur Kaban"),  # same name again
        dict(ROW, n_pemohon="Sri  Br Ginting"),  # a second applicant
        dict(ROW, n_pemohon="Sri  Br Ginting", no_surat="503/0941/XI/TDP/2025"),
    ]
    permits, skipped = normalise_issued_rows(rows)
    assert skipped == ()
    assert [(p.pendaftaran_id, p.no_surat) for p in permits] == [
        ("0004700301102025", "503/0940/XI/TDP/DPM-PPTSP/2025  "),  # exact
        ("0001200204052016", None),
        ("0004700301102025", "503/0941/XI/TDP/2025"),
    ]
    merged, lonely, second = permits
    # Two applicants, one letter: one permit; the name first in name order
    # is the applicant, whatever order the rows came in.
    assert merged.applicant_names == ("Sri Br Ginting", "Ukur Kaban")
    assert merged.applicant_name == "Sri Br Ginting"
    assert merged.letter_numbers == ("503/0940/XI/TDP/DPM-PPTSP/2025  ",)
    assert merged.row_count == 3
    assert merged.no_izin == "NTAzLzA5NDAvWEkvVERQL0RQTS1QUFRTUC8yMDI1ICA="
    assert merged.has_expiry_field is False
    assert second.applicant_names == ("Sri Br Ginting",) and second.row_count == 1
    assert lonely.applicant_names == ()
    assert lonely.no_surat is None and lonely.no_izin is None
    assert lonely.letter_numbers == ()


def test_bad_rows_are_skipped_with_a_reason_not_raised():
    rows = [
        "not an object",
        {"n_pemohon": "No Id"},
        {"pendaftaran_id": "0001200204052016", "n_pemohon": ["a", "list"]},
        {"pendaftaran_id": "123", "n_pemohon": "Short Id"},
        ROW,
    ]
    permits, skipped = normalise_issued_rows(rows)
    assert [p.pendaftaran_id for p in permits] == ["123", "0004700301102025"]
    assert "unexpected pendaftaran_id format '123'" in permits[0].warnings
    assert [(s.index, s.reason) for s in skipped] == [
        (0, "row is not an object"),
        (1, "no pendaftaran_id"),
        (2, "field n_pemohon holds list, not text"),
    ]
    assert skipped[2].pendaftaran_id == "0001200204052016"


def test_future_api_expiry_field_in_the_list_is_exposed():
    permits, _ = normalise_issued_rows(
        [
            dict(ROW, d_berlaku_izin="2026-01-31"),
            dict(ROW, pendaftaran_id="0000100101012020", d_berlaku_izin="0000-00-00"),
            dict(ROW, pendaftaran_id="0000200101012020", d_berlaku_izin=None),
            dict(ROW, pendaftaran_id="0000300101012020", d_berlaku_izin="2021-02-30"),
        ]
    )
    dated, unlimited, null, impossible = permits
    assert all(p.has_expiry_field for p in permits)
    assert dated.expiry_date == date(2026, 1, 31) and not dated.expiry_unlimited
    assert unlimited.expiry_date is None and unlimited.expiry_unlimited
    assert null.expiry_date is None and not null.expiry_unlimited
    assert not null.expiry_invalid
    assert impossible.expiry_date is None and impossible.expiry_invalid
    assert impossible.expiry_raw == "2021-02-30"
    assert any("2021-02-30" in w for w in impossible.warnings)


def test_pick_expiry_rule():
    d = parse_date
    chosen, index, warning = pick_expiry([d("2021-01-01"), d("2023-06-30")])
    assert (chosen.value, index) == (date(2023, 6, 30), 1)
    assert "conflicting" in warning and "2023-06-30" in warning
    chosen, index, warning = pick_expiry([d("0000-00-00"), d("2022-01-01")])
    assert chosen.value == date(2022, 1, 1) and warning
    chosen, index, warning = pick_expiry([d(None), d("0000-00-00"), d("x")])
    assert chosen.zero and index == 1 and warning is None
    assert pick_expiry([d(None), d("2021-02-30")]) == (None, None, None)
    chosen, _, warning = pick_expiry([d("2022-01-01"), d("2022-01-01")])
    assert chosen.value == date(2022, 1, 1) and warning is None


DETAIL = {
    "pendaftaran_id": "0001200204052016",
    "n_pemohon": "Mulianta  Meliala",
    "n_perizinan": "SURAT IZIN USAHA PERDAGANGAN (SIUP)",
    "no_surat": "503/0247/XII/TDP-PO/DPM-PPTSP/2017",
    "d_terima_berkas": "2016-05-10",
    "d_berlaku_izin": "2021-05-24",
    "a_pemohon": "Jl. Gundaling No. 53, Kabanjahe",
    "telp_pemohon": "081395972402",
    "tgl_surat": "2016-05-24",
    "n_perusahaan": "Kedai Kopi Keliat",
    "npwp": "55.588.748.9-126.000",
    "a_perusahaan": "Jl. Udara No. 3",
    "d_tgl_berdiri": "2013-09-18",
    "i_telp_perusahaan": "-",
    "n_kecamatan": "SIMPANG EMPAT",
    "n_kabupaten": "KARO",
    "n_propinsi": "SUMATERA UTARA",
    "n_kelurahan": "GURUKINAYAN",
}


def test_details_single_row():
    details, skipped = reduce_permit_details([DETAIL])
    assert skipped == ()
    assert details.pendaftaran_id == "0001200204052016"
    assert details.applicant_name == "Mulianta Meliala"
    assert details.expiry_date == date(2021, 5, 24)
    assert details.received_date == date(2016, 5, 10)
    assert details.issue_date == date(2016, 5, 24)
    assert details.company_founded == date(2013, 9, 18)
    assert details.company_name == "Kedai Kopi Keliat"
    assert details.applicant_phone == "081395972402"
    assert details.company_phone is None  # '-' is no phone
    assert details.kelurahan == "GURUKINAYAN"
    assert details.warnings == ()


def test_details_several_rows_are_reduced_and_filtered():
    rows = [
        dict(DETAIL, d_berlaku_izin="2020-01-01", n_perusahaan="Kedai A"),
        dict(
            DETAIL,
            d_berlaku_izin="2025-12-31",
            n_perusahaan="Kedai B",
            a_perusahaan="Jl. B",
        ),
        dict(DETAIL, pendaftaran_id="0009900204052016", d_berlaku_izin="2030-01-01"),
        dict(DETAIL, d_berlaku_izin="0000-00-00", n_pemohon="Second Applicant"),
    ]
    details, skipped = reduce_permit_details(rows, "0001200204052016")
    assert details.expiry_date == date(2025, 12, 31)  # latest real date wins
    assert details.expiry_unlimited is False
    assert details.company_names == ("Kedai A", "Kedai B", "Kedai Kopi Keliat")
    assert details.company_address == "Jl. B"  # from the row that gave the date
    assert details.applicant_names == ("Mulianta Meliala", "Second Applicant")
    assert details.row_count == 3
    assert any("conflicting expiry dates" in w for w in details.warnings)
    assert [(s.index, s.pendaftaran_id) for s in skipped] == [(2, "0009900204052016")]
    # Without the filter the other registration's later date would win.
    unfiltered, _ = reduce_permit_details(rows)
    assert unfiltered.expiry_date == date(2030, 1, 1)


def test_details_zero_and_impossible_dates():
    details, _ = reduce_permit_details([dict(DETAIL, d_berlaku_izin="0000-00-00")])
    assert details.expiry_date is None and details.expiry_unlimited
    assert details.expiry_raw == "0000-00-00"
    details, _ = reduce_permit_details(
        [dict(DETAIL, d_berlaku_izin="2021-02-30", tgl_surat="2016-13-01")]
    )
    assert details.expiry_date is None and details.expiry_invalid
    assert details.issue_date is None
    assert "invalid date in tgl_surat: '2016-13-01'" in details.warnings
    details, _ = reduce_permit_details([dict(DETAIL, d_berlaku_izin=None)])
    assert details.expiry_date is None
    assert not details.expiry_unlimited and not details.expiry_invalid


def test_details_of_another_registration_only_give_none():
    details, skipped = reduce_permit_details([DETAIL], "0000000000000000")
    assert details is None and len(skipped) == 1


def test_permit_types_names_collapsed_raw_kept():
    types, skipped = normalise_permit_types(
        [
            {
                "id": 3,
                "jenis_perizinan": "IZIN GANGGUAN  USAHA (HO)",
                "kelompok_izin": None,
                "v_hari": "7",
            },
            {
                "id": "4",
                "jenis_perizinan": "SIUP",
                "kelompok_izin": "Dagang",
                "v_hari": "",
            },
            {"id": 5, "jenis_perizinan": "0"},
            [],
        ]
    )
    assert [(t.id, t.name, t.raw_name, t.group, t.processing_days) for t in types] == [
        (3, "IZIN GANGGUAN USAHA (HO)", "IZIN GANGGUAN  USAHA (HO)", None, 7),
        (4, "SIUP", "SIUP", "Dagang", None),
    ]
    assert [s.index for s in skipped] == [2, 3]


def test_records_are_frozen():
    permit = IssuedPermit(pendaftaran_id="1", no_surat="x", permit_type=None)
    with pytest.raises(AttributeError):
        permit.no_surat = "y"


def test_json_and_xml_pages_normalise_identically():
    row = dict(ROW, n_pemohon="José Ginting")
    as_json = decode_payload(json.dumps([row]).encode())
    as_xml = decode_payload(xml_page(dict(row, n_pemohon="Jos&eacute; Ginting")))
    assert normalise_issued_rows(as_json) == normalise_issued_rows(as_xml)
