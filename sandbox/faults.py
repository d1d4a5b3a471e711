"""Fault knobs, the fault queue, and the broken bodies they produce."""

import math
import random
import threading
import time
from collections import deque
from http import HTTPStatus
from numbers import Real
from typing import NamedTuple

from . import render
from .stats import RateWindow

KNOB_DEFAULTS = {
    "latency": 0.0,
    "jitter": 0.0,
    "error_rate": 0.0,
    "error_statuses": (500, 502, 503),
    "throttle_rate": 0.0,
    "retry_after": 1,
    "throttle_above_rps": None,
    "hang_rate": 0.0,
    "hang_seconds": 30.0,
    "truncate_rate": 0.0,
    "malformed_rate": 0.0,
    "future_api": False,
    "seed": None,
}
# Mutually exclusive shares of one random draw, in this order.
RATE_KNOBS = (
    ("error_rate", "error"),
    ("throttle_rate", 429),
    ("hang_rate", "hang"),
    ("truncate_rate", "truncate"),
    ("malformed_rate", "malformed"),
)
QUEUEABLE_FAULTS = frozenset(
    {
        "429-no-retry-after",
        "hang",
        "truncate",
        "malformed",
        "empty",
        "html",
        "reset",
        "xxe",
        "bomb",
        "oversized",
        "json-object",
        "repeat-page",
        # the server ignores the format asked for (and breaks it)
        "xml",
        "malformed-xml",
        # content faults: the answer parses but its data is wrong
        "json-list",
        "missing-fields",
        "impossible-date",
        "duplicate-ids",
    }
)
# Faults that change the payload of a normal answer (see ``alter_payload``).
CONTENT_FAULTS = frozenset(
    {"json-list", "missing-fields", "impossible-date", "duplicate-ids"}
)
DATE_FIELDS = ("d_terima_berkas", "d_berlaku_izin", "tgl_surat", "d_tgl_berdiri")
IMPOSSIBLE_DATE = "2023-02-30"
RETRY_AFTER_STATUSES = (429, 503)
OVERSIZED_BYTES = 64 * 1024 * 1024
CHUNK_BYTES = 1024 * 1024


class Decision(NamedTuple):
    fault: int | str | None  # a status, a QUEUEABLE_FAULTS name, or None
    delay: float  # latency (with jitter) to wait before answering
    config: dict  # the knobs in force (never mutated afterwards)


def _number(name, value, upper=None):
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if math.isnan(value) or value < 0 or (upper is not None and value > upper):
        bound = f"between 0 and {upper}" if upper is not None else ">= 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return value


def _status(value):
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"not an HTTP status: {value!r}")
    if not 100 <= value <= 599:
        raise ValueError(f"not an HTTP status: {value!r}")
    return value


def validate_knob(name, value):
    """The normalized value of a knob, or ValueError."""
    if name not in KNOB_DEFAULTS:
        known = ", ".join(sorted(KNOB_DEFAULTS))
        raise ValueError(f"unknown knob {name!r} (known: {known})")
    if name == "future_api":
        if not isinstance(value, bool):
            raise ValueError(f"future_api must be true or false, got {value!r}")
        return value
    if name == "seed":
        if value is not None and not isinstance(value, int | str):
            raise ValueError(f"seed must be an integer or a string, got {value!r}")
        return value
    if name == "error_statuses":
        if isinstance(value, int | str):
            value = [value]
        statuses = tuple(_status(v) for v in value)
        if not statuses:
            raise ValueError("error_statuses must not be empty")
        return statuses
    if name == "retry_after":
        seconds = _number(name, value)
        if seconds != int(seconds):
            raise ValueError(f"retry_after must be whole seconds, got {value!r}")
        return int(seconds)
    if name == "throttle_above_rps":
        return None if value is None else _number(name, value) or None
    upper = 1.0 if name.endswith("_rate") else None
    return _number(name, value, upper)


def validate_fault(fault):
    if fault in QUEUEABLE_FAULTS:
        return fault
    try:
        return _status(fault)
    except ValueError:
        known = ", ".join(sorted(QUEUEABLE_FAULTS))
        raise ValueError(
            f"unknown fault {fault!r} (an HTTP status or one of: {known})"
        ) from None


class FaultPlan:
    """Decides, per API request, which fault (if any) it gets and its delay.

    Queued faults come first, one per request; then the rate limit; then one
    draw of a seeded RNG against the rate knobs. Everything under one lock, so
    a seed gives the same sequence for requests made one after another.
    """

    def __init__(self, seed=None, clock=time.monotonic):
        self._lock = threading.Lock()
        self._clock = clock
        self._config = dict(KNOB_DEFAULTS, seed=seed)
        self._rng = random.Random(seed)
        self._queue = deque()
        self._window = RateWindow(1.0)

    def configure(self, **knobs):
        """Apply knobs atomically (all or none); returns the new settings."""
        with self._lock:
            config = dict(self._config)
            for name, value in knobs.items():
                config[name] = validate_knob(name, value)
            total = sum(config[name] for name, _ in RATE_KNOBS)
            if total > 1 + 1e-9:
                raise ValueError(f"the *_rate knobs add up to {total:g}, above 1")
            self._config = config
            if "seed" in knobs:
                self._rng = random.Random(config["seed"])
            if "throttle_above_rps" in knobs:
                self._window.clear()  # a new limit counts from now on
            return dict(config)

    def settings(self):
        with self._lock:
            return dict(self._config)

    def queue(self, *faults):
        checked = [validate_fault(f) for f in faults]
        with self._lock:
            self._queue.extend(checked)

    def clear_queue(self):
        with self._lock:
            self._queue.clear()

    def pending(self):
        with self._lock:
            return list(self._queue)

    def decide(self):
        with self._lock:
            config = self._config
            count = self._window.add(self._clock())
            fault = None
            limit = config["throttle_above_rps"]
            if self._queue:
                fault = self._queue.popleft()
            elif limit and count > limit:
                fault = 429
            elif any(config[name] for name, _ in RATE_KNOBS):
                fault = self._draw(config)
            delay = config["latency"]
            if config["jitter"]:
                delay += self._rng.uniform(-config["jitter"], config["jitter"])
            return Decision(fault, max(0.0, delay), config)

    def _draw(self, config):
        x = self._rng.random()
        edge = 0.0
        for name, fault in RATE_KNOBS:
            edge += config[name]
            if x < edge:
                if fault == "error":
                    return self._rng.choice(config["error_statuses"])
                return fault
        return None


