"""Sandbox fault injection, statistics, control endpoints, CLI and lifecycle."""

import functools
import gzip
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import NamedTuple
from unittest.mock import ANY
from urllib.parse import quote, urlsplit
from xml.parsers import expat

import pytest

from sandbox import KNOB_DEFAULTS, SandboxServer, generate_dataset
from sandbox.faults import (
    CONTENT_FAULTS,
    EXTRA_ROWS_FACTOR,
    OVERSIZED_BYTES,
    FaultPlan,
    long_text,
    multibyte_text,
    with_nul,
)
from sandbox.stats import RateWindow

ROOT = Path(__file__).resolve().parents[2]
PAGE = "/listpermohonanterbit?limit=5&offset=0"


class Response(NamedTuple):
    status: int
    headers: dict
    body: bytes


def fetch(base, path="", headers=None, method="GET", body=None):
    url = urlsplit(base + path)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        target = url.path + (f"?{url.query}" if url.query else "")
        conn.request(method, target, body=body, headers=headers or {})
        resp = conn.getresponse()
        head = {k.lower(): v for k, v in resp.getheaders()}
        return Response(resp.status, head, resp.read())
    finally:
        conn.close()


def control(srv, name, payload=None):
    if payload is None:
        resp = fetch(srv.root_url, f"/_sandbox/{name}")
    else:
        body = json.dumps(payload).encode()
        resp = fetch(srv.root_url, f"/_sandbox/{name}", method="POST", body=body)
    return resp.status, json.loads(resp.body)


