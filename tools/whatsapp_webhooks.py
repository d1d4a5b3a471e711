"""What the WhatsApp gateways post back: signatures and payloads (pure Python).

Every gateway reports on the messages it took (sent, delivered, read, failed)
and forwards the holders' replies, each in its own shape and with its own
authentication (the project's ``whatsapp-gateways.md``):

========  ===================================================================
gateway   authentication
========  ===================================================================
meta      ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, body)>``;
          the subscription is confirmed by a GET echoing ``hub.challenge``
          when ``hub.verify_token`` matches
waha      ``X-Webhook-Hmac: <hex HMAC-SHA512(key, body)>`` when a key is set
fonnte    signs nothing: the secret webhook path, plus an optional shared
          token in the ``token`` query parameter
webhook   ours: ``X-Sicantik-Timestamp: <unix seconds>`` and
          ``X-Sicantik-Signature: sha256=<hex HMAC-SHA256(secret,
          "<timestamp>." + body)>``, refused outside a window of
          ``STALE_AFTER_S`` seconds around now
========  ===================================================================

``verify(gateway, ...)`` raises :class:`WebhookAuthError` on any doubt, and
compares in constant time. ``parse(gateway, body)`` turns a body into a list
of :class:`Receipt`, the common shape the addon records.
"""

import hashlib
import hmac
import json
import re
from datetime import UTC, datetime
from typing import NamedTuple

from .storable import ID_MAX, MESSAGE_MAX, storable

MAX_BODY_BYTES = 256 * 1024  # a receipt is a few kB; Meta batches stay far below
STALE_AFTER_S = 300  # the generic webhook's timestamp window, either way
SIGNATURE_HEADER = "X-Sicantik-Signature"
TIMESTAMP_HEADER = "X-Sicantik-Timestamp"

# The states a reminder may reach after the gateway accepted it, in order;
# a receipt never moves a reminder back along this list.
STATE_RANK = {"sent": 1, "delivered": 2, "read": 3}
STATES = ("sent", "delivered", "read", "failed")

KIND_STATUS = "status"
KIND_REPLY = "reply"
KIND_OTHER = "other"

# Meta error codes meaning "this number cannot receive WhatsApp".
META_INVALID_NUMBER_CODES = frozenset({131026})
# WAHA acknowledgements: -1 ERROR, 0 PENDING, 1 SERVER, 2 DEVICE, 3 READ, 4 PLAYED
WAHA_ACKS = {-1: "failed", 1: "sent", 2: "delivered", 3: "read", 4: "read"}
FONNTE_STATES = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "invalid": "failed",
    "expired": "failed",
    "url unreachable": "failed",
}
_DIGITS = re.compile(r"\+?(\d{6,15})")


class WebhookError(Exception):
    """A webhook call that cannot be taken as it is."""


class WebhookAuthError(WebhookError):
    """Not signed by the gateway (missing, wrong or stale signature): 403.

    The message is for the server log; the caller answers without detail.
    """


class WebhookPayloadError(WebhookError):
    """Authentic, but not a body this gateway sends (not JSON, wrong shape)."""


class Receipt(NamedTuple):
    """One thing a gateway reported, in the addon's words.

    ``kind``: ``status`` (a message of ours changed state), ``reply`` (a
    holder wrote to us) or ``other`` (session events and the like, kept only
    so a replay is recognised).
    """

    kind: str
    message_id: str | None = None  # the gateway's id of our message
    state: str | None = None  # sent / delivered / read / failed
    at: datetime | None = None  # when it happened, naive UTC
    reason: str | None = None  # the gateway's words for a failure
    error_code: str | None = None
    invalid_number: bool = False  # the failure means: no WhatsApp on it
    sender: str | None = None  # a reply's number, digits only (6281…)
    text: str | None = None  # a reply's text
    alt_id: str | None = None  # a second id of the same message (Fonnte)


# --------------------------------------------------------------------------
# Signatures
# --------------------------------------------------------------------------
def _hmac_hex(secret, data, algorithm):
    return hmac.new(secret.encode(), data, algorithm).hexdigest()


