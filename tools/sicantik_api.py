"""HTTP client of the SICANTIK backoffice API (pure Python, no Odoo import).

One :class:`SicantikApi` per sync run::

    with SicantikApi("https://perizinan.karokab.go.id/backoffice/api") as api:
        for page in api.iter_issued_permits():
            ...
        for key, result in api.fetch_permit_details(items):
            ...

Each public method is one remote endpoint. The work behind them lives in
modules with one job each: ``sicantik_transport`` (one GET, retried, on the
shared ``http_core``), ``sicantik_answers`` (what a status means),
``decoders`` and ``normalise`` (bytes to data to records),
``sicantik_pages`` (pagination) and ``sicantik_details`` (the concurrent
per-permit fetcher). Every line they log goes to this module's logger.
"""

import logging
import time

from .const import (
    DEFAULT_BACKOFF_BASE,
    DEFAULT_BACKOFF_MAX,
    DEFAULT_MAX_PAGES,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_WORKERS,
    DEFAULT_PAGE_SIZE,
    DEFAULT_RATE_LIMIT,
    DEFAULT_RETRY_AFTER_CAP,
    DEFAULT_TIMEOUT,
    EP_COUNT_PERMIT_TYPES,
    EP_ISSUED_PERMITS,
    EP_PERMIT_DETAILS,
    EP_PERMIT_TYPES,
    RESPONSE_FORMATS,
    SCOPE_RECORD,
    SCOPE_SYSTEM,
)
from .decoders import expect_rows
from .normalise import (
    OTHER_LETTER,
    OTHER_REGISTRATION,
    normalise_permit_types,
    reduce_permit_details,
)
from .rate_limiter import RateLimiter
from .records import Page, encode_no_izin
from .sicantik_details import DetailsBatch
from .sicantik_exceptions import (
    SicantikConfigError,
    SicantikDataError,
    SicantikResponseError,
)
from .sicantik_pages import build_page, check_page_args, iter_pages
from .sicantik_transport import SicantikTransport, check_int, check_number

_logger = logging.getLogger(__name__)


