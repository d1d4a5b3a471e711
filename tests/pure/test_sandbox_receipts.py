"""The loopback gateways post receipts back: signed, duplicated, out of order,
retried until taken. Checked with the addon's own verifiers and parsers."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sandbox.gateways import GatewayServer
from tools import whatsapp_webhooks as wh
from tools.whatsapp_gateways import (
    FonnteGateway,
    MetaCloudGateway,
    WahaGateway,
    WebhookGateway,
)

SECRET = "receipt-secret"


class Receiver:
    """A webhook that refuses the first ``refuse`` posts with a 503."""

    def __init__(self, refuse=0):
        self.posts = []
        self.refuse = refuse
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with owner.lock:
                    refused = owner.refuse > 0
                    owner.refuse -= 1
                    if not refused:
                        owner.posts.append((self.path, dict(self.headers), body))
                self.send_response(503 if refused else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = []

    def make(refuse=0):
        made.append(Receiver(refuse))
        return made[-1]

    yield make
    for r in made:
        r.close()


def client(gateway, srv):
    return {
        "meta": lambda: MetaCloudGateway(
            srv.meta_token, srv.meta_phone_number_id, base_url=srv.url
        ),
        "fonnte": lambda: FonnteGateway(srv.fonnte_token, base_url=srv.url),
        "waha": lambda: WahaGateway(srv.url, api_key=srv.waha_api_key),
        "webhook": lambda: WebhookGateway(srv.webhook_url, srv.webhook_headers),
    }[gateway]()


def verify(gateway, body, headers, query=""):
    if gateway == "meta":
        wh.verify_meta(SECRET, body, headers)
    elif gateway == "waha":
        wh.verify_waha(SECRET, body, headers)
    elif gateway == "webhook":
        import time

        wh.verify_generic(SECRET, body, headers, now=time.time())


@pytest.mark.parametrize("gateway", ["meta", "fonnte", "waha", "webhook"])
def test_receipts_are_signed_and_parse_to_the_message(gateway, receiver):
    hook = receiver()
    with GatewayServer() as srv:
        srv.send_receipts(gateway, hook.url, secret=SECRET)
        with client(gateway, srv) as gw:
            result = gw.send("+6281234567890", "Yth. Budi", template="t")
        assert srv.receipts.wait_idle(10)
    states = []
    for _path, headers, body in hook.posts:
        verify(gateway, body, headers)
        (receipt,) = wh.parse(gateway, body)
        if receipt.message_id:
            assert receipt.message_id == result.message_id
        states.append(receipt.state)
    expected = (
        ["sent", "delivered", "read"]
        if gateway == "fonnte"
        else [
            "delivered",
            "read",
        ]
    )
    assert states == expected


def test_duplicated_and_out_of_order(receiver):
    hook = receiver()
    with GatewayServer() as srv:
        srv.send_receipts(
            "meta", hook.url, secret=SECRET, duplicate=True, out_of_order=True
        )
        with client("meta", srv) as gw:
            gw.send("+6281234567890", "x", template="t")
        assert srv.receipts.wait_idle(20)
    states = [wh.parse("meta", body)[0].state for _p, _h, body in hook.posts]
    assert states == ["read", "read", "delivered", "delivered"]
    bodies = [body for _p, _h, body in hook.posts]
    assert len(set(bodies)) == 4  # duplicates come in bodies of their own
    read, delivered = wh.parse("meta", bodies[0])[0], wh.parse("meta", bodies[2])[0]
    assert read.at > delivered.at  # posted newest first, stamped as it happened


def test_refused_receipts_are_retried_until_taken(receiver):
    hook = receiver(refuse=3)
    with GatewayServer() as srv:
        srv.send_receipts("meta", hook.url, secret=SECRET)
        with client("meta", srv) as gw:
            gw.send("+6281234567890", "x", template="t")
        assert srv.receipts.wait_idle(20)
        posted = srv.receipts.posted()
    states = sorted(wh.parse("meta", body)[0].state for _p, _h, body in hook.posts)
    assert states == ["delivered", "read"]
    assert sum(p.attempts for p in posted) == 2 + 3
    assert all(p.status == 200 for p in posted)


def test_numbers_without_whatsapp_get_a_failed_receipt(receiver):
    hook = receiver()
    with GatewayServer() as srv:
        srv.send_receipts(
            "webhook", hook.url, secret=SECRET, fail_numbers=["+6281299990000"]
        )
        with client("webhook", srv) as gw:
            gw.send("+6281299990000", "x")
        assert srv.receipts.wait_idle(10)
    (receipt,) = wh.parse("webhook", hook.posts[0][2])
    assert receipt.state == "failed" and receipt.invalid_number