def _same(expected, given):
    """Constant-time comparison of two texts (False when one is missing)."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.strip().encode())


def _require_secret(secret, what):
    if not isinstance(secret, str) or not secret:
        raise WebhookAuthError(f"no {what} is configured")


def verify_meta(app_secret, body, headers):
    """``X-Hub-Signature-256: sha256=<hex>`` over the raw body."""
    _require_secret(app_secret, "app secret")
    given = headers.get("X-Hub-Signature-256") or ""
    scheme, _sep, digest = given.partition("=")
    expected = _hmac_hex(app_secret, body, hashlib.sha256)
    if scheme.strip().lower() != "sha256" or not _same(expected, digest.lower()):
        raise WebhookAuthError("Meta signature missing or wrong")


def meta_challenge(verify_token, params):
    """The ``hub.challenge`` to echo for Meta's subscription check."""
    _require_secret(verify_token, "verify token")
    if params.get("hub.mode") != "subscribe" or not _same(
        verify_token, params.get("hub.verify_token") or ""
    ):
        raise WebhookAuthError("Meta verification refused")
    challenge = params.get("hub.challenge") or ""
    if not re.fullmatch(r"[A-Za-z0-9_\-]{1,128}", challenge):
        raise WebhookAuthError("Meta challenge malformed")
    return challenge


def verify_waha(hmac_key, body, headers):
    """``X-Webhook-Hmac``: hex HMAC-SHA512 of the raw body, when a key is set
    (without a key WAHA signs nothing: the secret path is all there is)."""
    if not hmac_key:
        return
    algorithm = (headers.get("X-Webhook-Hmac-Algorithm") or "sha512").lower()
    given = headers.get("X-Webhook-Hmac") or ""
    expected = _hmac_hex(hmac_key, body, hashlib.sha512)
    if algorithm != "sha512" or not _same(expected, given.lower()):
        raise WebhookAuthError("WAHA signature missing or wrong")


def verify_fonnte(shared_token, params):
    """Fonnte signs nothing: an optional token in the URL's query."""
    if shared_token and not _same(shared_token, params.get("token") or ""):
        raise WebhookAuthError("Fonnte token missing or wrong")


def sign_generic(secret, body, timestamp):
    """The headers a sender of the generic webhook adds (documented)."""
    stamp = str(int(timestamp))
    digest = _hmac_hex(secret, stamp.encode() + b"." + body, hashlib.sha256)
    return {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: f"sha256={digest}"}


def verify_generic(secret, body, headers, now, window=STALE_AFTER_S):
    """Our documented signature, with a timestamp inside ``window`` seconds
    of ``now`` (unix seconds): an old signed call replayed later is refused."""
    _require_secret(secret, "signing secret")
    stamp = (headers.get(TIMESTAMP_HEADER) or "").strip()
    if not stamp.isdigit() or len(stamp) > 12:
        raise WebhookAuthError("timestamp missing")
    if abs(now - int(stamp)) > window:
        raise WebhookAuthError("timestamp stale")
    expected = sign_generic(secret, body, int(stamp))[SIGNATURE_HEADER]
    if not _same(expected, (headers.get(SIGNATURE_HEADER) or "").lower()):
        raise WebhookAuthError("signature missing or wrong")


def body_digest(body):
    """The key of a call's body: a second call with the same bytes is a replay."""
    return hashlib.sha256(body).hexdigest()


# --------------------------------------------------------------------------
# Payloads
# --------------------------------------------------------------------------
def parse(gateway, body, form=None):
    """The receipts of a body posted by ``gateway`` (``form``: the decoded
    form fields when the body was a form, Fonnte only)."""
    payload = form if form and gateway == "fonnte" else _json(body)
    parser = {
        "meta": parse_meta,
        "waha": parse_waha,
        "fonnte": parse_fonnte,
        "webhook": parse_generic,
    }.get(gateway)
    if parser is None:
        raise WebhookPayloadError(f"no webhook for gateway {gateway!r}")
    return parser(payload)


def _json(body):
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise WebhookPayloadError("the body is not JSON") from e
    if not isinstance(payload, dict):
        raise WebhookPayloadError("the body is not a JSON object")
    return payload


