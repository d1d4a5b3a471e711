"""Loopback stand-ins for the WhatsApp gateways, with fault injection.

One :class:`GatewayServer` on 127.0.0.1 speaks the documented contract of each
gateway the addon supports (the project's ``whatsapp-gateways.md``):

* ``meta``: Meta WhatsApp Cloud API, ``POST /{version}/{phone_number_id}/messages``
  with ``Authorization: Bearer <token>``, JSON text or template messages;
* ``fonnte``: ``POST /send`` with the raw device token in ``Authorization``,
  form (or JSON / multipart) fields; failures are HTTP 200 + ``status: false``;
* ``waha``: ``POST /api/sendText`` and ``GET /api/contacts/check-exists`` with
  ``X-Api-Key``; ``GET /api/sessions``;
* ``webhook``: ``POST {webhook_path}`` with the configured headers, JSON
  ``{"to", "text", ...}``, the contract of ``tools.whatsapp_gateways.WebhookGateway``.

It records every request (:meth:`GatewayServer.requests`) and every message a
gateway took for delivery (:meth:`GatewayServer.messages`), so a test counts
what would have reached a phone, duplicates included. On request
(:meth:`GatewayServer.send_receipts`) each gateway posts its delivery
receipts back to the addon's webhook, signed, delayed, duplicated or out of
order (``sandbox/receipts.py``), retrying until they are taken.

Faults are answers queued per gateway (:meth:`GatewayServer.queue`); each one is
used by the next *sending* request to that gateway; WAHA's number checks have
their own queue, ``"waha-check"``. Knobs (:meth:`GatewayServer.configure`)
change lasting behaviour: numbers without WhatsApp, WAHA's session state and
engine, Meta's approved templates. An answer is a shortcut or a dict:

* shortcuts: ``"ok"``, ``"invalid_number"``, ``"refuse"`` (a failure in a 200
  body: Fonnte and webhook only), ``"429"`` (with ``Retry-After: 1``),
  ``"429-no-retry-after"``, ``"500"``, ``"502"``, ``"503"``, ``"504"``,
  ``"hang"`` (5 s), ``"close"``;
* dict keys: ``status`` (HTTP status of an error answer, with the gateway's
  own error body), ``retry_after`` (header value; absent: no header),
  ``code`` (Meta error code or webhook error code), ``reason`` (Fonnte /
  webhook refusal text, with ``refuse: True``), ``invalid_number: True``,
  ``body`` (a JSON value sent as is, with ``status`` or 200), ``hang``
  (seconds to wait before answering), ``close: True`` (read the request,
  then hang up without an answer), ``deliver`` (whether the gateway took
  the message: default True for a success, hang included, False otherwise;
  ``{"close": True, "deliver": True}`` is a message sent whose answer was
  lost), ``headers`` (extra headers of an answer with ``status``/``body``).

Meta reports a number without WhatsApp (131026) in the send answer here,
where the real API may accept the message and report it in the status
webhook; WAHA does not check numbers when sending (its engine fails with a
500), only ``/api/contacts/check-exists`` tells.

Pure standard library, no Odoo import; starts in a few milliseconds::

    with GatewayServer() as gw:
        gw.queue("fonnte", "refuse", "ok")
        FonnteGateway(gw.fonnte_token, base_url=gw.url).send(...)
"""

import email.parser
import email.policy
import itertools
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from .loopback import Drop, LoopbackHandler, LoopbackServer
from .receipts import ReceiptSender

GATEWAYS = ("meta", "fonnte", "waha", "webhook")
# Answer queues: one per gateway's sending route, plus WAHA's number check.
QUEUES = (*GATEWAYS, "waha-check")
DEFAULT_HANG = 5.0
DEFAULT_WEBHOOK_PATH = "/hooks/whatsapp"
WAHA_ENGINES = ("WEBJS", "NOWEB", "GOWS")

