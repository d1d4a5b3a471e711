"""The HTTP core shared by the SICANTIK and WhatsApp clients (no Odoo import).

What both clients do the same way:

* :func:`make_session`: a pooled ``requests.Session`` with TLS verification,
  a ``User-Agent`` naming the addon, no cookies and no transport retries:
  each client retries by itself, on purpose differently (a SICANTIK GET is
  retried through the rate limiter, a WhatsApp send never is);
* :class:`Guard`: what the session's connections enforce, the total deadline
  of each attempt (:meth:`Guard.attempt`: connect, TLS, status line,
  headers and body, whatever the server does) and the outbound address
  policy (``addresses.py``), checked against the address actually
  connected to; and the send gate of an attempt (:class:`SendGate`: the
  rate limiter's slot checked again when the first byte is written);
* :func:`prepare`: the request and the ``Session.send`` arguments: (connect,
  read) timeouts, redirects refused, the body streamed;
* :func:`check_base_url`, :func:`check_timeout`, :func:`attempt_deadline`:
  settings checks;
* :func:`parse_retry_after`;
* :func:`transport_failure`: the family of a ``requests`` exception;
* :func:`read_body` into a :class:`BoundedBody`: the answer read under a cap
  on its decoded size and a wall-clock deadline.

The outcomes here are neutral (:class:`BodyError` kinds, :class:`UrlProblem`
codes, ``TF_*`` families): each client words them and raises its own
:class:`~.api_errors.ApiError` subclass, because the same event means
different things to each (a lost answer is retried for a SICANTIK GET, and
an "unknown outcome" for a WhatsApp send).
"""

import contextlib
import email.utils
import http.client
import math
import re
import time
import zlib
from datetime import datetime, timezone
from http.cookiejar import DefaultCookiePolicy
from urllib.parse import urlsplit, urlunsplit

import requests
import urllib3.exceptions
from requests.utils import select_proxy

from .const import READ_CHUNK_BYTES, SUPPORTED_ENCODINGS, USER_AGENT

# Guard and SendGate are part of the core's interface (the clients build one
# Guard per session, and a SendGate per call from their rate limiter).
from .http_guard import (  # noqa: F401  pylint: disable=unused-import
    Guard,
    GuardedAdapter,
    SendGate,
)


# --------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------
class UrlProblem(ValueError):
    """Why a base URL was refused: ``code`` (a key of ``URL_PROBLEMS``) and
    its text, to be put after "the URL" in the client's own words."""

    def __init__(self, code, detail=""):
        super().__init__(URL_PROBLEMS[code])
        self.code = code
        self.detail = detail


URL_PROBLEMS = {
    "empty": "is empty",
    "invalid": "is not a valid URL",
    "scheme": "must start with http:// or https://",
    "credentials": "must not contain a user name or password",
    "no_host": "has no host name",
    "fragment": "must not contain a query string or fragment",
    "query": "must not contain a query string or fragment",
}


def check_base_url(url, *, keep_query=False, keep_path=False):
    """``(clean URL, host[:port])`` of an http(s) base URL, or UrlProblem.

    The scheme is lower-cased; a trailing slash is dropped unless
    ``keep_path``; a query string is refused unless ``keep_query``. The
    problem never repeats the URL (it may hold a secret).
    """
    if not isinstance(url, str) or not url.strip():
        raise UrlProblem("empty")
    try:
        parts = urlsplit(url.strip())
        _port = parts.port  # ValueError on a bad port
    except ValueError as e:
        raise UrlProblem("invalid", str(e)) from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UrlProblem("scheme")
    if "@" in parts.netloc:
        raise UrlProblem("credentials")
    if not parts.hostname:
        raise UrlProblem("no_host")
    if parts.fragment:
        raise UrlProblem("fragment")
    if parts.query and not keep_query:
        raise UrlProblem("query")
    path = parts.path if keep_path else parts.path.rstrip("/")
    clean = urlunsplit((scheme, parts.netloc, path, parts.query, ""))
    return clean, parts.netloc


