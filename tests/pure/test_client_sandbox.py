"""SicantikApi against the real sandbox over loopback HTTP: endpoints and faults.

Every test starts from a clean sandbox (default knobs, no queued fault, zeroed
statistics) and counts what the server saw, so "not retried" and "never sent"
are measured at the server, not guessed from the client.
"""

import base64
import gzip
import logging
import time
import tracemalloc
from collections import Counter
from datetime import date

import pytest
import requests

from sandbox import Dataset, SandboxServer
from tools.decoders import decode_payload
from tools.normalise import normalise_issued_rows
from tools.sicantik_api import SicantikApi
from tools.sicantik_exceptions import (
    SicantikBadRequest,
    SicantikConfigError,
    SicantikConnectionError,
    SicantikDataError,
    SicantikRateLimited,
    SicantikResponseError,
    SicantikServerError,
    SicantikTimeout,
    SicantikTLSError,
)

SEED = 7
# The conftest's ``sandbox`` fixture: hangs last 5 s here.
SANDBOX_KNOBS = {"hang_seconds": 5.0}


@pytest.fixture(scope="module")
def server():
    with SandboxServer(permits=300, seed=SEED) as srv:
        yield srv


@pytest.fixture
def make_api(sandbox):
    clients = []

    def make(url=None, **kwargs):
        settings = {
            "timeout": (2, 5),
            "rate_limit": None,
            "max_retries": 3,
            "backoff_base": 0.01,
            "backoff_max": 0.02,
        }
        settings.update(kwargs)
        api = SicantikApi(url or sandbox.url, **settings)
        clients.append(api)
        return api

    yield make
    for api in clients:
        api.close()


@pytest.fixture
def api(make_api):
    return make_api()


def requests_seen(sandbox):
    return sandbox.stats()["requests"]


def permits(sandbox, predicate):
    return [p for p in sandbox.dataset.permits if p.listed and predicate(p)]


def answering(p):
    return p.answers_cekperizinan and p.no_surat.strip() != ""


# --------------------------------------------------------------------------
# Endpoints
# --------------------------------------------------------------------------


def test_count_permit_types(sandbox, api):
    assert api.count_permit_types() == len(sandbox.dataset.permit_types)
    assert sandbox.stats()["by_endpoint"] == {"jumlahperizinan": 1}


def test_list_permit_types_keeps_the_raw_name(sandbox, api):
    types = api.list_permit_types()
    served = sandbox.dataset.permit_types
    assert [t.raw_name for t in types] == [t["jenis_perizinan"] for t in served]
    assert [t.id for t in types] == [t["id"] for t in served]
    ho = next(t for t in types if "(HO)" in t.name)
    assert ho.raw_name == "IZIN GANGGUAN  USAHA (HO)"
    assert ho.name == "IZIN GANGGUAN USAHA (HO)"
    assert ho.processing_days == 7


def test_first_page_matches_the_served_rows(sandbox, api):
    page = api.list_issued_permits(50, 0)
    rows = sandbox.dataset.listed_rows()[:50]
    assert page.raw_count == 50 and not page.is_last
    assert page.next_offset == 50
    assert [p.pendaftaran_id for p in page.permits] == list(
        dict.fromkeys(r["pendaftaran_id"] for r in rows)
    )
    by_id = {p.pendaftaran_id: p for p in page.permits}
    for row in rows:
        permit = by_id[row["pendaftaran_id"]]
        if row["no_surat"]:
            assert row["no_surat"] in permit.letter_numbers  # exact, untrimmed
    assert page.has_expiry_field is False


def test_iteration_covers_the_list_and_stops_on_a_short_page(sandbox, api):
    pages = list(api.iter_issued_permits(page_size=40))
    listed = {p.pendaftaran_id for p in permits(sandbox, lambda p: True)}
    rows = len(sandbox.dataset.rows)  # 297 rows: 7 full pages and a short one
    assert sum(page.raw_count for page in pages) == rows
    assert {p.pendaftaran_id for page in pages for p in page.permits} == listed
    assert [page.offset for page in pages] == list(range(0, rows, 40))
    assert pages[-1].is_last and rows % 40
    assert requests_seen(sandbox) == len(pages)  # no request past a short page


