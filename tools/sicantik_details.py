"""The concurrent, rate-limited ``cekperizinan`` fetcher of many permits.

The engine of :meth:`~.sicantik_api.SicantikApi.fetch_permit_details`: a
thread pool of at most ``max_workers`` calls, fed from the caller's items by
a feeder thread of its own, where one bad permit never stops the others and a
system-scope failure stops the batch.

**Pipelined.** The feeder refills the window as soon as a call finishes,
whether or not the caller is back for results: while the caller writes and
commits what it received, the requests keep flowing. Finished results wait in
a bounded buffer (``ahead``); when it is full the feeder takes no new item, so
a caller that stops pulling never has more than ``workers + ahead`` items
taken and not handed out. The caller's thread only ever pulls results: it
never runs a request, and the feeder never runs the caller's code except the
item iterator (which therefore must not touch the caller's database cursor).

**Open input, across callbacks.** A batch can also be fed while it runs
(:meth:`DetailsBatch.add`, :meth:`DetailsBatch.close_input`) and be read in
turns (:meth:`DetailsBatch.results` with a deadline) without stopping it in
between. An Odoo cron callback has a time budget; the expiry sync hands its
running batch over to its own next callback through :class:`Parking`
instead of letting the window drain at every callback boundary. A parked
batch nobody takes back within its time to live is closed: its answers are
dropped (the permits stay due and are asked again), never written twice.
"""

import logging
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from .const import (
    EP_PERMIT_DETAILS,
    MAX_RECORD_FAILURES_IN_A_ROW,
    SCOPE_RECORD,
    SCOPE_SYSTEM,
)
from .sicantik_exceptions import SicantikDataError, SicantikError, SicantikResponseError
from .sicantik_transport import Cancelled

_logger = logging.getLogger(__name__)

# Results that may wait for the caller, per worker (see ``DetailsBatch``).
AHEAD_PER_WORKER = 4


