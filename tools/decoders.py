"""Safe decoding of SICANTIK answers and normalisation into records.

Three layers, each usable on its own:

1. :class:`BoundedBody` turns the raw bytes read from the socket into the body,
   decompressing gzip/deflate itself with a bounded output per call, so the size
   cap counts *decoded* bytes and a compression bomb stops at the cap.
2. :func:`decode_payload` turns a body into plain Python data (lists, dicts,
   strings, numbers, None). The format is detected from the first non-space
   byte, not from the Content-Type. XML is parsed by lxml with entity
   resolution, DTD loading and network access disabled, after refusing any
   ``<!DOCTYPE``/``<!ENTITY`` outright and translating the HTML named entities
   PHP's ``htmlentities`` writes (``&eacute;``) into numeric references.
   Nothing in an answer can make the parser read a file or a URL.
3. ``normalise_*`` / :func:`reduce_permit_details` turn rows into the frozen
   records of ``records.py``; a bad row is skipped with a reason, never raised.
"""

import html.entities
import json
import re
import zlib
from collections import namedtuple
from datetime import date

from lxml import etree

from .const import (
    FT_BAD_RESPONSE,
    JUNK_NAMES,
    JUNK_PHONES,
    PENDAFTARAN_ID_LENGTH,
    SUPPORTED_ENCODINGS,
    ZERO_DATE,
)
from .records import IssuedPermit, PermitDetails, PermitType, SkippedRecord
from .sicantik_exceptions import SicantikResponseError

# ==========================================================================
# 1. Bounded body (decompression with a cap on decoded bytes)
# ==========================================================================


class BoundedBody:
    """Accumulate a response body, decoding its Content-Encoding, up to a cap.

    ``feed()`` raw chunks as they arrive, then ``finish()`` to get the bytes.
    Decompression output is requested ``limit + 1`` bytes at a time at most, so
    memory never holds more than the cap plus one raw chunk, whatever the
    compression ratio. Exceeding the cap raises ``too_large`` (not retryable).
    """

    def __init__(self, limit, content_encoding=None, *, endpoint=None):
        encoding = (content_encoding or "").strip().lower()
        if encoding not in SUPPORTED_ENCODINGS:
            raise SicantikResponseError(
                f"answer of {endpoint or 'the server'} uses an unsupported "
                f"content encoding {encoding[:40]!r}",
                retryable=False,
                endpoint=endpoint,
            )
        self.limit = int(limit)
        self.endpoint = endpoint
        self.raw_bytes = 0
        self._encoding = "gzip" if encoding == "x-gzip" else encoding
        self._decompressor = None
        self._out = bytearray()

    @property
    def compressed(self):
        return self._encoding in ("gzip", "deflate")

    def _new_decompressor(self, first_bytes):
        if self._encoding == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        # "deflate" is meant to be zlib-wrapped, but some servers send raw
        # deflate: a zlib header is two bytes whose value is a multiple of 31.
        head = first_bytes[:2]
        wrapped = (
            len(head) == 2
            and head[0] & 0x0F == 8
            and (head[0] << 8 | head[1]) % 31 == 0
        )
        return zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)

    def _append(self, data):
        self._out += data
        if len(self._out) > self.limit:
            raise SicantikResponseError.too_large(self.limit, endpoint=self.endpoint)

    def feed(self, chunk):
        if not chunk:
            return
        self.raw_bytes += len(chunk)
        if not self.compressed:
            self._append(chunk)
            return
        if self.raw_bytes > self.limit:
            # Compressed bigger than the cap: no need to inflate it to know.
            raise SicantikResponseError.too_large(self.limit, endpoint=self.endpoint)
        data = chunk
        try:
            while data:
                if self._decompressor is None:
                    self._decompressor = self._new_decompressor(data)
                room = self.limit - len(self._out) + 1
                self._append(self._decompressor.decompress(data, room))
                data = self._decompressor.unconsumed_tail
                if self._decompressor.eof:
                    rest = self._decompressor.unused_data
                    if self._encoding == "gzip" and rest.strip(b"\0"):
                        # Another gzip member follows (allowed by RFC 1952).
                        self._decompressor = None
                        data = rest + data
                    elif rest.strip(b"\0") or data.strip(b"\0"):
                        raise self._corrupt("garbage after the compressed data")
                    else:
                        data = b""
        except zlib.error as e:
            raise self._corrupt("corrupt compressed data") from e

    def _corrupt(self, what):
        return SicantikResponseError(
            f"answer of {self.endpoint or 'the server'} is unreadable: {what}",
            retryable=True,
            endpoint=self.endpoint,
        )

    def finish(self):
        """Return the decoded body; a compressed stream must be complete."""
        if self.compressed and self._decompressor is not None:
            if not self._decompressor.eof:
                raise SicantikResponseError(
                    f"answer of {self.endpoint or 'the server'} is truncated "
                    f"(compressed stream incomplete)",
                    retryable=True,
                    endpoint=self.endpoint,
                )
        return bytes(self._out)


