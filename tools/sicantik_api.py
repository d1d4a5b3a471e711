"""HTTP client of the SICANTIK backoffice API (pure Python, no Odoo import).

One :class:`SicantikApi` per sync run::

    with SicantikApi("https://perizinan.karokab.go.id/backoffice/api") as api:
        for page in api.iter_issued_permits():
            ...
        for key, result in api.fetch_permit_details(items):
            ...

One private ``_request()`` owns the URL, the rate limiter, the retries, the
bounded streaming read, the decoding and the mapping of every failure to a typed
:class:`~.sicantik_exceptions.SicantikError`. Each public method is one remote
endpoint. Retries happen here and only here (no urllib3 ``Retry``), so every
attempt passes the rate limiter and is counted in :attr:`SicantikApi.stats`.
"""

import email.utils
import hashlib
import http.client
import logging
import math
import random
import re
import threading
import time
from collections import deque, namedtuple
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from datetime import datetime, timezone
from http.cookiejar import DefaultCookiePolicy
from urllib.parse import urlsplit, urlunsplit

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter

from .const import (
    ACCEPT_ENCODING,
    ACCEPT_JSON,
    ACCEPT_XML,
    ACCESS_DENIED_STATUSES,
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
    JSON_QUERY,
    MAX_RECORD_FAILURES_IN_A_ROW,
    NO_DATA_MARKER,
    PERMANENT_SERVER_STATUSES,
    READ_CHUNK_BYTES,
    RECORD_FAILURE_TYPES,
    RESPONSE_FORMATS,
    RETRY_AFTER_STATUSES,
    SCOPE_RECORD,
    SCOPE_SYSTEM,
    UNKNOWN_METHOD_MARKER,
    USER_AGENT,
)
from .decoders import (
    OTHER_REGISTRATION,
    BoundedBody,
    decode_payload,
    error_text,
    expect_rows,
    normalise_issued_rows,
    normalise_permit_types,
    reduce_permit_details,
)
from .rate_limiter import RateLimiter
from .records import Page, encode_no_izin
from .sicantik_exceptions import (
    SicantikBadRequest,
    SicantikConfigError,
    SicantikConnectionError,
    SicantikDataError,
    SicantikError,
    SicantikRateLimited,
    SicantikResponseError,
    SicantikServerError,
    SicantikTimeout,
    SicantikTLSError,
)
from .stats import ClientStats

_logger = logging.getLogger(__name__)

# A decoded answer: ``no_data`` is True for the 404 "Tidak ada data.." marker.
_Answer = namedtuple("_Answer", "payload no_data")

# Anything that looks like a query string inside a library message.
_QUERY_RE = re.compile(r"\?[^\s'\")>]*")
_OBJECT_RE = re.compile(r"<[\w.]+ object at 0x[0-9a-f]+>:?\s*")


class _Cancelled(Exception):
    """Internal: the caller stopped a batch; no further request is made."""


def parse_retry_after(value, *, now=None):
    """Seconds to wait from a ``Retry-After`` header (seconds or HTTP-date).

    Returns None when the header is absent or unreadable; a date in the past
    gives 0.
    """
    if value is None:
        return None
    value = str(value).strip()
    if not value:
        return None
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


def _scrub(text, limit=160):
    """A library message made safe for our messages: no query string, short."""
    text = _OBJECT_RE.sub("", _QUERY_RE.sub("?…", str(text)))
    return text[:limit]


def _innermost_reason(error):
    """The root cause inside requests/urllib3 wrappers (MaxRetryError.reason)."""
    seen = set()
    current = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, urllib3.exceptions.MaxRetryError) and current.reason:
            current = current.reason
            continue
        args = getattr(current, "args", ())
        if args and isinstance(args[0], BaseException):
            current = args[0]
            continue
        break
    return current


def _is_incomplete_read(error):
    incomplete = (http.client.IncompleteRead, urllib3.exceptions.IncompleteRead)
    if isinstance(error, incomplete):
        return True
    return any(isinstance(arg, incomplete) for arg in getattr(error, "args", ()))