def test_iteration_stops_on_the_404_end_marker(sandbox, api):
    rows = len(sandbox.dataset.rows)
    pages = list(api.iter_issued_permits(page_size=rows // 3, start_offset=rows % 3))
    assert len(pages) == 3 and all(not page.is_last for page in pages)
    assert requests_seen(sandbox) == 4
    assert sandbox.stats()["by_status"] == {200: 3, 404: 1}


def test_past_the_end_is_an_empty_last_page(sandbox, api):
    page = api.list_issued_permits(50, 10_000)
    assert (page.raw_count, page.permits, page.is_last) == (0, (), True)


def test_duplicate_rows_are_merged(sandbox, api):
    multi = permits(sandbox, lambda p: len(p.applicants) > 1)[0]
    pages = list(api.iter_issued_permits())
    merged = [
        p
        for page in pages
        for p in page.permits
        if p.pendaftaran_id == multi.pendaftaran_id
    ]
    assert len(merged) == 1
    assert merged[0].row_count == 2
    assert len(merged[0].applicant_names) == 2


def test_repeated_page_is_detected(sandbox, api):
    iterator = api.iter_issued_permits(page_size=20)
    first = next(iterator)
    sandbox.queue_faults("repeat-page")
    with pytest.raises(SicantikResponseError) as info:
        next(iterator)
    assert "same page" in str(info.value)
    assert info.value.retryable is False
    assert first.offset == 0


def test_repeated_page_is_detected_across_runs(sandbox, api):
    # A run stored the digest of page 0; the next run asks for offset 20.
    first = api.list_issued_permits(20, 0)
    assert first.digest and first.digest == api.list_issued_permits(20, 0).digest
    sandbox.queue_faults("repeat-page")
    with pytest.raises(SicantikResponseError, match="same page"):
        next(api.iter_issued_permits(20, 20, previous_digest=first.digest))
    # Without the fault the page at offset 20 is another page.
    page = next(api.iter_issued_permits(20, 20, previous_digest=first.digest))
    assert page.offset == 20 and page.digest != first.digest


def test_a_page_without_one_usable_row_is_an_error(sandbox, api):
    """Skipping every row would move the cursor past permits never stored."""
    sandbox.queue_faults("json-list")
    with pytest.raises(SicantikResponseError, match="none of the 20 rows") as info:
        api.list_issued_permits(20, 0)
    assert "row is not an object" in str(info.value)
    assert info.value.failure_type == "bad_response"
    assert requests_seen(sandbox) == 1  # decoded fine: not retried in-process


def test_rows_missing_fields_keep_their_key_only(sandbox, api):
    sandbox.queue_faults("missing-fields")
    page = api.list_issued_permits(20, 0)
    assert page.permits and not page.skipped
    assert {(p.no_surat, p.permit_type, p.applicant_name) for p in page.permits} == {
        (None, None, None)
    }


def test_a_page_with_some_bad_rows_skips_them(sandbox, api):
    sandbox.queue_faults("duplicate-ids")
    page = api.list_issued_permits(20, 0)
    # Each row keeps its own letter: a registration's second letter.
    ids = Counter(p.pendaftaran_id for p in page.permits)
    assert page.raw_count == len(page.permits) == 20
    assert len(ids) <= 10 and 2 in ids.values()


def test_max_pages_cap(sandbox, make_api):
    api = make_api(max_pages=2)
    with pytest.raises(SicantikResponseError, match="after 2 pages"):
        list(api.iter_issued_permits(page_size=10))
    assert requests_seen(sandbox) == 2


def test_details_of_a_permit(sandbox, api):
    permit = permits(sandbox, lambda p: answering(p) and len(p.applicants) == 1)[0]
    details = api.get_permit_details(permit.no_surat, permit.pendaftaran_id)
    assert details.pendaftaran_id == permit.pendaftaran_id
    assert details.no_surat == permit.no_surat
    assert details.expiry_raw == permit.d_berlaku_izin
    assert details.company_name == " ".join(permit.n_perusahaan.split())
    assert details.kelurahan == permit.n_kelurahan


def test_details_with_several_applicants_are_reduced(sandbox, api):
    permit = permits(sandbox, lambda p: answering(p) and len(p.applicants) > 1)[0]
    details = api.get_permit_details(permit.no_surat, permit.pendaftaran_id)
    assert details.row_count == 2
    assert len(details.applicant_names) == 2


def test_zero_and_null_expiry(sandbox, api):
    zero = permits(sandbox, lambda p: answering(p) and p.d_berlaku_izin == "0000-00-00")
    null = permits(sandbox, lambda p: answering(p) and p.d_berlaku_izin is None)
    details = api.get_permit_details(zero[0].no_surat)
    assert details.expiry_date is None and details.expiry_unlimited
    details = api.get_permit_details(null[0].no_surat)
    assert details.expiry_date is None and not details.expiry_unlimited


def test_permits_without_company_or_village_give_none(sandbox, api):
    no_company = permits(sandbox, lambda p: not p.has_company and p.no_surat.strip())
    no_village = permits(sandbox, lambda p: p.has_company and not p.has_village)
    for permit in (no_company[0], no_village[0]):
        assert api.get_permit_details(permit.no_surat) is None
    assert sandbox.stats()["by_status"] == {404: 2}
    assert api.stats.retries == 0


def test_trailing_and_double_space_numbers_are_found(sandbox, api):
    odd = permits(
        sandbox, lambda p: answering(p) and p.no_surat != " ".join(p.no_surat.split())
    )
    assert odd, "the dataset has awkward numbers"
    for permit in odd:
        details = api.get_permit_details(permit.no_surat)
        assert details is not None, permit.no_surat
        assert details.no_surat == permit.no_surat
    # The trimmed number is another permit number: not found.
    assert api.get_permit_details(odd[0].no_surat.strip() + "x") is None


def test_empty_number_is_never_sent(sandbox, api):
    empty = [p for p in sandbox.dataset.permits if not p.no_surat.strip()]
    assert empty, "the dataset has permits without a number"
    with pytest.raises(SicantikDataError):
        api.get_permit_details(empty[0].no_surat, empty[0].pendaftaran_id)
    assert requests_seen(sandbox) == 0


def test_details_filtered_by_registration(sandbox, api):
    permit = permits(sandbox, answering)[0]
    assert api.get_permit_details(permit.no_surat, "0000000000000000") is None


def test_future_api_list_carries_expiry(sandbox, api):
    sandbox.configure(future_api=True)
    page = api.list_issued_permits(50, 0)
    assert page.has_expiry_field
    by_id = sandbox.dataset.by_pendaftaran_id
    for permit in page.permits:
        expected = by_id[permit.pendaftaran_id].d_berlaku_izin
        assert permit.has_expiry_field
        assert permit.expiry_raw == expected
        assert permit.expiry_unlimited == (expected == "0000-00-00")


# --------------------------------------------------------------------------
# Status conventions
# --------------------------------------------------------------------------


def test_404_with_empty_body_is_a_bad_request_not_retried(sandbox, api):
    with pytest.raises(SicantikBadRequest) as info:
        api._request("listpermohonanterbit", {"limit": 10})  # offset missing
    assert info.value.retryable is False and info.value.status == 404
    assert requests_seen(sandbox) == 1


def test_unknown_method_is_a_config_error(sandbox, api):
    with pytest.raises(SicantikConfigError, match="does not know the method"):
        api._request("listpermohonanterbitx")
    assert requests_seen(sandbox) == 1


def test_wrong_base_url_is_a_config_error(sandbox, make_api):
    api = make_api(url=sandbox.root_url + "/backoffice")
    with pytest.raises(SicantikConfigError, match="check the URL"):
        api.count_permit_types()


def test_500_with_empty_body_is_a_server_error_after_retries(sandbox, api):
    with pytest.raises(SicantikServerError) as info:
        api._request("listpermohonanterbit", {"limit": 1, "offset": -1})
    assert "empty answer" in str(info.value)
    assert info.value.attempts == 4
    assert requests_seen(sandbox) == 4


# --------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------


def test_5xx_are_retried_then_succeed(sandbox, make_api):
    sleeps = []
    api = make_api(sleep=sleeps.append, backoff_base=0.5, backoff_max=30)
    sandbox.queue_faults(500, 502, 503)
    assert api.count_permit_types() == len(sandbox.dataset.permit_types)
    stats = sandbox.stats()
    assert stats["requests"] == 4
    assert stats["by_status"] == {500: 1, 502: 1, 503: 1, 200: 1}
    assert api.stats.retries == 3
    # Full jitter on the first two; the 503 carries Retry-After: 1 (honoured).
    assert 0 <= sleeps[0] <= 0.5 and 0 <= sleeps[1] <= 1.0
    assert sleeps[2] == 1.0


def test_retries_exhausted_give_a_typed_retryable_error(sandbox, api):
    sandbox.queue_faults(502, 502, 502, 502, 502)
    with pytest.raises(SicantikServerError) as info:
        api.count_permit_types()
    err = info.value
    assert (err.failure_type, err.retryable, err.scope) == ("server", True, "system")
    assert err.attempts == 4 and "after 4 attempts" in str(err)
    assert requests_seen(sandbox) == 4
    assert sandbox.pending_faults() == [502]


def test_429_retry_after_is_honoured(sandbox, make_api):
    api = make_api(backoff_base=0.0)
    sandbox.queue_faults(429)  # Retry-After: 1
    started = time.monotonic()
    api.count_permit_types()
    stats = sandbox.stats()
    assert stats["requests"] == 2 and stats["by_status"] == {429: 1, 200: 1}
    gap = stats["last_request_at"] - stats["first_request_at"]
    assert 1.0 <= gap < 3.0
    assert time.monotonic() - started >= 1.0


def test_429_retry_after_beyond_the_cap_goes_back_to_the_scheduler(sandbox, make_api):
    api = make_api(retry_after_cap=60)
    sandbox.configure(retry_after=120)
    sandbox.queue_faults(429)
    with pytest.raises(SicantikRateLimited) as info:
        api.count_permit_types()
    assert info.value.retry_after == 120
    assert info.value.retryable is True
    assert requests_seen(sandbox) == 1


def test_503_retry_after_beyond_the_cap_is_a_server_error_with_a_date(
    sandbox, make_api
):
    api = make_api(retry_after_cap=5)
    sandbox.configure(retry_after=3600)
    sandbox.queue_faults(503)
    with pytest.raises(SicantikServerError) as info:
        api.count_permit_types()
    assert info.value.retry_after == 3600
    assert requests_seen(sandbox) == 1


def test_429_without_retry_after_uses_the_backoff(sandbox, make_api):
    sleeps = []
    api = make_api(sleep=sleeps.append, backoff_base=0.25)
    sandbox.queue_faults("429-no-retry-after", "429-no-retry-after")
    api.count_permit_types()
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 0.25 and 0 <= sleeps[1] <= 0.5
    assert requests_seen(sandbox) == 3


def test_throttled_until_exhausted(sandbox, api):
    sandbox.queue_faults(*["429-no-retry-after"] * 4)
    with pytest.raises(SicantikRateLimited) as info:
        api.count_permit_types()
    assert info.value.retry_after is None and info.value.attempts == 4


def test_hang_is_a_timeout_then_retried(sandbox, make_api):
    api = make_api(timeout=(2, 0.3))
    sandbox.queue_faults("hang")
    started = time.monotonic()
    assert api.count_permit_types() > 0
    assert time.monotonic() - started < 3
    assert api.stats.retries == 1
    sandbox.queue_faults("hang", "hang")
    api = make_api(timeout=(2, 0.3), max_retries=1)
    with pytest.raises(SicantikTimeout) as info:
        api.count_permit_types()
    assert info.value.failure_type == "timeout" and info.value.retryable


@pytest.mark.parametrize("fault", ["truncate", "malformed", "empty", "html"])
def test_unreadable_answers_are_retried_then_bad_response(sandbox, api, fault):
    sandbox.queue_faults(fault)
    page = api.list_issued_permits(20, 0)
    assert page.raw_count == 20
    assert requests_seen(sandbox) == 2
    sandbox.reset_stats()
    sandbox.queue_faults(*[fault] * 4)
    with pytest.raises(SicantikResponseError) as info:
        api.list_issued_permits(20, 0)
    assert info.value.failure_type == "bad_response"
    assert info.value.retryable is True and info.value.attempts == 4
    assert requests_seen(sandbox) == 4


def test_truncated_answer_without_gzip_is_detected(sandbox, make_api):
    # No gzip trailer to miss here: the Content-Length check catches it (urllib3
    # 1.26 does not enforce it; 2.x raises IncompleteRead, mapped the same way).
    api = make_api(max_retries=0)
    api._session.headers["Accept-Encoding"] = "identity"
    sandbox.queue_faults("truncate")
    with pytest.raises(SicantikResponseError) as info:
        api.list_issued_permits(20, 0)
    assert "truncated (received" in str(info.value)
    assert info.value.retryable is True


def test_reset_is_a_connection_error_retried(sandbox, api):
    sandbox.queue_faults("reset")
    assert api.count_permit_types() > 0
    assert api.stats.retries == 1
    sandbox.queue_faults(*["reset"] * 4)
    with pytest.raises(SicantikConnectionError) as info:
        api.count_permit_types()
    assert info.value.failure_type == "connection" and info.value.attempts == 4


@pytest.mark.parametrize("fault", ["xxe", "bomb"])
def test_entity_declarations_are_refused_without_reading_a_file(sandbox, api, fault):
    sandbox.queue_faults(fault)
    started = time.monotonic()
    with pytest.raises(SicantikResponseError) as info:
        api.list_issued_permits(5, 0)
    assert time.monotonic() - started < 2
    assert "declaration" in str(info.value)
    assert "root:" not in str(info.value)
    assert info.value.retryable is False
    assert requests_seen(sandbox) == 1


def test_oversized_answer_is_too_large_not_retried_memory_bounded(sandbox, make_api):
    api = make_api(max_response_bytes=1 << 20)
    sandbox.queue_faults("oversized")
    tracemalloc.start()
    try:
        with pytest.raises(SicantikResponseError) as info:
            api.list_issued_permits(50, 0)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.failure_type == "too_large"
    assert info.value.retryable is False
    assert requests_seen(sandbox) == 1
    assert peak < 8 << 20  # the 64 MiB answer was never held
    assert api.count_permit_types() > 0  # and the client still works


def test_json_object_is_a_bad_response(sandbox, api):
    sandbox.queue_faults("json-object")
    with pytest.raises(SicantikResponseError, match="an object where a list"):
        api.list_issued_permits(5, 0)
    assert requests_seen(sandbox) == 1


def test_random_faults_are_absorbed(sandbox, make_api):
    sandbox.configure(
        error_rate=0.1,
        throttle_rate=0.05,
        hang_rate=0.05,
        hang_seconds=2,
        truncate_rate=0.1,
        malformed_rate=0.1,
        retry_after=0,
        seed=4,
    )
    # Requests made one after another get a fixed fault sequence per seed;
    # seed 4 draws every kind of fault within these ten pages.
    api = make_api(timeout=(2, 0.3), max_retries=6)
    pages = list(api.iter_issued_permits(page_size=30))
    assert sum(page.raw_count for page in pages) == len(sandbox.dataset.rows)
    faults = sandbox.stats()["by_fault"]
    assert {"429", "hang", "truncate", "malformed"} <= set(faults)
    assert api.stats.retries == sum(faults.values())


def test_tls_against_a_plain_http_port_is_a_tls_error_not_retried(sandbox, make_api):
    api = make_api(url=sandbox.url.replace("http://", "https://"))
    with pytest.raises(SicantikTLSError) as info:
        api.count_permit_types()
    assert info.value.failure_type == "tls" and info.value.retryable is False
    assert info.value.attempts == 1


def test_connection_refused_is_retried_then_connection_error(make_api):
    with SandboxServer(permits=0) as gone:
        url = gone.url
    api = make_api(url=url, max_retries=2)
    with pytest.raises(SicantikConnectionError) as info:
        api.count_permit_types()
    assert info.value.attempts == 3
    assert api.stats.as_dict()["by_status"]["none"] == 3


# --------------------------------------------------------------------------
# Formats, compression, connection reuse
# --------------------------------------------------------------------------


def test_xml_mode_reads_entity_pages_like_json(sandbox, make_api):
    json_api = make_api()
    xml_api = make_api(response_format="xml")
    rows = len(sandbox.dataset.rows)
    json_pages = list(json_api.iter_issued_permits(page_size=100))
    xml_pages = list(xml_api.iter_issued_permits(page_size=100))
    assert [p.permits for p in xml_pages] == [p.permits for p in json_pages]
    names = {n for page in xml_pages for p in page.permits for n in p.applicant_names}
    assert any("José" in name for name in names)
    assert sum(p.raw_count for p in xml_pages) == rows


def test_raw_sandbox_xml_page_with_entities_decodes(sandbox):
    jose = permits(sandbox, lambda p: "José" in p.n_pemohon)[0]
    offset = [p.pendaftaran_id for p, _ in sandbox.dataset.rows].index(
        jose.pendaftaran_id
    )
    body = requests.get(
        f"{sandbox.url}/listpermohonanterbit",
        params={"limit": 1, "offset": offset},
        timeout=5,
    ).content
    assert b"Jos&eacute;" in body
    permits_, skipped = normalise_issued_rows(decode_payload(body))
    assert permits_[0].applicant_name == " ".join(jose.n_pemohon.split())
    assert skipped == ()


def test_odd_company_spellings_survive_xml(sandbox, make_api):
    xml_api, json_api = make_api(response_format="xml"), make_api()
    odd = permits(
        sandbox,
        lambda p: answering(p)
        and any(c in (p.n_perusahaan or "") + (p.a_perusahaan or "") for c in '‘“&"²'),
    )
    assert odd
    for permit in odd:
        from_xml = xml_api.get_permit_details(permit.no_surat)
        assert from_xml == json_api.get_permit_details(permit.no_surat)
        assert from_xml.company_name == " ".join(permit.n_perusahaan.split())


def test_gzip_is_asked_and_decoded(sandbox, api):
    page = api.list_issued_permits(100, 0)
    received = api.stats.as_dict()["bytes_received"]
    plain = requests.get(
        f"{sandbox.url}/listpermohonanterbit",
        params={"limit": 100, "offset": 0, "format": "json"},
        headers={"Accept-Encoding": "identity"},
        timeout=5,
    ).content
    assert page.raw_count == 100
    assert 0 < received < len(plain) / 2
    assert gzip.decompress(gzip.compress(plain)) == plain


def test_connections_are_reused(sandbox, api):
    for _ in range(5):
        api.count_permit_types()
    pool = api._session.get_adapter(sandbox.url).poolmanager.connection_from_url(
        sandbox.url
    )
    assert pool.num_connections == 1
    assert pool.num_requests == 5


# --------------------------------------------------------------------------
# Statistics and logging
# --------------------------------------------------------------------------


def test_statistics(sandbox, make_api):
    sandbox.configure(latency=0.05, retry_after=0)
    api = make_api(rate_limit=5)  # 206 ms apart: longer than any answer here
    sandbox.queue_faults(503)
    for _ in range(4):
        api.count_permit_types()
    api.get_permit_details("503/NOT/A/NUMBER")
    stats = api.stats.as_dict()
    assert stats["requests"] == 6 == requests_seen(sandbox)
    assert stats["by_status"] == {"2xx": 4, "3xx": 0, "4xx": 1, "5xx": 1, "none": 0}
    assert stats["by_endpoint"] == {"jumlahPerizinan": 5, "cekperizinan": 1}
    assert stats["retries"] == 1
    assert 50 <= stats["latency_p50_ms"] <= stats["latency_p95_ms"] < 2000
    assert stats["bytes_received"] > 0
    # The 503 halved the pace (adaptive pace) for the 2 s hold: the requests
    # after it are 412 ms apart instead of 206, each answered in ~50 ms, so the
    # limiter made the client wait (5 waits of up to ~360 ms).
    assert stats["slowdowns"] == 1
    assert stats["pace_lowest"] == 0.5
    assert 0.1 < stats["rate_limit_wait_s"] < 2.0


def test_logs_never_carry_the_query_string(sandbox, api, caplog):
    permit = permits(sandbox, answering)[0]
    caplog.set_level(logging.DEBUG, logger="tools.sicantik_api")
    api.get_permit_details(permit.no_surat)
    list(api.iter_issued_permits(page_size=100))
    encoded = base64.b64encode(permit.no_surat.encode()).decode()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert encoded not in text and "no_izin" not in text and "format=json" not in text
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG]
    info = [r for r in caplog.records if r.levelno == logging.INFO]
    assert any("GET cekperizinan -> 200" in r.getMessage() for r in debug)
    assert len(info) == 4  # three pages and the summary
    assert all(api.host in r.getMessage() for r in caplog.records)


def test_empty_server_gives_empty_results(make_api):
    empty = Dataset(seed=1, today=date.today(), permits=[], permit_types=[])
    with SandboxServer(dataset=empty) as srv:
        api = make_api(url=srv.url)
        assert api.list_permit_types() == []  # 404 with an empty body here
        assert list(api.iter_issued_permits()) == []  # 404 end marker at once
        assert api.count_permit_types() == 0
        assert srv.stats()["by_status"] == {404: 2, 200: 1}
