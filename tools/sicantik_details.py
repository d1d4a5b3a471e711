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
"""

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
        self.api = api
        self.source = iter(items)
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

    # ------------------------------------------------------------------
    # Feeder thread
    # ------------------------------------------------------------------
    def _room(self):
        return (
            not self.exhausted
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
        try:
            key, no_surat, pendaftaran_id = next(self.source)
        except StopIteration:
            self.exhausted = True
            return
        self.counts["asked"] += 1
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
            return  # never started: the item stays unsettled
        try:
            self.ready.append((key, future.result()))
            self.failures_in_a_row = 0
        except Cancelled:
            return  # stopped on purpose: the item stays unsettled
        except SicantikError as err:
            if err.scope != SCOPE_RECORD:
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
    def _next_results(self):
        """Wait for finished results; [] once the batch is over."""
        with self.cond:
            while not self.ready and not self.finished:
                self.cond.wait()
            results = list(self.ready)
            self.ready.clear()
            self.cond.notify_all()  # room in the buffer: the feeder goes on
            return results

    def run(self):
        api = self.api
        started = time.monotonic()
        executor = ThreadPoolExecutor(
            max_workers=self.workers, thread_name_prefix="sicantik-cek"
        )
        feeder = threading.Thread(
            target=self._feed,
            args=(executor,),
            name="sicantik-cek-feeder",
            daemon=True,
        )
        feeder.start()
        try:
            while True:
                results = self._next_results()
                if not results:
                    break
                for key, result in results:
                    self._count(result)
                    yield key, result
            if self.failure is not None:
                api._log.warning(
                    "SICANTIK %s: %s stopped by a system error: %s",
                    api.host,
                    EP_PERMIT_DETAILS,
                    self.failure,
                )
                raise self.failure
        finally:
            with self.cond:
                self.cancel.set()
                for future in list(self.in_flight):
                    future.cancel()
                self.cond.notify_all()
            feeder.join()
            executor.shutdown(wait=True)
            api._log.info(
                "SICANTIK %s: %s: %d asked, %d found, %d without data, "
                "%d errors in %.1f s",
                api.host,
                EP_PERMIT_DETAILS,
                self.counts["asked"],
                self.counts["found"],
                self.counts["none"],
                self.counts["errors"],
                time.monotonic() - started,
            )
