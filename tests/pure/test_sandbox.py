"""The sandbox answers like the real SICANTIK server, over real HTTP."""

import base64
import gzip
import http.client
import json
import xml.etree.ElementTree as ET
from datetime import date
from typing import NamedTuple
from urllib.parse import quote, urlsplit

import pytest

from sandbox import SandboxServer, generate_dataset
from sandbox.data import PERMIT_FIELDS, b64
from sandbox.render import htmlentities, to_xml

PROLOG = b'<?xml version="1.0" encoding="utf-8"?>\n'
NOT_FOUND_XML = PROLOG + b"<xml><error>Tidak ada data..</error></xml>\n"
NOT_FOUND_JSON = b'{"error":"Tidak ada data.."}'


class Response(NamedTuple):
    status: int
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)


def fetch(base, path="", headers=None, method="GET"):
    """One request on a fresh connection; the path goes out exactly as given."""
    url = urlsplit(base + path)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        target = url.path + (f"?{url.query}" if url.query else "")
        conn.request(method, target, headers=headers or {})
        resp = conn.getresponse()
        head = {k.lower(): v for k, v in resp.getheaders()}
        return Response(resp.status, head, resp.read())
    finally:
        conn.close()


@pytest.fixture(scope="module")
def srv():
    dataset = generate_dataset(permits=3000, seed=7, today=date(2025, 6, 15))
    with SandboxServer(dataset=dataset, seed=7) as server:
        yield server


@pytest.fixture
def get(srv):
    return lambda path, **kw: fetch(srv.url, path, **kw)


def q(text):
    return quote(text, safe="")


def answering(srv, predicate):
    return next(
        p for p in srv.dataset.permits if p.answers_cekperizinan and predicate(p)
    )


# -- formats and URL forms ---------------------------------------------------


def test_default_format_is_php_xml(srv, get):
    resp = get("/jumlahPerizinan")
    count = len(srv.dataset.permit_types)
    assert resp.status == 200
    assert resp.headers["content-type"] == "application/xml"
    item = f"<item><jumlahPerizinan>{count}</jumlahPerizinan></item>"
    assert resp.body == PROLOG + f"<xml>{item}</xml>\n".encode()


@pytest.mark.parametrize(
    "path, headers",
    [
        ("/jumlahPerizinan?format=json", {}),
        ("/jumlahPerizinan/format/json", {}),
        ("/jumlahPerizinan.json", {}),
        ("/jumlahPerizinan", {"Accept": "application/json"}),
    ],
)
def test_json_four_ways(srv, get, path, headers):
    resp = get(path, headers=headers)
    assert resp.status == 200
    assert resp.headers["content-type"] == "application/json"
    assert (
        resp.body == f'[{{"jumlahPerizinan":{len(srv.dataset.permit_types)}}}]'.encode()
    )


