"""Total deadlines and the call deadline, over real loopback HTTP(S).

The servers trickle their status line, headers or chunk sizes, each byte well
within the read timeout, or accept and never answer: only the deadline
watchdog of ``http_core.Guard`` can end such a call. The servers pace their
bytes; nothing here sleeps to wait for anything. Every trickle is bounded, so
a call that the watchdog did not cut still ends (and fails its time check).
"""

import threading
import time

import pytest
from loopback import TrickleServer, self_signed_tls

from tools import http_core
from tools.const import DEADLINE_MARGIN
from tools.http_core import BodyError, BoundedBody
from tools.sicantik_api import SicantikApi
from tools.sicantik_exceptions import SicantikServerError, SicantikTimeout
from tools.whatsapp_exceptions import WhatsappRetryableError, WhatsappUnknownOutcome
from tools.whatsapp_gateways import FonnteGateway, WahaGateway, WebhookGateway

# 4 s of headers, a byte every 20 ms: far beyond every deadline below
TRICKLED_HEAD = [(0, b"HTTP/1.1 200 OK\r\n")] + [(0.02, b"X")] * 200
SILENCE = [(4, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")]
# a chunk size line that never ends: "1;xxxxxxxx..." trickled
TRICKLED_CHUNK_SIZE = [(0, b"1;")] + [(0.02, b"x")] * 200
TRICKLED_TLS_RECORD = [(0, b"\x16\x03\x03\x40\x00")] + [(0.02, b"\x00")] * 200
NO_PROXY = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    for name in NO_PROXY:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server():
    srv = TrickleServer()
    yield srv
    srv.close()


@pytest.fixture
def tls_server(tmp_path, monkeypatch):
    context, ca_file = self_signed_tls(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_file)
    srv = TrickleServer(tls=context)
    yield srv
    srv.close()


def api(server, **settings):
    settings = {
        "timeout": (2, 2),
        "rate_limit": None,
        "max_retries": 0,
        "backoff_base": 0,
        **settings,
    }
    return SicantikApi(server.url + "/api", **settings)


def timed(call):
    """``(exception, seconds)`` of ``call()``, which must raise."""
    started = time.monotonic()
    with pytest.raises(Exception) as info:
        call()
    return info.value, time.monotonic() - started


# --------------------------------------------------------------------------
# One attempt ends by its deadline, headers included
# --------------------------------------------------------------------------
@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_trickled_headers_are_cut_at_the_deadline(request, tls):
    srv = request.getfixturevalue("tls_server" if tls else "server")
    srv.answer_raw(TRICKLED_HEAD)
    with api(srv, deadline=0.4) as client:
        error, elapsed = timed(client.count_permit_types)
    assert isinstance(error, SicantikTimeout), repr(error)
    assert error.retryable and error.failure_type == "timeout"
    assert "did not answer jumlahPerizinan in full within 0.4 s" in str(error)
    assert elapsed < 0.4 + DEADLINE_MARGIN


def test_a_server_that_accepts_and_never_answers_is_cut_at_the_deadline(server):
    server.answer_raw(SILENCE)
    with api(server, timeout=(2, 3), deadline=0.3) as client:
        error, elapsed = timed(client.count_permit_types)
    assert isinstance(error, SicantikTimeout)
    assert elapsed < 0.3 + DEADLINE_MARGIN


def test_a_trickled_tls_handshake_is_cut_at_the_deadline(server):
    # behind an https URL, a server that announces a 16 kB handshake record
    # and sends it a byte every 20 ms. CPython bounds a whole handshake by
    # the socket timeout: the connect timeout lowered to the time left ends
    # it, and the watchdog would too (the test fails with both taken out)
    server.answer_raw(TRICKLED_TLS_RECORD, unasked=True)
    url = server.url.replace("http://", "https://")
    client = SicantikApi(
        url + "/api", timeout=(2, 3), deadline=0.3, rate_limit=None, max_retries=0
    )
    with client:
        error, elapsed = timed(client.count_permit_types)
    assert isinstance(error, SicantikTimeout), repr(error)
    assert elapsed < 0.3 + DEADLINE_MARGIN


def test_trickled_chunk_sizes_are_cut_at_the_deadline(server):
    # http.client reads a chunk-size line with readline: each recv is within
    # the time left, but the line never ends
    head = "HTTP/1.1 200 OK\r\nContent-Type: application/json"
    server.answer(head, TRICKLED_CHUNK_SIZE, chunked=True)
    guard = http_core.Guard()
    session = http_core.make_session(accept="*/*", pool_maxsize=1, guard=guard)
    started = time.monotonic()
    deadline = started + 0.4
    with session, guard.attempt(deadline):
        request, kwargs = http_core.prepare(
            session, "GET", server.url + "/x", timeout=(2.0, 2.0)
        )
        with session.send(request, **kwargs) as response:
            sink = BoundedBody(1 << 20)
            with pytest.raises(BodyError) as info:
                http_core.read_body(response, sink, deadline=deadline, read_timeout=2)
    assert info.value.kind == BodyError.DEADLINE
    assert time.monotonic() - started < 0.4 + DEADLINE_MARGIN
    with api(server, deadline=0.4) as client:
        error, elapsed = timed(client.count_permit_types)
    assert isinstance(error, SicantikTimeout)
    assert "still sending the answer of jumlahPerizinan after 0.4 s" in str(error)
    assert elapsed < 0.4 + DEADLINE_MARGIN


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_a_gateway_send_to_trickled_headers_ends_at_its_deadline(request, tls):
    srv = request.getfixturevalue("tls_server" if tls else "server")
    srv.answer_raw(TRICKLED_HEAD)
    gateway = FonnteGateway("token-1234", base_url=srv.url, deadline=0.4)
    assert gateway.call_deadline == 0.4
    with gateway:
        error, elapsed = timed(lambda: gateway.send("+6281234567890", "Yth. Budi"))
    # the request went out: the gateway may have taken the message
    assert isinstance(error, WhatsappUnknownOutcome), repr(error)
    assert "did not answer within 0.4 s" in str(error)
    assert elapsed < 0.4 + DEADLINE_MARGIN


def test_a_waha_send_with_its_number_check_ends_within_its_call_deadline(server):
    server.answer_raw(SILENCE)
    gateway = WahaGateway(server.url, deadline=0.6, call_deadline=0.4)
    assert WahaGateway(server.url, deadline=0.6).call_deadline == 1.2
    with gateway:
        error, elapsed = timed(lambda: gateway.send("+6281234567890", "Yth. Budi"))
    # cut during the number check, before anything was sent
    assert isinstance(error, WhatsappRetryableError), repr(error)
    assert elapsed < 0.4 + DEADLINE_MARGIN


def test_an_attempt_never_cuts_a_connection_another_attempt_took_over():
    """Thread A reads its answer in full (its connection goes back to the
    pool) but is still inside its attempt when its deadline passes; thread
    B reuses that connection meanwhile: A's watchdog must leave it alone."""
    srv = TrickleServer(keep_alive=True)
    srv.answer("HTTP/1.1 200 OK", [(0, b"ab"), (0.6, b"cd")])
    guard = http_core.Guard()
    session = http_core.make_session(accept="*/*", pool_maxsize=1, guard=guard)
    released, b_done = threading.Event(), threading.Event()
    results = {}

    def get(name, seconds):
        deadline = time.monotonic() + seconds
        request, kwargs = http_core.prepare(
            session, "GET", srv.url + "/x", timeout=(2.0, 2.0)
        )
        with session.send(request, **kwargs) as response:
            sink = BoundedBody(100)
            try:
                results[name] = http_core.read_body(
                    response, sink, deadline=deadline, read_timeout=2
                )
            except BodyError as e:
                results[name] = e

    def thread_a():
        with guard.attempt(time.monotonic() + 1.0):
            get("a", 1.0)
            released.set()
            b_done.wait(5)  # past A's deadline: its watchdog fires now

    a = threading.Thread(target=thread_a)
    try:
        a.start()
        assert released.wait(5)
        with guard.attempt(time.monotonic() + 3):
            get("b", 3)
        b_done.set()
        a.join(5)
    finally:
        b_done.set()
        session.close()
        srv.close()
    assert results == {"a": b"abcd", "b": b"abcd"}
    assert srv.connections == 1  # B did reuse A's connection


# --------------------------------------------------------------------------
# The call deadline bounds every retry of one logical call
# --------------------------------------------------------------------------
def test_retries_stop_at_the_call_deadline(server):
    server.answer_raw(SILENCE)
    client = api(server, deadline=0.3, call_deadline=0.7, max_retries=10)
    assert api(server, deadline=0.3).call_deadline == 0.6  # 2 x deadline
    with client:
        error, elapsed = timed(client.count_permit_types)
    assert isinstance(error, SicantikTimeout)
    # 11 attempts of 0.3 s without the call deadline
    assert error.attempts == 3
    assert elapsed < 0.7 + DEADLINE_MARGIN


def test_no_backoff_pause_starts_that_would_end_past_the_call_deadline(server):
    server.answer("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2")
    client = api(server, deadline=1, call_deadline=1.5, max_retries=3)
    with client:
        error, elapsed = timed(client.count_permit_types)
    assert isinstance(error, SicantikServerError)
    assert (error.attempts, error.retry_after) == (1, 2)
    assert elapsed < 1.5  # three pauses of 2 s without the call deadline


def test_defaults_keep_the_deadlines_of_before():
    client = SicantikApi("https://x.test/api", timeout=(5, 30))
    assert (client.deadline, client.call_deadline) == (65, 130)
    gateway = FonnteGateway("token-1234", timeout=(1, 2))
    assert (gateway.deadline, gateway.call_deadline) == (5, 5)
    with pytest.raises(Exception, match="deadline"):
        SicantikApi("https://x.test/api", call_deadline=0)


# --------------------------------------------------------------------------
# Error texts repeat no more of a remote body than a short summary
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "status, body",
    [
        ("404 Not Found", b'{"error": "' + b"S" * 50_000 + b'"}'),
        ("500 Internal Server Error", b"S" * 50_000),
        ("200 OK", b"<xml><" + b"S" * 50_000 + b">"),
        ("200 OK", b'{"rows": "' + b"S" * 50_000),
    ],
)
def test_sicantik_error_texts_never_repeat_a_remote_body(server, status, body):
    server.answer(f"HTTP/1.1 {status}", [(0, body)])
    with api(server) as client:
        error, _elapsed = timed(client.count_permit_types)
    assert str(error).count("S") <= 120, str(error)
    assert len(str(error)) < 400


@pytest.mark.parametrize("provider", ["fonnte", "webhook"])
def test_gateway_error_texts_cut_a_remote_reason(server, provider):
    long = b"R" * 50_000
    body = b'{"reason": "' + long + b'", "code": "' + long + b'"}'
    server.answer("HTTP/1.1 400 Bad Request", [(0, body)])
    if provider == "fonnte":
        gateway = FonnteGateway("token-1234", base_url=server.url)
    else:
        gateway = WebhookGateway(server.url + "/hook")
    with gateway:
        error, _elapsed = timed(lambda: gateway.send("+6281234567890", "Yth."))
    assert str(error).count("R") < 200 and len(str(error)) < 400
    assert len(error.error_code or "") <= 64  # stored with the error
