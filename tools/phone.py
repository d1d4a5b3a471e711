"""Phone numbers of permit holders, normalised for WhatsApp (E.164).

SICANTIK's ``telp_pemohon`` is free text typed at a counter: ``0812-3456-7890``,
``62812…``, ``+62 812 …``, ``(0812) 3456-789``, ``0062 812…``, a landline such
as ``0628 20123`` (Kabanjahe), or two numbers in one field
(``0812… / 0813…``). :func:`normalize_phone` turns that into one E.164 number
and says whether WhatsApp can reach it::

    >>> normalize_phone("0812 3456 7890")
    PhoneResult(e164='+6281234567890', status='valid_mobile', reason=None)
    >>> normalize_phone("(0628) 20123").status
    'landline'

Pure Python (``phonenumbers``), no Odoo import.
"""

import re
from typing import NamedTuple

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType, ValidationResult

from .placeholders import is_placeholder

STATUS_VALID_MOBILE = "valid_mobile"
STATUS_LANDLINE = "landline"
STATUS_INVALID = "invalid"
STATUS_EMPTY = "empty"
STATUSES = (STATUS_VALID_MOBILE, STATUS_LANDLINE, STATUS_INVALID, STATUS_EMPTY)

MAX_NUMBERS = 5
# Several numbers in one field: "0812… / 0813…", "0812…, 0813…", "… atau …".
_SEPARATORS = re.compile(r"[/,;|&\n]+|\s+(?:atau|dan|or|and)\s+", re.IGNORECASE)
# Indonesian mobile numbers are 08xx nationally; 080x are toll-free, premium
# rate and shared cost numbers, not phones.
_ID_MOBILE = re.compile(r"8[1-35-9]\d{7,10}")
# Indonesia's metadata only knows the 008/009 international prefixes; "00"
# followed by a country code is how people write it anyway (0062 812…).
_DOUBLE_ZERO = re.compile(r"^\s*00(?=[1-9])")

_NOT_A_PHONE = {
    PhoneNumberType.TOLL_FREE: "a toll-free number",
    PhoneNumberType.PREMIUM_RATE: "a premium-rate number",
    PhoneNumberType.SHARED_COST: "a shared-cost number",
    PhoneNumberType.UAN: "a company hotline number",
    PhoneNumberType.VOIP: "an internet telephony number",
    PhoneNumberType.PAGER: "a pager number",
}
_IMPOSSIBLE = {
    ValidationResult.TOO_SHORT: "too short to be a phone number",
    ValidationResult.TOO_LONG: "too long to be a phone number",
    ValidationResult.INVALID_LENGTH: "has the wrong number of digits",
    ValidationResult.INVALID_COUNTRY_CODE: "has an unknown country code",
}


class PhoneResult(NamedTuple):
    """Outcome of :func:`normalize_phone`.

    ``e164`` is set for mobiles and landlines (``+62…``), None otherwise;
    ``status`` is one of :data:`STATUSES`; ``reason`` is plain English for
    anything but a single clean mobile number (None then).
    """

    e164: str | None
    status: str
    reason: str | None

    @property
    def is_mobile(self):
        return self.status == STATUS_VALID_MOBILE


def normalize_phone(raw, region="ID"):
    """The first WhatsApp-capable number in ``raw``, in E.164.

    Without a mobile number, the result describes the first number found
    (a landline keeps its E.164 form so staff can see what was typed).
    """
    text = "" if raw is None or raw is False else str(raw).strip()
    if is_placeholder(text):
        return PhoneResult(None, STATUS_EMPTY, "no phone number")
    candidates = [
        c.strip() for c in _SEPARATORS.split(text) if any(ch.isdigit() for ch in c)
    ]
    if not candidates:
        return PhoneResult(None, STATUS_INVALID, "not a phone number")
    # a field holds a few numbers at most; more is pasted text, not a list
    results = [_normalize_one(c, region) for c in candidates[:MAX_NUMBERS]]
    mobiles = [r for r in results if r.is_mobile]
    if not mobiles:
        # a landline is more useful to staff than a typo further on
        return next((r for r in results if r.e164), results[0])
    if len(results) == 1:
        return mobiles[0]
    return mobiles[0]._replace(
        reason=f"first mobile number of the {len(results)} numbers given"
    )


def _normalize_one(text, region):
    text = _DOUBLE_ZERO.sub("+", text)
    interpretations = [text]
    digits = re.sub(r"\D", "", text)
    if region == "ID" and not text.lstrip().startswith("+") and digits[:2] == "62":
        # "62812…" is nearly always +62 812… without its plus, but "62820123"
        # is Kabanjahe's 0628 20123 without its zero: try both, prefer a mobile.
        interpretations = ["+" + digits, digits]
    results = [_classify(candidate, region) for candidate in interpretations]
    return next(
        (r for r in results if r.is_mobile),
        next((r for r in results if r.e164), results[0]),
    )


def _classify(text, region):
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException as err:
        if err.error_type == NumberParseException.TOO_LONG:
            return PhoneResult(None, STATUS_INVALID, "too long to be a phone number")
        return PhoneResult(None, STATUS_INVALID, "not a phone number")
    possible = phonenumbers.is_possible_number_with_reason(number)
    if possible in _IMPOSSIBLE:
        return PhoneResult(None, STATUS_INVALID, _IMPOSSIBLE[possible])
    if not phonenumbers.is_valid_number(number):
        return PhoneResult(None, STATUS_INVALID, "not a valid phone number")
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    kind = phonenumbers.number_type(number)
    national = str(number.national_number)
    if kind == PhoneNumberType.MOBILE or (
        kind == PhoneNumberType.FIXED_LINE_OR_MOBILE
        and number.country_code == 62
        and _ID_MOBILE.fullmatch(national)
    ):
        return PhoneResult(e164, STATUS_VALID_MOBILE, None)
    if kind in _NOT_A_PHONE:
        return PhoneResult(
            e164, STATUS_LANDLINE, f"{_NOT_A_PHONE[kind]} cannot receive WhatsApp"
        )
    if kind == PhoneNumberType.FIXED_LINE_OR_MOBILE:
        return PhoneResult(
            e164,
            STATUS_LANDLINE,
            "cannot tell whether this number is a mobile; enter a mobile number",
        )
    area = phonenumbers.length_of_geographical_area_code(number)
    if area and number.country_code == 62:
        return PhoneResult(
            e164,
            STATUS_LANDLINE,
            f"a landline (area code 0{national[:area]}) cannot receive WhatsApp",
        )
    return PhoneResult(e164, STATUS_LANDLINE, "a landline cannot receive WhatsApp")
