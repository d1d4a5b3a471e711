"""One SICANTIK GET: limiter, retries, bounded read, typed errors.

:class:`SicantikTransport` is the base of :class:`~.sicantik_api.SicantikApi`.
Its private :meth:`~SicantikTransport._request` owns the URL, the rate
limiter, the retries, the bounded read (size and deadline, from the HTTP
core) and the mapping of every failure to a typed
:class:`~.sicantik_exceptions.SicantikError`. Retries happen here and only
here (no urllib3 ``Retry``), so every attempt passes the rate limiter (slot
taken before the attempt, checked again at the write by the send gate) and is
counted in ``stats``. What an answer's status means is the job of
``sicantik_answers.py``.
"""

import math
import random
import re
import time

import requests

from . import http_core
from .api_errors import AddressNotAllowed, LimiterUnavailable
from .const import (
    ACCEPT_ENCODING,
    ACCEPT_JSON,
    ACCEPT_XML,
    JSON_QUERY,
    RECORD_FAILURE_TYPES,
    SCOPE_RECORD,
)
from .decoders import BoundedBody
from .sicantik_answers import interpret
from .sicantik_exceptions import (
    SicantikAddressNotAllowed,
    SicantikConfigError,
    SicantikConnectionError,
    SicantikError,
    SicantikResponseError,
    SicantikTimeout,
    SicantikTLSError,
)
from .stats import ClientStats

# Anything that looks like a query string inside a library message.
_QUERY_RE = re.compile(r"\?[^\s'\")>]*")
_OBJECT_RE = re.compile(r"<[\w.]+ object at 0x[0-9a-f]+>:?\s*")


class Cancelled(Exception):
    """Internal: the caller stopped a batch; no further request is made."""


def scrub(text, limit=160):
    """A library message made safe for our messages: no query string, short."""
    text = _OBJECT_RE.sub("", _QUERY_RE.sub("?…", str(text)))
    return text[:limit]


def pace_factor(limiter):
    """The limiter's adaptive pace (fraction of its rate); 1 if it has none."""
    current = getattr(limiter, "pace_factor", None)
    return current() if current else 1.0


def check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SicantikConfigError(f"{name} must be an integer >= {minimum}")
    return value


def check_number(name, value):
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise SicantikConfigError(f"{name} must be a finite number >= 0")
    return float(value)