# ==========================================================================
# 2. Payload decoding (bytes -> plain Python data)
# ==========================================================================

FORMAT_JSON = "json"
FORMAT_XML = "xml"

_LEADING_SPACE = b" \t\r\n\f\v"
_BOM = b"\xef\xbb\xbf"
# Declarations that have no place in an API answer (XXE, entity bombs).
_DTD_RE = re.compile(rb"<!\s*(?:DOCTYPE|ENTITY|ELEMENT|ATTLIST|NOTATION)", re.I)
_HTML_RE = re.compile(rb"(?:<!doctype\s+html|<html[\s>/])", re.I)
_NAMED_ENTITY_RE = re.compile(rb"&([A-Za-z][A-Za-z0-9]{0,31});")
# An ampersand that starts no valid reference: escaped rather than fatal.
_BARE_AMP_RE = re.compile(
    rb"&(?!(?:[A-Za-z][A-Za-z0-9]{0,31}|#[0-9]{1,7}|#x[0-9A-Fa-f]{1,6});)"
)
_XML_ENTITIES = frozenset({b"amp", b"lt", b"gt", b"quot", b"apos"})


def _unreadable(what, *, retryable=True, endpoint=None):
    return SicantikResponseError(
        f"answer of {endpoint or 'the server'} is unreadable: {what}",
        failure_type=FT_BAD_RESPONSE,
        retryable=retryable,
        endpoint=endpoint,
    )


def _strip_start(body):
    start = body[: len(_BOM)]
    if start == _BOM:
        body = body[len(_BOM) :]
    return body.lstrip(_LEADING_SPACE)


def detect_format(body):
    """``"json"``, ``"xml"`` or None, from the first non-space byte of ``body``."""
    head = _strip_start(body[:4096])
    if head[:1] in (b"[", b"{"):
        return FORMAT_JSON
    if head[:1] == b"<":
        return FORMAT_XML
    return None


def _entity_to_reference(match):
    name = match.group(1)
    if name in _XML_ENTITIES:
        return match.group(0)
    text = html.entities.html5.get(name.decode("ascii") + ";")
    if text is None:
        # Unknown name: keep it as literal text instead of losing the page.
        return b"&amp;" + name + b";"
    return "".join(f"&#{ord(char)};" for char in text).encode("ascii")


def html_entities_to_xml(body):
    """Rewrite HTML named entities as numeric references XML understands.

    ``&eacute;`` -> ``&#233;``; the five XML entities stay; unknown names and
    bare ampersands are escaped so they survive as text.
    """
    body = _NAMED_ENTITY_RE.sub(_entity_to_reference, body)
    return _BARE_AMP_RE.sub(b"&amp;", body)


def _xml_parser():
    # A new parser per call: lxml parsers must not be shared between threads.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        collect_ids=False,
    )


def _element_value(element):
    if len(element):
        return {child.tag: _element_value(child) for child in element}
    return element.text  # <tag/> (NULL or empty) -> None


def decode_xml(body, *, endpoint=None):
    """Parse a SICANTIK XML answer into plain data.

    ``<xml><item>..</item>..</xml>`` -> list of dicts (an ``<item>`` without
    children -> its text); ``<xml><error>..</error></xml>`` -> ``{"error": ..}``;
    ``<xml/>`` -> ``[]``. Everything is text or None, as the server writes it.
    """
    if _HTML_RE.match(_strip_start(body[:4096])):
        # An error page of a proxy or of PHP: transient, and never parsed.
        raise _unreadable("the server sent an HTML page", endpoint=endpoint)
    if _DTD_RE.search(body):
        raise _unreadable(
            "it contains a document type or entity declaration, refused",
            retryable=False,
            endpoint=endpoint,
        )
    try:
        root = etree.fromstring(html_entities_to_xml(body), _xml_parser())
    except (etree.XMLSyntaxError, ValueError) as e:
        raise _unreadable(f"malformed XML ({str(e)[:120]})", endpoint=endpoint) from e
    if root.tag != "xml":
        tag = str(root.tag)[:40]
        raise _unreadable(f"unexpected XML root element <{tag}>", endpoint=endpoint)
    children = list(root)
    if not children:
        return []
    if all(child.tag == "item" for child in children):
        return [_element_value(child) for child in children]
    return {child.tag: _element_value(child) for child in children}


