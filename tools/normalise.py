"""Normalisation of decoded SICANTIK rows into the records of ``records.py``.

Dates are parsed without ever raising; every stored text goes through
:func:`stored_text` (storable, and empty when it is a placeholder such as
``-`` or ``0``); the rows of one permit letter merged and several
``cekperizinan`` rows reduced to one; a bad row is skipped with a reason,
never raised.

A permit is one letter (``no_surat``) of one registration
(``pendaftaran_id``): the list serves a row per applicant and letter, so the
rows of one (registration, letter) are merged, and two letters of one
registration are two permits. A row without a letter is the permit
(registration, no letter), apart from the registration's lettered ones.
"""

import re
from collections import namedtuple
from datetime import date

from .const import PENDAFTARAN_ID_LENGTH, ZERO_DATE
from .placeholders import is_placeholder
from .records import IssuedPermit, PermitDetails, PermitType, SkippedRecord
from .storable import (
    CODE_MAX,
    ID_MAX,
    NAME_MAX,
    NUMBER_MAX,
    PHONE_MAX,
    TEXT_MAX,
    storable,
)

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


def stored_text(value, limit=TEXT_MAX):
    """The one rule for a text SICANTIK sends: storable (see
    ``storable.py``), whitespace collapsed and stripped, cut to ``limit``;
    None, blank or a placeholder (``-``, ``0``...: see ``placeholders.py``)
    -> None."""
    text = storable(value, limit)
    return None if is_placeholder(text) else text


# The names the callers know the rule by.
collapse = stored_text


def clean_name(value):
    """A person, company or type name (placeholders such as ``'0'`` -> None)."""
    return stored_text(value, NAME_MAX)


def clean_phone(value):
    """A free-text phone as typed (placeholders -> None); ``phone.py``
    makes a number of it."""
    return stored_text(value, PHONE_MAX)


def parse_date(value):
    """Parse ``YYYY-MM-DD``; never raises.

    ``0000-00-00`` -> value None, zero True; None/blank -> all False;
    ``2021-02-30`` or any other text -> value None, invalid True.
    """
    # Kept (short) for the messages that quote an impossible date.
    raw = storable(value, 40) if isinstance(value, str) else None
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


def _object_rows(rows, skipped):
    """``(index, row)`` of the rows that are objects; the others are added
    to ``skipped`` with the reason."""
    for index, row in enumerate(rows):
        if isinstance(row, dict):
            yield index, row
        else:
            skipped.append(SkippedRecord(index, "row is not an object"))


def _unique(values):
    """Distinct values in first-seen order, None left out (linear: a page of
    100,000 rows of one registration costs no more than 100,000 rows)."""
    return tuple(value for value in dict.fromkeys(values) if value is not None)


def name_order(name):
    """Sort key of applicant names: the first one in this order is a
    permit's applicant, whatever order the server served the rows in."""
    return (name.casefold(), name)


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
    pid = collapse(_text(row, "pendaftaran_id"), ID_MAX)
    if pid is None:
        raise _FieldError("no pendaftaran_id")
    return pid


def _pid_warning(pid):
    if len(pid) != PENDAFTARAN_ID_LENGTH or not pid.isdigit():
        return f"unexpected pendaftaran_id format {pid[:40]!r}"
    return None


def _raw_number(row):
    """The letter number as served, less what cannot be stored (never
    trimmed nor normalised: the server matches its base64 byte for byte);
    blank or a placeholder -> None."""
    value = storable(
        _text(row, "no_surat"),
        NUMBER_MAX,
        normalise=False,
        keep_bidi=True,
        collapse=False,
    )
    return None if is_placeholder(value) else value


def normalise_issued_rows(rows):
    """Rows of ``listpermohonanterbit`` -> ``(permits, skipped)`` tuples.

    One permit per (``pendaftaran_id``, ``no_surat``), in served order: the
    rows of several applicants of one letter are merged (every name kept,
    the first in :func:`name_order` is the applicant); two letters of one
    registration are two permits.
    """
    merged = {}
    skipped = []
    for index, row in _object_rows(rows, skipped):
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
        merged.setdefault((pid, entry["number"]), []).append(entry)
    permits = tuple(
        _build_issued(pid, number, entries) for (pid, number), entries in merged.items()
    )
    return permits, tuple(skipped)


def _build_issued(pid, number, entries):
    warnings = [_pid_warning(pid)]
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
        no_surat=number,
        permit_type=types[0] if types else None,
        applicant_names=tuple(
            sorted(_unique(e["name"] for e in entries), key=name_order)
        ),
        letter_numbers=(number,) if number else (),
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
    for index, row in _object_rows(rows, skipped):
        try:
            raw_name = _text(row, "jenis_perizinan")
            name = clean_name(raw_name)
            if name is None:
                raise _FieldError("no jenis_perizinan (type name)")
            types.append(
                PermitType(
                    id=_to_int(row.get("id")),
                    name=name,
                    raw_name=storable(
                        raw_name, NAME_MAX, normalise=False, collapse=False
                    ),
                    group=clean_name(_text(row, "kelompok_izin")),
                    processing_days=_to_int(row.get("v_hari")),
                )
            )
        except _FieldError as e:
            skipped.append(SkippedRecord(index, str(e)))
    return tuple(types), tuple(skipped)


OTHER_REGISTRATION = "row of another registration"
OTHER_LETTER = "row of another letter"

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
_DETAIL_CAPS = {"npwp": CODE_MAX}
_DETAIL_PHONES = (
    ("telp_pemohon", "applicant_phone"),
    ("i_telp_perusahaan", "company_phone"),
)


def _detail_row(row):
    """One ``cekperizinan`` row -> dict of cleaned values (may raise _FieldError)."""
    values = {
        "pendaftaran_id": collapse(_text(row, "pendaftaran_id"), ID_MAX),
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
        values[field] = collapse(_text(row, key), _DETAIL_CAPS.get(key, TEXT_MAX))
    for key, field in _DETAIL_PHONES:
        values[field] = clean_phone(_text(row, key))
    values["warnings"] = warnings
    return values


def reduce_permit_details(rows, pendaftaran_id=None, no_surat=None):
    """Rows of ``cekperizinan`` -> ``(PermitDetails or None, skipped)``.

    When ``pendaftaran_id`` is given only rows of that registration count,
    and when ``no_surat`` is given only rows of that letter (a row that names
    no letter is taken as the one asked about: the server matched it by the
    letter's base64); if none is left the answer concerns another permit and
    None is returned. The
    expiry date follows :func:`pick_expiry`; the other single-valued fields come
    from the row that supplied the expiry date (else the first usable row);
    applicant and company names are collected from every row.
    """
    usable = []
    skipped = []
    for index, row in _object_rows(rows, skipped):
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
        if no_surat is not None and values["no_surat"] not in (None, no_surat):
            skipped.append(SkippedRecord(index, OTHER_LETTER, values["pendaftaran_id"]))
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
