"""Fault knobs, the fault queue, and the broken bodies they produce."""

import math
import random
import threading
import time
import unicodedata
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
    # the trickle fault: one byte of the body per interval, at most this many
    "trickle_interval": 0.4,
    "trickle_bytes": 64,
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
# Hostile content: text a PostgreSQL column or index refuses, or that
# displays as something else; in the names and addresses of every row.
HOSTILE_FAULTS = frozenset({"nul-bytes", "long-values", "control-chars"})
# Faults that change the payload of a normal answer (see ``alter_payload``):
# the answer parses but its data is wrong.
CONTENT_FAULTS = HOSTILE_FAULTS | {
    "json-list",
    "missing-fields",
    "impossible-date",
    "duplicate-ids",
    "same-id",  # every row of the page under one registration id
}
QUEUEABLE_FAULTS = CONTENT_FAULTS | {
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
    "extra-rows",  # more rows than the limit asked
    # the server ignores the format asked for (and breaks it)
    "xml",
    "malformed-xml",
    # the body, after prompt headers, one byte at a time
    "trickle",
}
DATE_FIELDS = ("d_terima_berkas", "d_berlaku_izin", "tgl_surat", "d_tgl_berdiri")
IMPOSSIBLE_DATE = "2023-02-30"
NAME_FIELDS = ("n_pemohon", "n_perusahaan")
ADDRESS_FIELDS = ("a_pemohon", "a_perusahaan")
LONG_CHARS = 5000  # a long name or address: several kilobytes
LONG_MULTIBYTE_CHARS = 3000  # 2 to 4 bytes each in UTF-8
MULTIBYTE_UNIT = "\u738b\u56fd\u5546\u5e97\U0001f3e2\u0416\u0451"  # 王国商店🏢Жё
RLO, PDF, ESC, ZWSP = "\u202e", "\u202c", "\x1b", "\u200b"
COMBINING_SUFFIX = " Jose\u0301"  # José with the accent as a combining mark
EXTRA_ROWS_FACTOR = 3  # the extra-rows fault serves this many times the limit
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
    if name == "trickle_bytes":
        count = _number(name, value)
        if count != int(count) or count < 1:
            raise ValueError(
                f"trickle_bytes must be a whole number >= 1, got {value!r}"
            )
        return int(count)
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


def with_nul(text):
    """``text`` with a NUL in its middle: removing it gives ``text`` back."""
    middle = len(text) // 2
    return f"{text[:middle]}\x00{text[middle:]}"


def long_text(text, length=LONG_CHARS):
    """``text`` repeated (a space between) to exactly ``length`` characters."""
    unit = f"{text} "
    return (unit * (length // len(unit) + 1))[:length]


def multibyte_text(length=LONG_MULTIBYTE_CHARS):
    """``length`` characters, none of them ASCII (CJK, an emoji, Cyrillic)."""
    unit = MULTIBYTE_UNIT
    return (unit * (length // len(unit) + 1))[:length]


def with_controls(text):
    """``text`` decomposed (NFD), wrapped in a right-to-left override, with an
    ESC and a zero-width space in its middle, and " Jose" + U+0301 after it.

    Cleaned of controls and overrides and put in NFC, it reads
    ``text + " José"`` (the zero-width space aside).
    """
    middle = len(text) // 2
    head, tail = (
        unicodedata.normalize("NFD", t) for t in (text[:middle], text[middle:])
    )
    return f"{RLO}{head}{ESC}{ZWSP}{tail}{PDF}{COMBINING_SUFFIX}"


def _hostile_value(fault, key, value, index):
    """A text field of row ``index`` as a hostile-content fault serves it."""
    if fault == "nul-bytes" and key in NAME_FIELDS + ADDRESS_FIELDS:
        return with_nul(value)
    if fault == "control-chars" and key in NAME_FIELDS:
        return with_controls(value)
    if fault == "long-values":
        if key == "n_pemohon":
            # every second applicant name multi-byte, the others ASCII
            return multibyte_text() if index % 2 else long_text(value)
        if key == "n_perusahaan":
            return multibyte_text()
        if key in ADDRESS_FIELDS:
            return long_text(value)
    return value


def alter_payload(fault, payload):
    """The payload of a normal answer with a content fault applied."""
    if fault == "json-list":
        return as_json_lists(payload)
    if not isinstance(payload, list):
        return payload  # a 404 error object or an empty body stays as it is
    items = [dict(i) if isinstance(i, dict) else i for i in payload]
    first_id = next(
        (i.get("pendaftaran_id") for i in items if isinstance(i, dict)), None
    )
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
        elif fault == "same-id":
            # The whole page under the first row's registration id.
            item["pendaftaran_id"] = first_id
        elif fault in HOSTILE_FAULTS:
            for key, value in item.items():
                if isinstance(value, str) and value:
                    item[key] = _hostile_value(fault, key, value, n)
    return items


def trickle(body, write, wait, *, interval, max_bytes):
    """Write ``body`` one byte at a time, calling ``wait(interval)`` before
    each byte; ``wait`` returns True when the server is stopping.

    Stops at the end of the body, after ``max_bytes`` bytes, or when ``wait``
    says so, whichever comes first: the loop is bounded by ``max_bytes``.
    Returns the number of bytes written.
    """
    count = min(len(body), max_bytes)
    for sent in range(count):
        if wait(interval):
            return sent
        write(body[sent : sent + 1])
    return count


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