def decode_json(body, *, endpoint=None):
    """``json.loads`` into plain types, turning every failure into an error."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError, UnicodeDecodeError) as e:
        raise _unreadable(f"malformed JSON ({str(e)[:120]})", endpoint=endpoint) from e


def decode_payload(body, *, endpoint=None):
    """Decode an answer body whatever its Content-Type says.

    Raises a retryable ``SicantikResponseError`` for an empty, HTML or
    malformed body, and a non-retryable one for a refused XML declaration.
    """
    fmt = detect_format(body)
    if fmt == FORMAT_JSON:
        return decode_json(body, endpoint=endpoint)
    if fmt == FORMAT_XML:
        return decode_xml(body, endpoint=endpoint)
    if not _strip_start(body):
        raise _unreadable("empty body", endpoint=endpoint)
    raise _unreadable("neither JSON nor XML", endpoint=endpoint)


def error_text(payload):
    """The text of an ``{"error": ...}`` answer, else None."""
    if isinstance(payload, dict):
        value = payload.get("error")
        if isinstance(value, str):
            return value
    return None


def expect_rows(payload, *, endpoint=None):
    """Check that a data answer is a list (a JSON object is a shape error)."""
    if isinstance(payload, list):
        return payload
    kind = "an object" if isinstance(payload, dict) else type(payload).__name__
    raise SicantikResponseError(
        f"answer of {endpoint or 'the server'} is {kind} where a list was expected",
        retryable=False,
        endpoint=endpoint,
    )


# ==========================================================================
# 3. Normalisation (plain rows -> records)
# ==========================================================================

_DATE_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")

ParsedDate = namedtuple("ParsedDate", "value zero invalid raw")
ParsedDate.__doc__ = """A parsed SICANTIK date.