def _id(value):
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return storable(str(value), ID_MAX) or None


def _digits(value):
    """``"6281…@c.us"`` / ``"+6281…"`` -> ``"6281…"``; None when no number."""
    match = _DIGITS.fullmatch(str(value or "").split("@")[0].strip())
    return match[1] if match else None


def _text(value, limit=MESSAGE_MAX):
    return storable(value, limit, multiline=True) if isinstance(value, str) else None


def _time(value):
    """Unix seconds (or milliseconds) or ISO 8601 -> naive UTC; None if unknown."""
    try:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = value / 1000.0 if value > 10**11 else float(value)
            return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)
        if isinstance(value, str) and value:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if parsed.tzinfo is not None:
                parsed = parsed.astimezone(UTC).replace(tzinfo=None)
            return parsed
    except (ValueError, OverflowError, OSError):
        return None
    return None


def _list(value):
    return value if isinstance(value, list) else []


def _dict(value):
    return value if isinstance(value, dict) else {}


def parse_meta(payload):
    """``entry[].changes[].value.statuses[]`` and ``.messages[]``."""
    if payload.get("object") != "whatsapp_business_account":
        raise WebhookPayloadError("not a WhatsApp Business Account event")
    receipts = []
    for entry in _list(payload.get("entry")):
        for change in _list(_dict(entry).get("changes")):
            value = _dict(_dict(change).get("value"))
            for status in _list(value.get("statuses")):
                receipts.append(_meta_status(_dict(status)))
            for message in _list(value.get("messages")):
                receipts.append(_meta_message(_dict(message)))
    return receipts or [Receipt(KIND_OTHER)]


def _meta_status(status):
    state = status.get("status")
    error = _dict(next(iter(_list(status.get("errors"))), None))
    code = _id(error.get("code"))
    reason = None
    if state == "failed":
        details = _dict(error.get("error_data")).get("details")
        reason = _text(error.get("title") or error.get("message") or details, 250)
    return Receipt(
        KIND_STATUS,
        message_id=_id(status.get("id")),
        state=state if state in STATES else None,
        at=_time(status.get("timestamp")),
        reason=reason,
        error_code=code,
        invalid_number=bool(code) and int(code) in META_INVALID_NUMBER_CODES,
        sender=_digits(status.get("recipient_id")),
    )


def _meta_message(message):
    kind = message.get("type")
    text = None
    if kind == "text":
        text = _dict(message.get("text")).get("body")
    elif kind == "button":
        text = _dict(message.get("button")).get("text")
    elif kind == "interactive":
        reply = _dict(message.get("interactive"))
        reply = _dict(reply.get("button_reply") or reply.get("list_reply"))
        text = reply.get("title")
    return Receipt(
        KIND_REPLY,
        message_id=_id(_dict(message.get("context")).get("id")),
        at=_time(message.get("timestamp")),
        sender=_digits(message.get("from")),
        text=_text(text) if text else f"[{storable(str(kind), 32)}]",
        alt_id=_id(message.get("id")),
    )


def _waha_id(value):
    if isinstance(value, dict):
        return _id(value.get("_serialized") or value.get("id"))
    return _id(value)


def parse_waha(payload):
    """``message.ack`` (our messages' acks) and ``message`` (replies)."""
    event = payload.get("event")
    body = _dict(payload.get("payload"))
    at = _time(payload.get("timestamp") or body.get("timestamp"))
    if event == "message.ack" and body.get("fromMe", True):
        ack = body.get("ack")
        state = WAHA_ACKS.get(ack) if isinstance(ack, int) else None
        return [
            Receipt(
                KIND_STATUS,
                message_id=_waha_id(body.get("id")),
                state=state,
                at=at,
                reason="WhatsApp reported an error" if state == "failed" else None,
                error_code=_id(body.get("ackName")),
            )
        ]
    if event in ("message", "message.any") and not body.get("fromMe"):
        return [
            Receipt(
                KIND_REPLY,
                at=at,
                sender=_digits(body.get("from")),
                text=_text(body.get("body")) or "[media]",
                alt_id=_waha_id(body.get("id")),
            )
        ]
    return [Receipt(KIND_OTHER)]


