"""The HTTP core shared by both clients, over real loopback HTTP.

The deadline tests use a server that trickles its answer: each byte comes
well within the read timeout, so only the wall-clock deadline can end the
read. The server paces its bytes; the tests never sleep to wait for it.
"""

import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from loopback import TrickleServer

from tools import http_core
from tools.http_core import BodyError, BoundedBody, parse_retry_after
from tools.sicantik_api import SicantikApi
from tools.sicantik_exceptions import SicantikTimeout
from tools.whatsapp_exceptions import WhatsappUnknownOutcome
from tools.whatsapp_gateways import FonnteGateway

TRICKLE = [(0.05, b"x")] * 200  # 10 s for the whole body, a byte per 50 ms


@pytest.fixture
def server():
    srv = TrickleServer()
    yield srv
    srv.close()


def fetch(server, *, deadline, read_timeout=2.0, limit=1 << 20):
    """GET the server's answer through the core; ``(body or error, seconds)``."""
    session = http_core.make_session(accept="*/*", pool_maxsize=1)
    started = time.monotonic()
    try:
        request, kwargs = http_core.prepare(
            session, "GET", server.url + "/x", timeout=(2.0, read_timeout)
        )
        with session.send(request, **kwargs) as response:
            sink = BoundedBody(limit, response.headers.get("Content-Encoding"))
            outcome = http_core.read_body(
                response, sink, deadline=started + deadline, read_timeout=read_timeout
            )
    except BodyError as e:
        outcome = e
    finally:
        session.close()
    return outcome, time.monotonic() - started


# --------------------------------------------------------------------------
# The reader: deadline, read timeout, size, truncation
# --------------------------------------------------------------------------
@pytest.mark.parametrize("chunked", [False, True])
def test_a_trickled_body_is_cut_off_at_the_deadline(server, chunked):
    pieces = [(d, b"1\r\nx\r\n" if chunked else x) for d, x in TRICKLE]
    server.answer("HTTP/1.1 200 OK", pieces, chunked=chunked)
    error, elapsed = fetch(server, deadline=0.4, read_timeout=2.0)
    assert isinstance(error, BodyError)
    assert error.kind == BodyError.DEADLINE
    assert 0 < error.received < len(TRICKLE) * len(pieces[0][1])  # it did trickle
    assert 0.3 < elapsed < 1.5  # the whole body would take 10 s


def test_a_silence_past_the_deadline_ends_the_read_at_the_deadline(server):
    # one byte, then nothing for far longer than the deadline but within
    # the read timeout: the socket timeout is lowered to the time left
    server.answer("HTTP/1.1 200 OK", [(0, b"x"), (5, b"y")])
    error, elapsed = fetch(server, deadline=0.4, read_timeout=3.0)
    assert (error.kind, error.received, error.expected) == ("deadline", 1, 2)
    assert elapsed < 1.5


def test_a_silence_longer_than_the_read_timeout_is_a_timeout(server):
    server.answer("HTTP/1.1 200 OK", [(0, b"x"), (5, b"y")])
    error, elapsed = fetch(server, deadline=5, read_timeout=0.3)
    assert error.kind == BodyError.TIMEOUT
    assert elapsed < 1.5


@pytest.mark.parametrize("chunked", [False, True])
def test_a_slow_body_within_the_deadline_is_read_whole(server, chunked):
    data = [(0.01, b"ab")] * 5
    if chunked:
        data = [(d, b"2\r\n" + x + b"\r\n") for d, x in data] + [(0, b"0\r\n\r\n")]
    server.answer("HTTP/1.1 200 OK", data, chunked=chunked)
    body, _elapsed = fetch(server, deadline=5)
    assert body == b"ababababab"


def test_announced_size_over_the_cap_is_refused_before_reading(server):
    server.answer("HTTP/1.1 200 OK", [(0, b"x" * 100)], length=10_000_000)
    error, _elapsed = fetch(server, deadline=5, limit=1000)
    assert (error.kind, error.received, error.expected) == ("too_large", 0, 10_000_000)


def test_decoded_size_over_the_cap_is_refused(server):
    server.answer("HTTP/1.1 200 OK", [(0, b"x" * 5000)])
    error, _elapsed = fetch(server, deadline=5, limit=1000)
    assert error.kind == BodyError.TOO_LARGE