class DetailsBatch:
    """The machinery of ``SicantikApi.fetch_permit_details`` (one call).

    Keeps at most ``workers`` calls in flight, and at most ``ahead`` finished
    results waiting for the caller; stops on the first system-scope error (or
    too many record-scope failures in a row) and raises it once the calls in
    flight are settled and their results handed out. ``run()`` is the
    generator the caller iterates; every item taken yields at most once.
    """

    def __init__(self, api, items, workers, *, ahead=None):
        """``items`` is an iterable of ``(key, no_surat, pendaftaran_id)``,
        or None for an open input fed with :meth:`add`."""
        self.api = api
        self.source = iter(items) if items is not None else None
        self.pending = deque()  # open input: items added, not taken yet
        self.input_closed = items is not None
        self.taken = set()  # keys taken from the input and not handed out
        self.workers = workers
        self.ahead = ahead if ahead is not None else AHEAD_PER_WORKER * workers
        self.cancel = threading.Event()  # stop: no new item, no new attempt
        self.cond = threading.Condition()  # guards everything below
        self.in_flight = {}  # future -> key
        self.ready = deque()  # (key, result) waiting to be yielded
        self.failure = None  # first system-scope error
        self.exhausted = False
        self.finished = False  # the feeder is done and nothing is in flight
        self.counts = dict.fromkeys(("asked", "found", "none", "errors"), 0)
        self.failures_in_a_row = 0
        self.started = None
        self._executor = self._feeder = None
        self._closed = False

    # ------------------------------------------------------------------
    # Open input (the caller's thread)
    # ------------------------------------------------------------------
    def add(self, items):
        """Queue more ``(key, no_surat, pendaftaran_id)`` for an open input."""
        with self.cond:
            if self.input_closed:
                raise RuntimeError("the input of this batch is closed")
            self.pending.extend(items)
            self.cond.notify_all()

    def close_input(self):
        """No item will be added: the batch ends once the queued ones are settled."""
        with self.cond:
            self.input_closed = True
            self.cond.notify_all()

    def outstanding(self):
        """Keys queued, in flight or waiting for the caller: items the caller
        gave and has not received yet (never to be given again meanwhile)."""
        with self.cond:
            return set(self.taken) | {item[0] for item in self.pending}

    def _dry(self):
        """Nothing queued, in flight or waiting (``cond`` held)."""
        return not self.pending and not self.in_flight and not self.ready

    @property
    def dry(self):
        """True when an open batch asked and handed out all it was given."""
        with self.cond:
            return self._dry()

    @property
    def over(self):
        """True once nothing more will come out of the batch."""
        with self.cond:
            return self.finished and not self.ready

    # ------------------------------------------------------------------
    # Feeder thread
    # ------------------------------------------------------------------
    def _room(self):
        return (
            not self.exhausted
            and (self.source is not None or self.pending or self.input_closed)
            and self.failure is None
            and not self.cancel.is_set()
            and len(self.in_flight) < self.workers
            and len(self.ready) < self.ahead
        )

    def _feed(self, executor):
        """Keep the window full until the items run out or the batch stops."""
        try:
            with self.cond:
                while True:
                    while self._room():
                        self._take_one(executor)
                    if not self.in_flight and (
                        self.exhausted
                        or self.failure is not None
                        or self.cancel.is_set()
                    ):
                        return
                    self.cond.wait()
        except BaseException as err:  # the item iterator failed: stop like a bug
            with self.cond:
                self._stop(None, err)
        finally:
            with self.cond:
                self.finished = True
                self.cond.notify_all()

    def _take_one(self, executor):
        """Take the next item (under ``cond``) and start its call."""
        if self.source is None:
            if not self.pending:
                self.exhausted = True  # input closed and empty (see _room)
                return
            key, no_surat, pendaftaran_id = self.pending.popleft()
        else:
            try:
                key, no_surat, pendaftaran_id = next(self.source)
            except StopIteration:
                self.exhausted = True
                return
        self.counts["asked"] += 1
        self.taken.add(key)
        if not isinstance(no_surat, str) or not no_surat.strip():
            self.ready.append((key, SicantikDataError.no_letter_number()))
            self.cond.notify_all()
            return
        future = executor.submit(
            self.api._permit_details, no_surat, pendaftaran_id, self.cancel
        )
        self.in_flight[future] = key
        # Outside the dict update: a call that already finished runs this now.
        future.add_done_callback(self._done)

    def _done(self, future):
        with self.cond:
            if future in self.in_flight:
                self._collect(future)
                self.cond.notify_all()

    # ------------------------------------------------------------------
    # Results (under ``cond``)
    # ------------------------------------------------------------------
    def _collect(self, future):
        key = self.in_flight.pop(future)
        if future.cancelled():
            self.taken.discard(key)
            return  # never started: the item stays unsettled
        try:
            self.ready.append((key, future.result()))
            self.failures_in_a_row = 0
        except Cancelled:
            self.taken.discard(key)
            return  # stopped on purpose: the item stays unsettled
        except SicantikError as err:
            if err.scope != SCOPE_RECORD:
                self.taken.discard(key)
                self._stop(key, err)
                return
            self.ready.append((key, err))
            self.failures_in_a_row += 1
            if self.failures_in_a_row >= MAX_RECORD_FAILURES_IN_A_ROW:
                broken = SicantikResponseError(
                    f"{self.failures_in_a_row} permits in a row got an unusable "
                    f"answer from {self.api.host} (last: {err.message}); the "
                    f"server looks broken",
                    retryable=True,
                    endpoint=EP_PERMIT_DETAILS,
                    scope=SCOPE_SYSTEM,
                )
                broken.__cause__ = err
                self._stop(key, broken)
        except Exception as err:  # a bug or the limiter: stop like a system error
            self.taken.discard(key)
            self._stop(key, err)

    def _stop(self, key, err):
        if self.failure is None:
            err.key = key
            self.failure = err
            self.cancel.set()

    def _count(self, result):
        if result is None:
            self.counts["none"] += 1
        elif isinstance(result, BaseException):
            self.counts["errors"] += 1
        else:
            self.counts["found"] += 1

    # ------------------------------------------------------------------
    # The caller's generator
    # ------------------------------------------------------------------
    def _next_result(self, deadline=None):
        """Wait for the next finished result and hand it out; None once the
        batch is over or, with a ``deadline`` (``time.monotonic()``), once
        it passed. One at a time: a caller that stops reading loses none."""
        with self.cond:
            if deadline is not None and time.monotonic() >= deadline:
                return None  # what is ready waits for the next turn
            while not self.ready and not self.finished:
                if self.source is None and not self.input_closed and self._dry():
                    return None  # asked all it was given: the caller adds more
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self.cond.wait(left)
            if not self.ready:
                return None
            key, result = self.ready.popleft()
            self.taken.discard(key)
            self.cond.notify_all()  # room in the buffer: the feeder goes on
            return key, result

    def start(self):
        """Start the feeder and the request threads (once)."""
        if self.started is not None:
            return self
        self.started = time.monotonic()
        self._executor = ThreadPoolExecutor(
            max_workers=self.workers, thread_name_prefix="sicantik-cek"
        )
        self._feeder = threading.Thread(
            target=self._feed,
            args=(self._executor,),
            name="sicantik-cek-feeder",
            daemon=True,
        )
        self._feeder.start()
        return self

    def results(self, deadline=None):
        """Yield ``(key, result)`` as they come, until the batch is over (then
        raise its system error, if one stopped it), ``deadline`` passed (the
        batch keeps running: call again, or :meth:`close`) or an open batch
        ran dry (:attr:`dry`: add items, or close its input)."""
        while (pair := self._next_result(deadline)) is not None:
            self._count(pair[1])
            yield pair
        if self.over and self.failure is not None:
            self.api._log.warning(
                "SICANTIK %s: %s stopped by a system error: %s",
                self.api.host,
                EP_PERMIT_DETAILS,
                self.failure,
            )
            raise self.failure

    def stop_input(self):
        """Take no new item; the calls in flight go on to their answers."""
        with self.cond:
            self.pending.clear()
            self.input_closed = True
            self.exhausted = True
            self.cond.notify_all()

    def close(self):
        """Stop: no new item or attempt, wait for the calls on the wire.
        Results not handed out are dropped (their items stay unsettled)."""
        with self.cond:
            if self._closed:
                return
            self._closed = True
            self.cancel.set()
            for future in list(self.in_flight):
                future.cancel()
            self.cond.notify_all()
        if self._feeder is not None:
            self._feeder.join()
            self._executor.shutdown(wait=True)
        self.api._log.info(
            "SICANTIK %s: %s: %d asked, %d found, %d without data, "
            "%d errors in %.1f s",
            self.api.host,
            EP_PERMIT_DETAILS,
            self.counts["asked"],
            self.counts["found"],
            self.counts["none"],
            self.counts["errors"],
            time.monotonic() - (self.started or time.monotonic()),
        )

    def run(self):
        """The whole batch as one generator (``fetch_permit_details``)."""
        self.start()
        try:
            yield from self.results()
        finally:
            self.close()