def parse_fonnte(payload):
    """Status updates ``{device, id, stateid, status, state}`` and incoming
    messages ``{device, sender, message, …}``."""
    if payload.get("sender") and "message" in payload:
        return [
            Receipt(
                KIND_REPLY,
                sender=_digits(payload.get("sender")),
                text=_text(payload.get("message")) or "[media]",
                at=_time(payload.get("timestamp")),
            )
        ]
    if payload.get("id") is None and payload.get("stateid") is None:
        return [Receipt(KIND_OTHER)]  # device connect/disconnect and the like
    word = payload.get("state") or payload.get("status")
    word = word.strip().lower() if isinstance(word, str) else None
    state = FONNTE_STATES.get(word)
    return [
        Receipt(
            KIND_STATUS,
            message_id=_id(payload.get("id")),
            alt_id=_id(payload.get("stateid")),
            state=state,
            at=_time(payload.get("timestamp")),
            reason=f"Fonnte: {word}" if state == "failed" else None,
            error_code=storable(word, 32) if state == "failed" else None,
            invalid_number=word == "invalid",
        )
    ]


def parse_generic(payload):
    """Our documented shape: ``{"events": [...]}`` or one event object::

    {"type": "status", "id": "<message id>", "status": "delivered",
     "timestamp": 1735689600, "reason": "…", "code": "invalid_number"}
    {"type": "message", "from": "+6281…", "text": "STOP",
     "id": "<its id>", "reply_to": "<message id>"}
    """
    events = payload.get("events") if "events" in payload else [payload]
    receipts = []
    for event in _list(events):
        event = _dict(event)
        if event.get("type") == "status":
            state = event.get("status")
            code = _id(event.get("code"))
            receipts.append(
                Receipt(
                    KIND_STATUS,
                    message_id=_id(event.get("id")),
                    state=state if state in STATES else None,
                    at=_time(event.get("timestamp")),
                    reason=_text(event.get("reason"), 250),
                    error_code=code,
                    invalid_number=code == "invalid_number",
                )
            )
        elif event.get("type") == "message":
            receipts.append(
                Receipt(
                    KIND_REPLY,
                    message_id=_id(event.get("reply_to")),
                    at=_time(event.get("timestamp")),
                    sender=_digits(event.get("from")),
                    text=_text(event.get("text")) or "[media]",
                    alt_id=_id(event.get("id")),
                )
            )
    if not receipts:
        raise WebhookPayloadError("no event in the body")
    return receipts


# --------------------------------------------------------------------------
# Rules the addon applies to receipts
# --------------------------------------------------------------------------
def advances(current, new):
    """Whether a reminder in state ``current`` moves to ``new``.

    Never backwards: delivered after read changes nothing, nor does a
    duplicate; a failure ends a message that was only sent, never one the
    holder already got; a failed message stays failed.
    """
    if new == "failed":
        return current in ("sending", "sent")
    if new not in STATE_RANK:
        return False
    if current == "sending":
        return True
    return STATE_RANK.get(current, 99) < STATE_RANK[new]


def parse_stop_words(text):
    """``"STOP, BERHENTI; unsubscribe"`` -> ``{"stop", "berhenti", "unsubscribe"}``."""
    return {w.strip().casefold() for w in re.split(r"[,;\n]+", text or "") if w.strip()}


def is_stop(text, stop_words):
    """Whether a reply is, as a whole, one of the stop words (any case; the
    punctuation and spaces around it aside): "stop." is, "don't stop" isn't."""
    words = stop_words if isinstance(stop_words, set | frozenset) else None
    if words is None:
        words = parse_stop_words(stop_words)
    cleaned = re.sub(r"^[\W_]+|[\W_]+$", "", (text or "").strip())
    return bool(cleaned) and cleaned.casefold() in words


def sender_e164(digits):
    """A sender's digits as the E.164 the contacts store (``+6281…``)."""
    return f"+{digits}" if digits else None
