"""Webhook signatures and payloads of each gateway, with real signed bodies."""

import hashlib
import hmac
import json
from datetime import datetime

import pytest

from tools import whatsapp_webhooks as wh
from tools.whatsapp_webhooks import WebhookAuthError, WebhookPayloadError

SECRET = "s3cr3t-app-secret"


def meta_body(*statuses, messages=()):
    return json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "1234",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {"phone_number_id": "1065"},
                                "statuses": list(statuses),
                                "messages": list(messages),
                            },
                        }
                    ],
                }
            ],
        }
    ).encode()


def meta_sign(body, secret=SECRET):
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# -- signatures ---------------------------------------------------------------
def test_meta_signature_good_bad_missing():
    body = meta_body({"id": "wamid.1", "status": "read", "timestamp": "1700000000"})
    wh.verify_meta(SECRET, body, {"X-Hub-Signature-256": meta_sign(body)})
    for headers in (
        {},
        {"X-Hub-Signature-256": meta_sign(body, "other")},
        {"X-Hub-Signature-256": meta_sign(body + b" ")},
        {"X-Hub-Signature-256": meta_sign(body).replace("sha256", "sha1")},
    ):
        with pytest.raises(WebhookAuthError):
            wh.verify_meta(SECRET, body, headers)
    with pytest.raises(WebhookAuthError):
        wh.verify_meta("", body, {"X-Hub-Signature-256": meta_sign(body, "")})


def test_meta_challenge_needs_the_verify_token():
    params = {"hub.mode": "subscribe", "hub.verify_token": "vt", "hub.challenge": "42"}
    assert wh.meta_challenge("vt", params) == "42"
    with pytest.raises(WebhookAuthError):
        wh.meta_challenge("vt", dict(params, **{"hub.verify_token": "nope"}))
    with pytest.raises(WebhookAuthError):
        wh.meta_challenge("vt", dict(params, **{"hub.challenge": "<script>"}))
    with pytest.raises(WebhookAuthError):
        wh.meta_challenge("", dict(params, **{"hub.verify_token": ""}))


def test_waha_signature_when_a_key_is_set():
    body = b'{"event":"message.ack","payload":{"id":"x","ack":3}}'
    digest = hmac.new(b"k", body, hashlib.sha512).hexdigest()
    wh.verify_waha("k", body, {"X-Webhook-Hmac": digest})
    wh.verify_waha(None, body, {})  # no key: the secret path is the check
    with pytest.raises(WebhookAuthError):
        wh.verify_waha("k", body, {})
    with pytest.raises(WebhookAuthError):
        wh.verify_waha("k", body + b"x", {"X-Webhook-Hmac": digest})
    with pytest.raises(WebhookAuthError):
        wh.verify_waha(
            "k",
            body,
            {"X-Webhook-Hmac": digest, "X-Webhook-Hmac-Algorithm": "md5"},
        )


def test_fonnte_optional_token():
    wh.verify_fonnte(None, {})
    wh.verify_fonnte("tok", {"token": "tok"})
    with pytest.raises(WebhookAuthError):
        wh.verify_fonnte("tok", {"token": "tik"})
    with pytest.raises(WebhookAuthError):
        wh.verify_fonnte("tok", {})


def test_generic_signature_and_stale_window():
    body = b'{"type":"status","id":"h1","status":"delivered"}'
    headers = wh.sign_generic("key", body, 1_700_000_000)
    assert headers[wh.SIGNATURE_HEADER].startswith("sha256=")
    wh.verify_generic("key", body, headers, now=1_700_000_100)
    with pytest.raises(WebhookAuthError, match="stale"):
        wh.verify_generic("key", body, headers, now=1_700_000_000 + 301)
    with pytest.raises(WebhookAuthError, match="stale"):
        wh.verify_generic("key", body, headers, now=1_700_000_000 - 301)
    forged = dict(headers, **{wh.TIMESTAMP_HEADER: "1700000050"})
    with pytest.raises(WebhookAuthError):
        wh.verify_generic("key", body, forged, now=1_700_000_050)
    with pytest.raises(WebhookAuthError):
        wh.verify_generic("key", body, {}, now=1_700_000_000)


def test_body_digest_tells_a_replay():
    assert wh.body_digest(b"a") == wh.body_digest(b"a") != wh.body_digest(b"b")


# -- payloads -----------------------------------------------------------------
def test_meta_statuses_and_failures():
    body = meta_body(
        {"id": "wamid.1", "status": "delivered", "timestamp": "1700000000"},
        {
            "id": "wamid.2",
            "status": "failed",
            "timestamp": "1700000060",
            "recipient_id": "6281234567890",
            "errors": [{"code": 131026, "title": "Message undeliverable"}],
        },
    )
    delivered, failed = wh.parse("meta", body)
    assert delivered.kind == "status" and delivered.state == "delivered"
    assert delivered.message_id == "wamid.1"
    assert delivered.at == datetime(2023, 11, 14, 22, 13, 20)
    assert failed.state == "failed" and failed.invalid_number
    assert failed.reason == "Message undeliverable" and failed.error_code == "131026"
    other = meta_body(
        {
            "id": "wamid.3",
            "status": "failed",
            "errors": [{"code": 131047, "title": "Re-engagement message"}],
        }
    )
    assert not wh.parse("meta", other)[0].invalid_number