class SicantikTransport:
    """GET requests to one SICANTIK server; see ``SicantikApi`` for the
    meaning of each setting. ``logger`` is the client's (never None)."""

    def __init__(
        self,
        base_url,
        *,
        timeout,
        deadline,
        max_workers,
        max_retries,
        backoff_base,
        backoff_max,
        retry_after_cap,
        max_response_bytes,
        limiter,
        sleep,
        logger,
        json_format,
        call_deadline=None,
        address_policy=None,
    ):
        try:
            self.base_url, self.host = http_core.check_base_url(base_url)
        except http_core.UrlProblem as e:
            detail = f" ({scrub(e.detail, 80)})" if e.detail else ""
            raise SicantikConfigError(f"the SICANTIK URL {e}{detail}") from e
        try:
            self.timeout = http_core.check_timeout(timeout)
            self.deadline = http_core.attempt_deadline(self.timeout, deadline)
            self.call_deadline = http_core.attempt_deadline(
                self.timeout,
                2 * self.deadline if call_deadline is None else call_deadline,
            )
        except ValueError as e:
            raise SicantikConfigError(str(e)) from e
        self.max_workers = check_int("max_workers", max_workers, 1)
        self.max_retries = check_int("max_retries", max_retries, 0)
        self.max_response_bytes = check_int("max_response_bytes", max_response_bytes, 1)
        self.backoff_base = check_number("backoff_base", backoff_base)
        self.backoff_max = check_number("backoff_max", backoff_max)
        self.retry_after_cap = check_number("retry_after_cap", retry_after_cap)
        self.limiter = limiter
        self.stats = ClientStats()
        self._sleep = sleep
        self._log = logger
        self._random = random.Random()
        self._format_query = dict(JSON_QUERY) if json_format else {}
        self.address_policy = address_policy
        self._guard = http_core.Guard(address_policy)
        self._session = http_core.make_session(
            accept=ACCEPT_JSON if json_format else ACCEPT_XML,
            pool_maxsize=self.max_workers,
            accept_encoding=ACCEPT_ENCODING,
            guard=self._guard,
        )
        self._closed = False

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

    # ------------------------------------------------------------------
    # One request, retried
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
        """GET ``endpoint`` and return an ``Answer``; raise a SicantikError.

        Retries timeouts, connection failures, truncated or unreadable answers
        and 5xx with full-jitter backoff; honours Retry-After on 429/503 up to
        ``retry_after_cap``. Every attempt waits for the rate limiter, and
        its slot is checked again when the request is written, connection
        open (``http_core.SendGate``; a stale slot is replaced). With
        ``per_record`` the failures tied to the answer itself (unreadable, too
        large) get the ``record`` scope. ``cancel`` (a ``threading.Event``)
        stops before any further attempt.

        Bound: from the start of the first attempt (once the rate limiter
        let it go), the call ends within ``call_deadline`` plus
        ``const.DEADLINE_MARGIN``, attempts and backoff pauses included: no
        attempt starts and no pause begins that would end past it, and the
        running attempt is cut there (``Guard``). Only waits at the rate
        limiter are not counted: a retry's wait before its attempt (which
        is not made if the call deadline passed meanwhile), and a wait for
        a fresh slot at the send gate, which moves the attempt's deadline
        and the call's end back by as much.
        """
        if self._closed:
            raise SicantikConfigError("the SICANTIK client is closed")
        query = dict(params or {})
        query.update(self._format_query)
        # Prepared once, before the limiter: after a slot only the connection
        # and the write remain, and the gate checks the slot at the write.
        request, send_kwargs = self._prepare(endpoint, query)
        gate = http_core.SendGate.for_limiter(self.limiter, self.stats.record_late_slot)
        attempt = 0
        call_end = error = None
        while True:
            attempt += 1
            self._check_cancel(cancel)
            if self.limiter is not None:
                self.stats.record_wait(self.limiter.acquire())
                self.stats.record_pace(pace_factor(self.limiter))
                self._check_cancel(cancel)
            started = time.monotonic()
            if call_end is None:
                call_end = started + self.call_deadline
            elif started >= call_end:
                raise error  # the limiter's wait used up the call's time
            guarded = self._guard.attempt(
                min(started + self.deadline, call_end), before_send=gate
            )
            try:
                status, headers, body = self._attempt(
                    endpoint, request, send_kwargs, attempt, started, guarded
                )
                return interpret(
                    endpoint,
                    status,
                    headers,
                    body,
                    host=self.host,
                    base_url=self.base_url,
                    empty_404_is_empty=empty_404_is_empty,
                )
            except LimiterUnavailable:
                raise  # from the gate: no send time, as from acquire()
            except SicantikError as err:
                error = err
                call_end += guarded.paused  # the gate's wait is not counted
                delay = self._after_failure(
                    err, endpoint, attempt, per_record, call_end
                )
                if delay is None:
                    raise
                self._pause(delay, cancel)

    def _after_failure(self, err, endpoint, attempt, per_record, call_end):
        """Complete ``err`` and return the pause before the next attempt, or
        None when the call must give up (not retryable, retries used, or the
        pause would end past the call deadline)."""
        err.attempts = attempt
        err.endpoint = err.endpoint or endpoint
        if per_record and err.failure_type in RECORD_FAILURE_TYPES:
            err.scope = SCOPE_RECORD
        delay = self._retry_delay(err, attempt)
        if delay is not None and time.monotonic() + delay >= call_end:
            self._log.debug(
                "SICANTIK %s: %s not retried, %.0f s call deadline reached",
                self.host,
                endpoint,
                self.call_deadline,
            )
            return None
        if delay is not None:
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
        return delay

    def _check_cancel(self, cancel):
        if cancel is not None and cancel.is_set():
            raise Cancelled()

    def _pause(self, delay, cancel):
        if delay <= 0:
            return
        if cancel is not None and self._sleep is time.sleep:
            # Interruptible: closing a batch does not wait for a backoff.
            if cancel.wait(delay):
                raise Cancelled()
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

    # ------------------------------------------------------------------
    # One attempt
    # ------------------------------------------------------------------
    def _prepare(self, endpoint, query):
        """The prepared GET and the keyword arguments of ``Session.send``."""
        try:
            return http_core.prepare(
                self._session,
                "GET",
                f"{self.base_url}/{endpoint}",
                timeout=self.timeout,
                params=query,
            )
        except requests.exceptions.RequestException as e:
            raise self._transport_error(e, endpoint) from e
        except AddressNotAllowed as e:
            raise self._address_error(e, endpoint) from None

    def _address_error(self, error, endpoint):
        self._log.warning(
            "SICANTIK %s: %s refused by the address policy (%s)",
            self.host,
            endpoint,
            error.category,
        )
        return SicantikAddressNotAllowed(
            host=self.host, category=error.category, endpoint=endpoint
        )

    def _attempt(self, endpoint, request, send_kwargs, attempt, started, guarded):
        """One HTTP GET: ``(status, headers, body)``; failures become errors.

        It ends by the deadline of ``guarded`` (an ``http_core.Attempt``, not
        entered yet), whatever the server does: see ``http_core.Guard``.
        """
        with guarded:
            return self._guarded_attempt(
                endpoint, request, send_kwargs, attempt, started, guarded
            )

    def _guarded_attempt(
        self, endpoint, request, send_kwargs, attempt, started, guarded
    ):
        status = None
        sink = BoundedBody(self.max_response_bytes, endpoint=endpoint)
        outcome = "no answer"
        try:
            try:
                response = self._session.send(request, **send_kwargs)
            except requests.exceptions.RequestException as e:
                outcome = type(e).__name__
                if guarded.expired or guarded.left() <= 0:
                    raise self._deadline_error(
                        endpoint, self._allowed(guarded, started), answered=False
                    ) from e
                raise self._transport_error(e, endpoint) from e
            except AddressNotAllowed as e:
                outcome = "refused address"
                raise self._address_error(e, endpoint) from None
            if guarded.expired:
                # cut in the headers: http.client takes an end for an end
                response.close()
                raise self._deadline_error(
                    endpoint, self._allowed(guarded, started), answered=False
                )
            status = response.status_code
            outcome = status
            try:
                sink = BoundedBody(
                    self.max_response_bytes,
                    response.headers.get("Content-Encoding"),
                    endpoint=endpoint,
                )
                body = self._read_body(response, endpoint, sink, guarded, started)
            finally:
                # Fully read: the connection is already back in the pool and
                # this is a no-op; otherwise it drops the half-read connection.
                response.close()
            return status, response.headers, body
        finally:
            # the server's time: the gate's wait for a fresh slot is the limiter's
            elapsed = time.monotonic() - started - guarded.paused
            self.stats.record_attempt(endpoint, status, elapsed, sink.raw_bytes)
            if getattr(self.limiter, "feedback", None) and self.limiter.feedback(
                status, elapsed
            ):
                self.stats.record_pace(pace_factor(self.limiter), slowed=True)
                self._log.info(
                    "SICANTIK %s: %s answered %s in %.0f ms, pace lowered to %.0f %%",
                    self.host,
                    endpoint,
                    status,
                    elapsed * 1000.0,
                    pace_factor(self.limiter) * 100.0,
                )
            self._log.debug(
                "SICANTIK %s: GET %s -> %s in %.0f ms (attempt %d)",
                self.host,
                endpoint,
                outcome,
                elapsed * 1000.0,
                attempt,
            )

    def _read_body(self, response, endpoint, sink, guarded, started):
        """The body, read under the size cap and the attempt's deadline."""
        try:
            return http_core.read_body(
                response,
                sink,
                deadline=guarded.deadline,
                read_timeout=self.timeout[1],
            )
        except http_core.BodyError as e:
            raise self._body_error(
                e, endpoint, response.status_code, self._allowed(guarded, started)
            ) from e

    @staticmethod
    def _allowed(guarded, started):
        """Seconds the attempt had, the gate's wait for a fresh slot aside."""
        return guarded.deadline - started - guarded.paused

    def _deadline_error(self, endpoint, seconds, *, answered):
        """The attempt was cut at its deadline (``seconds`` after its start)."""
        if answered:
            return SicantikTimeout(
                f"{self.host} was still sending the answer of {endpoint} "
                f"after {round(seconds, 1):g} s",
                endpoint=endpoint,
            )
        return SicantikTimeout(
            f"{self.host} did not answer {endpoint} in full "
            f"within {round(seconds, 1):g} s",
            endpoint=endpoint,
        )

    def _body_error(self, error, endpoint, status, seconds):
        """Map a :class:`http_core.BodyError` of the reader."""
        kind = error.kind
        if kind == error.TOO_LARGE:
            return SicantikResponseError.too_large(
                self.max_response_bytes, endpoint=endpoint, status=status
            )
        if kind == error.TIMEOUT:
            return SicantikTimeout(
                f"{self.host} stopped sending the answer of {endpoint} "
                f"(no data for {self.timeout[1]:g} s)",
                endpoint=endpoint,
            )
        if kind == error.DEADLINE:
            return self._deadline_error(endpoint, seconds, answered=True)
        if kind == error.TRUNCATED:
            of = f" of {error.expected}" if error.expected is not None else ""
            return SicantikResponseError(
                f"answer of {endpoint} is truncated "
                f"(received {error.received}{of} bytes)",
                retryable=True,
                endpoint=endpoint,
            )
        return SicantikConnectionError(
            f"connection to {self.host} broke while reading the answer of "
            f"{endpoint} ({scrub(error.detail)})",
            endpoint=endpoint,
        )

    def _transport_error(self, error, endpoint):
        """Map a ``requests`` exception raised before any answer."""
        family = http_core.transport_failure(error)
        reason = scrub(http_core.innermost_reason(error))
        if family == http_core.TF_TLS:
            return SicantikTLSError(
                f"secure connection to {self.host} failed ({reason}); "
                f"check the server certificate",
                endpoint=endpoint,
            )
        if family == http_core.TF_CONNECT_TIMEOUT:
            return SicantikTimeout(
                f"connecting to {self.host} timed out after {self.timeout[0]:g} s",
                endpoint=endpoint,
            )
        if family == http_core.TF_READ_TIMEOUT:
            return SicantikTimeout(
                f"{self.host} did not answer {endpoint} "
                f"within {self.timeout[1]:g} s",
                endpoint=endpoint,
            )
        if family == http_core.TF_BAD_REQUEST:
            return SicantikConfigError(
                f"cannot build a request to {self.host} ({reason})",
                endpoint=endpoint,
            )
        return SicantikConnectionError(
            f"cannot reach {self.host} ({reason})", endpoint=endpoint
        )
