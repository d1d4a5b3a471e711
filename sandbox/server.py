"""The SICANTIK sandbox: routing, faults and statistics (sockets: loopback.py)."""

import gzip
import io
import json
import socket
import struct
from http import HTTPStatus
from urllib.parse import urlsplit

from . import api, faults, render, wire
from .data import generate_dataset
from .faults import RETRY_AFTER_STATUSES, FaultPlan
from .loopback import Drop, LoopbackHandler, LoopbackHTTPServer, LoopbackServer
from .stats import Stats

API_PREFIX = ["backoffice", "api"]
CONTROL_PREFIX = "/_sandbox/"
# Used by the xxe/bomb/oversized faults when the dataset lists nothing.
_FALLBACK_ITEM = {
    "pendaftaran_id": "0000100700012025",
    "n_pemohon": "Ukur Kaban",
    "n_perizinan": "IZIN REKLAME",
    "no_surat": "503/0001/I/REK/DPM-PPTSP/2025",
    "num_rows": "1",
}


class _HTTPServer(LoopbackHTTPServer):
    """The loopback server, plus a TCP reset on demand for the reset fault."""

    request_queue_size = 1024

    def __init__(self, address, handler_class, owner):
        self._resets = set()
        super().__init__(address, handler_class, owner)

    def server_bind(self):
        bound = super().server_bind()
        # Set on the listening socket, the option is inherited by accepted
        # ones, so even bytes that came before the accept carry a stamp.
        wire.enable(self.socket)
        return bound

    def reset_on_close(self, request):
        """Make the coming close send a TCP RST instead of a FIN."""
        linger = struct.pack("ii", 1, 0)
        request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        with self._lock:
            self._resets.add(request)

    def shutdown_request(self, request):
        with self._lock:
            reset = request in self._resets
            self._resets.discard(request)
        if reset:
            return self.close_request(request)  # shutdown() would send a FIN
        return super().shutdown_request(request)