def test_meta_reply_text_and_context():
    body = meta_body(
        messages=[
            {
                "from": "6281234567890",
                "id": "wamid.in",
                "timestamp": "1700000000",
                "type": "text",
                "text": {"body": "sudah diperpanjang"},
                "context": {"id": "wamid.1"},
            }
        ]
    )
    (reply,) = wh.parse("meta", body)
    assert (reply.kind, reply.sender, reply.text) == (
        "reply",
        "6281234567890",
        "sudah diperpanjang",
    )
    assert reply.message_id == "wamid.1" and reply.alt_id == "wamid.in"


def test_payloads_that_are_not_the_gateways():
    with pytest.raises(WebhookPayloadError):
        wh.parse("meta", b"not json")
    with pytest.raises(WebhookPayloadError):
        wh.parse("meta", b"[1, 2]")
    with pytest.raises(WebhookPayloadError):
        wh.parse("meta", b'{"object": "page"}')
    with pytest.raises(WebhookPayloadError):
        wh.parse("webhook", b'{"events": []}')
    with pytest.raises(WebhookPayloadError):
        wh.parse("nope", b"{}")


def test_waha_acks_and_messages():
    def ack(n, ms=1700000000123):
        body = {
            "event": "message.ack",
            "session": "default",
            "timestamp": ms,
            "payload": {"id": "true_62812@c.us_3EB0", "fromMe": True, "ack": n},
        }
        return wh.parse("waha", json.dumps(body).encode())[0]

    assert [ack(n).state for n in (-1, 0, 1, 2, 3, 4)] == [
        "failed",
        None,
        "sent",
        "delivered",
        "read",
        "read",
    ]
    assert ack(3).at == datetime(2023, 11, 14, 22, 13, 20, 123000)
    assert ack(3).message_id == "true_62812@c.us_3EB0"
    message = {
        "event": "message",
        "payload": {"from": "6281234567890@c.us", "fromMe": False, "body": "STOP"},
    }
    (reply,) = wh.parse("waha", json.dumps(message).encode())
    assert (reply.kind, reply.sender, reply.text) == ("reply", "6281234567890", "STOP")
    session = {"event": "session.status", "payload": {"status": "WORKING"}}
    assert wh.parse("waha", json.dumps(session).encode())[0].kind == "other"


def test_fonnte_status_and_incoming():
    first = wh.parse(
        "fonnte",
        b'{"device":"62","id":"80367171","stateid":"s9",'
        b'"status":"sent","state":"sent"}',
    )[0]
    assert (first.message_id, first.alt_id, first.state) == ("80367171", "s9", "sent")
    later = wh.parse("fonnte", b'{"device":"62","stateid":"s9","state":"read"}')[0]
    assert (later.message_id, later.alt_id, later.state) == (None, "s9", "read")
    invalid = wh.parse("fonnte", b'{"id":"80367172","status":"invalid"}')[0]
    assert invalid.state == "failed" and invalid.invalid_number
    pending = wh.parse("fonnte", b'{"id":"80367172","status":"pending"}')[0]
    assert pending.state is None
    form = {"device": "62", "sender": "6281234567890", "message": "Berhenti"}
    reply = wh.parse("fonnte", b"", form=form)[0]
    assert (reply.kind, reply.sender, reply.text) == (
        "reply",
        "6281234567890",
        "Berhenti",
    )
    device = wh.parse("fonnte", b'{"device":"62","status":"connect"}')[0]
    assert device.kind == "other"


def test_generic_events():
    body = json.dumps(
        {
            "events": [
                {"type": "status", "id": "h1", "status": "read", "timestamp": 1},
                {
                    "type": "status",
                    "id": "h2",
                    "status": "failed",
                    "code": "invalid_number",
                    "reason": "not on WhatsApp",
                },
                {"type": "message", "from": "+6281234567890", "text": "ok"},
            ]
        }
    ).encode()
    read, failed, reply = wh.parse("webhook", body)
    assert read.state == "read" and not read.invalid_number
    assert failed.invalid_number and failed.reason == "not on WhatsApp"
    assert reply.sender == "6281234567890"


def test_hostile_text_is_made_storable():
    body = json.dumps(
        {
            "type": "message",
            "from": "+62812345678",
            "text": "a\x00b\u202ec" + "x" * 5000,
        }
    ).encode()
    (reply,) = wh.parse("webhook", body)
    assert "\x00" not in reply.text and "\u202e" not in reply.text
    assert len(reply.text) <= 2000


# -- rules --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("current", "new", "moves"),
    [
        ("sending", "sent", True),
        ("sent", "delivered", True),
        ("sent", "read", True),
        ("delivered", "read", True),
        ("read", "delivered", False),
        ("read", "sent", False),
        ("delivered", "delivered", False),
        ("sent", "failed", True),
        ("delivered", "failed", False),
        ("failed", "read", False),
        ("logged", "delivered", False),
        ("cancelled", "sent", False),
        ("sent", None, False),
    ],
)
def test_states_never_go_back(current, new, moves):
    assert wh.advances(current, new) is moves


def test_stop_words_are_the_whole_message_in_any_case():
    words = wh.parse_stop_words("STOP, BERHENTI;unsubscribe\n")
    assert words == {"stop", "berhenti", "unsubscribe"}
    for text in ("STOP", "stop", " Berhenti. ", "UNSUBSCRIBE!", "berhenti"):
        assert wh.is_stop(text, words), text
    for text in ("jangan stop", "stop please", "", "sudah diperpanjang"):
        assert not wh.is_stop(text, words), text
    assert wh.is_stop("Stop", "stop")
