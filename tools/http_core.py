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
  connected to;
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
import functools
import http.client
import math
import re
import socket
import threading
import time
import zlib
from datetime import datetime, timezone
from http.cookiejar import DefaultCookiePolicy
from urllib.parse import urlsplit, urlunsplit

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from requests.utils import select_proxy
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from .const import READ_CHUNK_BYTES, SUPPORTED_ENCODINGS, USER_AGENT


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


# --------------------------------------------------------------------------
# Deadline of an attempt, address policy at connect time
# --------------------------------------------------------------------------
class Guard:
    """What the connections of one session enforce.

    * the **deadline** of the current attempt of each thread: inside
      ``with guard.attempt(deadline):`` (a ``time.monotonic()`` instant) a
      new connection gets at most the time left to connect, and a watchdog
      shuts down the socket of the attempt's connection (``SHUT_RDWR``, which
      wakes a blocked ``recv``, TLS included) when the deadline passes. Then
      nothing the server does (trickled status line, headers, chunk sizes or
      TLS handshake, a connection accepted and never answered) outlives the
      deadline: the blocked read fails at once and :attr:`Attempt.expired`
      says why, so that the client reports a timeout, not a broken
      connection. DNS resolution is the one step it cannot cut (the
      system resolver bounds it).
    * the **address policy** (``addresses.AddressPolicy`` or None): every
      new connection resolves its host, checks every address and connects
      to a checked one, keeping the host name for the ``Host`` header and
      the TLS name check. A refused address raises
      :class:`~.api_errors.AddressNotAllowed` from ``session.send`` (not a
      ``requests`` exception) before any byte is sent. Through an
      environment proxy, which resolves the name itself, the URL is checked
      by :func:`prepare` instead.
    """

    def __init__(self, address_policy=None):
        self.address_policy = address_policy
        self._local = threading.local()
        self._lock = threading.Lock()  # connection ownership, expiry

    def attempt(self, deadline):
        """A context manager bounding this thread's requests by ``deadline``."""
        return Attempt(self, deadline)

    def current(self):
        """This thread's running :class:`Attempt`, or None."""
        return getattr(self._local, "attempt", None)


class Attempt:
    """One attempt under a :class:`Guard` (see there); ``expired`` turns True
    when the watchdog cut it."""

    def __init__(self, guard, deadline):
        self.guard = guard
        self.deadline = float(deadline)
        self.expired = False
        self._watched = []  # (connection, duplicate of its socket)
        self._done = False
        self._timer = None

    def left(self):
        """Seconds left before the deadline (negative once passed)."""
        return self.deadline - time.monotonic()

    def __enter__(self):
        if self.guard.current() is not None:
            raise RuntimeError("an attempt is already running in this thread")
        self.guard._local.attempt = self
        self._timer = threading.Timer(max(0.0, self.left()), self._expire)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, *exc_info):
        self.guard._local.attempt = None
        with self.guard._lock:
            self._done = True
            watched, self._watched = self._watched, []
        self._timer.cancel()
        for _conn, dup in watched:
            dup.close()

    def watch(self, conn, sock):
        """Put ``conn`` (whose socket is ``sock``) under this attempt.

        The watchdog keeps a duplicate of the socket: shutting it down ends
        the connection whatever object wraps the socket by then (TLS wraps
        a new one around it after the handshake). A connection belongs to
        the last attempt that used it, so an attempt that ends after its
        connection went back to the pool never cuts the next user's call.
        """
        try:
            dup = socket.fromfd(sock.fileno(), sock.family, sock.type)
        except (OSError, ValueError):
            return  # already closed: nothing left to cut
        with self.guard._lock:
            if self._done:
                dup.close()
                return
            conn._guard_owner = self
            self._watched.append((conn, dup))
            if self.expired:
                _shutdown(dup)

    def _expire(self):
        with self.guard._lock:
            if self._done:
                return
            self.expired = True
            # under the lock: a connection cannot change hands meanwhile
            for conn, dup in self._watched:
                if getattr(conn, "_guard_owner", None) is self:
                    _shutdown(dup)