@pytest.mark.parametrize(
    "accept",
    ["*/*", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"],
)
def test_star_or_browser_accept_gives_xml(get, accept):
    resp = get("/jumlahPerizinan", headers={"Accept": accept})
    assert resp.headers["content-type"] == "application/xml"
    assert resp.body.startswith(PROLOG)


def test_json_suffix_on_the_last_path_value(srv, get):
    resp = get("/listpermohonanterbit/limit/2/offset/0.json")
    assert resp.status == 200 and resp.json() == srv.dataset.listed_rows()[:2]


def test_unknown_format_answers_array(get):
    resp = get("/listpermohonanterbit?limit=2&offset=0&format=yaml")
    assert resp.headers["content-type"] == "text/html"
    assert resp.body == b"Array"


@pytest.mark.parametrize(
    "method", ["jumlahperizinan", "JUMLAHPERIZINAN", "JumlahPerizinan"]
)
def test_method_names_are_case_insensitive(get, method):
    assert get(f"/{method}").status == 200


def test_list_type_method_case_insensitive(srv, get):
    assert get("/jenisPerizinanList.json").json() == srv.dataset.permit_types


def test_query_and_path_arguments_merge_and_path_wins(srv, get):
    rows = srv.dataset.listed_rows()
    assert (
        get("/listpermohonanterbit/limit/3?limit=10&offset=4&format=json").json()
        == (rows[4:7])
    )
    by_query = get("/listpermohonanterbit?limit=2&offset=5&format=json")
    by_path = get("/listpermohonanterbit/limit/2/offset/5/format/json")
    assert by_query.body == by_path.body and by_query.json() == rows[5:7]


@pytest.mark.parametrize(
    "path",
    [
        "/cekperizinan/no_izin/NTAz+MDI0",
        "/cekperizinan/no_izin/NTAz%2FMDI0",
        "/listpermohonanterbit/limit/(10)/offset/0",
        "/cekperizinan/no_izin/a&b",
        "/cekperizinan/no_izin/a%20b",
    ],
)
def test_disallowed_path_characters_give_400_html(get, path):
    resp = get(path)
    assert resp.status == 400
    assert resp.headers["content-type"] == "text/html"
    assert b"disallowed characters" in resp.body


def test_query_values_are_not_filtered(get):
    resp = get("/cekperizinan?no_izin=" + q("NTAz+MDI0/(x)&%"))
    assert resp.status == 404 and resp.body == NOT_FOUND_XML


# -- XML and JSON rendering ------------------------------------------------------


def test_xml_is_one_line_with_item_elements(get):
    resp = get("/listpermohonanterbit?limit=7&offset=0")
    assert resp.body.startswith(PROLOG + b"<xml><item><pendaftaran_id>")
    assert resp.body.endswith(b"</item></xml>\n")
    assert resp.body.count(b"\n") == 2
    assert resp.body.count(b"<item>") == 7


def test_xml_null_and_empty_values_are_self_closing(srv, get):
    null = answering(srv, lambda p: p.d_berlaku_izin is None)
    body = get("/cekperizinan?no_izin=" + q(null.no_izin)).body
    assert b"<d_berlaku_izin/>" in body
    blank = answering(srv, lambda p: p.i_telp_perusahaan == "")
    assert (
        b"<i_telp_perusahaan/>" in get("/cekperizinan?no_izin=" + q(blank.no_izin)).body
    )
    assert b"<kelompok_izin/>" in get("/jenisperizinanlist").body


def test_xml_values_go_through_htmlentities(srv, get):
    def cek(pred):
        return get("/cekperizinan?no_izin=" + q(answering(srv, pred).no_izin)).body

    assert b"&lsquo;Kedai&rsquo; Kopi" in cek(lambda p: "‘" in (p.n_perusahaan or ""))
    assert b"m&sup2;" in cek(lambda p: "²" in (p.a_perusahaan or ""))
    assert b" &amp; Keluarga" in cek(lambda p: "&" in (p.n_perusahaan or ""))
    assert b"Toko &quot;" in cek(lambda p: '"' in (p.n_perusahaan or ""))


def test_accented_name_makes_the_list_page_not_well_formed(srv, get):
    rows = srv.dataset.listed_rows()
    index = next(i for i, r in enumerate(rows) if r["n_pemohon"].startswith("José"))
    body = get(f"/listpermohonanterbit?limit=1&offset={index}").body
    assert b"<n_pemohon>Jos&eacute; " in body
    with pytest.raises(ET.ParseError):
        ET.fromstring(body)
    json_body = get(f"/listpermohonanterbit?limit=1&offset={index}&format=json").body
    assert b'"n_pemohon":"Jos\\u00e9 ' in json_body


def test_render_rules_in_isolation():
    assert htmlentities("José ‘x’ ²'\"<&>") == (
        "Jos&eacute; &lsquo;x&rsquo; &sup2;'&quot;&lt;&amp;&gt;"
    )
    # letters without an HTML 4 name stay as they are
    assert htmlentities("Łódź") == "Ł&oacute;dź"
    body = to_xml([{"a-b1c": "x", "d 2": None, "e": "", "n": 0}])
    assert body == PROLOG + b"<xml><item><abc>x</abc><d/><e/><n>0</n></item></xml>\n"


def test_json_is_php_json_encode(srv, get):
    body = get("/listpermohonanterbit?limit=20&offset=0&format=json").body
    assert b"\\/" in body and b"/" not in body.replace(b"\\/", b"")
    assert not body.endswith(b"\n") and b'": ' not in body and b'", "' not in body
    assert body.isascii()
    curly = answering(srv, lambda p: "‘" in (p.n_perusahaan or ""))
    body = get(f"/cekperizinan?format=json&no_izin={q(curly.no_izin)}").body
    assert b"\\u2018Kedai\\u2019" in body


def test_json_types(srv, get):
    assert isinstance(get("/jumlahPerizinan.json").json()[0]["jumlahPerizinan"], int)
    for t in get("/jenisperizinanlist.json").json():
        assert isinstance(t["id"], int) and isinstance(t["v_hari"], str)
    rows = get("/listpermohonanterbit?limit=50&offset=0&format=json").json()
    assert all(isinstance(v, str) for row in rows for v in row.values())
    null = answering(srv, lambda p: p.d_berlaku_izin is None)
    item = get(f"/cekperizinan?format=json&no_izin={q(null.no_izin)}").json()[0]
    assert item["d_berlaku_izin"] is None


def test_gzip_when_asked(get):
    plain = get("/listpermohonanterbit?limit=30&offset=0")
    packed = get(
        "/listpermohonanterbit?limit=30&offset=0",
        headers={"Accept-Encoding": "gzip, deflate"},
    )
    assert "content-encoding" not in plain.headers
    assert packed.headers["content-encoding"] == "gzip"
    assert int(packed.headers["content-length"]) == len(packed.body) < len(plain.body)
    assert gzip.decompress(packed.body) == plain.body


# -- status codes ----------------------------------------------------------------


def test_jumlah_perizinan_always_200(get):
    assert get("/jumlahPerizinan?limit=x&no_izin=").status == 200


@pytest.mark.parametrize(
    "query, status, body",
    [
        ("limit=0&offset=0", 404, NOT_FOUND_XML),
        ("limit=10", 404, b""),
        ("offset=0", 404, b""),
        ("", 404, b""),
        ("limit=10&offset=-1", 500, b""),
        ("limit=ten&offset=0", 500, b""),
        ("limit=10&offset=1.5", 500, b""),
    ],
)
def test_list_parameter_rules(get, query, status, body):
    resp = get(f"/listpermohonanterbit?{query}")
    assert (resp.status, resp.body) == (status, body)


def test_list_past_the_end_is_404_never_empty(srv, get):
    total = len(srv.dataset.listed_rows())
    last = get(f"/listpermohonanterbit?limit=10&offset={total - 1}&format=json")
    assert last.status == 200 and len(last.json()) == 1
    past = get(f"/listpermohonanterbit?limit=10&offset={total}&format=json")
    assert (past.status, past.body) == (404, NOT_FOUND_JSON)
    assert get(f"/listpermohonanterbit?limit=10&offset={total}").body == NOT_FOUND_XML


@pytest.mark.parametrize(
    "path, method, expected",
    [
        ("/nosuchmethod", "GET", b"<xml><error>Unknown method.</error></xml>\n"),
        ("/nosuchmethod?format=json", "GET", b'{"error":"Unknown method."}'),
        ("/listpermohonanterbit?limit=1&offset=0", "POST", b"method.</error></xml>\n"),
        ("/jumlahPerizinan", "DELETE", b"<error>Unknown method.</error></xml>\n"),
        ("/listpermohonanproses?limit=1&offset=0", "GET", b"method.</error></xml>\n"),
    ],
)
def test_unknown_method_or_verb(get, path, method, expected):
    resp = get(path, method=method)
    assert resp.status == 404 and resp.body.endswith(expected)


def test_head_gets_no_body(get):
    resp = get("/jumlahPerizinan", method="HEAD")
    assert resp.status == 404 and resp.body == b""


# -- listpermohonanterbit --------------------------------------------------------


def test_walk_the_whole_list(srv, get):
    ds = srv.dataset
    rows, offset = [], 0
    while True:
        resp = get(f"/listpermohonanterbit?limit=500&offset={offset}&format=json")
        if resp.status == 404:
            assert resp.body == NOT_FOUND_JSON
            break
        page = resp.json()
        rows += page
        offset += len(page)
    assert rows == ds.listed_rows()
    assert int(rows[0]["num_rows"]) != len(rows)  # not the list total
    assert list(rows[0]) == [
        "pendaftaran_id",
        "n_pemohon",
        "n_perizinan",
        "no_surat",
        "num_rows",
    ]
    listed_ids = {r["pendaftaran_id"] for r in rows}
    unlisted = [p for p in ds.permits if p.pendaftaran_id not in listed_ids]
    assert 0.02 < len(unlisted) / len(ds.permits) < 0.06
    dates = [ds.by_pendaftaran_id[r["pendaftaran_id"]].d_terima_berkas for r in rows]
    assert dates == sorted(dates, reverse=True)
    # an unlisted permit still answers cekperizinan
    hidden = next(p for p in unlisted if p.answers_cekperizinan)
    assert get("/cekperizinan?no_izin=" + q(hidden.no_izin)).status == 200


def test_two_applicants_appear_twice_adjacent(srv, get):
    rows = get("/listpermohonanterbit?limit=3000&offset=0&format=json").json()
    ids = [r["pendaftaran_id"] for r in rows]
    doubles = [i for i in range(len(ids) - 1) if ids[i] == ids[i + 1]]
    assert doubles
    for i in doubles:
        assert rows[i]["n_pemohon"] != rows[i + 1]["n_pemohon"]
    assert len(ids) - len(set(ids)) == len(doubles)  # never apart


def test_future_api_switch(srv, get):
    path = "/listpermohonanterbit?limit=5&offset=0&format=json"
    assert all("d_berlaku_izin" not in r for r in get(path).json())
    srv.configure(future_api=True)
    try:
        rows = get(path).json()
    finally:
        srv.configure(future_api=False)
    for row in rows:
        assert row["d_berlaku_izin"] == (
            srv.dataset.by_pendaftaran_id[row["pendaftaran_id"]].d_berlaku_izin
        )
    assert all("d_berlaku_izin" not in r for r in get(path).json())


def test_future_api_constructor_flag(srv):
    with SandboxServer(dataset=srv.dataset, future_api=True) as other:
        rows = fetch(other.url, "/listpermohonanterbit/limit/3/offset/0/format/json")
        assert all("d_berlaku_izin" in r for r in rows.json())


# -- cekperizinan / cekperizinanizin ---------------------------------------------


def test_cekperizinan_returns_a_list_in_field_order(srv, get):
    permit = answering(srv, lambda p: len(p.applicants) == 1)
    items = get(f"/cekperizinan?format=json&no_izin={q(permit.no_izin)}").json()
    assert items == permit.items() and len(items) == 1
    assert list(items[0]) == list(PERMIT_FIELDS)
    xml = get(f"/cekperizinan?no_izin={q(permit.no_izin)}").body
    tags = [el.tag for el in ET.fromstring(xml.replace(b"&", b"&amp;"))[0]]
    assert tags == list(PERMIT_FIELDS)


def test_two_applicants_give_two_items(srv, get):
    permit = answering(srv, lambda p: len(p.applicants) == 2)
    items = get(f"/cekperizinan?format=json&no_izin={q(permit.no_izin)}").json()
    assert len(items) == 2
    assert items[0]["pendaftaran_id"] == items[1]["pendaftaran_id"]
    assert items[0]["n_pemohon"] != items[1]["n_pemohon"]


def test_base64_is_compared_verbatim(srv, get):
    trailing = answering(srv, lambda p: p.no_surat.endswith(" "))
    exact = get(f"/cekperizinan?format=json&no_izin={q(trailing.no_izin)}")
    assert exact.status == 200 and exact.json()[0]["no_surat"] == trailing.no_surat
    trimmed = get(f"/cekperizinan?no_izin={q(b64(trailing.no_surat.strip()))}")
    assert (trimmed.status, trimmed.body) == (404, NOT_FOUND_XML)
    double = answering(srv, lambda p: "  " in p.no_surat)
    assert get(f"/cekperizinan?no_izin={q(double.no_izin)}").status == 200
    single = " ".join(double.no_surat.split())
    assert get(f"/cekperizinan?no_izin={q(b64(single))}").status == 404


def test_base64_variants_do_not_match(srv, get):
    padded = answering(srv, lambda p: p.no_izin.endswith("="))
    assert get(f"/cekperizinan?no_izin={q(padded.no_izin.rstrip('='))}").status == 404
    special = answering(srv, lambda p: "+" in p.no_izin or "/" in p.no_izin)
    urlsafe = base64.urlsafe_b64encode(special.no_surat.encode()).decode()
    assert get(f"/cekperizinan?no_izin={q(special.no_izin)}").status == 200
    assert get(f"/cekperizinan?no_izin={q(urlsafe)}").status == 404
    # "+" left unencoded in the query reads as a space, as PHP decodes it
    plus = answering(srv, lambda p: "+" in p.no_izin)
    assert get(f"/cekperizinan?no_izin={plus.no_izin}").status == 404


def test_path_form_works_unless_plus_or_slash(srv, get):
    plain = answering(
        srv, lambda p: not set("+/") & set(p.no_izin) and "=" in p.no_izin
    )
    assert get(f"/cekperizinan/no_izin/{plain.no_izin}").status == 200
    assert get(f"/cekperizinan/no_izin/{plain.no_izin}/format/json").json() == (
        plain.items()
    )
    special = answering(srv, lambda p: "+" in p.no_izin or "/" in p.no_izin)
    assert get(f"/cekperizinan/no_izin/{q(special.no_izin)}").status == 400


@pytest.mark.parametrize("query", ["", "?no_izin=", "?format=json&no_izin="])
def test_empty_no_izin_returns_every_permit_without_number(srv, get, query):
    resp = get(f"/cekperizinan{query}")
    assert resp.status == 200
    body = resp.body if "json" in query else resp.body.replace(b"&", b"&amp;")
    empty = {p.pendaftaran_id for p in srv.dataset.lookup_no_izin("")}
    assert len(empty) >= 2
    if "json" in query:
        items = json.loads(body)
        assert {i["pendaftaran_id"] for i in items} == empty
        assert all(i["no_surat"] == "" for i in items)
    else:
        assert body.count(b"<no_surat/>") == body.count(b"<item>") >= len(empty)


def test_permits_without_company_or_village_are_404(srv, get):
    ds = srv.dataset
    lonely = next(p for p in ds.permits if not p.has_company and p.no_surat)
    villageless = next(p for p in ds.permits if p.has_company and not p.has_village)
    for permit in (lonely, villageless):
        assert permit.pendaftaran_id in ds.by_pendaftaran_id  # it exists
        for method in ("cekperizinan", "cekperizinanizin"):
            resp = get(f"/{method}?format=json&no_izin={q(permit.no_izin)}")
            assert (resp.status, resp.body) == (404, NOT_FOUND_JSON)


def test_cekperizinan_not_found(get):
    resp = get("/cekperizinan?no_izin=" + q(b64("503/9999/XII/TDP/NOPE/1999")))
    assert (resp.status, resp.body) == (404, NOT_FOUND_XML)


def test_cekperizinanizin_decodes_the_value(srv, get):
    permit = answering(srv, lambda p: p.no_izin.endswith("=") and p.no_surat)
    for value in (permit.no_izin, permit.no_izin.rstrip("=")):
        resp = get(f"/cekperizinanizin?format=json&no_izin={q(value)}")
        assert resp.status == 200 and resp.json() == permit.items()
    trailing = answering(srv, lambda p: p.no_surat.endswith(" "))
    trimmed = b64(trailing.no_surat.strip())
    assert get(f"/cekperizinanizin?no_izin={q(trimmed)}").status == 404
    assert get(f"/cekperizinanizin?no_izin={q(trailing.no_izin)}").status == 200


# -- jenisperizinanlist ---------------------------------------------------------


def test_permit_type_list(srv, get):
    types = get("/jenisperizinanlist?format=json").json()
    names = [t["jenis_perizinan"] for t in types]
    assert names == sorted(names) and types == srv.dataset.permit_types
    assert all(
        list(t) == ["id", "jenis_perizinan", "kelompok_izin", "v_hari"] for t in types
    )
    assert any("  " in name for name in names)
    rows = get("/listpermohonanterbit?limit=3000&offset=0&format=json").json()
    used = {r["n_perizinan"] for r in rows}
    assert used <= set(names) and any("  " in name for name in used)
