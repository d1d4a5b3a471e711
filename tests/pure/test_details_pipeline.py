"""The pipelined cekperizinan fetcher (``DetailsBatch``) against the sandbox.

The caller of ``fetch_permit_details`` (the expiry sync) writes and commits
what it received between two pulls. These tests hold the caller back and
watch the sandbox: the requests must go on meanwhile, within a bounded
buffer, and every item taken must come out exactly once.
"""

import threading
import time

import pytest

from sandbox import SandboxServer
from tools.records import PermitDetails
from tools.sicantik_api import SicantikApi
from tools.sicantik_details import DetailsBatch, Parking
from tools.sicantik_exceptions import SicantikError, SicantikServerError

WAIT = 10  # seconds: a bound on waiting for the sandbox, never a measure


@pytest.fixture(scope="module")
def server():
    with SandboxServer(permits=200, seed=23) as srv:
        yield srv


@pytest.fixture
def api(sandbox):
    client = SicantikApi(
        sandbox.url,
        timeout=(2, 5),
        rate_limit=None,
        max_workers=4,
        max_retries=0,
    )
    yield client
    client.close()


class Arrivals:
    """Counts the sandbox's API arrivals; ``reached(n)`` waits for n of them."""

    def __init__(self, sandbox):
        self.stats = sandbox._stats
        self.original = self.stats.arrive
        self.count = 0
        self.lock = threading.Condition()
        self.stats.arrive = self._arrive

    def _arrive(self, endpoint, at=None):
        arrival = self.original(endpoint, at)
        with self.lock:
            self.count += 1
            self.lock.notify_all()
        return arrival

    def reached(self, n):
        with self.lock:
            return self.lock.wait_for(lambda: self.count >= n, timeout=WAIT)

    def close(self):
        self.stats.arrive = self.original


@pytest.fixture
def arrivals(sandbox):
    counter = Arrivals(sandbox)
    yield counter
    counter.close()


class Source:
    """Items in order; records what was taken and can be stopped (a deadline)."""

    def __init__(self, items):
        self.items = list(items)
        self.taken = []
        self.stopped = threading.Event()

    def __iter__(self):
        for item in self.items:
            if self.stopped.is_set():
                return
            self.taken.append(item[0])
            yield item


def items_of(sandbox, count, *, answering=None):
    out, seen = [], set()
    for permit, _ in sandbox.dataset.rows:
        if permit.pendaftaran_id in seen or not permit.no_surat.strip():
            continue
        if answering is not None and permit.answers_cekperizinan != answering:
            continue
        seen.add(permit.pendaftaran_id)
        out.append((permit.pendaftaran_id, permit.no_surat, permit.pendaftaran_id))
    return out[:count]


def test_requests_go_on_while_the_caller_is_busy(sandbox, api, arrivals):
    sandbox.configure(latency=0.02)
    source = Source(items_of(sandbox, 40))
    batch = DetailsBatch(api, source, 2, ahead=6).run()
    first = [next(batch)]
    # The caller is "writing a chunk": it does not pull. The window of 2
    # refills on its own until the buffer of 6 is full (without the pipeline
    # no item is taken while the caller is away: at most 1 + 2 arrive).
    assert arrivals.reached(1 + 6)
    rest = list(batch)
    keys = [key for key, _ in first + rest]
    assert sorted(keys) == sorted(key for key, _, _ in source.items)
    assert len(keys) == len(set(keys)) == 40
    assert sandbox.stats()["requests"] == 40


def test_a_caller_that_stops_pulling_holds_the_buffer_bounded(sandbox, api):
    sandbox.configure(latency=0.01)
    source = Source(items_of(sandbox, 60))
    details = DetailsBatch(api, source, 3, ahead=5)
    batch = details.run()
    next(batch)
    with details.cond:
        # Settled: nothing in flight and the buffer full; the feeder waits.
        assert details.cond.wait_for(
            lambda: not details.in_flight and len(details.ready) >= 5, timeout=WAIT
        )
        waiting = len(details.ready)
    # The calls in flight when the buffer filled up still land in it.
    assert 5 <= waiting <= 5 + 3 - 1
    assert len(source.taken) - waiting <= 5  # the first pull: at most a buffer
    assert sandbox.stats()["requests"] == len(source.taken)
    batch.close()
    assert sandbox.stats()["requests"] == api.stats.requests


def test_items_are_asked_in_the_callers_order(sandbox, api):
    source = Source(items_of(sandbox, 12))
    results = list(DetailsBatch(api, source, 1).run())
    # One worker: answers in the order of the items, and the items taken are
    # always a prefix of the source (lazy, in order).
    assert [key for key, _ in results] == [key for key, _, _ in source.items]
    assert source.taken == [key for key, _, _ in source.items]


def test_a_stopped_source_ends_the_batch_after_the_calls_in_flight(
    sandbox, api, arrivals
):
    sandbox.configure(latency=0.02)
    source = Source(items_of(sandbox, 100))
    received = []
    for pair in DetailsBatch(api, source, 4).run():
        received.append(pair)
        if len(received) == 10:
            source.stopped.set()  # the deadline: no new permit is asked
    # Every permit taken was asked once and handed out once; none after.
    keys = [key for key, _ in received]
    assert len(keys) == len(set(keys))
    assert sorted(keys) == sorted(source.taken)
    assert 10 <= len(keys) < 100
    assert sandbox.stats()["requests"] == len(keys)