# -- bodies ----------------------------------------------------------------


def status_body(status):
    """A bare PHP 500 sends nothing; proxies and limiters send a small page."""
    if status == 500:
        return b""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return render.html_page(f"{status} {phrase}", phrase)


def break_body(body, content_type):
    """A body that no longer parses: the root element or list left open."""
    if not body:
        return body
    if content_type == render.XML_TYPE:
        return body[: body.rfind(b"</xml>")] if b"</xml>" in body else body[:-1]
    if content_type == render.JSON_TYPE:
        return body[:-1]
    return body


def as_json_object(payload):
    """A list turned into the object PHP emits for an array with holes."""
    if isinstance(payload, list):
        return {str(i + 1): item for i, item in enumerate(payload)}
    return payload


def as_json_lists(payload):
    """Every object turned into the list of its values (a row, or the error
    object of a 404): a list where the client expects an object."""
    if isinstance(payload, dict):
        return list(payload.values())
    if isinstance(payload, list):
        return [list(i.values()) if isinstance(i, dict) else i for i in payload]
    return payload


def alter_payload(fault, payload):
    """The payload of a normal answer with a content fault applied."""
    if fault == "json-list":
        return as_json_lists(payload)
    if not isinstance(payload, list):
        return payload  # a 404 error object or an empty body stays as it is
    items = [dict(i) if isinstance(i, dict) else i for i in payload]
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        if fault == "missing-fields":
            # Only the key survives: every other field is absent, not null.
            items[n] = {k: v for k, v in item.items() if k == "pendaftaran_id"}
        elif fault == "impossible-date":
            for key in DATE_FIELDS:
                if key in item:
                    item[key] = IMPOSSIBLE_DATE
        elif fault == "duplicate-ids" and n % 2 and isinstance(items[n - 1], dict):
            # Two different permits under one registration id.
            item["pendaftaran_id"] = items[n - 1].get("pendaftaran_id")
    return items


_SENTINEL = "SANDBOXENTITYREFERENCE"  # ASCII: htmlentities leaves it alone
XXE_DOCTYPE = '<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'


def _bomb_doctype():
    lines = ['<!DOCTYPE xml [\n<!ENTITY lol0 "lol">\n']
    for n in range(1, 10):
        lines.append(f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">\n')
    lines.append("]>\n")
    return "".join(lines)


BOMB_DOCTYPE = _bomb_doctype()


def entity_page(kind, payload, fallback):
    """The normal XML page with a DOCTYPE whose entity is used in a value.

    ``kind`` is "xxe" (external entity reading a local file) or "bomb"
    (billion laughs). ``fallback`` is an item used when the page has none.
    """
    items = payload if isinstance(payload, list) and payload else [fallback]
    first = dict(items[0])
    key = "n_pemohon" if "n_pemohon" in first else next(iter(first))
    first[key] = _SENTINEL
    page = render.to_xml([first, *items[1:]]).decode("utf-8")
    doctype, ref = (XXE_DOCTYPE, "&xxe;") if kind == "xxe" else (BOMB_DOCTYPE, "&lol9;")
    head, body = page.split("\n", 1)
    return f"{head}\n{doctype}{body.replace(_SENTINEL, ref, 1)}".encode()


def oversized(fmt, items):
    """(content type, total length, chunk iterator) of a 64 MiB list page.

    The same block of items repeats; at most CHUNK_BYTES exist at a time.
    """
    if fmt == "json":
        content_type, head, sep, tail = render.JSON_TYPE, b"[", b",", b"]"
        block = b",".join(render.to_json(item) for item in items)
    else:
        content_type, sep = render.XML_TYPE, b""
        head, tail = render.XML_PROLOG + b"<xml>", b"</xml>\n"
        block = render.xml_items(items)
    unit = block + sep
    count = max(1, math.ceil((OVERSIZED_BYTES - len(head) - len(tail)) / len(unit)))
    total = len(head) + count * len(unit) - len(sep) + len(tail)

    def chunks():
        yield head
        per_chunk = max(1, CHUNK_BYTES // len(unit))
        chunk = unit * per_chunk
        left = count - 1  # every block but the last carries a separator
        while left >= per_chunk:
            yield chunk
            left -= per_chunk
        if left:
            yield unit * left
        yield block + tail

    return content_type, total, chunks()