def _shutdown(sock):
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _GuardedConnectionMixin:
    """urllib3 connection under a :class:`Guard` (deadline, address policy)."""

    def __init__(self, *args, guard=None, check_addresses=True, **kwargs):
        self._guard = guard
        self._guard_check = check_addresses
        self._guard_owner = None
        super().__init__(*args, **kwargs)

    def _new_conn(self):
        attempt = self._guard.current() if self._guard is not None else None
        policy = self._guard.address_policy if self._guard is not None else None
        saved_timeout, saved_host = self.timeout, self._dns_host
        try:
            if attempt is not None and isinstance(saved_timeout, int | float):
                left = attempt.left()
                if left <= 0:
                    raise urllib3.exceptions.ConnectTimeoutError(
                        self, "the deadline passed before connecting"
                    )
                self.timeout = min(saved_timeout, left)
            if policy is not None and self._guard_check:
                sock = self._connect_checked(policy, saved_host)
            else:
                sock = super()._new_conn()
        finally:
            self.timeout, self._dns_host = saved_timeout, saved_host
        if attempt is not None:
            attempt.watch(self, sock)
        return sock

    def _connect_checked(self, policy, host):
        """Connect to a checked address of ``host`` (urllib3's errors)."""
        try:
            entries = policy.resolve(host, self.port)
        except (OSError, UnicodeError) as e:
            raise urllib3.exceptions.NewConnectionError(
                self, f"Failed to establish a new connection: {e}"
            ) from e
        error = None
        for entry in entries:
            # urllib3 connects to _dns_host; a checked IP needs no lookup,
            # and self.host still names the server for TLS (restored by
            # the caller before the handshake) and the Host header.
            self._dns_host = entry[4][0]
            try:
                return super()._new_conn()
            except urllib3.exceptions.NewConnectionError as e:
                error = e  # refused or timed out: try the next address
        raise error

    def putrequest(self, *args, **kwargs):
        # A connection taken from the pool: the attempt now using it owns it.
        attempt = self._guard.current() if self._guard is not None else None
        if attempt is not None and self.sock is not None:
            attempt.watch(self, self.sock)
        return super().putrequest(*args, **kwargs)


class GuardedHTTPConnection(_GuardedConnectionMixin, HTTPConnection):
    pass


class GuardedHTTPSConnection(_GuardedConnectionMixin, HTTPSConnection):
    pass


class GuardedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = GuardedHTTPConnection


class GuardedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = GuardedHTTPSConnection


class GuardedAdapter(HTTPAdapter):
    """``HTTPAdapter`` whose connections are under ``guard`` (see :class:`Guard`).

    Through a proxy, addresses are not checked at connect time (the
    connection goes to the proxy): :func:`prepare` checks the URL instead.
    """

    def __init__(self, guard, **kwargs):
        self.guard = guard
        super().__init__(**kwargs)

    def _guard_manager(self, manager, check_addresses):
        manager.pool_classes_by_scheme = {
            scheme: functools.partial(
                pool, guard=self.guard, check_addresses=check_addresses
            )
            for scheme, pool in (
                ("http", GuardedHTTPConnectionPool),
                ("https", GuardedHTTPSConnectionPool),
            )
        }
        return manager

    def init_poolmanager(self, *args, **kwargs):
        result = super().init_poolmanager(*args, **kwargs)
        self._guard_manager(self.poolmanager, True)
        return result

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        known = proxy in self.proxy_manager
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if known or proxy.lower().startswith("socks"):
            return manager  # SOCKS pools are urllib3's own: left as they are
        return self._guard_manager(manager, False)


# --------------------------------------------------------------------------
# Session and request
# --------------------------------------------------------------------------
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
