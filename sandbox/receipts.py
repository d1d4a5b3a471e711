"""Delivery receipts posted back by the loopback gateways, as the real ones do.

A :class:`ReceiptSender` is told, per gateway, where that gateway's webhook
is (``GatewayServer.send_receipts``); each message the gateway takes then
produces its receipts (``delivered``, ``read``; ``failed`` for numbers that
cannot receive WhatsApp), in the gateway's own body and signature, posted
from one background thread:

* ``delay``: seconds between the message and its first receipt (and between
  one receipt and the next);
* ``duplicate``: every receipt posted twice (in two bodies, as Meta does);
* ``out_of_order``: the receipts of a message posted newest first;
* any answer but 200, or no answer, is retried with a growing pause (capped
  at ``max_retry_pause``) until it is taken or the server stops: a gateway
  never drops a receipt because the receiver was down.

Pure standard library, no Odoo import.
"""

import hashlib
import heapq
import hmac
import itertools
import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

SIGNATURE_HEADER = "X-Sicantik-Signature"
TIMESTAMP_HEADER = "X-Sicantik-Timestamp"
META_INVALID_NUMBER = 131026


@dataclass(frozen=True)
class ReceiptSettings:
    url: str
    secret: str | None = None
    states: tuple = ("delivered", "read")
    delay: float = 0.0
    duplicate: bool = False
    out_of_order: bool = False
    fail_numbers: frozenset = frozenset()


@dataclass
class Posted:
    """One receipt post and how it ended."""

    gateway: str
    message_id: str
    state: str
    attempts: int = 0
    status: int | None = None  # the last HTTP status (None: no answer)
    chain: int = 0  # the message's receipts are posted in order...
    order: int = 0  # ...each one after the previous one was taken


def _hmac(secret, data, algorithm):
    return hmac.new(secret.encode(), data, algorithm).hexdigest()


def _bodies(gateway, message, state, at, settings, state_id):
    """(body bytes, headers, query) of one receipt in ``gateway``'s shape."""
    headers = {"Content-Type": "application/json"}
    if gateway == "meta":
        status = {
            "id": message.message_id,
            "status": state,
            "timestamp": str(int(at)),
            "recipient_id": message.to,
        }
        if state == "failed":
            status["errors"] = [
                {"code": META_INVALID_NUMBER, "title": "Message undeliverable."}
            ]
        body = {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "102290129340398",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {"phone_number_id": "1065"},
                                "statuses": [status],
                            },
                        }
                    ],
                }
            ],
        }
        data = json.dumps(body).encode()
        if settings.secret:
            digest = _hmac(settings.secret, data, hashlib.sha256)
            headers["X-Hub-Signature-256"] = f"sha256={digest}"
        return data, headers
    if gateway == "waha":
        ack = {"sent": 1, "delivered": 2, "read": 3, "failed": -1}[state]
        body = {
            "event": "message.ack",
            "session": "default",
            "timestamp": int(at * 1000),
            "payload": {
                "id": message.message_id,
                "from": f"{message.to}@c.us",
                "fromMe": True,
                "ack": ack,
                "ackName": {1: "SERVER", 2: "DEVICE", 3: "READ", -1: "ERROR"}[ack],
            },
        }
        data = json.dumps(body).encode()
        if settings.secret:
            headers["X-Webhook-Hmac"] = _hmac(settings.secret, data, hashlib.sha512)
            headers["X-Webhook-Hmac-Algorithm"] = "sha512"
        return data, headers
    if gateway == "fonnte":
        if state in ("sent", "failed"):
            word = "invalid" if state == "failed" else "sent"
            body = {
                "device": "628",
                "id": message.message_id,
                "stateid": state_id,
                "status": word,
                "state": word,
            }
        else:
            body = {"device": "628", "stateid": state_id, "state": state}
        return json.dumps(body).encode(), headers
    event = {
        "type": "status",
        "id": message.message_id,
        "status": state,
        "timestamp": int(at),
    }
    if state == "failed":
        event.update(code="invalid_number", reason="not on WhatsApp")
    data = json.dumps(event).encode()
    if settings.secret:
        stamp = str(int(time.time()))
        digest = _hmac(settings.secret, stamp.encode() + b"." + data, hashlib.sha256)
        headers.update({TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: f"sha256={digest}"})
    return data, headers


