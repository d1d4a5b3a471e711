from datetime import date, datetime, timedelta, timezone

import pytest

from tools.reminders import (
    DEFAULT_TEMPLATE,
    DEFAULT_TEMPLATE_TODAY,
    ReminderConfigError,
    format_date,
    in_quiet_hours,
    parse_stages,
    quiet_hours_end,
    render,
    template_params,
    unknown_placeholders,
)

WIB = timezone(timedelta(hours=7))


@pytest.mark.parametrize(
    "text, stages",
    [
        ("90,60,30,7,0", (90, 60, 30, 7, 0)),
        ("0 7; 30 ,60,, 90", (90, 60, 30, 7, 0)),
        ("30,30,7", (30, 7)),
        ("0", (0,)),
    ],
)
def test_parse_stages(text, stages):
    assert parse_stages(text) == stages


@pytest.mark.parametrize(
    "text, bad", [("", None), ("30,-7", "-7"), ("30,x", "x"), ("400", "400")]
)
def test_parse_stages_names_the_bad_part(text, bad):
    with pytest.raises(ReminderConfigError) as err:
        parse_stages(text)
    assert err.value.args[0] == bad


def test_render_fills_placeholders_and_formats_dates_dd_mm_yyyy():
    text = render(
        DEFAULT_TEMPLATE,
        {
            "holder": "Ukur Kaban",
            "permit_type": "SIUP",
            "permit_number": "503/0940/XI/TDP/DPM-PPTSP/2025",
            "expiry_date": date(2026, 1, 5),
            "days": 30,
        },
    )
    assert "Ukur Kaban" in text and "503/0940/XI/TDP/DPM-PPTSP/2025" in text
    assert "05-01-2026" in text and "30 hari lagi" in text
    assert "{" not in text


def test_render_never_evaluates_attribute_lookups():
    text = render("{holder.__class__} {days}", {"holder": "X", "days": 3})
    assert text == "{holder.__class__} 3"


def test_unknown_placeholders():
    assert unknown_placeholders(DEFAULT_TEMPLATE) == []
    assert unknown_placeholders(DEFAULT_TEMPLATE_TODAY) == []
    assert unknown_placeholders("{holder} {nama} {tanggal}") == ["nama", "tanggal"]


def test_format_date():
    assert format_date(date(2027, 12, 31)) == "31-12-2027"
    assert format_date(datetime(2027, 2, 3, 10, 0)) == "03-02-2027"
    assert format_date(None) == ""


@pytest.mark.parametrize(
    "hour, minute, quiet",
    [(20, 59, False), (21, 0, True), (23, 30, True), (0, 0, True), (6, 59, True),
     (7, 0, False), (9, 0, False)],
)  # fmt: skip
def test_quiet_hours_cross_midnight(hour, minute, quiet):
    assert in_quiet_hours(datetime(2026, 5, 1, hour, minute, tzinfo=WIB)) is quiet


def test_quiet_hours_within_a_day_and_disabled():
    noon = datetime(2026, 5, 1, 12, 0, tzinfo=WIB)
    assert in_quiet_hours(noon, 12.0, 13.5)
    assert not in_quiet_hours(noon.replace(hour=13, minute=30), 12.0, 13.5)
    assert not in_quiet_hours(noon, 7.0, 7.0)


def test_quiet_hours_end():
    late = datetime(2026, 5, 1, 22, 15, tzinfo=WIB)
    assert quiet_hours_end(late) == datetime(2026, 5, 2, 7, 0, tzinfo=WIB)
    early = datetime(2026, 5, 2, 3, 0, tzinfo=WIB)
    assert quiet_hours_end(early) == datetime(2026, 5, 2, 7, 0, tzinfo=WIB)
    assert quiet_hours_end(early, 21.0, 7.5) == datetime(2026, 5, 2, 7, 30, tzinfo=WIB)


def test_template_params_follow_the_placeholder_order():
    values = {"days": 7, "holder": "Ukur", "expiry_date": date(2026, 3, 9)}
    assert template_params(values) == ["Ukur", "", "", "09-03-2026", "7"]