SHORTCUTS = {
    "ok": {},
    "invalid_number": {"invalid_number": True},
    "refuse": {"refuse": True},
    "429": {"status": 429, "retry_after": "1"},
    "429-no-retry-after": {"status": 429},
    "500": {"status": 500},
    "502": {"status": 502},
    "503": {"status": 503},
    "504": {"status": 504},
    "hang": {"hang": DEFAULT_HANG},
    "close": {"close": True},
}
ANSWER_KEYS = frozenset(
    {
        "status",
        "retry_after",
        "code",
        "reason",
        "refuse",
        "invalid_number",
        "body",
        "hang",
        "close",
        "deliver",
        "headers",
    }
)
# Gateways that report failures inside an HTTP 200 answer.
REFUSING_GATEWAYS = frozenset({"fonnte", "webhook"})

KNOB_DEFAULTS = {
    # numbers (digits, no "+") that have no WhatsApp account
    "invalid_numbers": frozenset(),
    # WAHA session state; anything but WORKING gets 422 on send
    "waha_session_status": "WORKING",
    # shape of WAHA's send answer
    "waha_engine": "WEBJS",
    # Meta: approved template name -> number of body parameters; None: any
    "meta_templates": None,
}

_META_VERSION = re.compile(r"v\d{1,3}\.\d{1,2}")
_META_STATUS_ERRORS = {
    400: (131000, "Something went wrong"),
    401: (190, "Invalid OAuth access token - Cannot parse access token"),
    429: (130429, "(#130429) Rate limit hit"),
    500: (1, "An unknown error occurred"),
    502: (2, "Service temporarily unavailable"),
    503: (2, "Service temporarily unavailable"),
    504: (2, "Service temporarily unavailable"),
}


@dataclass(frozen=True)
class Answer:
    """One queued answer (see the module docstring for the keys)."""

    status: int | None = None
    retry_after: str | None = None
    code: object = None
    reason: str | None = None
    refuse: bool = False
    invalid_number: bool = False
    body: object = None
    hang: float = 0.0
    close: bool = False
    deliver: bool | None = None
    headers: tuple = ()  # extra (name, value) pairs of an error answer

    @classmethod
    def parse(cls, value, gateway):
        if isinstance(value, Answer):
            answer = value
        else:
            if isinstance(value, int):
                value = str(value)
            if isinstance(value, str):
                if value not in SHORTCUTS:
                    raise ValueError(f"unknown answer {value!r}")
                value = SHORTCUTS[value]
            if not isinstance(value, dict) or not set(value) <= ANSWER_KEYS:
                raise ValueError(f"an answer is a shortcut or a dict of {ANSWER_KEYS}")
            value = dict(value)
            if value.get("retry_after") is not None:
                value["retry_after"] = str(value["retry_after"])
            if isinstance(value.get("headers"), dict):
                value["headers"] = tuple(value["headers"].items())
            answer = cls(**value)
        if answer.refuse and gateway not in REFUSING_GATEWAYS:
            raise ValueError(f"{gateway} never reports a failure in a 200 answer")
        if answer.hang < 0:
            raise ValueError("hang must be >= 0 seconds")
        return answer

    @property
    def is_error(self):
        return bool(
            self.status and self.status >= 300 or self.refuse or self.invalid_number
        )

    def delivers(self, default=True):
        """Whether the gateway takes the message with this answer."""
        if self.deliver is not None:
            return self.deliver
        return default and not self.is_error and not self.close


_OK = Answer()


@dataclass(frozen=True)
class Request:
    """A request as the server received it; header names are lower-case."""

    gateway: str
    method: str
    path: str
    query: dict
    headers: dict
    body: bytes
    fields: dict  # the decoded JSON object or form fields ({} otherwise)
    status: int | None = None  # None: unanswered (close, hang cut short)


@dataclass(frozen=True)
class Message:
    """A message a gateway took for delivery (it would reach the phone)."""

    gateway: str
    to: str  # digits, as the gateway addresses the recipient
    text: str | None
    template: str | None = None
    params: tuple = ()
    message_id: str | None = None
    reference: str | None = None


@dataclass
class _Outcome:
    status: int
    payload: object
    headers: list = field(default_factory=list)
    messages: list = field(default_factory=list)  # what the gateway takes


