"""Deadlines, addresses and the send gate enforced by the connections of an
HTTP session (no Odoo import; used by ``http_core``).

:class:`Guard` holds, per thread, the deadline of the running attempt and the
outbound address policy (``addresses.py``); the guarded urllib3 connections
and pools below check the address actually connected to, get at most the
time left to connect, and a watchdog shuts the socket down at the deadline,
so connect, TLS, status line, headers and body all end in time whatever the
server does. An attempt's ``before_send`` hook (:class:`SendGate`) runs once
the connection exists, right before the request's first byte is written.
"""

import contextlib
import functools
import socket
import threading
import time

import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

# A before_send hook shorter than this does not reschedule the watchdog (one
# thread fewer per request); the attempt may then be cut this much early.
_TIMER_SLACK_S = 0.002


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
    * the **send gate** of the current attempt (``before_send``, e.g. a
      :class:`SendGate`): called once per attempt when the connection is
      ready (DNS, TCP connect, TLS handshake, proxy tunnel done) and the
      request's first byte is about to be written; new or pooled connection
      alike. Time spent inside it is not counted against the deadline.
    """

    def __init__(self, address_policy=None):
        self.address_policy = address_policy
        self._local = threading.local()
        self._lock = threading.Lock()  # connection ownership, expiry

    def attempt(self, deadline, before_send=None):
        """A context manager bounding this thread's requests by ``deadline``;
        ``before_send`` (a callable, or None) runs once, right before the
        first write of the attempt's request."""
        return Attempt(self, deadline, before_send)

    def current(self):
        """This thread's running :class:`Attempt`, or None."""
        return getattr(self._local, "attempt", None)


class Attempt:
    """One attempt under a :class:`Guard` (see there); ``expired`` turns True
    when the watchdog cut it.

    ``paused`` is the time spent in the ``before_send`` hook (waiting for a
    fresh rate-limiter slot): the deadline moves back by as much, so a
    limiter wait is never counted as the server's time.
    """

    def __init__(self, guard, deadline, before_send=None):
        self.guard = guard
        self.deadline = float(deadline)
        self.expired = False
        self.paused = 0.0
        self._before_send = before_send
        self._watched = []  # (connection, duplicate of its socket)
        self._done = False
        self._timer = None
        self._timer_id = 0  # a stale timer (rescheduled) cuts nothing
        self._pausing = False  # in before_send: the watchdog holds off
        self._held = False  # the watchdog fired while it held off

    def left(self):
        """Seconds left before the deadline (negative once passed)."""
        return self.deadline - time.monotonic()

    def __enter__(self):
        if self.guard.current() is not None:
            raise RuntimeError("an attempt is already running in this thread")
        self.guard._local.attempt = self
        with self.guard._lock:
            self._start_timer()
        return self

    def _start_timer(self):
        """(Re)start the watchdog for the current deadline (lock held)."""
        self._timer_id += 1
        self._timer = threading.Timer(
            max(0.0, self.left()), self._expire, args=(self._timer_id,)
        )
        self._timer.daemon = True
        self._timer.start()

    def before_send(self):
        """Run the ``before_send`` hook, once per attempt.

        The watchdog holds off meanwhile and the deadline is moved back by
        the time the hook took: a wait for a fresh slot is the limiter's
        time, not the server's. An attempt already cut stays cut (its
        socket is shut down: the write fails).
        """
        hook, self._before_send = self._before_send, None
        if hook is None:
            return
        with self.guard._lock:
            if self.expired:
                return
            self._pausing = True
        started = time.monotonic()
        try:
            hook()
        finally:
            paused = time.monotonic() - started
            with self.guard._lock:
                self._pausing = False
                self.paused += paused
                self.deadline += paused
                # A hook that did not wait (the slot was fresh) leaves the
                # watchdog as it is: at most _TIMER_SLACK_S early, no thread.
                if not self._done and (self._held or paused > _TIMER_SLACK_S):
                    self._held = False
                    self._timer.cancel()
                    self._start_timer()

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

    def _expire(self, timer_id=None):
        with self.guard._lock:
            if self._done or timer_id not in (None, self._timer_id):
                return
            if self._pausing:
                self._held = True  # the deadline moves: rescheduled after
                return
            self.expired = True
            # under the lock: a connection cannot change hands meanwhile
            for conn, dup in self._watched:
                if getattr(conn, "_guard_owner", None) is self:
                    _shutdown(dup)


class SendGate:
    """The ``before_send`` hook that holds a rate limiter's slot to the send.

    A limiter hands out a send time (slot); a request that leaves later than
    ``const.LATE_SLOT_TOLERANCE_S`` after it (a slow DNS lookup, TCP connect
    or TLS handshake, or a thread that ran late) would close up on the next
    slot. At the write, ``limiter.confirm()`` checks the calling thread's
    slot: still fresh, the request goes; stale, the slot is dropped (lost,
    never reused) and a new one is waited for. ``on_retake(seconds)`` is
    called with the wait whenever a slot was re-taken (statistics).

    The limiter protocol: ``acquire()``, ``feedback(status, latency_s)``,
    ``pace_factor()`` and ``confirm()``; :meth:`for_limiter` gives None for a
    limiter without ``confirm()`` (sends then go as before, ungated).
    """

    def __init__(self, limiter, on_retake=None):
        self.limiter = limiter
        self.on_retake = on_retake

    @classmethod
    def for_limiter(cls, limiter, on_retake=None):
        """A gate for ``limiter``, or None when it cannot confirm slots."""
        if not callable(getattr(limiter, "confirm", None)):
            return None
        return cls(limiter, on_retake)

    def __call__(self):
        waited = self.limiter.confirm()
        if waited is not None and self.on_retake is not None:
            self.on_retake(waited)


def _shutdown(sock):
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _GuardedConnectionMixin:
    """urllib3 connection under a :class:`Guard` (deadline, address policy)."""

    def __init__(self, *args, guard=None, check_addresses=True, **kwargs):
        self._guard = guard
        self._guard_check = check_addresses
        self._guard_owner = None
        self._guard_connecting = False
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

    def connect(self):
        # A proxy's CONNECT goes through send() too: not the request yet.
        self._guard_connecting = True
        try:
            return super().connect()
        finally:
            self._guard_connecting = False

    def send(self, data):
        # Every write of the request (http.client and urllib3 1.26 and 2.x
        # alike) comes here; the first one opens a connection that is not
        # open yet. Connect first, then the attempt's gate, then write: the
        # gate sees the time the request's first byte really leaves.
        if not self._guard_connecting:
            if self.sock is None and self.auto_open:
                self.connect()
            attempt = self._guard.current() if self._guard is not None else None
            if attempt is not None:
                attempt.before_send()
        return super().send(data)


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