class CarriedBatch:
    """A running batch between two cron callbacks, with what the next one
    needs: the client that owns it, the work rows it was given (by key) and
    ``mark``, the caller's proof that nothing else moved the run meanwhile."""

    def __init__(self, api, batch, rows, mark):
        self.api = api
        self.batch = batch
        self.rows = rows
        self.mark = mark

    def close(self):
        try:
            self.batch.close()
        finally:
            self.api.close()


class Parking:
    """Objects with a ``close()`` handed from one cron callback to the next.

    ``park(key, obj, ttl)`` keeps it; ``take(key)`` gives it back once (None
    when absent or expired). One left longer than ``ttl`` seconds is closed
    by a timer. Process-local: another process never sees it, a killed one
    loses it.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._parked = {}  # key -> (obj, timer)
        self.taken = 0
        self.expired = 0

    def park(self, key, obj, ttl):
        timer = threading.Timer(ttl, self._expire, args=(key, obj))
        timer.daemon = True
        with self._lock:
            previous = self._parked.pop(key, None)
            self._parked[key] = (obj, timer)
        if previous is not None:
            self._close(*previous)
        timer.start()

    def take(self, key):
        with self._lock:
            entry = self._parked.pop(key, None)
            if entry is not None:
                self.taken += 1
        if entry is None:
            return None
        entry[1].cancel()
        return entry[0]

    def drop(self, match):
        """Close every parked object whose key satisfies ``match(key)``."""
        with self._lock:
            keys = [key for key in self._parked if match(key)]
            entries = [self._parked.pop(key) for key in keys]
        for entry in entries:
            self._close(*entry)

    def _expire(self, key, obj):
        with self._lock:
            entry = self._parked.get(key)
            if entry is None or entry[0] is not obj:
                return
            del self._parked[key]
            self.expired += 1
        _logger.info("SICANTIK: a batch parked between two callbacks expired")
        self._close(*entry)

    def _close(self, obj, timer):
        timer.cancel()
        obj.close()

    def close_all(self):
        self.drop(lambda key: True)

    def __len__(self):
        with self._lock:
            return len(self._parked)


# The expiry sync's running batches between two callbacks of this process.
PARKED = Parking()