class ReceiptSender:
    """A few threads posting due receipts, retrying until each is taken."""

    def __init__(self, stopping, *, timeout=5.0, max_retry_pause=2.0, workers=4):
        self._stopping = stopping
        self._timeout = timeout
        self._max_pause = max_retry_pause
        self._lock = threading.Condition()
        self._settings = {}
        self._heap = []  # (due, seq, job)
        self._seq = itertools.count()
        self._posted = []
        self._chains = itertools.count()
        self._taken = {}  # chain -> receipts of it taken so far
        self._in_flight = 0
        self._paused = False
        self._workers = workers  # posts in parallel, as a gateway does
        self._threads = []

    # -- configuration ------------------------------------------------------
    def configure(self, gateway, url, **options):
        settings = ReceiptSettings(url, **options) if url else None
        with self._lock:
            if settings is None:
                self._settings.pop(gateway, None)
            else:
                self._settings[gateway] = settings

    def pause(self, paused=True):
        """Hold the receipts (they keep their place) until ``pause(False)``."""
        with self._lock:
            self._paused = paused
            self._lock.notify_all()

    def reset(self):
        with self._lock:
            self._heap.clear()
            self._posted.clear()
            self._taken.clear()

    # -- producing ----------------------------------------------------------
    def message_taken(self, message):
        """Schedule the receipts of a message the gateway just took."""
        with self._lock:
            settings = self._settings.get(message.gateway)
        if settings is None or not message.message_id:
            return
        states = list(settings.states)
        if message.to in settings.fail_numbers:
            states = ["failed"]
        if message.gateway == "fonnte":
            states = ["sent", *[s for s in states if s != "sent"]]
        now = time.time()
        # each state a second after the previous one, as it happened...
        timeline = [(state, now + index) for index, state in enumerate(states)]
        if settings.out_of_order:
            timeline.reverse()  # ...but posted newest first
        state_id = f"st-{message.message_id}"
        chain = next(self._chains)
        jobs = []
        for index, (state, happened) in enumerate(timeline):
            due = now + settings.delay * (index + 1)
            copies = 2 if settings.duplicate else 1
            for copy in range(copies):
                at = happened + copy  # a duplicate: another body, a second on
                data, headers = _bodies(
                    message.gateway, message, state, at, settings, state_id
                )
                jobs.append(
                    (
                        due,
                        settings.url,
                        data,
                        headers,
                        Posted(
                            message.gateway,
                            message.message_id,
                            state,
                            chain=chain,
                            order=len(jobs),
                        ),
                    )
                )
        with self._lock:
            for job in jobs:
                heapq.heappush(self._heap, (job[0], next(self._seq), job))
            self._posted.extend(job[4] for job in jobs)
            self._ensure_thread()
            self._lock.notify_all()

    def posted(self):
        with self._lock:
            return list(self._posted)

    def pending(self):
        """Receipts not yet taken by the receiver."""
        with self._lock:
            return len(self._heap) + self._in_flight

    def wait_idle(self, timeout):
        """Until every receipt was taken (True) or ``timeout`` s passed."""
        end = time.monotonic() + timeout
        with self._lock:
            while self._heap or self._in_flight:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.05))
            return True

    # -- the thread ---------------------------------------------------------
    def _ensure_thread(self):
        self._threads = [t for t in self._threads if t.is_alive()]
        while len(self._threads) < self._workers:
            thread = threading.Thread(
                target=self._run, name="gateway-sandbox-receipts", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _run(self):
        while not self._stopping.is_set():
            with self._lock:
                entry = None if self._paused else self._next_ready()
                if entry is None:
                    self._lock.wait(0.05)
                    continue
                self._heap.remove(entry)
                heapq.heapify(self._heap)
                job = entry[2]
                self._in_flight += 1
            _due, url, data, headers, record = job
            status = self._post(url, data, headers)
            with self._lock:
                self._in_flight -= 1
                record.attempts += 1
                record.status = status
                if status == 200:
                    self._taken[record.chain] = self._taken.get(record.chain, 0) + 1
                else:
                    pause = min(self._max_pause, 0.2 * 2 ** min(record.attempts, 8))
                    heapq.heappush(
                        self._heap, (time.time() + pause, next(self._seq), job)
                    )
                self._lock.notify_all()

    def _next_ready(self):
        """The earliest due receipt whose message's earlier ones were taken."""
        now = time.time()
        ready = [
            entry
            for entry in self._heap
            if entry[0] <= now
            and entry[2][4].order == self._taken.get(entry[2][4].chain, 0)
        ]
        return min(ready) if ready else None

    def _post(self, url, data, headers):
        request = urllib.request.Request(url, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                response.read()
                return response.status
        except urllib.error.HTTPError as err:
            return err.code
        except (OSError, ValueError):
            return None