class _Handler(LoopbackHandler):
    server_version = "gateway-sandbox"

    def do_GET(self):
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_GET

    def _dispatch(self):
        body = self._read_body()
        url = urlsplit(self.path)
        request = Request(
            gateway="",
            method=self.command,
            path=url.path,
            query={k: v[-1] for k, v in parse_qs(url.query).items()},
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            fields=_decode_fields(self.headers.get("Content-Type", ""), body),
        )
        self.server.owner._handle(self, request)

    def send_outcome(self, outcome):
        payload = outcome.payload
        if isinstance(payload, bytes | str):
            data = payload.encode() if isinstance(payload, str) else payload
            content_type = "text/html; charset=utf-8"
        else:
            data = json.dumps(payload).encode()
            content_type = "application/json; charset=utf-8"
        lines = [
            f"HTTP/1.1 {outcome.status} {_phrase(outcome.status)}",
            f"Date: {self.date_time_string()}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(data)}",
            *(f"{name}: {value}" for name, value in outcome.headers),
        ]
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data)


def _phrase(status):
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _meta_template_fields(data):
    """(name, language code, body parameters) of a Meta template message."""
    body = data.get("template") or {}
    params = tuple(
        p.get("text")
        for c in body.get("components") or ()
        if c.get("type") == "body"
        for p in c.get("parameters") or ()
    )
    return body.get("name"), (body.get("language") or {}).get("code"), params


def _decode_fields(content_type, body):
    """JSON object, urlencoded or multipart form fields; {} when neither."""
    kind = content_type.split(";")[0].strip().lower()
    try:
        if kind == "application/json":
            value = json.loads(body or b"null")
            return value if isinstance(value, dict) else {}
        if kind == "application/x-www-form-urlencoded":
            parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True)
            return {k: v[-1] for k, v in parsed.items()}
        if kind == "multipart/form-data":
            head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1")
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                head + body
            )
            return {
                part.get_param("name", header="content-disposition"): (
                    part.get_payload(decode=True) or b""
                ).decode("utf-8")
                for part in message.iter_parts()
            }
    except (ValueError, UnicodeDecodeError):
        return {}
    return {}