def check_timeout(timeout):
    """``(connect, read)`` seconds from a pair or one number; ValueError else."""
    values = timeout if isinstance(timeout, tuple | list) else (timeout, timeout)
    try:
        connect, read = (float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(
            "the timeout must be seconds or a (connect, read) pair"
        ) from None
    if not (connect > 0 and read > 0):  # NaN too
        raise ValueError("timeouts must be positive")
    return connect, read


def attempt_deadline(timeout, deadline=None):
    """Seconds one request may last until its answer is fully read.

    None gives ``connect + 2 * read``: a server may take up to the read
    timeout before its first byte and still gets as long again for the body.
    """
    if deadline is None:
        return timeout[0] + 2 * timeout[1]
    if (
        isinstance(deadline, bool)
        or not isinstance(deadline, int | float)
        or not math.isfinite(deadline)
        or deadline <= 0
    ):
        raise ValueError("the deadline must be a finite number of seconds > 0")
    return float(deadline)


def parse_retry_after(value, *, now=None):
    """Seconds to wait from a ``Retry-After`` header (seconds or HTTP-date).

    None when the header is absent or unreadable; a date in the past gives 0.
    """
    value = str(value if value is not None else "").strip()
    if not value:
        return None
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:  # Python < 3.10 returned None for some junk
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


def make_session(*, accept, pool_maxsize, accept_encoding="gzip, deflate", guard=None):
    """A ``requests.Session`` set up the addon's way (see the module doc).

    ``accept_encoding`` must only name what :class:`BoundedBody` decodes.
    ``guard`` (a :class:`Guard`; default one without address policy) is
    enforced by every connection of the session.
    """
    session = requests.Session()
    session.headers.update(
        {
            "User-Agent": USER_AGENT,
            "Accept": accept,
            "Accept-Encoding": accept_encoding,
        }
    )
    session.verify = True
    # Both APIs are stateless: no cookie travels from one call to another
    # (and none is shared between threads).
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    # No transport-level retries: each client decides, see the module doc.
    adapter = GuardedAdapter(
        guard or Guard(), pool_connections=1, pool_maxsize=pool_maxsize, max_retries=0
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def prepare(
    session,
    method,
    url,
    *,
    timeout,
    params=None,
    json_body=None,
    data=None,
    headers=None,
):
    """The prepared request and the keyword arguments of ``session.send``.

    Raises ``requests.RequestException`` when the request cannot be built,
    and :class:`~.api_errors.AddressNotAllowed` when the request goes through
    a proxy and the session's address policy refuses the URL's host.
    """
    request = session.prepare_request(
        requests.Request(
            method, url, params=params, json=json_body, data=data, headers=headers
        )
    )
    kwargs = session.merge_environment_settings(request.url, {}, True, None, None)
    kwargs.update(timeout=timeout, allow_redirects=False)
    guard = getattr(session.get_adapter(request.url), "guard", None)
    policy = guard.address_policy if guard is not None else None
    if policy is not None and select_proxy(request.url, kwargs.get("proxies")):
        policy.check_url(request.url)
    return request, kwargs


# --------------------------------------------------------------------------
# Transport failures
# --------------------------------------------------------------------------
TF_TLS = "tls"  # the TLS handshake failed: nothing was sent
TF_CONNECT_TIMEOUT = "connect_timeout"  # nothing was sent
TF_NOT_CONNECTED = "not_connected"  # refused, DNS...: nothing was sent
TF_BAD_REQUEST = "bad_request"  # the request could not be built
TF_READ_TIMEOUT = "read_timeout"  # sent, no answer within the read timeout
TF_CONNECTION = "connection"  # broke, maybe after the request went out


def innermost_reason(error):
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


def _never_connected(error):
    root = innermost_reason(error)
    return isinstance(
        root,
        urllib3.exceptions.NewConnectionError
        | urllib3.exceptions.ConnectTimeoutError
        | ConnectionRefusedError,
    ) or isinstance(error, requests.exceptions.ProxyError)


def transport_failure(error):
    """The ``TF_*`` family of a ``requests`` exception raised before an answer."""
    exc = requests.exceptions
    if isinstance(error, exc.SSLError):
        return TF_TLS
    if isinstance(error, exc.ConnectTimeout):
        return TF_CONNECT_TIMEOUT
    if isinstance(error, exc.ReadTimeout):
        return TF_READ_TIMEOUT
    if isinstance(
        error,
        exc.InvalidURL | exc.InvalidSchema | exc.MissingSchema | exc.InvalidHeader,
    ):
        return TF_BAD_REQUEST
    if isinstance(error, exc.ConnectionError) and _never_connected(error):
        return TF_NOT_CONNECTED
    return TF_CONNECTION


# --------------------------------------------------------------------------
# Reading the answer
# --------------------------------------------------------------------------
class BodyError(Exception):
    """The answer body could not be read in full; ``kind`` says why.

    ``received`` counts raw bytes read; ``expected`` is the Content-Length.
    """

    TOO_LARGE = "too_large"  # more than the cap (announced or decoded)
    ENCODING = "encoding"  # a Content-Encoding we do not decode
    CORRUPT = "corrupt"  # compressed data that does not inflate
    TRUNCATED = "truncated"  # the stream ended early
    TIMEOUT = "timeout"  # no byte for the read timeout
    DEADLINE = "deadline"  # still arriving when the deadline passed
    BROKEN = "broken"  # the connection failed

    def __init__(self, kind, detail="", *, received=0, expected=None):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail
        self.received = received
        self.expected = expected


class BoundedBody:
    """Accumulate a body, decoding its Content-Encoding, up to ``limit`` bytes.

    ``feed()`` raw chunks as they arrive, then ``finish()`` to get the bytes.
    Decompression output is requested ``limit + 1`` bytes at a time at most, so
    memory never holds more than the cap plus one raw chunk, whatever the
    compression ratio. Failures are built by :meth:`_error`, which a client
    overrides to raise its own error type.
    """

    def __init__(self, limit, content_encoding=None):
        self.limit = int(limit)
        self.raw_bytes = 0
        encoding = (content_encoding or "").strip().lower()
        if encoding not in SUPPORTED_ENCODINGS:
            raise self._error(BodyError.ENCODING, encoding[:40])
        self._encoding = "gzip" if encoding == "x-gzip" else encoding
        self._decompressor = None
        self._out = bytearray()

    def _error(self, kind, detail=""):
        """The exception to raise for a failure of ``kind``."""
        return BodyError(kind, detail, received=self.raw_bytes)

    @property
    def compressed(self):
        return self._encoding in ("gzip", "deflate")

    def received(self):
        """The decoded bytes so far (at most ``limit``), e.g. after a failure."""
        return bytes(self._out[: self.limit])

    def _new_decompressor(self, first_bytes):
        if self._encoding == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        # "deflate" is meant to be zlib-wrapped, but some servers send raw
        # deflate: a zlib header is two bytes whose value is a multiple of 31.
        head = first_bytes[:2]
        wrapped = (
            len(head) == 2
            and head[0] & 0x0F == 8
            and (head[0] << 8 | head[1]) % 31 == 0
        )
        return zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)

    def _append(self, data):
        self._out += data
        if len(self._out) > self.limit:
            raise self._error(BodyError.TOO_LARGE)

    def feed(self, chunk):
        if not chunk:
            return
        self.raw_bytes += len(chunk)
        if not self.compressed:
            self._append(chunk)
            return
        if self.raw_bytes > self.limit:
            # Compressed bigger than the cap: no need to inflate it to know.
            raise self._error(BodyError.TOO_LARGE)
        try:
            self._inflate(chunk)
        except zlib.error as e:
            raise self._error(BodyError.CORRUPT, "corrupt compressed data") from e

    def _inflate(self, data):
        while data:
            if self._decompressor is None:
                self._decompressor = self._new_decompressor(data)
            room = self.limit - len(self._out) + 1
            self._append(self._decompressor.decompress(data, room))
            data = self._decompressor.unconsumed_tail
            if self._decompressor.eof:
                rest = self._decompressor.unused_data
                if self._encoding == "gzip" and rest.strip(b"\0"):
                    # Another gzip member follows (allowed by RFC 1952).
                    self._decompressor = None
                    data = rest + data
                elif rest.strip(b"\0") or data.strip(b"\0"):
                    raise self._error(
                        BodyError.CORRUPT, "garbage after the compressed data"
                    )
                else:
                    data = b""

    def finish(self):
        """Return the decoded body; a compressed stream must be complete."""
        if self.compressed and self._decompressor is not None:
            if not self._decompressor.eof:
                raise self._error(BodyError.TRUNCATED, "compressed stream incomplete")
        return bytes(self._out)


def content_length(headers):
    """The announced body size, or None when absent or unreadable."""
    try:
        return int(headers.get("Content-Length"))
    except (TypeError, ValueError):
        return None


def read_body(response, sink, *, deadline, read_timeout):
    """Read the body of ``response`` (sent with ``stream=True``) into ``sink``.

    Returns ``sink.finish()``. Raises :class:`BodyError` when the announced
    size exceeds ``sink.limit``, when the stream breaks or ends before its
    Content-Length, when no byte comes for ``read_timeout`` seconds, or when
    the body is still arriving at ``deadline`` (a ``time.monotonic()``
    instant); the sink raises its own errors (size, decoding).

    ``read_timeout`` alone bounds each socket read, so a server sending one
    byte every few seconds could hold the call for as long as it likes: the
    socket timeout is therefore lowered to the time left before each read,
    and each read is a single ``recv`` (``read1``), so no read outlives the
    deadline. (With chunked encoding the few bytes of a chunk header are
    read by http.client in one go; a chunk's data is not.)
    """
    length = content_length(response.headers)
    if length is not None and length > sink.limit:
        raise BodyError(BodyError.TOO_LARGE, expected=length)
    raw = response.raw
    # urllib3 1.26 has no single-recv read; the file object it wraps has
    # (http.client.HTTPResponse on the wire, a BytesIO in canned tests).
    source = getattr(raw, "_fp", None) or raw
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    try:
        _pump(source, sock, sink, deadline, read_timeout)
    except BodyError as e:
        e.expected = length
        raise
    finally:
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.settimeout(read_timeout)
    if length is not None and sink.raw_bytes < length:
        # urllib3 1.26 does not enforce Content-Length; we do.
        raise BodyError(BodyError.TRUNCATED, received=sink.raw_bytes, expected=length)
    body = sink.finish()
    # Everything was read: this reads nothing more and hands the connection
    # back to the pool for the next request.
    drain = getattr(raw, "drain_conn", None)
    if drain is not None:
        drain()
    return body


def _pump(source, sock, sink, deadline, read_timeout):
    """Feed ``sink`` from ``source`` until EOF, within the deadline."""
    if getattr(source, "closed", False):
        # requests reads a redirect's body itself to free the connection:
        # nothing is left for us, as urllib3's own stream() would find.
        return
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BodyError(BodyError.DEADLINE, received=sink.raw_bytes)
        wait = min(read_timeout, left)
        if sock is not None:
            sock.settimeout(wait)
        try:
            chunk = source.read1(READ_CHUNK_BYTES)
        except TimeoutError as e:
            kind = BodyError.DEADLINE if wait < read_timeout else BodyError.TIMEOUT
            raise BodyError(kind, received=sink.raw_bytes) from e
        except (OSError, http.client.HTTPException, ValueError) as e:
            # ValueError: a read on a connection closed under our feet
            raise _read_failure(e, sink, deadline) from e
        if not chunk:
            if time.monotonic() >= deadline:
                # the watchdog shut the socket: an end that is no end
                raise BodyError(BodyError.DEADLINE, received=sink.raw_bytes)
            return
        sink.feed(chunk)


def _read_failure(error, sink, deadline):
    """The BodyError of a failed read. Past the deadline it is the deadline
    (a :class:`Guard` watchdog shut the socket down: a chunk-size line
    trickled in by http.client's ``readline`` ends here), whatever the
    read made of it."""
    if time.monotonic() >= deadline:
        return BodyError(BodyError.DEADLINE, received=sink.raw_bytes)
    if isinstance(error, http.client.IncompleteRead):
        return BodyError(BodyError.TRUNCATED, received=sink.raw_bytes)
    reason = str(innermost_reason(error))
    return BodyError(BodyError.BROKEN, reason, received=sink.raw_bytes)