class SicantikApi(SicantikTransport):
    """Client of one SICANTIK server.

    :param base_url: e.g. ``https://perizinan.karokab.go.id/backoffice/api``;
        http(s) only, with a host, without credentials, query or fragment.
    :param timeout: ``(connect, read)`` seconds (a single number sets both);
        read is per socket read.
    :param deadline: seconds one attempt may take, from connecting until its
        answer is fully read, status line and headers included (default
        ``connect + 2 * read``): a server trickling its headers or its answer,
        or accepting and never answering, is cut off there even though each
        read stays within the read timeout.
    :param call_deadline: seconds one logical call may take, all its
        attempts and backoff pauses included (default ``2 * deadline``): no
        attempt or pause starts that would end later, and the running
        attempt is cut there. Stated bound: a call ends within
        ``call_deadline + const.DEADLINE_MARGIN`` seconds from the start of
        its first attempt (see ``SicantikTransport._request`` for the one
        exception, a retry's wait at a rate limiter shared with others).
    :param rate_limit: server-side limit in requests per second, 0/None for no
        limit. The client paces itself slightly below it
        (``const.RATE_SAFETY_MARGIN``) so the server never counts more.
    :param max_workers: concurrent requests of :meth:`fetch_permit_details`,
        also the size of the connection pool.
    :param max_retries: retries after the first attempt of one request.
    :param backoff_base: exponential backoff with full jitter: the n-th retry
        waits ``uniform(0, min(backoff_max, backoff_base * 2**(n-1)))`` seconds.
    :param backoff_max: ceiling of one backoff wait.
    :param retry_after_cap: longest ``Retry-After`` honoured in-process; a longer
        one raises at once with ``retry_after`` set, for the scheduler.
    :param max_pages: safety cap of :meth:`iter_issued_permits`.
    :param max_response_bytes: cap on a decoded answer (gzip bombs included).
    :param limiter: a shared :class:`RateLimiter` (then ``rate_limit`` is ignored).
    :param sleep: sleep function (injectable for tests).
    :param logger: logger or ``LoggerAdapter`` naming the connector.
    :param response_format: ``"json"`` (asked with ``format=json`` and
        ``Accept``) or ``"xml"`` (the server's default). Either way the answer is
        read according to its first byte.
    :param address_policy: an ``addresses.AddressPolicy``: every connection
        is then checked against it, on the address actually connected to,
        and a refused one raises ``SicantikAddressNotAllowed`` before any
        byte is sent. None (the default) checks nothing.
    """

    def __init__(
        self,
        base_url,
        *,
        timeout=DEFAULT_TIMEOUT,
        deadline=None,
        rate_limit=DEFAULT_RATE_LIMIT,
        max_workers=DEFAULT_MAX_WORKERS,
        max_retries=DEFAULT_MAX_RETRIES,
        backoff_base=DEFAULT_BACKOFF_BASE,
        backoff_max=DEFAULT_BACKOFF_MAX,
        retry_after_cap=DEFAULT_RETRY_AFTER_CAP,
        max_pages=DEFAULT_MAX_PAGES,
        max_response_bytes=DEFAULT_MAX_RESPONSE_BYTES,
        limiter=None,
        sleep=time.sleep,
        logger=None,
        response_format="json",
        call_deadline=None,
        address_policy=None,
    ):
        if response_format not in RESPONSE_FORMATS:
            raise SicantikConfigError(
                f"response_format must be one of {', '.join(RESPONSE_FORMATS)}"
            )
        if limiter is None and rate_limit:
            rate = check_number("rate_limit", rate_limit)
            limiter = RateLimiter.for_server_limit(rate) if rate else None
        super().__init__(
            base_url,
            timeout=timeout,
            deadline=deadline,
            max_workers=max_workers,
            max_retries=max_retries,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            retry_after_cap=retry_after_cap,
            max_response_bytes=max_response_bytes,
            limiter=limiter,
            sleep=sleep,
            logger=logger or _logger,
            json_format=response_format == "json",
            call_deadline=call_deadline,
            address_policy=address_policy,
        )
        self.max_pages = check_int("max_pages", max_pages, 1)

    def __repr__(self):
        return f"SicantikApi({self.host!r}, limiter={self.limiter!r})"

    # ------------------------------------------------------------------
    # Endpoints
    # ------------------------------------------------------------------
    def count_permit_types(self):
        """Number of permit types: remote ``GET jumlahPerizinan``.

        The connection test (no parameters, always 200 on a healthy server). It
        counts permit *types*, not permits.
        """
        answer = self._request(EP_COUNT_PERMIT_TYPES)
        rows = [] if answer.no_data else self._rows(answer, EP_COUNT_PERMIT_TYPES)
        first = rows[0] if rows and isinstance(rows[0], dict) else {}
        value = first.get("jumlahPerizinan")
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise SicantikResponseError(
                f"answer of {EP_COUNT_PERMIT_TYPES} holds no count",
                endpoint=EP_COUNT_PERMIT_TYPES,
            )
        return value

    def list_permit_types(self):
        """Permit types: remote ``GET jenisperizinanlist`` -> list of PermitType.

        An empty table is answered with a 404 and an empty body: that gives [].
        Bad rows are skipped and logged.
        """
        answer = self._request(EP_PERMIT_TYPES, empty_404_is_empty=True)
        if answer.no_data:
            return []
        types, skipped = normalise_permit_types(self._rows(answer, EP_PERMIT_TYPES))
        self._log_skipped(EP_PERMIT_TYPES, skipped)
        return list(types)

    def list_issued_permits(self, limit=DEFAULT_PAGE_SIZE, offset=0):
        """One page of issued permits: remote ``GET listpermohonanterbit``.

        ``limit`` rows from row ``offset``. Past the end the server answers 404
        ``Tidak ada data..``: that gives an empty last page. Duplicate rows of
        one permit are merged, bad rows skipped (``Page.skipped``).
        """
        return self._list_page(limit, offset)

    def _list_page(self, limit, offset):
        check_page_args(limit, offset)
        answer = self._request(EP_ISSUED_PERMITS, {"limit": limit, "offset": offset})
        if answer.no_data:
            return Page(offset=offset, limit=limit, raw_count=0, is_last=True)
        page = build_page(self._rows(answer, EP_ISSUED_PERMITS), offset, limit)
        self._log_skipped(EP_ISSUED_PERMITS, page.skipped)
        self._log.info(
            "SICANTIK %s: %s offset=%d limit=%d: %d rows, %d permits, %d skipped%s",
            self.host,
            EP_ISSUED_PERMITS,
            offset,
            limit,
            page.raw_count,
            len(page.permits),
            len(page.skipped),
            ", with expiry dates" if page.has_expiry_field else "",
        )
        return page

    def iter_issued_permits(
        self, page_size=DEFAULT_PAGE_SIZE, start_offset=0, previous_digest=None
    ):
        """Every page of issued permits: remote ``GET listpermohonanterbit``.

        Yields non-empty pages until the server's 404 ``Tidak ada data..`` end
        marker or a page with fewer rows than asked. Raises
        ``SicantikResponseError`` when a page repeats the previous one (the
        server ignores the offset) or after ``max_pages`` pages.
        ``previous_digest`` is the ``Page.digest`` of the page before
        ``start_offset`` when an earlier run read it, so that a repetition
        is noticed across runs too.
        """
        return iter_pages(self, page_size, start_offset, previous_digest)

    def get_permit_details(self, no_surat, pendaftaran_id=None):
        """One permit with its expiry date: remote ``GET cekperizinan?no_izin=``.

        ``no_izin`` is the base64 of ``no_surat`` exactly as served (query form,
        safe for ``+`` and ``/``). Returns a PermitDetails, or None when the
        server answers 404 ``Tidak ada data..`` (unknown number, or a permit
        without a linked company, which this endpoint can never show) or when
        every row concerns another ``pendaftaran_id``. An empty number is never
        sent (the server would return every permit without a number): it raises
        ``SicantikDataError`` without any request.
        """
        return self._permit_details(no_surat, pendaftaran_id, None)

    def _permit_details(self, no_surat, pendaftaran_id, cancel):
        if not isinstance(no_surat, str) or not no_surat.strip():
            raise SicantikDataError.no_letter_number()
        answer = self._request(
            EP_PERMIT_DETAILS,
            {"no_izin": encode_no_izin(no_surat)},
            per_record=True,
            cancel=cancel,
        )
        if answer.no_data:
            return None
        rows = self._rows(answer, EP_PERMIT_DETAILS, scope=SCOPE_RECORD)
        details, skipped = reduce_permit_details(rows, pendaftaran_id, no_surat)
        other = [s for s in skipped if s.reason in (OTHER_REGISTRATION, OTHER_LETTER)]
        self._log_skipped(EP_PERMIT_DETAILS, [s for s in skipped if s not in other])
        if details is None:
            if other:
                self._log.warning(
                    "SICANTIK %s: %s answer for registration %s only concerns "
                    "other registrations or letters",
                    self.host,
                    EP_PERMIT_DETAILS,
                    pendaftaran_id,
                )
                return None
            if rows:
                raise SicantikResponseError(
                    f"answer of {EP_PERMIT_DETAILS} holds no usable row",
                    endpoint=EP_PERMIT_DETAILS,
                    scope=SCOPE_RECORD,
                )
        return details

    def fetch_permit_details(self, items, *, max_workers=None):
        """Many ``cekperizinan`` calls, concurrent and rate-limited.

        ``items`` is an iterable (consumed lazily) of ``(key, no_surat,
        pendaftaran_id)``. Yields ``(key, result)`` as calls complete, where
        result is a ``PermitDetails``, None (no data for that permit) or a
        **record-scope** ``SicantikError`` (empty number, unreadable answer...):
        one bad permit never stops the others.

        At most ``max_workers`` (default and ceiling: the client's, which sizes
        the connection pool) calls are in flight; items are only taken from
        ``items`` as calls finish.

        Stopping:

        * closing the generator (``close()``, ``break`` + garbage collection)
          starts no further request; it waits for the requests already on the
          wire (bounded by the read timeout), not for backoffs or rate-limit
          waits.
        * a **system-scope** error (network, server down, throttled beyond
          ``retry_after_cap``, configuration) stops taking items and new
          attempts; the results of the calls in flight are still yielded, then
          the first system error is **raised** with ``err.key`` set to the key
          of the item that hit it. Items not yielded were not settled.
        * ``const.MAX_RECORD_FAILURES_IN_A_ROW`` record-scope failures in a row
          (each already retried) count as a system error too: a server that
          answers every permit with garbage is broken, and the batch stops
          instead of spending every item's retries on it.
        """
        return DetailsBatch(self, items, self._workers(max_workers)).run()

    def open_permit_details(self, *, max_workers=None):
        """A running ``cekperizinan`` batch with an open input, for a caller
        that feeds it and reads it in turns (see ``DetailsBatch.add``,
        ``results(deadline)`` and ``close``); same rules as
        :meth:`fetch_permit_details`. The caller closes it."""
        return DetailsBatch(self, None, self._workers(max_workers)).start()

    def _workers(self, max_workers):
        if max_workers is None:
            return self.max_workers
        return max(1, min(int(max_workers), self.max_workers))

    # ------------------------------------------------------------------
    # Helpers
    # ------------------------------------------------------------------
    def _rows(self, answer, endpoint, *, scope=SCOPE_SYSTEM):
        try:
            return expect_rows(answer.payload, endpoint=endpoint)
        except SicantikResponseError as err:
            err.scope = scope
            raise

    def _log_skipped(self, endpoint, skipped):
        for record in skipped:
            self._log.warning(
                "SICANTIK %s: %s row %d skipped (%s)%s",
                self.host,
                endpoint,
                record.index,
                record.reason,
                f", registration {record.pendaftaran_id}"
                if record.pendaftaran_id
                else "",
            )
