from datetime import date, datetime, timedelta

import pytest

from tools import expiry

TODAY = date(2025, 6, 15)
NOW = datetime(2025, 6, 15, 3, 0)


@pytest.mark.parametrize(
    "days, state",
    [
        (-400, "expired"),
        (-1, "expired"),
        (0, "critical"),
        (30, "critical"),
        (31, "warning"),
        (60, "warning"),
        (61, "ok"),
        (5000, "ok"),
    ],
)
def test_state_for_band_edges(days, state):
    assert expiry.state_for(TODAY + timedelta(days=days), False, TODAY) == state


def test_no_date_and_unlimited():
    assert expiry.state_for(None, False, TODAY) == expiry.NO_DATE
    assert expiry.state_for(None, True, TODAY) == expiry.OK
    # A permit valid while the business runs is never expired by its date.
    assert expiry.state_for(TODAY - timedelta(days=9), True, TODAY) == expiry.OK


def test_bands_cover_every_day_once():
    for days in range(-100, 200):
        holders = [
            state
            for state, (first, last) in expiry.BANDS.items()
            if (first is None or days >= first) and (last is None or days <= last)
        ]
        assert len(holders) == 1, days


def test_date_bounds_agree_with_state_for():
    for state in expiry.BANDS:
        first, last = expiry.date_bounds(state, TODAY)
        for day in (first, last):
            if day is not None:
                assert expiry.state_for(day, False, TODAY) == state
        if first is not None:
            before = first - timedelta(days=1)
            assert expiry.state_for(before, False, TODAY) != state
        if last is not None:
            after = last + timedelta(days=1)
            assert expiry.state_for(after, False, TODAY) != state


@pytest.mark.parametrize(
    "state, current, status",
    [
        ("expired", None, "expired"),
        ("none", None, "unknown"),
        ("critical", None, "active"),
        ("ok", "expired", "active"),
        ("expired", "revoked", "revoked"),
    ],
)
def test_status_for(state, current, status):
    assert expiry.status_for(state, current) == status


def test_next_check_by_outcome():
    far = TODAY + timedelta(days=200)
    # Far from expiry (200 days): asked again 90 days before it.
    assert expiry.next_check("found", NOW, TODAY, far) == datetime(2025, 10, 3)
    assert expiry.next_check("found", NOW, TODAY, TODAY) == NOW + timedelta(days=7)
    long_ago = TODAY - timedelta(days=31)
    assert expiry.next_check("found", NOW, TODAY, long_ago) == NOW + timedelta(days=180)
    assert expiry.next_check("found", NOW, TODAY, None) == NOW + timedelta(days=180)
    assert expiry.next_check("no_date", NOW, TODAY) == NOW + timedelta(days=30)


def test_errors_back_off_up_to_a_month():
    waits = [
        expiry.next_check("error", NOW, TODAY, attempts=n) - NOW for n in (1, 2, 3)
    ]
    assert waits == [timedelta(hours=6), timedelta(hours=12), timedelta(hours=24)]
    assert expiry.next_check("error", NOW, TODAY, attempts=50) - NOW == timedelta(
        days=30
    )