def test_a_body_shorter_than_its_content_length_is_truncated(server):
    server.answer("HTTP/1.1 200 OK", [(0, b"abc")], length=10)
    error, _elapsed = fetch(server, deadline=5)
    assert (error.kind, error.received, error.expected) == ("truncated", 3, 10)


# --------------------------------------------------------------------------
# Both clients read through it
# --------------------------------------------------------------------------
def test_sicantik_client_gives_up_on_a_trickling_server_at_its_deadline(server):
    head = "HTTP/1.1 200 OK\r\nContent-Type: application/json"
    server.answer(head, TRICKLE)
    api = SicantikApi(
        server.url + "/api",
        timeout=(2, 2),
        deadline=0.3,
        rate_limit=None,
        max_retries=1,
        backoff_base=0,
    )
    started = time.monotonic()
    with api, pytest.raises(SicantikTimeout) as info:
        api.count_permit_types()
    assert time.monotonic() - started < 2  # two attempts of 0.3 s
    assert info.value.attempts == 2 and info.value.retryable
    assert "still sending the answer of jumlahPerizinan after 0.3 s" in str(info.value)
    assert api.stats.as_dict()["by_status"]["2xx"] == 2


def test_whatsapp_send_to_a_trickling_gateway_is_an_unknown_outcome(server):
    server.answer("HTTP/1.1 200 OK\r\nContent-Type: application/json", TRICKLE)
    gateway = FonnteGateway("token-1234", base_url=server.url, deadline=0.3)
    started = time.monotonic()
    with gateway, pytest.raises(WhatsappUnknownOutcome) as info:
        gateway.send("+6281234567890", "Yth. Budi")
    assert time.monotonic() - started < 1.5
    assert info.value.retryable is False  # the gateway may have taken it


def test_deadline_defaults_to_connect_plus_twice_read_and_is_checked():
    assert SicantikApi("https://x.test/api", timeout=(5, 30)).deadline == 65
    assert FonnteGateway("token-1234", timeout=(1, 2)).deadline == 5
    assert http_core.attempt_deadline((1.0, 2.0), 7) == 7.0
    for bad in (0, -1, float("inf"), float("nan"), "10", True):
        with pytest.raises(ValueError):
            http_core.attempt_deadline((1.0, 2.0), bad)


# --------------------------------------------------------------------------
# Settings checks
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url, code",
    [
        (None, "empty"),
        ("  ", "empty"),
        ("https://x.test:99999/", "invalid"),
        ("ftp://x.test/", "scheme"),
        ("https://user:pw@x.test/", "credentials"),
        ("https:///path", "no_host"),
        ("https://x.test/#top", "fragment"),
        ("https://x.test/?key=1", "query"),
    ],
)
def test_base_url_problems_have_a_code_and_never_repeat_the_url(url, code):
    with pytest.raises(http_core.UrlProblem) as info:
        http_core.check_base_url(url)
    assert info.value.code == code
    assert "pw" not in str(info.value) and "key" not in str(info.value)


def test_base_url_is_cleaned_or_kept_whole_for_secret_urls():
    assert http_core.check_base_url("HTTPS://X.test/api/") == (
        "https://X.test/api",
        "X.test",
    )
    url = "https://hooks.test/T0KEN/?sig=1"
    assert http_core.check_base_url(url, keep_query=True, keep_path=True) == (
        url,
        "hooks.test",
    )


def test_timeouts():
    assert http_core.check_timeout(3) == (3.0, 3.0)
    assert http_core.check_timeout([1, 2]) == (1.0, 2.0)
    for bad in ("soon", (1, 2, 3), (0, 5), (1, float("nan"))):
        with pytest.raises(ValueError):
            http_core.check_timeout(bad)


# --------------------------------------------------------------------------
# Retry-After (moved here from both clients' tests)
# --------------------------------------------------------------------------
def test_parse_retry_after():
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 2 ") == 2.0
    assert parse_retry_after("0") == 0.0
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(later, now=now) == pytest.approx(90)
    earlier = format_datetime(now - timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(earlier, now=now) == 0.0
    for junk in (None, "", "soon", "-5", "Fri, 99 Foo 2025"):
        assert parse_retry_after(junk, now=now) is None


def test_parse_retry_after_http_dates():
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after("Wed, 01 Jan 2025 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Wed, 01 Jan 2025 11:00:00 GMT", now=now) == 0.0
    # a date without a zone is read as UTC
    assert parse_retry_after("Wed, 01 Jan 2025 12:01:00 -0000", now=now) == 60.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
