"""Reminder ladder and message text, without the ORM.

Stages are days before expiry (0 = the day itself). A permit is due for the
most urgent stage it has reached: after downtime only that one is sent, the
missed earlier ones never are.
"""

import re
from datetime import date, datetime, time, timedelta

from .storable import message_safe

DEFAULT_STAGES = (90, 60, 30, 7, 0)
DEFAULT_QUIET_START = 21.0
DEFAULT_QUIET_END = 7.0

PLACEHOLDERS = ("holder", "permit_type", "permit_number", "expiry_date", "days")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")

# The permit type is named as SICANTIK serves it ("IZIN GANGGUAN USAHA",
# "Reklame", "SIUP"), set apart after "izin Anda": it reads naturally
# whether or not the name itself starts with "izin".
DEFAULT_TEMPLATE = (
    "Yth. {holder},\n"
    "izin Anda ({permit_type}) dengan nomor {permit_number} akan berakhir "
    "pada {expiry_date} ({days} hari lagi). Mohon segera ajukan perpanjangan "
    "di DPMPTSP. Terima kasih."
)
DEFAULT_TEMPLATE_TODAY = (
    "Yth. {holder},\n"
    "izin Anda ({permit_type}) dengan nomor {permit_number} berakhir hari "
    "ini, {expiry_date}. Mohon segera ajukan perpanjangan di DPMPTSP. "
    "Terima kasih."
)
# The defaults of 18.0.1.1.0, replaced by an upgrade where left unedited.
_OLD_TEMPLATE = (
    "Yth. {holder},\n"
    "izin {permit_type} Anda dengan nomor {permit_number} akan berakhir pada "
    "{expiry_date} ({days} hari lagi). Mohon segera ajukan perpanjangan di "
    "DPMPTSP. Terima kasih."
)
_OLD_TEMPLATE_TODAY = (
    "Yth. {holder},\n"
    "izin {permit_type} Anda dengan nomor {permit_number} berakhir hari ini, "
    "{expiry_date}. Mohon segera ajukan perpanjangan di DPMPTSP. Terima kasih."
)
OLD_DEFAULT_TEMPLATES = {
    _OLD_TEMPLATE: DEFAULT_TEMPLATE,
    _OLD_TEMPLATE_TODAY: DEFAULT_TEMPLATE_TODAY,
}


class ReminderConfigError(ValueError):
    """A stage list that cannot be used; ``args[0]`` is the offending part
    (None when the list is empty), for the caller's translated message."""


def parse_stages(text):
    """``"90, 60,30 7 0"`` -> ``(90, 60, 30, 7, 0)``, descending, no duplicates."""
    parts = [p for p in re.split(r"[\s,;]+", text or "") if p]
    if not parts:
        raise ReminderConfigError(None)
    stages = set()
    for part in parts:
        if not part.isdigit() or int(part) > 366:
            raise ReminderConfigError(part)
        stages.add(int(part))
    return tuple(sorted(stages, reverse=True))


def unknown_placeholders(template):
    """The ``{names}`` in ``template`` that ``render`` does not know."""
    return sorted(set(_PLACEHOLDER.findall(template or "")) - set(PLACEHOLDERS))


def format_date(value):
    """Dates in messages are dd-mm-yyyy, as Indonesian readers expect."""
    if isinstance(value, datetime):
        value = value.date()
    return value.strftime("%d-%m-%Y") if isinstance(value, date) else ""


def render(template, values):
    """Fill ``{placeholder}``s; plain substitution, never ``str.format``, so
    an edited template cannot reach object attributes."""
    filled = {k: _param(v) for k, v in values.items()}
    return _PLACEHOLDER.sub(lambda m: filled.get(m[1], m[0]), template or "")


def template_params(values):
    """The body parameters of an approved gateway template, in the order of
    ``PLACEHOLDERS`` (holder, permit type, permit number, expiry date, days)."""
    return [_param(values.get(name)) for name in PLACEHOLDERS]


def _param(value):
    """A value as the holder reads it: dates dd-mm-yyyy; text on one line,
    without control or bidirectional override characters (a name must not
    display as something else)."""
    if isinstance(value, date):
        return format_date(value)
    return message_safe(value if value is not None else "")


def in_quiet_hours(local_dt, start=DEFAULT_QUIET_START, end=DEFAULT_QUIET_END):
    """Whether the office-local ``local_dt`` falls in quiet hours.

    ``start``/``end`` are hours as floats (21.5 = 21:30); a window crossing
    midnight (21 -> 7) is the usual case. Equal bounds mean no quiet hours.
    """
    if start == end:
        return False
    now = local_dt.time() if isinstance(local_dt, datetime) else local_dt
    begin, finish = _as_time(start), _as_time(end)
    if begin < finish:
        return begin <= now < finish
    return now >= begin or now < finish


def quiet_hours_end(local_dt, start=DEFAULT_QUIET_START, end=DEFAULT_QUIET_END):
    """The office-local datetime at which the current quiet hours end."""
    finish = datetime.combine(local_dt.date(), _as_time(end), local_dt.tzinfo)
    return finish if finish > local_dt else finish + timedelta(days=1)


def _as_time(hours):
    hours = max(0.0, min(float(hours), 23.999))
    minutes = round(hours * 60)
    return time(minutes // 60, minutes % 60)