class SicantikApi:
    """Client of one SICANTIK server.

    :param base_url: e.g. ``https://perizinan.karokab.go.id/backoffice/api``;
        http(s) only, with a host, without credentials, query or fragment.
    :param timeout: ``(connect, read)`` seconds (a single number sets both);
        read is per socket read.
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
    """

    def __init__(
        self,
        base_url,
        *,
        timeout=DEFAULT_TIMEOUT,
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
    ):
        self.base_url, self.host = self._check_url(base_url)
        self.timeout = self._check_timeout(timeout)
        self.max_workers = self._check_int("max_workers", max_workers, 1)
        self.max_retries = self._check_int("max_retries", max_retries, 0)
        self.max_pages = self._check_int("max_pages", max_pages, 1)
        self.max_response_bytes = self._check_int(
            "max_response_bytes", max_response_bytes, 1
        )
        self.backoff_base = self._check_number("backoff_base", backoff_base)
        self.backoff_max = self._check_number("backoff_max", backoff_max)
        self.retry_after_cap = self._check_number("retry_after_cap", retry_after_cap)
        if response_format not in RESPONSE_FORMATS:
            raise SicantikConfigError(
                f"response_format must be one of {', '.join(RESPONSE_FORMATS)}"
            )
        if limiter is None and rate_limit:
            rate = self._check_number("rate_limit", rate_limit)
            limiter = RateLimiter.for_server_limit(rate) if rate else None
        self.limiter = limiter
        self.stats = ClientStats()
        self._sleep = sleep
        self._log = logger or _logger
        self._random = random.Random()
        self._format_query = dict(JSON_QUERY) if response_format == "json" else {}
        self._session = self._make_session(
            ACCEPT_JSON if response_format == "json" else ACCEPT_XML
        )
        self._closed = False

    # ------------------------------------------------------------------
    # Configuration checks
    # ------------------------------------------------------------------
    @staticmethod
    def _check_url(base_url):
        if not isinstance(base_url, str) or not base_url.strip():
            raise SicantikConfigError("the SICANTIK URL is empty")
        try:
            parts = urlsplit(base_url.strip())
            _port = parts.port  # raises ValueError on a bad port
        except ValueError as e:
            raise SicantikConfigError(
                f"the SICANTIK URL is not a valid URL ({_scrub(e, 80)})"
            ) from e
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise SicantikConfigError(
                "the SICANTIK URL must start with http:// or https://"
            )
        if "@" in parts.netloc:
            raise SicantikConfigError(
                "the SICANTIK URL must not contain a user name or password"
            )
        if not parts.hostname:
            raise SicantikConfigError("the SICANTIK URL has no host name")
        if parts.query or parts.fragment:
            raise SicantikConfigError(
                "the SICANTIK URL must not contain a query string or fragment"
            )
        path = parts.path.rstrip("/")
        return urlunsplit((scheme, parts.netloc, path, "", "")), parts.netloc

    @staticmethod
    def _check_timeout(timeout):
        values = timeout if isinstance(timeout, tuple | list) else (timeout, timeout)
        try:
            connect, read = (float(v) for v in values)
        except (TypeError, ValueError) as e:
            raise SicantikConfigError(
                "timeout must be seconds or a (connect, read) pair"
            ) from e
        if connect <= 0 or read <= 0:
            raise SicantikConfigError("timeouts must be positive")
        return connect, read

    @staticmethod
    def _check_int(name, value, minimum):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise SicantikConfigError(f"{name} must be an integer >= {minimum}")
        return value

    @staticmethod
    def _check_number(name, value):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
        ):
            raise SicantikConfigError(f"{name} must be a finite number >= 0")
        return float(value)

    def _make_session(self, accept):
        session = requests.Session()
        session.headers.update(
            {
                "User-Agent": USER_AGENT,
                "Accept": accept,
                "Accept-Encoding": ACCEPT_ENCODING,
            }
        )
        session.verify = True
        # The API has no session: refuse cookies (no state shared by threads).
        session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        # No transport-level retries: _request() retries, through the limiter.
        adapter = HTTPAdapter(
            pool_connections=1, pool_maxsize=self.max_workers, max_retries=0
        )
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    # ------------------------------------------------------------------
    # Life cycle
    # ------------------------------------------------------------------
    def close(self):
        """Close the HTTP session (idempotent)."""
        if not self._closed:
            self._closed = True
            self._session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        return f"SicantikApi({self.host!r}, limiter={self.limiter!r})"

    # ------------------------------------------------------------------
    # Transport
    # ------------------------------------------------------------------
    def _request(
        self,
        endpoint,
        params=None,
        *,
        per_record=False,
        empty_404_is_empty=False,
        cancel=None,
    ):
        """GET ``endpoint`` and return an ``_Answer``; raise a SicantikError.

        Retries timeouts, connection failures, truncated or unreadable answers
        and 5xx with full-jitter backoff; honours Retry-After on 429/503 up to
        ``retry_after_cap``. Every attempt waits for the rate limiter. With
        ``per_record`` the failures tied to the answer itself (unreadable, too
        large) get the ``record`` scope. ``cancel`` (a ``threading.Event``)
        stops before any further attempt.
        """
        if self._closed:
            raise SicantikConfigError("the SICANTIK client is closed")
        query = dict(params or {})
        query.update(self._format_query)
        # Prepared once, before the limiter: after a token is granted only the
        # socket write remains, so the server sees the pace we keep.
        request, send_kwargs = self._prepare(endpoint, query)
        attempt = 0
        while True:
            attempt += 1
            self._check_cancel(cancel)
            if self.limiter is not None:
                self.stats.record_wait(self.limiter.acquire())
                self._check_cancel(cancel)
            try:
                status, headers, body = self._attempt(
                    endpoint, request, send_kwargs, attempt
                )
                return self._interpret(
                    endpoint, status, headers, body, empty_404_is_empty
                )
            except SicantikError as err:
                err.attempts = attempt
                err.endpoint = err.endpoint or endpoint
                if per_record and err.failure_type in RECORD_FAILURE_TYPES:
                    err.scope = SCOPE_RECORD
                delay = self._retry_delay(err, attempt)
                if delay is None:
                    raise
                self.stats.record_retry()
                self._log.debug(
                    "SICANTIK %s: %s attempt %d failed (%s: %s), retrying in %.2f s",
                    self.host,
                    endpoint,
                    attempt,
                    err.failure_type,
                    err.message,
                    delay,
                )
                self._pause(delay, cancel)

    def _check_cancel(self, cancel):
        if cancel is not None and cancel.is_set():
            raise _Cancelled()

    def _pause(self, delay, cancel):
        if delay <= 0:
            return
        if cancel is not None and self._sleep is time.sleep:
            # Interruptible: closing a batch does not wait for a backoff.
            if cancel.wait(delay):
                raise _Cancelled()
        else:
            self._sleep(delay)

    def _retry_delay(self, err, attempt):
        """Seconds to wait before the next attempt, or None to give up."""
        if not err.retryable or attempt > self.max_retries:
            return None
        if err.retry_after is not None:
            if err.retry_after > self.retry_after_cap:
                self._log.warning(
                    "SICANTIK %s: %s asks to come back in %.0f s "
                    "(more than the %.0f s we wait in-process)",
                    self.host,
                    err.endpoint,
                    err.retry_after,
                    self.retry_after_cap,
                )
                return None
            return err.retry_after
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        return self._random.uniform(0.0, ceiling)

    def _prepare(self, endpoint, query):
        """The prepared GET and the keyword arguments of ``Session.send``."""
        url = f"{self.base_url}/{endpoint}"
        try:
            request = self._session.prepare_request(
                requests.Request("GET", url, params=query)
            )
            kwargs = self._session.merge_environment_settings(
                request.url, {}, True, None, None
            )
        except requests.exceptions.RequestException as e:
            raise self._transport_error(e, endpoint) from e
        kwargs.update(timeout=self.timeout, allow_redirects=False)
        return request, kwargs

    def _attempt(self, endpoint, request, send_kwargs, attempt):
        """One HTTP GET: ``(status, headers, body)``; failures become errors."""
        started = time.monotonic()
        status = None
        sink = BoundedBody(self.max_response_bytes, endpoint=endpoint)
        outcome = "no answer"
        try:
            try:
                response = self._session.send(request, **send_kwargs)
            except requests.exceptions.RequestException as e:
                outcome = type(e).__name__
                raise self._transport_error(e, endpoint) from e
            status = response.status_code
            outcome = status
            try:
                sink = BoundedBody(
                    self.max_response_bytes,
                    response.headers.get("Content-Encoding"),
                    endpoint=endpoint,
                )
                body = self._read_body(response, endpoint, sink)
            finally:
                # Fully read: the connection is already back in the pool and
                # this is a no-op; otherwise it drops the half-read connection.
                response.close()
            return status, response.headers, body
        finally:
            elapsed = time.monotonic() - started
            self.stats.record_attempt(endpoint, status, elapsed, sink.raw_bytes)
            self._log.debug(
                "SICANTIK %s: GET %s -> %s in %.0f ms (attempt %d)",
                self.host,
                endpoint,
                outcome,
                elapsed * 1000.0,
                attempt,
            )

    def _read_body(self, response, endpoint, sink):
        """Stream the raw body into ``sink`` (size cap), detect truncation."""
        length = response.headers.get("Content-Length")
        try:
            length = int(length) if length is not None else None
        except ValueError:
            length = None
        if length is not None and length > self.max_response_bytes:
            raise SicantikResponseError.too_large(
                self.max_response_bytes, endpoint=endpoint, status=response.status_code
            )
        try:
            for chunk in response.raw.stream(READ_CHUNK_BYTES, decode_content=False):
                sink.feed(chunk)
        except urllib3.exceptions.ReadTimeoutError as e:
            raise SicantikTimeout(
                f"{self.host} stopped sending the answer of {endpoint} "
                f"(no data for {self.timeout[1]:g} s)",
                endpoint=endpoint,
            ) from e
        except (urllib3.exceptions.HTTPError, OSError) as e:
            if _is_incomplete_read(e):
                raise self._truncated(endpoint, sink.raw_bytes, length) from e
            raise SicantikConnectionError(
                f"connection to {self.host} broke while reading the answer of "
                f"{endpoint} ({_scrub(_innermost_reason(e))})",
                endpoint=endpoint,
            ) from e
        if length is not None and sink.raw_bytes < length:
            # urllib3 1.26 does not enforce Content-Length; we do.
            raise self._truncated(endpoint, sink.raw_bytes, length)
        return sink.finish()

    def _truncated(self, endpoint, received, expected):
        of = f" of {expected}" if expected is not None else ""
        return SicantikResponseError(
            f"answer of {endpoint} is truncated (received {received}{of} bytes)",
            retryable=True,
            endpoint=endpoint,
        )

    def _transport_error(self, error, endpoint):
        """Map a ``requests`` exception raised before any answer."""
        exc = requests.exceptions
        reason = _scrub(_innermost_reason(error))
        if isinstance(error, exc.SSLError):
            return SicantikTLSError(
                f"secure connection to {self.host} failed ({reason}); "
                f"check the server certificate",
                endpoint=endpoint,
            )
        if isinstance(error, exc.ConnectTimeout):
            return SicantikTimeout(
                f"connecting to {self.host} timed out after {self.timeout[0]:g} s",
                endpoint=endpoint,
            )
        if isinstance(error, exc.ReadTimeout):
            return SicantikTimeout(
                f"{self.host} did not answer {endpoint} "
                f"within {self.timeout[1]:g} s",
                endpoint=endpoint,
            )
        if isinstance(
            error,
            exc.InvalidURL | exc.InvalidSchema | exc.MissingSchema | exc.InvalidHeader,
        ):
            return SicantikConfigError(
                f"cannot build a request to {self.host} ({reason})",
                endpoint=endpoint,
            )
        return SicantikConnectionError(
            f"cannot reach {self.host} ({reason})", endpoint=endpoint
        )

    # ------------------------------------------------------------------
    # Status conventions
    # ------------------------------------------------------------------
    def _interpret(self, endpoint, status, headers, body, empty_404_is_empty):
        if status == 200:
            return _Answer(decode_payload(body, endpoint=endpoint), False)
        if 300 <= status < 400:
            raise SicantikConfigError(
                self._redirect_message(endpoint, status, headers.get("Location")),
                status=status,
                endpoint=endpoint,
            )
        if status == 404:
            return self._interpret_404(endpoint, body, empty_404_is_empty)
        if status == 429:
            retry_after = parse_retry_after(headers.get("Retry-After"))
            hint = "" if retry_after is None else f", retry after {retry_after:g} s"
            raise SicantikRateLimited(
                f"{self.host} throttled {endpoint} (HTTP 429{hint})",
                retry_after=retry_after,
                status=status,
                endpoint=endpoint,
            )
        if status in ACCESS_DENIED_STATUSES:
            raise SicantikConfigError(
                f"{self.host} refused access to {endpoint} (HTTP {status}); "
                f"check the URL and that this server may call the API",
                status=status,
                endpoint=endpoint,
            )
        if 500 <= status < 600:
            retry_after = None
            if status in RETRY_AFTER_STATUSES:
                retry_after = parse_retry_after(headers.get("Retry-After"))
            detail = "empty answer: a server or SQL error" if not body.strip() else ""
            raise SicantikServerError(
                f"{endpoint} failed on {self.host} (HTTP {status}"
                f"{', ' + detail if detail else ''})",
                retryable=status not in PERMANENT_SERVER_STATUSES,
                retry_after=retry_after,
                status=status,
                endpoint=endpoint,
            )
        if 400 <= status < 500:
            raise SicantikBadRequest(
                f"{self.host} rejected our {endpoint} request (HTTP {status})",
                status=status,
                endpoint=endpoint,
            )
        raise SicantikResponseError(
            f"{endpoint} answered with the unexpected HTTP status {status}",
            retryable=200 <= status < 300,
            status=status,
            endpoint=endpoint,
        )

    def _interpret_404(self, endpoint, body, empty_404_is_empty):
        if not body.strip():
            if empty_404_is_empty:
                return _Answer([], True)
            raise SicantikBadRequest(
                f"{self.host} rejected our {endpoint} request as missing or bad "
                f"parameters (HTTP 404 with an empty body); this is a client bug",
                status=404,
                endpoint=endpoint,
            )
        try:
            text = error_text(decode_payload(body, endpoint=endpoint)) or ""
        except SicantikResponseError:
            text = ""
        if NO_DATA_MARKER in text:
            return _Answer(None, True)
        if UNKNOWN_METHOD_MARKER in text or UNKNOWN_METHOD_MARKER.encode() in body:
            raise SicantikConfigError(
                f"{self.host} does not know the method {endpoint} (HTTP 404 "
                f"'Unknown method.'); check that the URL ends in /backoffice/api",
                status=404,
                endpoint=endpoint,
            )
        raise SicantikConfigError(
            f"{endpoint} does not exist on {self.host} (HTTP 404); check the URL",
            status=404,
            endpoint=endpoint,
        )

    def _redirect_message(self, endpoint, status, location):
        target = "another address"
        if location:
            parts = urlsplit(location)
            if parts.netloc:
                target = f"{parts.scheme or 'http'}://{parts.hostname or ''}"
                if parts.hostname == urlsplit(self.base_url).hostname:
                    target += " (same host)"
            else:
                target = f"a path on {self.host}"
        return (
            f"{self.host} redirected {endpoint} (HTTP {status}) to {target}; "
            f"redirects are not followed, update the SICANTIK URL"
        )

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

    def _list_page(self, limit, offset, *, log=True):
        self._check_page_args(limit, offset)
        answer = self._request(EP_ISSUED_PERMITS, {"limit": limit, "offset": offset})
        if answer.no_data:
            return Page(offset=offset, limit=limit, raw_count=0, is_last=True)
        rows = self._rows(answer, EP_ISSUED_PERMITS)
        permits, skipped = normalise_issued_rows(rows)
        if rows and not permits:
            # Not one usable row: the answer is broken, not the permits.
            # Advancing past it would leave these rows out of the pass.
            raise SicantikResponseError(
                f"none of the {len(rows)} rows of {EP_ISSUED_PERMITS} at "
                f"offset {offset} is usable ({skipped[0].reason})",
                retryable=True,
                endpoint=EP_ISSUED_PERMITS,
            )
        fingerprint = tuple(map(_row_fingerprint, rows))
        page = Page(
            offset=offset,
            limit=limit,
            raw_count=len(rows),
            permits=permits,
            skipped=skipped,
            is_last=len(rows) < limit,
            digest=hashlib.sha256(repr(fingerprint).encode()).hexdigest(),
        )
        self._log_skipped(EP_ISSUED_PERMITS, skipped)
        if log:
            self._log.info(
                "SICANTIK %s: %s offset=%d limit=%d: %d rows, %d permits, "
                "%d skipped%s",
                self.host,
                EP_ISSUED_PERMITS,
                offset,
                limit,
                len(rows),
                len(permits),
                len(skipped),
                ", with expiry dates" if page.has_expiry_field else "",
            )
        return page

    @staticmethod
    def _check_page_args(limit, offset):
        for name, value, minimum in (("limit", limit, 1), ("offset", offset, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}")

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
        self._check_page_args(page_size, start_offset)
        offset = start_offset
        previous = previous_digest
        pages = rows = 0
        while True:
            if pages >= self.max_pages:
                raise SicantikResponseError(
                    f"{EP_ISSUED_PERMITS} still had data after {self.max_pages} "
                    f"pages; stopped (raise max_pages if the list is that long)",
                    endpoint=EP_ISSUED_PERMITS,
                )
            page = self._list_page(page_size, offset)
            pages += 1
            if not page.raw_count:
                break
            if page.digest == previous:
                raise SicantikResponseError(
                    f"{EP_ISSUED_PERMITS} served the same page at offset {offset} "
                    f"as at offset {offset - page_size}: the server ignores "
                    f"the offset",
                    endpoint=EP_ISSUED_PERMITS,
                )
            previous = page.digest
            rows += page.raw_count
            yield page
            if page.is_last:
                break
            offset = page.next_offset
        self._log.info(
            "SICANTIK %s: %s done: %d rows in %d requests",
            self.host,
            EP_ISSUED_PERMITS,
            rows,
            pages,
        )

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
            raise SicantikDataError(
                "the permit has no letter number (no_surat); cekperizinan is not "
                "asked with an empty value",
                endpoint=EP_PERMIT_DETAILS,
            )
        answer = self._request(
            EP_PERMIT_DETAILS,
            {"no_izin": encode_no_izin(no_surat)},
            per_record=True,
            cancel=cancel,
        )
        if answer.no_data:
            return None
        rows = self._rows(answer, EP_PERMIT_DETAILS, scope=SCOPE_RECORD)
        details, skipped = reduce_permit_details(rows, pendaftaran_id)
        other = [s for s in skipped if s.reason == OTHER_REGISTRATION]
        self._log_skipped(EP_PERMIT_DETAILS, [s for s in skipped if s not in other])
        if details is None:
            if other:
                self._log.warning(
                    "SICANTIK %s: %s answer for registration %s only concerns "
                    "other registrations",
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
        workers = self.max_workers
        if max_workers is not None:
            workers = max(1, min(int(max_workers), self.max_workers))
        return _DetailsBatch(self, items, workers).run()

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


def _row_fingerprint(row):
    """Hashable image of a raw row, to notice a page served twice."""
    if isinstance(row, dict):
        return tuple(sorted((str(k), repr(v)) for k, v in row.items()))
    return repr(row)


class _DetailsBatch:
    """The machinery of ``SicantikApi.fetch_permit_details`` (one call)."""

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
                error = SicantikDataError(
                    "the permit has no letter number (no_surat); cekperizinan "
                    "is not asked with an empty value",
                    endpoint=EP_PERMIT_DETAILS,
                )
                self.ready.append((key, error))
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
        except _Cancelled:
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
