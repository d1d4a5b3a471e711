"""The expiry rules of a permit, in one place and without the ORM.

The bands (expired, critical, warning, ok), the status that goes with a band,
and when the expiry sync asks SICANTIK about a permit again. The ORM layer
builds its SQL, the dashboard's domains and the statistics from these; the
permit list's search filters use the same day counts (a test holds them to it).
"""

from datetime import datetime, time, timedelta

# Bands by days left until the expiry date, bounds inclusive.
CRITICAL_DAYS = 30
WARNING_DAYS = 60

EXPIRED = "expired"
CRITICAL = "critical"
WARNING = "warning"
OK = "ok"
NO_DATE = "none"
STATES = (EXPIRED, CRITICAL, WARNING, OK, NO_DATE)

# Days left (first, last) of each dated band; None is open-ended.
BANDS = {
    EXPIRED: (None, -1),
    CRITICAL: (0, CRITICAL_DAYS),
    WARNING: (CRITICAL_DAYS + 1, WARNING_DAYS),
    OK: (WARNING_DAYS + 1, None),
}

# Re-check window of the expiry sync: a renewal changes the date, and a
# reminder must not go to someone who renewed.
RECHECK_BEFORE_DAYS = 90
RECHECK_AFTER_DAYS = 30

# When to ask cekperizinan again, by outcome.
RECHECK_NEAR = timedelta(days=7)
RECHECK_UNLIMITED = timedelta(days=180)
RECHECK_NO_DATE = timedelta(days=30)
RECHECK_UNAVAILABLE = timedelta(days=180)
RECHECK_LONG_EXPIRED = timedelta(days=180)
ERROR_BACKOFF_FIRST = timedelta(hours=6)
ERROR_BACKOFF_MAX = timedelta(days=30)


def state_for(expiry_date, unlimited, today):
    """The expiry state of a permit on ``today``."""
    if unlimited:
        return OK
    if not expiry_date:
        return NO_DATE
    days = (expiry_date - today).days
    for state, (first, last) in BANDS.items():
        if (first is None or days >= first) and (last is None or days <= last):
            return state
    raise AssertionError(f"no band holds {days} days")  # the bands cover all


def status_for(expiry_state, current=None):
    """The status that goes with an expiry state; ``revoked`` is kept."""
    if current == "revoked":
        return "revoked"
    if expiry_state == EXPIRED:
        return "expired"
    if expiry_state == NO_DATE:
        return "unknown"
    return "active"


def date_bounds(state, today):
    """``(first, last)`` expiry dates of a dated band on ``today``; None is
    open-ended."""
    first, last = BANDS[state]
    return (
        None if first is None else today + timedelta(days=first),
        None if last is None else today + timedelta(days=last),
    )


def band_domain(state, today):
    """The ORM domain of the permits in a band on ``today`` (revoked permits
    excluded), as the permit list's search filter of the same name."""
    if state == NO_DATE:
        return [("expiry_date", "=", False), ("expiry_unlimited", "=", False)]
    first, last = date_bounds(state, today)
    domain = [("status", "!=", "revoked")]
    if state == OK:
        return domain + ["|", ("expiry_unlimited", "=", True), _on_or_after(first)]
    if state == EXPIRED:
        domain.append(("expiry_unlimited", "=", False))
    if first is not None:
        domain.append(_on_or_after(first))
    if last is not None:
        domain.append(("expiry_date", "<=", last.isoformat()))
    return domain


def horizon_domain(days, today):
    """Permits (not revoked) expiring from today to ``days`` days ahead."""
    return [
        ("status", "!=", "revoked"),
        ("expiry_date", ">=", today.isoformat()),
        ("expiry_date", "<=", (today + timedelta(days=days)).isoformat()),
    ]


def _on_or_after(day):
    return ("expiry_date", ">=", day.isoformat())


def next_check(outcome, now, today, expiry_date=None, attempts=0):
    """When the expiry sync asks cekperizinan about a permit again."""
    if outcome == "found":
        if not expiry_date:  # valid as long as the business runs
            return now + RECHECK_UNLIMITED
        days = (expiry_date - today).days
        if days > RECHECK_BEFORE_DAYS:
            return datetime.combine(
                expiry_date - timedelta(days=RECHECK_BEFORE_DAYS), time.min
            )
        if days >= -RECHECK_AFTER_DAYS:
            return now + RECHECK_NEAR
        return now + RECHECK_LONG_EXPIRED
    if outcome == "no_date":
        return now + RECHECK_NO_DATE
    if outcome == "unavailable":
        return now + RECHECK_UNAVAILABLE
    # error: back off with the number of failed attempts; the exponent is
    # capped so that years of failures cannot overflow the delay.
    delay = ERROR_BACKOFF_FIRST * (2 ** min(max(0, attempts - 1), 16))
    return now + min(delay, ERROR_BACKOFF_MAX)