def wait_for(predicate, timeout=5.0):
    """Poll a condition (not a sleep standing in for it), up to a deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


@pytest.fixture(scope="module")
def dataset():
    return generate_dataset(permits=600, seed=3, today=date(2025, 6, 15))


@pytest.fixture(scope="module")
def module_srv(dataset):
    with SandboxServer(dataset=dataset, seed=3) as server:
        yield server


@pytest.fixture
def srv(module_srv):
    defaults = {k: v for k, v in KNOB_DEFAULTS.items() if k != "seed"}
    module_srv.configure(**defaults)
    module_srv.clear_faults()
    module_srv.reset_stats()
    yield module_srv
    module_srv.configure(**defaults)
    module_srv.clear_faults()


@pytest.fixture
def get(srv):
    return lambda path=PAGE, **kw: fetch(srv.url, path, **kw)


# -- queued faults -------------------------------------------------------------


def test_queued_faults_apply_in_order_then_stop(srv, get):
    normal = get()
    srv.queue_faults(500, "empty", 503)
    first, second, third, fourth = get(), get(), get(), get()
    assert (first.status, first.body) == (500, b"")
    assert (second.status, second.body) == (200, b"")
    assert third.status == 503 and third.headers["retry-after"] == "1"
    assert fourth == normal._replace(headers=fourth.headers)


def test_control_endpoints_never_consume_faults(srv, get):
    srv.queue_faults(502)
    control(srv, "stats")
    control(srv, "dataset/summary")
    control(srv, "configure", {})
    assert get().status == 502


@pytest.mark.parametrize(
    "fault, status, retry_after",
    [(500, 500, None), (502, 502, None), (503, 503, "7"), (429, 429, "7")],
)
def test_status_faults(srv, get, fault, status, retry_after):
    srv.configure(retry_after=7)
    srv.queue_faults(fault)
    resp = get()
    assert resp.status == status
    assert resp.headers.get("retry-after") == retry_after
    assert (resp.body == b"") == (status == 500)


def test_429_without_retry_after(srv, get):
    srv.queue_faults("429-no-retry-after")
    resp = get()
    assert resp.status == 429 and "retry-after" not in resp.headers


def test_hang_then_answer(srv, get):
    srv.configure(hang_seconds=0.4)
    srv.queue_faults("hang")
    started = time.monotonic()
    resp = get()
    assert time.monotonic() - started >= 0.4
    assert resp.status == 200 and resp.body.startswith(b"<?xml")


def test_hang_ends_when_the_server_stops(dataset):
    server = SandboxServer(dataset=dataset).start()
    server.queue_faults("hang")  # 30 s by default
    errors = []

    def client():
        try:
            fetch(server.url, PAGE)
        except (http.client.HTTPException, OSError) as err:
            errors.append(err)

    thread = threading.Thread(target=client)
    thread.start()
    wait_for(lambda: server.stats()["in_flight"] == 1)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 3
    thread.join(5)
    assert not thread.is_alive() and len(errors) == 1  # no answer, just a close


def test_truncate_keeps_the_full_content_length(srv):
    srv.queue_faults("truncate")
    url = urlsplit(srv.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.request("GET", url.path + PAGE)
    resp = conn.getresponse()
    announced = int(resp.getheader("Content-Length"))
    with pytest.raises(http.client.IncompleteRead) as caught:
        resp.read()
    conn.close()
    assert len(caught.value.partial) == announced // 2 > 0


def test_malformed_xml_and_json(srv, get):
    good = get()
    srv.queue_faults("malformed")
    bad = get()
    assert (
        bad.status == 200 and good.body.startswith(bad.body) and bad.body != good.body
    )
    ET.fromstring(good.body)  # seed 3 page 1 is plain ASCII: well-formed
    with pytest.raises(ET.ParseError):
        ET.fromstring(bad.body)
    srv.queue_faults("malformed")
    with pytest.raises(json.JSONDecodeError):
        json.loads(get(PAGE + "&format=json").body)


def test_empty_and_html_pages(srv, get):
    srv.queue_faults("empty", "html")
    empty, html = get(), get()
    assert (empty.status, empty.body) == (200, b"")
    assert html.status == 200 and html.headers["content-type"] == "text/html"
    assert html.body.lstrip().lower().startswith(b"<!doctype html>")


def test_reset_closes_without_an_answer(srv, get):
    srv.queue_faults("reset")
    with pytest.raises(ConnectionError):  # RST, or EOF before any status line
        get()
    assert get().status == 200


def test_xxe_declares_an_external_entity_used_in_a_value(srv, get):
    srv.queue_faults("xxe")
    body = get().body
    assert b'<!ENTITY xxe SYSTEM "file:///etc/passwd">' in body
    assert b"<n_pemohon>&xxe;</n_pemohon>" in body
    seen = []
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.ExternalEntityRefHandler = (
        lambda ctx, base, sysid, pubid: seen.append(sysid) or 1
    )
    parser.Parse(body, True)  # well-formed apart from the entity trick
    assert seen == ["file:///etc/passwd"]


def test_bomb_declares_a_billion_laughs(srv, get):
    srv.queue_faults("bomb")
    body = get().body.decode()
    entities = dict(re.findall(r'<!ENTITY (\w+) "([^"]*)">', body))

    @functools.cache  # the expansion is 10**9 long: count it, never walk it
    def size(name):
        value = entities[name]
        refs = re.findall(r"&(\w+);", value)
        return len(re.sub(r"&\w+;", "", value)) + sum(size(r) for r in refs)

    assert "<n_pemohon>&lol9;</n_pemohon>" in body
    assert size("lol9") >= 10**9


@pytest.mark.parametrize("fmt", ["xml", "json"])
def test_oversized_body_is_streamed(srv, fmt):
    srv.queue_faults("oversized")
    url = urlsplit(srv.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    tracemalloc.start()
    try:
        conn.request("GET", f"{url.path}{PAGE}&format={fmt}")
        resp = conn.getresponse()
        announced = int(resp.getheader("Content-Length"))
        first = resp.read(1 << 16)
        total, last = len(first), b""
        while chunk := resp.read(1 << 20):
            total += len(chunk)
            last = chunk[-64:]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        conn.close()
    assert total == announced >= OVERSIZED_BYTES
    assert peak < 16 * 1024 * 1024  # neither side held the 64 MiB
    if fmt == "xml":
        assert first.startswith(b'<?xml version="1.0" encoding="utf-8"?>\n<xml><item>')
        assert last.endswith(b"</item></xml>\n")
    else:
        assert first.startswith(b'[{"pendaftaran_id":"') and last.endswith(b"}]")


def test_json_object_instead_of_a_list(srv, get):
    srv.queue_faults("json-object")
    payload = json.loads(get().body)
    assert isinstance(payload, dict) and list(payload) == ["1", "2", "3", "4", "5"]
    assert payload["1"] == srv.dataset.listed_rows()[0]


def test_repeat_page_ignores_the_offset(srv, get):
    first = get("/listpermohonanterbit?limit=10&offset=0&format=json")
    srv.queue_faults("repeat-page")
    repeated = get("/listpermohonanterbit?limit=10&offset=20&format=json")
    honest = get("/listpermohonanterbit?limit=10&offset=20&format=json")
    assert repeated.body == first.body != honest.body


def test_xml_fault_ignores_the_format_asked(srv, get):
    srv.queue_faults("xml")
    forced = get(PAGE + "&format=json")
    assert forced.headers["content-type"] == "application/xml"
    assert forced.body == get(PAGE).body  # the server's default XML page


def test_malformed_xml_fault_breaks_an_xml_answer(srv, get):
    srv.queue_faults("malformed-xml")
    bad = get(PAGE + "&format=json")
    assert bad.headers["content-type"] == "application/xml"
    assert get(PAGE).body.startswith(bad.body) and b"</xml>" not in bad.body


def test_json_list_fault_turns_objects_into_lists(srv, get):
    srv.queue_faults("json-list", "json-list")
    rows = json.loads(get().body)  # JSON even though XML was asked
    first = srv.dataset.listed_rows()[0]
    assert rows[0] == list(first.values())
    # The 404 end marker: a list where the client expects an error object.
    past = get("/listpermohonanterbit?limit=5&offset=999999&format=json")
    assert past.status == 404 and json.loads(past.body) == ["Tidak ada data.."]


def test_missing_fields_fault_keeps_only_the_key(srv, get):
    srv.queue_faults("missing-fields")
    rows = json.loads(get(PAGE + "&format=json").body)
    expected = [r["pendaftaran_id"] for r in srv.dataset.listed_rows()[:5]]
    assert rows == [{"pendaftaran_id": pid} for pid in expected]


def test_impossible_date_fault_rewrites_every_date(srv, get):
    permit = next(
        p for p in srv.dataset.permits if p.answers_cekperizinan and p.no_surat
    )
    path = f"/cekperizinan?format=json&no_izin={quote(permit.no_izin)}"
    srv.queue_faults("impossible-date")
    (item, *_rest) = json.loads(get(path).body)
    for key in ("d_terima_berkas", "d_berlaku_izin", "tgl_surat", "d_tgl_berdiri"):
        assert item[key] == "2023-02-30"
    assert item["no_surat"] == permit.no_surat  # nothing else changes
    # The list has no date unless the future API is on; then it has one.
    srv.configure(future_api=True)
    srv.queue_faults("impossible-date")
    rows = json.loads(get(PAGE + "&format=json").body)
    assert {row["d_berlaku_izin"] for row in rows} == {"2023-02-30"}


def test_duplicate_ids_fault_pairs_permits_under_one_id(srv, get):
    srv.queue_faults("duplicate-ids")
    rows = json.loads(get("/listpermohonanterbit?limit=6&offset=0&format=json").body)
    honest = srv.dataset.listed_rows()[:6]
    assert [r["pendaftaran_id"] for r in rows] == [
        honest[n - n % 2]["pendaftaran_id"] for n in range(6)
    ]
    assert [r["no_surat"] for r in rows] == [r["no_surat"] for r in honest]


def test_content_faults_leave_404_and_empty_answers_alone(srv, get):
    for fault in sorted(CONTENT_FAULTS - {"json-list"}):
        srv.queue_faults(fault)
        past = get("/listpermohonanterbit?limit=5&offset=999999&format=json")
        assert (past.status, json.loads(past.body)) == (
            404,
            {"error": "Tidak ada data.."},
        )
        srv.queue_faults(fault)
        assert get("/listpermohonanterbit?format=json") == (404, ANY, b"")


def test_json_carries_a_nul_escaped(srv, get):
    srv.queue_faults("nul-bytes")
    body = get(PAGE + "&format=json").body
    assert b"\\u0000" in body and b"\x00" not in body
    honest = srv.dataset.listed_rows()[:5]
    assert [r["n_pemohon"] for r in json.loads(body)] == [
        with_nul(r["n_pemohon"]) for r in honest
    ]


def test_cekperizinan_answer_with_long_values(srv, get):
    permit = next(
        p for p in srv.dataset.permits if p.answers_cekperizinan and p.n_perusahaan
    )
    path = f"/cekperizinan?format=json&no_izin={quote(permit.no_izin)}"
    srv.queue_faults("long-values")
    (item, *_rest) = json.loads(get(path).body)
    assert item["n_perusahaan"] == multibyte_text()
    assert item["a_pemohon"] == long_text(permit.items()[0]["a_pemohon"])
    assert item["no_surat"] == permit.no_surat


def test_extra_rows_ignores_the_limit(srv, get):
    srv.queue_faults("extra-rows")
    rows = json.loads(get("/listpermohonanterbit?limit=5&offset=10&format=json").body)
    assert len(rows) == 5 * EXTRA_ROWS_FACTOR == 15
    assert rows == srv.dataset.listed_rows()[10:25]
    srv.queue_faults("extra-rows")
    assert get("/listpermohonanterbit?limit=5&offset=99999").status == 404


def test_same_id_puts_the_page_under_one_id(srv, get):
    srv.queue_faults("same-id")
    rows = json.loads(get(PAGE + "&format=json").body)
    honest = srv.dataset.listed_rows()[:5]
    assert {r["pendaftaran_id"] for r in rows} == {honest[0]["pendaftaran_id"]}
    assert [r["no_surat"] for r in rows] == [r["no_surat"] for r in honest]


def test_trickle_sends_the_whole_plain_body_when_unbounded(srv, get):
    srv.configure(trickle_interval=0.0, trickle_bytes=1_000_000)
    normal = get()
    srv.queue_faults("trickle")
    slow = get(headers={"Accept-Encoding": "gzip"})
    assert slow.status == 200 and slow.body == normal.body  # never gzipped
    assert "content-encoding" not in slow.headers
    assert slow.headers["connection"] == "close"


def test_trickle_hangs_up_after_trickle_bytes(srv):
    srv.configure(trickle_interval=0.0, trickle_bytes=10)
    srv.queue_faults("trickle")
    url = urlsplit(srv.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        conn.request("GET", url.path + PAGE)
        resp = conn.getresponse()
        announced = int(resp.getheader("Content-Length"))
        with pytest.raises(http.client.IncompleteRead) as caught:
            resp.read()
    finally:
        conn.close()
    assert len(caught.value.partial) == 10 < announced


def test_trickle_headers_come_at_once_and_stop_ends_it(dataset):
    server = SandboxServer(dataset=dataset).start()
    server.configure(trickle_interval=30.0)  # one byte per 30 s
    server.queue_faults("trickle")
    headers_read = threading.Event()
    outcome = []

    def client():
        url = urlsplit(server.url)
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=20)
        try:
            conn.request("GET", url.path + PAGE)
            resp = conn.getresponse()
            headers_read.set()
            outcome.append(resp.read())
        except (http.client.HTTPException, OSError) as err:
            outcome.append(err)
        finally:
            conn.close()

    thread = threading.Thread(target=client)
    thread.start()
    try:
        assert headers_read.wait(10), "the headers did not come at once"
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 3  # a bound, not a speed claim
    finally:
        server.stop()
        thread.join(10)
    assert not thread.is_alive()
    assert isinstance(outcome[0], http.client.IncompleteRead)
    assert outcome[0].partial == b""


def test_unknown_fault_is_refused(srv):
    with pytest.raises(ValueError):
        srv.queue_faults("gremlins")
    with pytest.raises(ValueError):
        srv.queue_faults(42)


# -- random fault knobs --------------------------------------------------------


def test_error_rate_uses_error_statuses(srv, get):
    srv.configure(error_rate=1.0, error_statuses=(502,))
    assert {get().status for _ in range(5)} == {502}


def test_throttle_rate_answers_429_with_retry_after(srv, get):
    srv.configure(throttle_rate=1.0, retry_after=3)
    resp = get()
    assert resp.status == 429 and resp.headers["retry-after"] == "3"


def test_truncate_malformed_and_hang_rates(srv, get):
    srv.configure(truncate_rate=1.0)
    with pytest.raises(http.client.IncompleteRead):
        get()
    srv.configure(truncate_rate=0.0, malformed_rate=1.0)
    with pytest.raises(ET.ParseError):
        ET.fromstring(get().body)
    srv.configure(malformed_rate=0.0, hang_rate=1.0, hang_seconds=0.3)
    started = time.monotonic()
    assert get().status == 200
    assert time.monotonic() - started >= 0.3


def test_rates_are_shares_reproducible_for_a_seed():
    def run(seed):
        plan = FaultPlan(seed=seed)
        plan.configure(error_rate=0.3, throttle_rate=0.2, truncate_rate=0.1)
        return [plan.decide().fault for _ in range(4000)]

    faults = run(5)
    assert faults == run(5) and faults != run(6)
    errors = sum(f in (500, 502, 503) for f in faults) / len(faults)
    throttled = faults.count(429) / len(faults)
    truncated = faults.count("truncate") / len(faults)
    assert abs(errors - 0.3) < 0.04 and abs(throttled - 0.2) < 0.04
    assert abs(truncated - 0.1) < 0.03 and faults.count(None) > 1000


def test_fault_seed_reproducible_over_http(dataset):
    def statuses():
        with SandboxServer(dataset=dataset, seed=9) as server:
            server.configure(error_rate=0.5)
            return [fetch(server.url, PAGE).status for _ in range(24)]

    first = statuses()
    assert first == statuses() and {200, 500, 502, 503} & set(first) != {200}


def test_jitter_stays_around_the_latency():
    plan = FaultPlan(seed=1)
    plan.configure(latency=0.2, jitter=0.1)
    delays = [plan.decide().delay for _ in range(500)]
    assert all(0.1 <= d <= 0.3 for d in delays) and len(set(delays)) > 400
    plan.configure(latency=0.05, jitter=0.2)
    delays = [plan.decide().delay for _ in range(500)]
    assert min(delays) == 0.0 and max(delays) > 0.2


def test_latency_sleeps_overlap(srv):
    srv.configure(latency=0.3)
    started = time.monotonic()
    with ThreadPoolExecutor(10) as pool:
        statuses = list(pool.map(lambda _: fetch(srv.url, PAGE).status, range(10)))
    elapsed = time.monotonic() - started
    assert statuses == [200] * 10
    assert 0.3 <= elapsed < 1.5, elapsed  # in series it would be 3 s


def test_throttle_above_rps_enforces_a_limit(srv, get):
    srv.configure(throttle_above_rps=3, retry_after=2)
    answers = [get() for _ in range(6)]  # a few ms apart, inside one second
    assert [a.status for a in answers[:3]] == [200, 200, 200]
    assert [a.status for a in answers[3:]] == [429, 429, 429]
    assert answers[3].headers["retry-after"] == "2"


def test_throttle_window_with_a_clock():
    now = [0.0]
    plan = FaultPlan(clock=lambda: now[0])
    plan.configure(throttle_above_rps=2)
    seen = []
    for t in (0.0, 0.3, 0.6, 0.99, 1.3, 1.61, 3.0):
        now[0] = t
        seen.append(plan.decide().fault)
    # Refused requests count too: a client that keeps pushing stays refused.
    assert seen == [None, None, 429, 429, 429, 429, None]


@pytest.mark.parametrize(
    "knobs",
    [
        {"bogus": 1},
        {"error_rate": 1.5},
        {"latency": -1},
        {"error_rate": 0.7, "throttle_rate": 0.5},
        {"error_statuses": [700]},
        {"error_statuses": []},
        {"future_api": "yes"},
        {"retry_after": 1.5},
        {"jitter": "much"},
    ],
)
def test_configure_rejects_bad_knobs_atomically(srv, knobs):
    before = srv.config()
    with pytest.raises(ValueError):
        srv.configure(**{"retry_after": 7, **knobs})
    assert srv.config() == before


# -- statistics ------------------------------------------------------------------


def test_stats_count_api_requests_only(srv, get):
    get("/jumlahPerizinan")
    get("/JUMLAHPERIZINAN.json")
    get("/listpermohonanterbit?limit=0&offset=0")
    control(srv, "stats")
    stats = srv.stats()
    assert stats["requests"] == 3
    assert stats["by_endpoint"] == {"jumlahperizinan": 2, "listpermohonanterbit": 1}
    assert stats["by_status"] == {200: 2, 404: 1}
    assert stats["in_flight"] == 0 and stats["peak_concurrency"] >= 1
    assert stats["first_request_at"] <= stats["last_request_at"] <= time.monotonic()


def test_stats_reset(srv, get):
    get()
    srv.reset_stats()
    stats = srv.stats()
    assert stats["requests"] == 0 and stats["by_status"] == {}
    assert stats["first_request_at"] is None and stats["peak_rate"] == 0


def test_peak_rate_over_http(srv, get):
    for _ in range(5):
        get("/jumlahPerizinan")
    assert srv.stats()["peak_rate"] == 5


def test_rate_window_is_half_open_and_bounded():
    window = RateWindow(1.0)
    counts = [window.add(t) for t in (0.0, 0.5, 0.99, 1.0, 1.2, 1.49, 5.0)]
    assert counts == [1, 2, 3, 3, 4, 5, 1]  # [0.5, 1.5) holds 5 arrivals
    assert window.peak == 5
    assert len(window._times) == 1  # only the last second is kept
    edge = RateWindow(1.0)
    assert [edge.add(t) for t in (0.0, 1.0)] == [1, 1]


def test_peak_concurrency(srv):
    srv.configure(latency=0.6)
    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(fetch, srv.url, PAGE) for _ in range(6)]
        wait_for(lambda: srv.stats()["in_flight"] == 6)
        assert [f.result().status for f in futures] == [200] * 6
    stats = srv.stats()
    assert stats["peak_concurrency"] == 6 and stats["in_flight"] == 0


def test_faults_are_counted(srv, get):
    srv.queue_faults(503, "empty")
    get(), get(), get()
    stats = srv.stats()
    assert stats["by_fault"] == {"503": 1, "empty": 1}
    assert stats["by_status"] == {503: 1, 200: 2}


def test_quiet_unless_verbose(srv, get, capfd):
    srv.queue_faults("reset", "truncate", 500)
    for _ in range(4):
        try:
            get()
        except (http.client.HTTPException, OSError):
            pass
    get("/no/such/path")
    out, err = capfd.readouterr()
    assert out == "" and err == ""


# -- control endpoints -----------------------------------------------------------


def test_control_stats_and_summary(srv, get):
    get("/jumlahPerizinan")
    status, stats = control(srv, "stats")
    assert status == 200 and stats["requests"] == 1 and stats["by_status"] == {"200": 1}
    status, summary = control(srv, "dataset/summary")
    assert status == 200 and summary == srv.dataset.summary()
    for key in ("permits", "permit_types", "listed", "without_company"):
        assert key in summary
    for key in ("with_duplicates", "zero_expiry", "null_expiry"):
        assert key in summary


def test_control_configure_faults_and_reset(srv, get):
    status, config = control(
        srv, "configure", {"error_rate": 1, "error_statuses": [503]}
    )
    assert status == 200 and config["error_statuses"] == [503]
    assert get().status == 503
    assert control(srv, "configure", {"nope": 1})[0] == 400
    control(srv, "configure", {"error_rate": 0})
    status, body = control(srv, "faults", ["empty", 502])
    assert status == 200 and body["pending"] == ["empty", 502]
    assert get().body == b""
    assert control(srv, "faults", ["gremlins"])[0] == 400
    assert control(srv, "faults", {"not": "a list"})[0] == 400
    status, _ = control(srv, "reset", {})
    assert status == 200 and srv.pending_faults() == []
    assert srv.stats()["requests"] == 0
    assert get().status == 200


def test_control_unknown_or_wrong_verb(srv):
    assert fetch(srv.root_url, "/_sandbox/nothing").status == 404
    assert fetch(srv.root_url, "/_sandbox/configure").status == 405
    assert srv.stats()["requests"] == 0


# -- HTTP plumbing and lifecycle -----------------------------------------------


def test_keep_alive_reuses_one_connection(srv):
    url = urlsplit(srv.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        conn.request("GET", url.path + "/jumlahPerizinan")
        first = conn.getresponse()
        first.read()
        sock = conn.sock
        assert not first.will_close and first.getheader("Connection") is None
        conn.request("GET", url.path + PAGE, headers={"Accept-Encoding": "gzip"})
        second = conn.getresponse()
        body = gzip.decompress(second.read())
        assert conn.sock is sock and body.startswith(b"<?xml")
    finally:
        conn.close()


def test_start_stop_and_context_manager(dataset):
    server = SandboxServer(dataset=dataset)
    assert server.start() is server and server.running
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/backoffice/api", server.url)
    port = server.port
    assert fetch(server.url, "/jumlahPerizinan").status == 200
    server.stop()
    server.stop()  # twice is fine
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    with SandboxServer(dataset=dataset) as again:
        assert fetch(again.url, "/jumlahPerizinan").status == 200
    assert not again.running


def test_start_with_ten_thousand_permits():
    # How fast it starts is the benchmarks' business (a wall-clock bound here
    # failed on a loaded machine).
    with SandboxServer(permits=10_000, seed=1) as server:
        assert fetch(server.url, "/jumlahPerizinan").status == 200
    assert len(server.dataset.permits) == 10_000


def test_cli_serves_until_sigterm():
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--port", "0", "--permits", "200",
         "--seed", "4", "--today", "2025-06-15", "--error-rate", "1",
         "--error-statuses", "502"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = proc.stdout.readline()
        match = re.fullmatch(
            r"sandbox: serving 200 permits at (http://127\.0\.0\.1:\d+/backoffice/api)\n",
            line,
        )
        assert match, line
        assert fetch(match.group(1), PAGE).status == 502
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert proc.stderr.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_cli_stops_on_sigint():
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--port", "0", "--permits", "50"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout.readline().startswith("sandbox: serving 50 permits at ")
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_cli_refuses_a_non_loopback_host():
    done = subprocess.run(
        [sys.executable, "-m", "sandbox", "--host", "0.0.0.0", "--port", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert done.returncode == 2
    assert "loopback" in done.stderr and done.stdout == ""
