"""The send gate: a rate-limiter slot is checked when the request is written.

A limiter hands out send times (slots). The connection of a request is
opened after that (DNS, TCP connect, TLS handshake), so without the gate the
first request of a new connection leaves late by the connection's cost while
the next one, on the warm connection, leaves on time: the two close up on the
server. With the gate (``http_guard.SendGate`` calling ``limiter.confirm()``
at the first write), a slot found stale is dropped and a new one taken.

The arrival tests run real HTTP(S) over loopback with a *fake clock* shared
by the limiter and the server: the connection's cost is charged to that
clock (by the TLS server before its handshake, or by the resolver of the
address policy), the limiter's waits advance it, and the server stamps each
request with it when the request's first byte arrives. Nothing else moves it
and the client makes one request at a time, so every stamp is exactly the
clock at the request's write: the gaps are exact, whatever the load of the
machine (real time only adds latency, which the fake clock does not see).
"""

import socket
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from loopback import LoopbackServer, self_signed_tls

from tools.addresses import AddressPolicy
from tools.const import LATE_SLOT_TOLERANCE_S
from tools.http_core import Guard, SendGate
from tools.rate_limiter import RateLimiter
from tools.sicantik_api import SicantikApi
from tools.sicantik_exceptions import SicantikLimiterUnavailable
from tools.whatsapp_gateways import WebhookGateway

RATE = 10.0  # slots 100 ms apart
SPACING = 1.0 / RATE
CONNECT_COST = 0.08  # a TLS handshake (or DNS lookup) of 80 ms
EXACT = 1e-9  # float rounding of the fake clock's sums
COUNT = 6
NO_PROXY = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
SICANTIK_BODY = b'[{"jumlahPerizinan":16}]'
WEBHOOK_BODY = b'{"message_id":"m-1","status":"accepted"}'


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    for name in NO_PROXY:
        monkeypatch.delenv(name, raising=False)


class FakeClock:
    """Monotonic seconds that move only when advanced (thread-safe)."""

    def __init__(self):
        self._now = 100.0
        self._lock = threading.Lock()

    def __call__(self):
        with self._lock:
            return self._now

    def advance(self, seconds):
        with self._lock:
            self._now += seconds

    sleep = advance  # the limiter's waits


class ArrivalServer(LoopbackServer):
    """Loopback HTTP(S) server stamping each request's arrival on ``clock``.

    A connection serves ``per_connection`` requests, the last one answered
    with ``Connection: close``: the client then opens a new connection, so
    cold and warm connections alternate. With ``tls``, each handshake first
    charges ``connect_cost`` to the clock (a slow handshake, in fake time).
    """

    def __init__(self, clock, body, *, tls=None, connect_cost=0.0, per_connection=2):
        self.clock = clock
        self.body = body
        self.tls = tls
        self.connect_cost = connect_cost
        self.per_connection = per_connection
        self.arrivals = []
        super().__init__()

    def url(self, host="127.0.0.1"):
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def _handle(self, conn):
        conn.settimeout(5)
        try:
            if self.tls is not None:
                # before the ServerHello: the client's handshake cannot end
                # until the cost is on the clock
                self.clock.advance(self.connect_cost)
                conn = self.tls.wrap_socket(conn, server_side=True)
            with conn:
                for n in range(self.per_connection):
                    if not self._read_request(conn):
                        return
                    last = n + 1 == self.per_connection
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        + (b"Connection: close\r\n" if last else b"")
                        + f"Content-Length: {len(self.body)}\r\n\r\n".encode()
                        + self.body
                    )
        except OSError:
            return

    def _read_request(self, conn):
        """Read one request (head and ``Content-Length`` body), stamping its
        first byte; False when the client closed the connection."""
        data = conn.recv(65536)
        if not data:
            return False
        self.arrivals.append(self.clock())
        while b"\r\n\r\n" not in data:
            more = conn.recv(65536)
            if not more:
                return False
            data += more
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            body += conn.recv(65536)
        return True


def slow_resolver(clock, cost):
    """A ``getaddrinfo`` for ``localhost`` that costs ``cost`` of ``clock``."""

    def resolve(host, port, family=0, kind=0, *args):
        clock.advance(cost)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    return resolve