class GatewayServer(LoopbackServer):
    """WhatsApp gateways on loopback: ``start()``/``stop()`` or a ``with`` block.

    Credentials are random per server unless given: clients read them from
    ``meta_token``, ``meta_phone_number_id``, ``fonnte_token``,
    ``waha_api_key`` (pass ``False``: WAHA without authentication) and
    ``webhook_headers`` (pass ``{}``: a webhook without authentication).
    Every gateway lives under :attr:`url`; the webhook at :attr:`webhook_url`.
    """

    handler_class = _Handler
    thread_name = "gateway-sandbox"
    already_running = "the gateway sandbox is already running"

    def __init__(
        self,
        host="127.0.0.1",
        port=0,
        *,
        meta_token=None,
        meta_phone_number_id="106540352242922",
        fonnte_token=None,
        waha_api_key=None,
        waha_session="default",
        webhook_path=DEFAULT_WEBHOOK_PATH,
        webhook_headers=None,
        verbose=False,
    ):
        super().__init__(host, port, verbose)
        self.meta_token = meta_token or f"EAAG{secrets.token_hex(16)}"
        self.meta_phone_number_id = meta_phone_number_id
        self.fonnte_token = fonnte_token or secrets.token_urlsafe(15)
        if waha_api_key is None:
            waha_api_key = f"waha-{secrets.token_hex(12)}"
        self.waha_api_key = waha_api_key or None
        self.waha_session = waha_session
        self.webhook_path = "/" + webhook_path.strip("/")
        if webhook_headers is None:
            webhook_headers = {"Authorization": f"Bearer {secrets.token_hex(12)}"}
        self.webhook_headers = dict(webhook_headers)
        self._lock = threading.Lock()
        self._queues = {name: [] for name in QUEUES}
        self._knobs = dict(KNOB_DEFAULTS)
        self._requests = []
        self._messages = []
        self._ids = itertools.count(1)
        self._generation = 0
        self.receipts = ReceiptSender(self._stopping)

    # -- addresses ---------------------------------------------------------
    @property
    def url(self):
        """``http://127.0.0.1:port``: the base URL of Meta, Fonnte and WAHA."""
        return f"http://{self.host}:{self.port}"

    @property
    def webhook_url(self):
        return self.url + self.webhook_path

    # -- faults and knobs --------------------------------------------------
    def queue(self, gateway, *answers):
        """Answers for the next sending requests to ``gateway``, in order
        (``"waha-check"``: WAHA's number checks)."""
        self._check_gateway(gateway)
        parsed = [Answer.parse(a, gateway) for a in answers]
        with self._lock:
            self._queues[gateway].extend(parsed)

    def send_receipts(self, gateway, url, **options):
        """Post delivery receipts of the messages ``gateway`` takes to ``url``
        (the addon's webhook), signed with ``secret`` as that gateway signs:
        see ``sandbox.receipts`` for ``states``, ``delay``, ``duplicate``,
        ``out_of_order`` and ``fail_numbers``. ``url=None`` stops them."""
        self._check_gateway(gateway)
        if "fail_numbers" in options:
            options["fail_numbers"] = frozenset(
                str(n).lstrip("+") for n in options["fail_numbers"] or ()
            )
        if "states" in options:
            options["states"] = tuple(options["states"])
        self.receipts.configure(gateway, url, **options)

    def pending(self, gateway):
        self._check_gateway(gateway)
        with self._lock:
            return list(self._queues[gateway])

    def configure(self, **knobs):
        """Change knobs (see ``KNOB_DEFAULTS``); returns the settings in force."""
        unknown = set(knobs) - set(KNOB_DEFAULTS)
        if unknown:
            raise ValueError(f"unknown knob(s): {', '.join(sorted(unknown))}")
        if "invalid_numbers" in knobs:
            knobs["invalid_numbers"] = frozenset(
                str(n).lstrip("+") for n in knobs["invalid_numbers"] or ()
            )
        if knobs.get("waha_engine", "WEBJS") not in WAHA_ENGINES:
            raise ValueError(f"waha_engine must be one of {WAHA_ENGINES}")
        with self._lock:
            self._knobs.update(knobs)
            return dict(self._knobs)

    def reset(self):
        """Forget requests, messages and queued answers; default knobs."""
        with self._lock:
            for queue in self._queues.values():
                queue.clear()
            self._knobs = dict(KNOB_DEFAULTS)
            self._requests.clear()
            self._messages.clear()
            self._generation += 1
        self.receipts.reset()

    # -- records -----------------------------------------------------------
    def requests(self, gateway=None):
        """Every request received (sends, checks, refused ones), in order."""
        with self._lock:
            return [r for r in self._requests if gateway in (None, r.gateway)]

    def messages(self, gateway=None):
        """Every message a gateway took for delivery, in order."""
        with self._lock:
            return [m for m in self._messages if gateway in (None, m.gateway)]

    @staticmethod
    def _check_gateway(gateway):
        if gateway not in QUEUES:
            raise ValueError(f"unknown gateway {gateway!r}; one of {QUEUES}")

    # -- request handling (handler threads) ---------------------------------
    def _route(self, request):
        """(gateway, answer queue, handler) of a request; handler None: 404."""
        path = request.path.rstrip("/")
        parts = [p for p in path.split("/") if p]
        post = request.method == "POST"
        if path == self.webhook_path and post:
            return "webhook", "webhook", self._webhook_send
        if path == "/send" and post:
            return "fonnte", "fonnte", self._fonnte_send
        if parts[:1] == ["api"]:
            queue, action = {
                ("POST", "/api/sendText"): ("waha", self._waha_send),
                ("GET", "/api/contacts/check-exists"): ("waha-check", self._waha_check),
                ("GET", "/api/sessions"): (None, self._waha_sessions),
            }.get((request.method, path), (None, None))
            return "waha", queue, action
        if len(parts) == 3 and parts[2] == "messages" and post:
            return "meta", "meta", self._meta_send
        return "", None, None

    def _handle(self, handler, request):
        gateway, queue, action = self._route(request)
        request = replace(request, gateway=gateway)
        with self._lock:
            answer = _OK
            if queue and self._queues[queue]:
                answer = self._queues[queue].pop(0)
            knobs = dict(self._knobs)
        if action is None:
            outcome = _Outcome(404, {"error": "not found", "path": request.path})
        else:
            outcome = action(request, answer, knobs)
        if answer.close:
            self._record(request, None, outcome.messages if answer.deliver else ())
            handler.close_connection = True
            raise Drop
        delivered = outcome.messages if answer.delivers(outcome.status < 300) else ()
        if answer.hang:
            # the gateway took the message, then is slow to say so
            slot = self._record(request, None, delivered)
            if self._stopping.wait(answer.hang):
                raise Drop
            self._set_status(slot, outcome.status)
        else:
            self._record(request, outcome.status, delivered)
        handler.send_outcome(outcome)

    def _record(self, request, status, messages):
        """Store a request; return its slot for a later status update."""
        with self._lock:
            self._requests.append(replace(request, status=status))
            self._messages.extend(messages)
            slot = self._generation, len(self._requests) - 1
        for message in messages:
            self.receipts.message_taken(message)
        return slot

    def _set_status(self, slot, status):
        generation, index = slot
        with self._lock:
            if generation == self._generation:  # not reset in the meantime
                self._requests[index] = replace(self._requests[index], status=status)

    def _next_id(self):
        with self._lock:
            return next(self._ids)

    def _error_override(self, answer, default_payload, headers=()):
        """The outcome of an answer with an explicit status or body."""
        headers = [*headers, *answer.headers]
        if answer.retry_after is not None:
            headers.append(("Retry-After", answer.retry_after))
        payload = answer.body if answer.body is not None else default_payload
        return _Outcome(answer.status or 200, payload, headers)

    # -- Meta ------------------------------------------------------------------
    @staticmethod
    def _meta_error(status, code, message, subcode=None):
        error = {
            "message": message,
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": message},
            "fbtrace_id": f"A{secrets.token_hex(8)}",
        }
        if subcode is not None:
            error["error_subcode"] = subcode
        return _Outcome(status, {"error": error})

    def _meta_send(self, request, answer, knobs):
        refused = self._meta_queued_error(answer) or self._meta_check_access(request)
        if refused:
            return refused
        data = request.fields
        to = str(data.get("to") or "").lstrip("+")
        kind = data.get("type")
        if (
            data.get("messaging_product") != "whatsapp"
            or not to.isdigit()
            or kind not in ("text", "template")
        ):
            return self._meta_error(
                400, 100, "(#100) Invalid parameter", subcode=2494010
            )
        template, params, text = None, (), None
        if kind == "template":
            template, language, params = _meta_template_fields(data)
            refused = self._meta_check_template(template, language, params, knobs)
        else:
            text = ((data.get("text") or {}).get("body")) or None
            if not text:
                refused = self._meta_error(
                    400, 131008, "(#131008) Required parameter is missing"
                )
        if refused:
            return refused
        if answer.invalid_number or to in knobs["invalid_numbers"]:
            return self._meta_error(400, 131026, "(#131026) Message Undeliverable.")
        message = Message(
            "meta",
            to,
            text,
            template,
            params,
            f"wamid.HBgM{to}FQIAERgS{self._next_id():016X}",
            data.get("biz_opaque_callback_data"),
        )
        return self._meta_accepted(data.get("to"), message)

    def _meta_queued_error(self, answer):
        """The outcome of a queued error answer; None for a normal one."""
        if answer.body is not None or (answer.status and answer.code is None):
            code, text = _META_STATUS_ERRORS.get(
                answer.status or 200, (131000, "Something went wrong")
            )
            return self._error_override(
                answer, self._meta_error(answer.status, code, text).payload
            )
        if answer.code is not None:
            outcome = self._meta_error(
                answer.status or 400, int(answer.code), f"(#{answer.code}) refused"
            )
            if answer.retry_after is not None:
                outcome.headers.append(("Retry-After", answer.retry_after))
            return outcome
        return None

    def _meta_check_access(self, request):
        """Token, API version and phone number id of the path; None when fine."""
        version, phone_id = request.path.strip("/").split("/")[:2]
        if request.headers.get("authorization") != f"Bearer {self.meta_token}":
            return self._meta_error(401, *_META_STATUS_ERRORS[401])
        if not _META_VERSION.fullmatch(version):
            return _Outcome(400, {"error": {"message": "Unknown path components"}})
        if phone_id != self.meta_phone_number_id:
            return self._meta_error(
                400,
                100,
                f"Unsupported post request. Object with ID '{phone_id}' does "
                f"not exist, cannot be loaded due to missing permissions, or "
                f"does not support this operation.",
                subcode=33,
            )
        return None

    @classmethod
    def _meta_check_template(cls, template, language, params, knobs):
        """Meta's refusal of a template message; None when it is accepted."""
        if not template or not language:
            return cls._meta_error(
                400, 131008, "(#131008) Required parameter is missing"
            )
        known = knobs["meta_templates"]
        if known is not None and template not in known:
            return cls._meta_error(
                404,
                132001,
                f"(#132001) Template name does not exist in the translation "
                f"(template {template} in {language})",
            )
        if known is not None and known[template] != len(params):
            return cls._meta_error(
                400,
                132000,
                "(#132000) Number of parameters does not match the expected "
                "number of params",
            )
        if any(not p or "\n" in p or "\t" in p or "     " in p for p in params):
            return cls._meta_error(
                400,
                132018,
                "(#132018) There was an issue with the parameters in your " "template.",
            )
        return None

    @staticmethod
    def _meta_accepted(given_to, message):
        result = {"id": message.message_id}
        if message.template:
            result["message_status"] = "accepted"
        return _Outcome(
            200,
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": given_to, "wa_id": message.to}],
                "messages": [result],
            },
            messages=[message],
        )

    # -- Fonnte ----------------------------------------------------------------
    def _fonnte_send(self, request, answer, knobs):
        if answer.body is not None or answer.status:
            default = (
                {"reason": "too many requests", "status": False}
                if answer.status == 429
                else "<html><body><h1>Service unavailable</h1></body></html>"
            )
            return self._error_override(answer, default)
        if request.headers.get("authorization") != self.fonnte_token:
            return _Outcome(200, {"reason": "token invalid", "status": False})
        data = request.fields
        targets = [t.strip() for t in str(data.get("target") or "").split(",")]
        targets = [t for t in targets if t]
        message = str(data.get("message") or "")
        if not targets or not (message or data.get("url") or data.get("file")):
            return _Outcome(200, {"reason": "input invalid", "status": False})
        if answer.refuse:
            reason = answer.reason or "insufficient quota"
            return _Outcome(200, {"reason": reason, "status": False})
        country = str(data.get("countryCode") or "62")
        numbers = []
        for target in targets:
            number = target.split("|")[0].strip().lstrip("+")
            if number.startswith("0") and country != "0":
                number = country + number[1:]
            numbers.append(number)
        invalid = answer.invalid_number or any(
            not n.isdigit() or len(n) < 8 or n in knobs["invalid_numbers"]
            for n in numbers
        )
        if invalid:
            return _Outcome(200, {"reason": "target invalid", "status": False})
        ids = [str(80367170 + self._next_id()) for _ in numbers]
        return _Outcome(
            200,
            {
                "detail": "success! message in queue",
                "id": ids,
                "process": "pending",
                "requestid": 2937124 + int(ids[0]) % 1000,
                "status": True,
                "target": numbers,
            },
            messages=[
                Message("fonnte", n, message, message_id=i)
                for n, i in zip(numbers, ids, strict=True)
            ],
        )

    # -- WAHA ------------------------------------------------------------------
    def _waha_auth(self, request):
        if self.waha_api_key and request.headers.get("x-api-key") != self.waha_api_key:
            return _Outcome(401, {"message": "Unauthorized", "statusCode": 401})
        return None

    def _waha_session(self, name, knobs):
        if name != self.waha_session:
            return _Outcome(
                404,
                {"statusCode": 404, "message": f'Session "{name}" does not exist'},
            )
        if knobs["waha_session_status"] != "WORKING":
            return _Outcome(
                422,
                {
                    "statusCode": 422,
                    "error": "Unprocessable Entity",
                    "message": "Session status is not as expected. Try again "
                    "later or restart the session",
                    "session": name,
                    "status": knobs["waha_session_status"],
                    "expected": ["WORKING"],
                },
            )
        return None

    def _waha_sessions(self, request, answer, knobs):
        denied = self._waha_auth(request)
        if denied:
            return denied
        return _Outcome(
            200,
            [
                {
                    "name": self.waha_session,
                    "status": knobs["waha_session_status"],
                    "config": {},
                }
            ],
        )

    def _waha_check(self, request, answer, knobs):
        if answer.body is not None or answer.status:
            default = {
                "statusCode": answer.status or 200,
                "message": _phrase(answer.status or 200),
            }
            return self._error_override(answer, default)
        refused = self._waha_auth(request) or self._waha_session(
            request.query.get("session", "default"), knobs
        )
        if refused:
            return refused
        phone = request.query.get("phone", "").lstrip("+")
        if not phone.isdigit():
            return _Outcome(400, {"statusCode": 400, "message": "phone is invalid"})
        exists = not answer.invalid_number and phone not in knobs["invalid_numbers"]
        result = {"numberExists": exists}
        if exists:
            result["chatId"] = f"{phone}@c.us"
        return _Outcome(200, result)

    def _waha_send(self, request, answer, knobs):
        if answer.body is not None or answer.status:
            default = {
                "statusCode": answer.status or 200,
                "message": _phrase(answer.status or 200),
            }
            return self._error_override(answer, default)
        refused = self._waha_auth(request) or self._waha_session(
            request.fields.get("session", "default"), knobs
        )
        if refused:
            return refused
        chat_id = str(request.fields.get("chatId") or "")
        text = request.fields.get("text")
        match = re.fullmatch(r"(\d+)@c\.us", chat_id)
        if not match or not isinstance(text, str) or not text:
            return _Outcome(
                400,
                {
                    "statusCode": 400,
                    "message": ["chatId must be a chat id", "text must be a string"],
                    "error": "Bad Request",
                },
            )
        to = match[1]
        if answer.invalid_number or to in knobs["invalid_numbers"]:
            # WAHA does not check: the engine fails on a number without WhatsApp
            return _Outcome(
                500, {"statusCode": 500, "message": "Internal server error"}
            )
        key = f"3EB0{self._next_id():016X}"
        serialized = f"true_{chat_id}_{key}"
        engine = knobs["waha_engine"]
        if engine == "NOWEB":
            payload = {
                "key": {
                    "remoteJid": f"{to}@s.whatsapp.net",
                    "fromMe": True,
                    "id": key,
                },
                "message": {"extendedTextMessage": {"text": text}},
                "messageTimestamp": str(int(time.time())),
                "status": "PENDING",
            }
            message_id = key
        elif engine == "GOWS":
            payload = {
                "id": serialized,
                "timestamp": int(time.time()),
                "from": chat_id,
                "fromMe": True,
                "body": text,
                "ack": 0,
                "ackName": "PENDING",
            }
            message_id = serialized
        else:
            payload = {
                "id": {
                    "fromMe": True,
                    "remote": chat_id,
                    "id": key,
                    "_serialized": serialized,
                },
                "body": text,
                "type": "chat",
                "timestamp": int(time.time()),
                "to": chat_id,
                "ack": 0,
            }
            message_id = serialized
        return _Outcome(
            201, payload, messages=[Message("waha", to, text, message_id=message_id)]
        )

    # -- generic webhook -------------------------------------------------------
    def _webhook_send(self, request, answer, knobs):
        if answer.body is not None or answer.status:
            default = {
                "ok": False,
                "error": _phrase(answer.status or 200),
            }
            if answer.code is not None:
                default["code"] = answer.code
            return self._error_override(answer, default)
        for name, value in self.webhook_headers.items():
            if request.headers.get(name.lower()) != value:
                return _Outcome(401, {"ok": False, "error": "unauthorized"})
        data = request.fields
        to = str(data.get("to") or "")
        text = data.get("text")
        if not re.fullmatch(r"\+\d{7,15}", to) or not isinstance(text, str):
            return _Outcome(400, {"ok": False, "error": "to and text are required"})
        if answer.refuse:
            refusal = {"ok": False, "error": answer.reason or "quota exceeded"}
            if answer.code is not None:
                refusal["code"] = answer.code
            return _Outcome(200, refusal)
        if answer.invalid_number or to[1:] in knobs["invalid_numbers"]:
            return _Outcome(
                422,
                {"ok": False, "code": "invalid_number", "error": "not on WhatsApp"},
            )
        message_id = f"hook-{self._next_id():06d}"
        params = data.get("params") or ()
        message = Message(
            "webhook",
            to[1:],
            text,
            data.get("template"),
            tuple(params) if isinstance(params, list) else (),
            message_id,
            request.headers.get("idempotency-key") or data.get("reference"),
        )
        return _Outcome(
            200, {"ok": True, "id": message_id, "status": "queued"}, messages=[message]
        )
