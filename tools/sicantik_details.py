"""The concurrent, rate-limited ``cekperizinan`` fetcher of many permits.

The engine of :meth:`~.sicantik_api.SicantikApi.fetch_permit_details`: a
thread pool of at most ``max_workers`` calls, fed lazily from the caller's
items, where one bad permit never stops the others and a system-scope
failure stops the batch.
"""

import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from .const import (
    EP_PERMIT_DETAILS,
    MAX_RECORD_FAILURES_IN_A_ROW,
    SCOPE_RECORD,
    SCOPE_SYSTEM,
)
from .sicantik_exceptions import SicantikDataError, SicantikError, SicantikResponseError
from .sicantik_transport import Cancelled


class DetailsBatch:
    """The machinery of ``SicantikApi.fetch_permit_details`` (one call).

    Keeps at most ``workers`` calls in flight, taking items from the source
    only as calls finish; stops on the first system-scope error (or too many
    record-scope failures in a row) and raises it once the calls in flight
    are settled. ``run()`` is the generator the caller iterates.
    """

    def __init__(self, api, items, workers):
        self.api = api
        self.source = iter(items)
        self.workers = workers
        self.cancel = threading.Event()
        self.in_flight = {}  # future -> key
        self.ready = deque()  # (key, result) waiting to be yielded
        self.failure = None  # first system-scope error
        self.exhausted = False
        self.counts = dict.fromkeys(("asked", "found", "none", "errors"), 0)
        self.failures_in_a_row = 0

    def _fill(self, executor):
        """Take items until ``workers`` calls are in flight."""
        while (
            not self.exhausted
            and self.failure is None
            and len(self.in_flight) < self.workers
        ):
            try:
                key, no_surat, pendaftaran_id = next(self.source)
            except StopIteration:
                self.exhausted = True
                return
            self.counts["asked"] += 1
            if not isinstance(no_surat, str) or not no_surat.strip():
                self.ready.append((key, SicantikDataError.no_letter_number()))
                continue
            future = executor.submit(
                self.api._permit_details, no_surat, pendaftaran_id, self.cancel
            )
            self.in_flight[future] = key

    def _collect(self, future):
        key = self.in_flight.pop(future)
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
        except Exception as err:  # a bug: stop the batch like a system error
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

    def run(self):
        api = self.api
        started = time.monotonic()
        executor = ThreadPoolExecutor(
            max_workers=self.workers, thread_name_prefix="sicantik-cek"
        )
        try:
            while True:
                self._fill(executor)  # refill before handing results out
                while self.ready:
                    key, result = self.ready.popleft()
                    self._count(result)
                    yield key, result
                if not self.in_flight:
                    if self.exhausted or self.failure is not None:
                        break
                    continue
                done, _pending = wait(self.in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    self._collect(future)
            if self.failure is not None:
                api._log.warning(
                    "SICANTIK %s: %s stopped by a system error: %s",
                    api.host,
                    EP_PERMIT_DETAILS,
                    self.failure,
                )
                raise self.failure
        finally:
            self.cancel.set()
            for future in self.in_flight:
                future.cancel()
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