@pytest.fixture(params=["tls handshake", "dns lookup"])
def slow_connect(request, tmp_path, monkeypatch):
    """``(server, clock, client settings)``: every new connection costs
    ``CONNECT_COST`` on the fake clock, the TLS handshake or the lookup."""
    clock = FakeClock()

    def start(body):
        if request.param == "tls handshake":
            context, ca_file = self_signed_tls(tmp_path)
            monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_file)
            server = ArrivalServer(clock, body, tls=context, connect_cost=CONNECT_COST)
            return server, server.url(), None
        server = ArrivalServer(clock, body)
        policy = AddressPolicy("127.0.0.1", resolver=slow_resolver(clock, CONNECT_COST))
        return server, server.url("localhost"), policy

    servers = []

    def started(body):
        server, url, policy = start(body)
        servers.append(server)
        return server, url, policy

    yield started, clock
    for server in servers:
        server.close()


def gaps(times):
    return [b - a for a, b in zip(times, times[1:], strict=False)]


# --------------------------------------------------------------------------
# (a) A slow connection never lets two arrivals close up
# --------------------------------------------------------------------------
def test_a_slow_connect_does_not_close_up_sicantik_requests(slow_connect):
    started, clock = slow_connect
    server, url, policy = started(SICANTIK_BODY)
    limiter = RateLimiter(RATE, clock=clock, sleep=clock.sleep)
    api = SicantikApi(
        url + "/api", limiter=limiter, max_workers=1, address_policy=policy
    )
    with api:
        for _ in range(COUNT):
            assert api.count_permit_types() == 16
    assert server.connections == COUNT // 2  # cold, warm, cold, warm...
    # Without the gate the warm request arrives CONNECT_COST - SPACING
    # (20 ms) after the cold one. With it, every arrival is its slot's time
    # (fake clock: exact), and slots are SPACING apart.
    assert min(gaps(server.arrivals)) >= SPACING - EXACT
    # one stale slot per cold connection, each dropped and never reused
    assert api.stats.as_dict()["late_slots"] == COUNT // 2
    assert limiter.dropped == COUNT // 2
    assert limiter.released == COUNT + COUNT // 2


def test_a_slow_connect_does_not_close_up_gateway_sends(slow_connect):
    started, clock = slow_connect
    server, url, policy = started(WEBHOOK_BODY)
    limiter = RateLimiter(RATE, clock=clock, sleep=clock.sleep)
    gateway = WebhookGateway(url + "/hook", limiter=limiter, address_policy=policy)
    with gateway:
        for _ in range(COUNT):
            assert gateway.send("+6281234567890", "Izin Anda").message_id == "m-1"
    assert server.connections == COUNT // 2
    assert min(gaps(server.arrivals)) >= SPACING - EXACT  # exact, as above
    assert limiter.dropped == COUNT // 2


def test_a_fresh_slot_on_a_warm_connection_is_kept(slow_connect):
    started, clock = slow_connect
    server, url, policy = started(SICANTIK_BODY)
    # the connection costs less than the tolerance: no slot is stale
    server.connect_cost = LATE_SLOT_TOLERANCE_S / 2
    if policy is not None:
        policy = AddressPolicy(
            "127.0.0.1", resolver=slow_resolver(clock, LATE_SLOT_TOLERANCE_S / 2)
        )
    limiter = RateLimiter(RATE, clock=clock, sleep=clock.sleep)
    with SicantikApi(
        url + "/api", limiter=limiter, max_workers=1, address_policy=policy
    ) as api:
        for _ in range(4):
            api.count_permit_types()
        assert api.stats.as_dict()["late_slots"] == 0
    assert limiter.dropped == 0 and limiter.released == 4
    assert min(gaps(server.arrivals)) >= SPACING - LATE_SLOT_TOLERANCE_S / 2 - EXACT