class _Handler(LoopbackHandler):
    server_version = "Apache"

    def setup(self):
        done = super().setup()
        # Requests are read through a reader that keeps the kernel's receive
        # stamps, so the statistics count when the bytes arrived.
        self._wire = None
        if wire.enable(self.connection):
            self._wire = wire.StampedReader(self.connection)
            self.rfile = io.BufferedReader(self._wire)
        return done

    def handle_one_request(self):
        if self._wire is not None:
            self._wire.begin()
        return super().handle_one_request()

    def version_string(self):
        return self.server_version

    def do_GET(self):
        self._route()

    # Other verbs reach the API too, which answers "Unknown method.".
    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    # -- plumbing ----------------------------------------------------------

    def _read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True  # not worth decoding: answer, hang up
            return b""
        return super()._read_body()

    def _head(self, status, content_type, headers, length):
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        lines = [
            f"HTTP/1.1 {status} {phrase}",
            f"Date: {self.date_time_string()}",
            f"Server: {self.version_string()}",
        ]
        if content_type:
            lines.append(f"Content-type: {content_type}")  # PHP's spelling
        lines.extend(f"{name}: {value}" for name, value in headers)
        lines.append(f"Content-Length: {length}")
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _send(self, status, body=b"", content_type=None, headers=(), cut=None):
        """One write for head and body: no Nagle stall between the two."""
        head = self._head(status, content_type, headers, len(body))
        if self.command == "HEAD":
            body = b""
        elif cut is not None:
            body = body[:cut]
        self.wfile.write(head + body)
        self.log_request(status, len(body))

    def _send_json(self, status, payload):
        body = json.dumps(payload).encode("utf-8")
        self._send(status, body, render.JSON_TYPE)

    def _accepts_gzip(self):
        for part in self.headers.get("Accept-Encoding", "").split(","):
            name, _, params = part.partition(";")
            if name.strip().lower() in ("gzip", "x-gzip"):
                params = params.replace(" ", "")
                return params not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
        return False

    def _route(self):
        body = self._read_body()
        url = urlsplit(self.path)
        if url.path.startswith(CONTROL_PREFIX):
            self._control(url.path[len(CONTROL_PREFIX) :].strip("/"), body)
            return
        segments = [s for s in url.path.split("/") if s]
        if segments[:2] == API_PREFIX:
            self._api(segments[2:], url.query)
        else:
            self._send(404, render.NOT_FOUND_PAGE, render.HTML_TYPE)

    # -- control endpoints -------------------------------------------------

    def _control(self, name, body):
        sandbox = self.server.owner

        def parsed(kind, empty):
            value = json.loads(body) if body.strip() else empty
            if not isinstance(value, kind):
                raise ValueError(f"expected a JSON {kind.__name__}")
            return value

        def queue():
            sandbox.queue_faults(*parsed(list, []))
            return {"pending": sandbox.pending_faults()}

        def reset():
            sandbox.reset_stats()
            sandbox.clear_faults()
            return {"ok": True}

        routes = {
            ("GET", "stats"): sandbox.stats,
            ("GET", "config"): sandbox.config,
            ("GET", "dataset/summary"): sandbox.dataset.summary,
            ("POST", "configure"): lambda: sandbox.configure(**parsed(dict, {})),
            ("POST", "faults"): queue,
            ("POST", "reset"): reset,
        }
        action = routes.get((self.command, name))
        if action is None:
            known = name in {path for _verb, path in routes}
            error = "method not allowed" if known else "unknown control endpoint"
            self._send_json(405 if known else 404, {"error": error})
            return
        try:
            result = action()
        except (TypeError, ValueError) as err:
            self._send_json(400, {"error": str(err)})
            return
        self._send_json(200, result)

    # -- API ---------------------------------------------------------------

    def _api(self, segments, query):
        stats = self.server.owner._stats
        at = self._wire.arrival() if self._wire is not None else None
        stats.arrive(api.endpoint_name(segments), at)
        self._counted = False
        try:
            decision = self.server.owner._faults.decide()
            if decision.fault is not None:
                stats.faulted(decision.fault)
            self._api_answer(segments, query, decision)
        finally:
            if not self._counted:
                stats.leave()

    def _done(self, status):
        # Counted before the last write, so a client that has read its answer
        # always finds it in the stats.
        stats = self.server.owner._stats
        stats.answered(status)
        stats.leave()
        self._counted = True

    def _api_answer(self, segments, query, decision):
        sandbox = self.server.owner
        fault, config = decision.fault, decision.config
        delay = decision.delay + (config["hang_seconds"] if fault == "hang" else 0.0)
        if delay and sandbox._stopping.wait(delay):
            raise Drop  # stopping: end the sleep, leave the request unanswered
        if fault == "reset":
            self.server.reset_on_close(self.connection)
            raise Drop
        if isinstance(fault, int) or fault == "429-no-retry-after":
            self._status_fault(fault, config)
            return
        if fault == "empty":
            self._answer(200, b"", render.XML_TYPE)
            return
        if fault == "html":
            self._answer(200, render.DATABASE_ERROR_PAGE, render.HTML_TYPE)
            return
        try:
            route = api.parse_path(segments)
        except api.DisallowedCharacters:
            self._answer(400, render.DISALLOWED_PAGE, render.HTML_TYPE, fault=fault)
            return
        args = api.merge_args(query, route.args)
        fmt = api.choose_format(args, route.suffix, self.headers.get("Accept"))
        if fault in ("xml", "malformed-xml"):
            fmt = "xml"  # the server ignores the format asked for
        elif fault == "json-list":
            fmt = "json"
        if self.command == "GET":
            reply = api.handle(
                sandbox.dataset,
                route.method,
                args,
                future_api=config["future_api"],
                repeat_page=fault == "repeat-page",
                page_factor=faults.EXTRA_ROWS_FACTOR if fault == "extra-rows" else 1,
            )
        else:
            reply = api.Reply(404, api.UNKNOWN_METHOD)
        if fault == "oversized":
            self._stream_oversized(fmt, config)
        elif fault in ("xxe", "bomb"):
            fallback = self._sample_items(config, 1)[0]
            body = faults.entity_page(fault, reply.payload, fallback)
            self._answer(200, body, render.XML_TYPE)
        else:
            if fault == "json-object":
                fmt = "json"
                reply = reply._replace(payload=faults.as_json_object(reply.payload))
            elif fault in faults.CONTENT_FAULTS:
                reply = reply._replace(
                    payload=faults.alter_payload(fault, reply.payload)
                )
            content_type, body = render.render(reply.payload, fmt)
            if fault == "trickle":
                self._trickle(reply.status, body, content_type, config)
                return
            self._answer(reply.status, body, content_type, fault=fault)

    def _status_fault(self, fault, config):
        status = 429 if fault == "429-no-retry-after" else fault
        headers = []
        if status in RETRY_AFTER_STATUSES and fault != "429-no-retry-after":
            headers.append(("Retry-After", str(config["retry_after"])))
        self._answer(status, faults.status_body(status), render.HTML_TYPE, headers)

    def _answer(self, status, body, content_type, headers=(), fault=None):
        headers = list(headers)
        if fault in ("malformed", "malformed-xml"):
            body = faults.break_body(body, content_type)
        if body and self._accepts_gzip():
            body = gzip.compress(body, compresslevel=6, mtime=0)
            headers += [("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")]
        cut = None
        if fault == "truncate":
            cut = len(body) // 2  # Content-Length still announces all of it
            self.close_connection = True
        self._done(status)
        self._send(status, body, content_type, headers, cut=cut)

    def _trickle(self, status, body, content_type, config):
        """Prompt headers, then the body one byte per ``trickle_interval``
        (never gzipped); hangs up after ``trickle_bytes`` bytes."""
        self.close_connection = True
        self._done(status)
        self.wfile.write(self._head(status, content_type, (), len(body)))
        sent = 0
        if self.command != "HEAD":
            sent = faults.trickle(
                body,
                self.wfile.write,
                self.server.owner._stopping.wait,
                interval=config["trickle_interval"],
                max_bytes=config["trickle_bytes"],
            )
        self.log_request(status, sent)

    def _sample_items(self, config, count):
        dataset = self.server.owner.dataset
        items = [
            dataset.list_item(p, who, config["future_api"])
            for p, who in dataset.rows[:count]
        ]
        return items or [dict(_FALLBACK_ITEM)]

    def _stream_oversized(self, fmt, config):
        # Never gzipped: the point is a big body on the wire, sent in chunks.
        content_type, total, chunks = faults.oversized(
            "json" if fmt == "json" else "xml", self._sample_items(config, 50)
        )
        self._done(200)
        self.wfile.write(self._head(200, content_type, (), total))
        if self.command != "HEAD":
            for chunk in chunks:
                self.wfile.write(chunk)
        self.log_request(200, total)