value: ``datetime.date`` or None; zero: the raw value was ``0000-00-00``;
invalid: the raw value was present but not a real date; raw: the stripped text.
"""


class _FieldError(ValueError):
    """A field holds a value of the wrong type (the row is skipped)."""


def _text(row, key):
    value = row.get(key)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise _FieldError(f"field {key} holds {type(value).__name__}, not text")


def collapse(value):
    """Collapse runs of whitespace and strip; None/blank -> None."""
    if value is None:
        return None
    collapsed = " ".join(value.split())
    return collapsed or None


def clean_name(value):
    """A person, company or type name: whitespace collapsed, junk -> None."""
    collapsed = collapse(value)
    if collapsed is None or collapsed in JUNK_NAMES:
        return None
    return collapsed


def clean_phone(value):
    collapsed = collapse(value)
    if collapsed is None or collapsed in JUNK_PHONES:
        return None
    return collapsed


def parse_date(value):
    """Parse ``YYYY-MM-DD``; never raises.

    ``0000-00-00`` -> value None, zero True; None/blank -> all False;
    ``2021-02-30`` or any other text -> value None, invalid True.
    """
    raw = value.strip() if isinstance(value, str) else None
    if not raw:
        return ParsedDate(None, False, False, None)
    if raw == ZERO_DATE:
        return ParsedDate(None, True, False, raw)
    match = _DATE_RE.match(raw)
    if not match:
        return ParsedDate(None, False, True, raw)
    try:
        return ParsedDate(date(*map(int, match.groups())), False, False, raw)
    except ValueError:  # 2021-02-30, month 13, day 00...
        return ParsedDate(None, False, True, raw)


def _unique(values):
    seen = []
    for value in values:
        if value is not None and value not in seen:
            seen.append(value)
    return tuple(seen)


def pick_expiry(candidates):
    """Reduce the expiry dates of several rows of one permit to one.

    Rule: the **latest calendar date** wins (a renewal supersedes an older
    letter, and a reminder sent for a real date is better than one missed);
    the zero date ("valid while the business runs") is used only when no row
    has a calendar date; invalid and empty values never win. Returns
    ``(chosen ParsedDate or None, index of the row it came from or None,
    warning text or None)``.
    """
    dated = [(c.value, i) for i, c in enumerate(candidates) if c.value is not None]
    zero = [i for i, c in enumerate(candidates) if c.zero]
    outcomes = {c.value for c in candidates if c.value is not None}
    if zero:
        outcomes.add(ZERO_DATE)
    warning = None
    if len(outcomes) > 1:
        shown = sorted(str(v) for v in outcomes)
        warning = f"conflicting expiry dates {', '.join(shown)}"
    if dated:
        value, index = max(dated, key=lambda pair: (pair[0], -pair[1]))
        if warning:
            warning += f"; kept the latest, {value}"
        return candidates[index], index, warning
    if zero:
        return candidates[zero[0]], zero[0], warning
    return None, None, warning


def _date_warning(key, parsed):
    if parsed.invalid:
        return f"invalid date in {key}: {parsed.raw[:40]!r}"
    return None


def _clean_pid(row):
    pid = collapse(_text(row, "pendaftaran_id"))
    if pid is None:
        raise _FieldError("no pendaftaran_id")
    return pid


def _pid_warning(pid):
    if len(pid) != PENDAFTARAN_ID_LENGTH or not pid.isdigit():
        return f"unexpected pendaftaran_id format {pid[:40]!r}"
    return None


def _raw_number(row):
    """The letter number exactly as served; blank -> None (never trimmed)."""
    value = _text(row, "no_surat")
    if value is None or not value.strip():
        return None
    return value


def normalise_issued_rows(rows):
    """Rows of ``listpermohonanterbit`` -> ``(permits, skipped)`` tuples.

    Rows sharing a ``pendaftaran_id`` (several applicants or letters) are merged
    into one permit, in served order; all names and numbers are kept.
    """
    merged = {}
    skipped = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            skipped.append(SkippedRecord(index, "row is not an object"))
            continue
        pid = None
        try:
            pid = _clean_pid(row)
            entry = {
                "number": _raw_number(row),
                "name": clean_name(_text(row, "n_pemohon")),
                "type": clean_name(_text(row, "n_perizinan")),
                "has_expiry": "d_berlaku_izin" in row,
                "expiry": parse_date(_text(row, "d_berlaku_izin")),
            }
        except _FieldError as e:
            skipped.append(SkippedRecord(index, str(e), pid))
            continue
        merged.setdefault(pid, []).append(entry)
    permits = tuple(_build_issued(pid, entries) for pid, entries in merged.items())
    return permits, tuple(skipped)


def _build_issued(pid, entries):
    warnings = [_pid_warning(pid)]
    numbers = _unique(e["number"] for e in entries)
    types = _unique(e["type"] for e in entries)
    if len(types) > 1:
        warnings.append(f"conflicting permit types {', '.join(types)}")
    has_expiry = any(e["has_expiry"] for e in entries)
    expiries = [e["expiry"] for e in entries if e["has_expiry"]]
    chosen, _index, conflict = pick_expiry(expiries)
    warnings.append(conflict)
    warnings.extend(_date_warning("d_berlaku_izin", p) for p in expiries)
    return IssuedPermit(
        pendaftaran_id=pid,
        no_surat=numbers[0] if numbers else None,
        permit_type=types[0] if types else None,
        applicant_names=_unique(e["name"] for e in entries),
        letter_numbers=numbers,
        has_expiry_field=has_expiry,
        expiry_date=chosen.value if chosen else None,
        expiry_unlimited=bool(chosen and chosen.zero),
        expiry_invalid=any(p.invalid for p in expiries) and chosen is None,
        expiry_raw=chosen.raw if chosen else _first_raw(expiries),
        row_count=len(entries),
        warnings=_unique(warnings),
    )


def _first_raw(parsed_dates):
    for parsed in parsed_dates:
        if parsed.raw:
            return parsed.raw
    return None


def _to_int(value):
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def normalise_permit_types(rows):
    """Rows of ``jenisperizinanlist`` -> ``(types, skipped)`` tuples."""
    types = []
    skipped = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            skipped.append(SkippedRecord(index, "row is not an object"))
            continue
        try:
            raw_name = _text(row, "jenis_perizinan")
            name = clean_name(raw_name)
            if name is None:
                raise _FieldError("no jenis_perizinan (type name)")
            types.append(
                PermitType(
                    id=_to_int(row.get("id")),
                    name=name,
                    raw_name=raw_name,
                    group=clean_name(_text(row, "kelompok_izin")),
                    processing_days=_to_int(row.get("v_hari")),
                )
            )
        except _FieldError as e:
            skipped.append(SkippedRecord(index, str(e)))
    return tuple(types), tuple(skipped)


OTHER_REGISTRATION = "row of another registration"

_DETAIL_DATES = (
    ("d_terima_berkas", "received_date"),
    ("tgl_surat", "issue_date"),
    ("d_tgl_berdiri", "company_founded"),
)
_DETAIL_TEXTS = (
    ("a_pemohon", "applicant_address"),
    ("npwp", "npwp"),
    ("a_perusahaan", "company_address"),
    ("n_kelurahan", "kelurahan"),
    ("n_kecamatan", "kecamatan"),
    ("n_kabupaten", "kabupaten"),
    ("n_propinsi", "propinsi"),
)
_DETAIL_PHONES = (
    ("telp_pemohon", "applicant_phone"),
    ("i_telp_perusahaan", "company_phone"),
)


def _detail_row(row):
    """One ``cekperizinan`` row -> dict of cleaned values (may raise _FieldError)."""
    values = {
        "pendaftaran_id": collapse(_text(row, "pendaftaran_id")),
        "no_surat": _raw_number(row),
        "permit_type": clean_name(_text(row, "n_perizinan")),
        "applicant_name": clean_name(_text(row, "n_pemohon")),
        "company_name": clean_name(_text(row, "n_perusahaan")),
        "expiry": parse_date(_text(row, "d_berlaku_izin")),
    }
    warnings = [_date_warning("d_berlaku_izin", values["expiry"])]
    for key, field in _DETAIL_DATES:
        parsed = parse_date(_text(row, key))
        values[field] = parsed.value
        warnings.append(_date_warning(key, parsed))
    for key, field in _DETAIL_TEXTS:
        values[field] = collapse(_text(row, key))
    for key, field in _DETAIL_PHONES:
        values[field] = clean_phone(_text(row, key))
    values["warnings"] = warnings
    return values


def reduce_permit_details(rows, pendaftaran_id=None):
    """Rows of ``cekperizinan`` -> ``(PermitDetails or None, skipped)``.

    When ``pendaftaran_id`` is given only rows of that registration count; if
    none is left the answer concerns another permit and None is returned. The
    expiry date follows :func:`pick_expiry`; the other single-valued fields come
    from the row that supplied the expiry date (else the first usable row);
    applicant and company names are collected from every row.
    """
    usable = []
    skipped = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            skipped.append(SkippedRecord(index, "row is not an object"))
            continue
        try:
            values = _detail_row(row)
        except _FieldError as e:
            skipped.append(SkippedRecord(index, str(e)))
            continue
        if pendaftaran_id is not None and values["pendaftaran_id"] != pendaftaran_id:
            skipped.append(
                SkippedRecord(index, OTHER_REGISTRATION, values["pendaftaran_id"])
            )
            continue
        usable.append(values)
    if not usable:
        return None, tuple(skipped)
    chosen, index, conflict = pick_expiry([values["expiry"] for values in usable])
    main = usable[index if index is not None else 0]
    warnings = [conflict]
    for values in usable:
        warnings.extend(values["warnings"])
    invalid = chosen is None and any(v["expiry"].invalid for v in usable)
    details = PermitDetails(
        pendaftaran_id=main["pendaftaran_id"],
        no_surat=main["no_surat"],
        permit_type=main["permit_type"],
        applicant_names=_unique(v["applicant_name"] for v in usable),
        received_date=main["received_date"],
        expiry_date=chosen.value if chosen else None,
        expiry_unlimited=bool(chosen and chosen.zero),
        expiry_invalid=invalid,
        expiry_raw=chosen.raw if chosen else _first_raw(v["expiry"] for v in usable),
        issue_date=main["issue_date"],
        applicant_address=main["applicant_address"],
        applicant_phone=main["applicant_phone"],
        company_names=_unique(v["company_name"] for v in usable),
        npwp=main["npwp"],
        company_address=main["company_address"],
        company_founded=main["company_founded"],
        company_phone=main["company_phone"],
        kelurahan=main["kelurahan"],
        kecamatan=main["kecamatan"],
        kabupaten=main["kabupaten"],
        propinsi=main["propinsi"],
        row_count=len(usable),
        warnings=_unique(warnings),
    )
    return details, tuple(skipped)