# --------------------------------------------------------------------------
# (b) A dropped slot is lost, never reused (the limiter alone, fake clock)
# --------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.just(0.0),
            st.floats(0.0, LATE_SLOT_TOLERANCE_S * 0.999),
            st.floats(LATE_SLOT_TOLERANCE_S * 1.001, 3 * SPACING),
        ),
        min_size=1,
        max_size=30,
    ),
    st.lists(st.floats(0.0, 2 * SPACING), min_size=30, max_size=30),
)
def test_every_send_is_within_tolerance_of_a_release_used_once(lates, idles):
    """``lates``: how long each request's connection takes after its
    release; ``idles``: pauses between requests. Every send leaves within
    the tolerance of the release it uses, so it is never closer to the next
    send than a spacing minus its own lateness; every release is used at
    most once: released = sent + dropped."""
    clock = FakeClock()
    limiter = RateLimiter(RATE, clock=clock, sleep=clock.sleep)
    sends, lateness, late_count = [], [], 0
    for i, late in enumerate(lates):
        clock.advance(idles[i])
        limiter.acquire()
        release = clock()
        clock.advance(late)
        waited = limiter.confirm()
        assert (waited is None) == (late <= LATE_SLOT_TOLERANCE_S)
        late_count += waited is not None
        sends.append(clock())
        # a re-taken release is sent at once (nothing moves the clock)
        lateness.append(sends[-1] - release if waited is None else 0.0)
        assert limiter.confirm() is None  # the release is used up
    assert max(lateness) <= LATE_SLOT_TOLERANCE_S
    for gap, late in zip(gaps(sends), lateness, strict=False):
        assert gap >= SPACING - late - EXACT
    assert limiter.dropped == late_count
    assert limiter.released == len(sends) + limiter.dropped


def test_a_limiter_without_confirm_keeps_the_old_path():
    class Bare:
        def acquire(self):
            return 0.0

    assert SendGate.for_limiter(Bare()) is None
    assert SendGate.for_limiter(None) is None
    assert SendGate.for_limiter(RateLimiter(1.0)) is not None


# --------------------------------------------------------------------------
# (c) The gate's wait is the limiter's time, not the attempt's
# --------------------------------------------------------------------------
def test_the_gate_wait_moves_the_deadline_and_holds_the_watchdog_off():
    guard = Guard()
    wait = threading.Event()
    start = time.monotonic()
    # a limiter wait (1.2 s) longer than the time left (1 s)
    with guard.attempt(start + 1.0, before_send=lambda: wait.wait(1.2)) as guarded:
        before = guarded.deadline
        guarded.before_send()
        paused = guarded.paused
        # the watchdog held off during the wait: not cut at the old deadline
        assert not guarded.expired
        guarded.before_send()  # once per attempt
        assert guarded.paused == paused
    assert paused >= 1.2 - 0.01
    assert guarded.deadline == pytest.approx(before + paused, abs=EXACT)


def test_a_gate_wait_longer_than_the_deadline_does_not_fail_the_request(
    tmp_path, monkeypatch
):
    """Real clock: a 50 ms handshake makes the first slot stale; the new one
    is 1.5 s later, past the 1 s attempt deadline. That wait is not counted:
    the request gets its whole deadline after it."""
    clock = FakeClock()  # the server's stamps only; the limiter runs real time
    context, ca_file = self_signed_tls(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_file)
    server = ArrivalServer(clock, SICANTIK_BODY, tls=context)
    # a slow handshake in real time: the server waits before answering it
    real_cost = 0.05
    original = server._handle

    def slow_answer(conn):
        server.stop.wait(real_cost)
        original(conn)

    server._handle = slow_answer
    limiter = RateLimiter(1 / 1.5)
    try:
        with SicantikApi(
            server.url() + "/api",
            limiter=limiter,
            max_workers=1,
            max_retries=0,
            timeout=(1, 1),
            deadline=1.0,
            call_deadline=1.0,
        ) as api:
            assert api.count_permit_types() == 16
            stats = api.stats.as_dict()
    finally:
        server.close()
    assert stats["late_slots"] == 1
    assert stats["rate_limit_wait_sum_s"] >= 1.0
    # the latency the pace looks at is the server's, not the wait
    # (an answer read in time came within the 1 s deadline, the wait aside)
    assert stats["latency_p50_ms"] < 1400


def test_no_send_time_at_the_gate_means_nothing_is_sent(slow_connect):
    """The re-take at the gate meets an unreachable limiter database: the
    call ends with the family's LimiterUnavailable, as from ``acquire()``,
    not retried, and no request reaches the server."""
    started, clock = slow_connect
    server, url, policy = started(SICANTIK_BODY)

    class Unreachable(RateLimiter):
        def confirm(self):
            raise SicantikLimiterUnavailable("rate bucket: database unreachable")

    limiter = Unreachable(RATE, clock=clock, sleep=clock.sleep)
    with SicantikApi(
        url + "/api", limiter=limiter, max_workers=1, address_policy=policy
    ) as api:
        with pytest.raises(SicantikLimiterUnavailable):
            api.count_permit_types()
        assert api.stats.as_dict()["retries"] == 0
    assert server.arrivals == []  # never written: nothing can arrive