class SandboxServer(LoopbackServer):
    """A SICANTIK backoffice API on loopback, with fault injection and stats.

    ``SandboxServer(permits=1000).start()`` generates a dataset, binds (port 0
    picks a free port) and serves from daemon threads; ``url`` is the API base
    (no trailing slash); ``stop()`` or a ``with`` block ends it.
    """

    handler_class = _Handler
    http_server_class = _HTTPServer
    thread_name = "sandbox"
    already_running = "the sandbox is already running"

    def __init__(
        self,
        dataset=None,
        permits=1000,
        seed=1,
        host="127.0.0.1",
        port=0,
        future_api=False,
        *,
        today=None,
        verbose=False,
    ):
        if dataset is None:
            dataset = generate_dataset(permits=permits, seed=seed, today=today)
        super().__init__(host, port, verbose)
        self.dataset = dataset
        self._faults = FaultPlan(seed=seed)
        self._faults.configure(future_api=bool(future_api))
        self._stats = Stats()

    # -- addresses ---------------------------------------------------------

    @property
    def root_url(self):
        """http://host:port, where the /_sandbox/ control endpoints live."""
        host = self._httpd.server_address[0] if self._httpd else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def url(self):
        return f"{self.root_url}/backoffice/api"

    # -- faults ------------------------------------------------------------

    def configure(self, **knobs):
        """Change fault knobs at run time; unknown knob or bad value: ValueError.

        Returns the settings now in force.
        """
        return self._faults.configure(**knobs)

    def config(self):
        return self._faults.settings()

    def queue_faults(self, *faults_):
        """Faults for the next API requests, one each, in order."""
        self._faults.queue(*faults_)

    def clear_faults(self):
        self._faults.clear_queue()

    def pending_faults(self):
        return self._faults.pending()

    # -- statistics --------------------------------------------------------

    def stats(self):
        return self._stats.snapshot()

    def reset_stats(self):
        self._stats.reset()
