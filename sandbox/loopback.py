"""A threaded HTTP server on loopback that starts fast and stops cleanly.

The SICANTIK sandbox and the WhatsApp gateways both serve from it: a subclass
of :class:`LoopbackServer` names its handler class and answers requests; the
base owns the sockets, the connection threads and their shutdown.
"""

import contextlib
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_REQUEST_BODY = 1024 * 1024


class Drop(Exception):
    """Leave the request unanswered and close the connection."""


class LoopbackHTTPServer(ThreadingHTTPServer):
    """One daemon thread per connection, tracked so stop() can end them."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address, handler_class, owner):
        self.owner = owner
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self._lock = threading.Lock()
        self._connections = {}
        super().__init__(address, handler_class)

    def server_bind(self):
        # HTTPServer.server_bind does a reverse DNS lookup that can take seconds.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request, client_address):
        thread = threading.Thread(
            target=self._connection_thread,
            args=(request, client_address),
            name=f"{self.owner.thread_name}-connection",
            daemon=True,
        )
        with self._lock:
            self._connections[thread] = request
        thread.start()

    def _connection_thread(self, request, client_address):
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._lock:
                self._connections.pop(threading.current_thread(), None)

    def handle_error(self, request, client_address):
        if not self.owner.verbose:
            return None
        return super().handle_error(request, client_address)

    def close_connections(self, timeout):
        """Wake every connection thread (idle keep-alive ones too), join them."""
        with self._lock:
            open_now = list(self._connections.items())
        for _thread, request in open_now:
            with contextlib.suppress(OSError):  # already closed by its thread
                request.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for thread, _request in open_now:
            thread.join(max(0.0, deadline - time.monotonic()))


class LoopbackHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so clients can pool
    sys_version = ""
    disable_nagle_algorithm = True

    def handle(self):
        try:
            return super().handle()
        except (Drop, OSError):
            # a fault hung up, the client left, or the server is stopping
            self.close_connection = True
            return None

    def log_message(self, fmt, *args):
        if not self.server.owner.verbose:
            return None
        return super().log_message(fmt, *args)

    def _read_body(self):
        """The body announced by Content-Length; b"" and hang up when unsure."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_REQUEST_BODY:
            self.close_connection = True
            return b""
        return self.rfile.read(length) if length else b""


class LoopbackServer:
    """``start()`` / ``stop()`` or a ``with`` block around a loopback server.

    Subclasses set ``handler_class`` (a :class:`LoopbackHandler`, which finds
    this object as ``self.server.owner``) and may set ``http_server_class``.
    ``_stopping`` is set while stopping, so that handler sleeps can end early.
    """

    handler_class = LoopbackHandler
    http_server_class = LoopbackHTTPServer
    thread_name = "loopback"
    already_running = "the server is already running"

    def __init__(self, host, port, verbose):
        self.host = host
        self.port = port
        self.verbose = verbose
        self._stopping = threading.Event()
        self._httpd = None
        self._thread = None

    def start(self):
        if self._httpd is not None:
            raise RuntimeError(self.already_running)
        self._stopping.clear()
        self._httpd = self.http_server_class(
            (self.host, self.port), self.handler_class, self
        )
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},  # bounds how long stop() waits
            name=f"{self.thread_name}-accept",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self, timeout=5.0):
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()  # ends latency and hang sleeps early
        httpd.shutdown()
        httpd.close_connections(timeout)
        httpd.server_close()
        self._thread.join(timeout)
        self._thread = None

    def __enter__(self):
        return self if self._httpd is not None else self.start()

    def __exit__(self, *exc_info):
        self.stop()

    @property
    def running(self):
        return self._httpd is not None