def test_one_bad_permit_does_not_stop_the_others_while_the_caller_is_busy(
    sandbox, api, arrivals
):
    sandbox.queue_faults("xxe")
    source = Source(items_of(sandbox, 20, answering=True))
    batch = DetailsBatch(api, source, 3, ahead=20).run()
    results = [next(batch)]
    assert arrivals.reached(20)  # all asked while the caller held back
    results += list(batch)
    assert len(results) == 20
    errors = [r for _, r in results if isinstance(r, SicantikError)]
    assert len(errors) == 1 and errors[0].scope == "record"
    assert sum(isinstance(r, PermitDetails) for _, r in results) == 19


def test_a_system_error_hands_out_what_finished_then_raises(sandbox, api):
    source = Source(items_of(sandbox, 50))
    batch = DetailsBatch(api, source, 3).run()
    received = [next(batch) for _ in range(5)]
    sandbox.configure(error_rate=1.0, error_statuses=(502,))
    with pytest.raises(SicantikServerError) as info:
        received.extend(batch)
    keys = [key for key, _ in received]
    assert len(keys) == len(set(keys))
    assert info.value.key not in keys
    assert len(source.taken) < 50
    assert sandbox.stats()["requests"] == api.stats.requests
    assert not [t for t in threading.enumerate() if t.name.startswith("sicantik-cek")]


def test_a_failing_item_source_stops_the_batch(sandbox, api):
    def items():
        yield from items_of(sandbox, 3)
        raise ValueError("the caller's items broke")

    with pytest.raises(ValueError, match="items broke"):
        list(DetailsBatch(api, items(), 2).run())
    assert not [t for t in threading.enumerate() if t.name.startswith("sicantik-cek")]


# --- open input, read in turns (the expiry sync across cron callbacks)


def test_an_open_batch_is_fed_and_read_in_turns_without_stopping(
    sandbox, api, arrivals
):
    sandbox.configure(latency=0.02)
    items = items_of(sandbox, 30)
    batch = api.open_permit_details(max_workers=3)
    try:
        batch.add(items[:20])
        first = list(batch.results(deadline=time.monotonic()))  # a turn ends
        # The turn ended, the batch did not: it goes on asking while nobody
        # reads, and what it holds is exactly what was given and not handed out.
        assert arrivals.reached(len(first) + 3)
        assert not batch.over
        assert batch.outstanding() == {key for key, _, _ in items[:20]} - {
            key for key, _ in first
        }
        batch.add(items[20:])
        batch.close_input()
        rest = list(batch.results())
    finally:
        batch.close()
    keys = [key for key, _ in first + rest]
    assert sorted(keys) == sorted(key for key, _, _ in items)
    assert len(keys) == len(set(keys))
    assert batch.over and not batch.outstanding()
    assert sandbox.stats()["requests"] == 30


def test_an_open_batch_waits_for_input_instead_of_ending(sandbox, api):
    batch = api.open_permit_details(max_workers=2)
    try:
        # Nothing given yet: a turn ends at its deadline with nothing, and
        # the batch is still open for items.
        assert list(batch.results(deadline=time.monotonic() + 0.05)) == []
        assert not batch.over
        items = items_of(sandbox, 4)
        batch.add(items)
        batch.close_input()
        keys = [key for key, _ in batch.results()]
    finally:
        batch.close()
    assert sorted(keys) == sorted(key for key, _, _ in items)
    with pytest.raises(RuntimeError):
        batch.add(items)


def test_stop_input_ends_after_the_calls_in_flight(sandbox, api):
    sandbox.configure(latency=0.02)
    items = items_of(sandbox, 50)
    batch = api.open_permit_details(max_workers=4)
    try:
        batch.add(items)
        with batch.cond:
            # several answers wait: a reader that takes one and walks away
            # must leave the others for the next read
            assert batch.cond.wait_for(lambda: len(batch.ready) >= 2, timeout=WAIT)
        received = [next(iter(batch.results()))]
        batch.stop_input()
        received += list(batch.results())
    finally:
        batch.close()
    keys = [key for key, _ in received]
    assert len(keys) == len(set(keys)) < 50
    # Every item taken was answered and handed out; the rest never asked.
    assert sandbox.stats()["requests"] == len(keys)
    assert not batch.outstanding()


class Closable:
    def __init__(self):
        self.closed = threading.Event()

    def close(self):
        self.closed.set()


def test_parking_gives_back_once_and_closes_what_nobody_takes():
    parking = Parking()
    kept, left, replaced = Closable(), Closable(), Closable()
    parking.park("a", kept, ttl=WAIT)
    assert parking.take("a") is kept
    assert parking.take("a") is None  # once
    parking.park("b", left, ttl=0.01)
    assert left.closed.wait(WAIT)  # its timer closed it
    assert parking.take("b") is None and parking.expired == 1
    parking.park("c", replaced, ttl=WAIT)
    parking.park("c", Closable(), ttl=WAIT)
    assert replaced.closed.is_set()  # one per key: the older one is closed
    parking.drop(lambda key: key == "c")
    assert len(parking) == 0
    assert not kept.closed.is_set()  # taken back: the taker owns it
