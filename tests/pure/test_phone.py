"""normalize_phone on the formats SICANTIK's ``telp_pemohon`` really holds.

The numbers follow Indonesian numbering: mobile prefixes of every operator
(Telkomsel 0811-0813/0821-0823/0851-0853, Indosat 0814-0816/0855-0858, XL
0817-0819/0859/0877-0878, Axis 0831-0838, Tri 0895-0899, Smartfren
0881-0889), landlines of Karo regency (Kabanjahe and Berastagi share area
code 0628), Medan (061) and Jakarta (021).
"""

import pytest

from tools import PhoneResult, normalize_phone
from tools.phone import STATUSES

MOBILE = "+6281234567890"


@pytest.mark.parametrize(
    "raw",
    [
        "081234567890",
        "0812 3456 7890",
        "0812-3456-7890",
        "0812.3456.7890",
        "0812 - 3456 - 7890",
        "(0812) 3456-7890",
        "6281234567890",
        "62 812 3456 7890",
        "+6281234567890",
        "+62 812-3456-7890",
        "+62 (0)812 3456 7890",
        "+62 0812 3456 7890",
        "0062 812 3456 7890",
        "0062-812-3456-7890",
        " 0812 3456 7890 ",
        "HP: 0812 3456 7890",
        "Telp. 0812-3456-7890",
        "０８１２３４５６７８９０",  # full-width digits from a phone keyboard
        81234567890,  # a spreadsheet import that lost the leading zero
    ],
)
def test_mobile_formats_all_give_e164(raw):
    assert normalize_phone(raw) == PhoneResult(MOBILE, "valid_mobile", None)


@pytest.mark.parametrize(
    "raw, e164",
    [
        ("0811-6012-345", "+628116012345"),  # Telkomsel Halo, Medan
        ("0813 7012 3456", "+6281370123456"),  # Telkomsel
        ("0852 6123 4567", "+6285261234567"),  # Telkomsel (AS)
        ("0821 6543 2109", "+6282165432109"),  # Telkomsel
        ("0815 3456 789", "+628153456789"),  # Indosat
        ("0857 6000 1234", "+6285760001234"),  # Indosat
        ("0817 123 456", "+62817123456"),  # XL, nine digits
        ("0878 1234 5678", "+6287812345678"),  # XL
        ("0838 1234 5678", "+6283812345678"),  # Axis
        ("0896 1234 5678", "+6289612345678"),  # Tri
        ("0881 2345 6789", "+6288123456789"),  # Smartfren
        ("628123456789", "+628123456789"),  # 62 + 9-digit national number
    ],
)
def test_operators_and_lengths(raw, e164):
    result = normalize_phone(raw)
    assert (result.e164, result.status) == (e164, "valid_mobile")
    assert result.is_mobile


@pytest.mark.parametrize(
    "raw, e164, area",
    [
        ("0628 20123", "+6262820123", "0628"),  # Kabanjahe
        ("(0628) 20123", "+6262820123", "0628"),
        ("0628-21234567", "+6262821234567", "0628"),
        ("62820123", "+6262820123", "0628"),  # 0628 20123 without its zero
        ("061-4567890", "+62614567890", "061"),  # Medan
        ("021-5551234", "+62215551234", "021"),  # Jakarta
        ("(021) 555 1234", "+62215551234", "021"),
        ("+62 21 5551234", "+62215551234", "021"),
        ("62 21 5551234", "+62215551234", "021"),
    ],
)
def test_landlines_are_flagged(raw, e164, area):
    result = normalize_phone(raw)
    assert (result.e164, result.status) == (e164, "landline")
    assert f"area code {area}" in result.reason
    assert "WhatsApp" in result.reason


def test_628_prefix_prefers_the_mobile_reading():
    # "628 1234 5678" reads as Kabanjahe 0628-12345678 or as +62 812 345 678
    # written without its plus; a mobile is what a holder gives for WhatsApp.
    assert normalize_phone("628 1234 5678").e164 == "+62812345678"
    assert normalize_phone("628 1234 5678").status == "valid_mobile"


def test_toll_free_is_not_a_phone():
    result = normalize_phone("0800 1234 567")
    assert result.status == "landline"
    assert "toll-free" in result.reason


@pytest.mark.parametrize(
    "raw, reason",
    [
        ("12", "too short"),
        ("08123", "not a valid"),
        ("0812345", "not a valid"),
        ("0812345678901234", "not a valid"),
        ("0812 3456 7890 0813 4567 8901", "too long"),
        ("abc", "not a phone number"),
        ("tidak ada", "not a phone number"),
        ("x" * 3000, "not a phone number"),
    ],
)
def test_invalid(raw, reason):
    result = normalize_phone(raw)
    assert (result.e164, result.status) == (None, "invalid")
    assert reason in result.reason


@pytest.mark.parametrize(
    "raw", [None, False, "", "   ", "-", "0", "--", "///", "0000", "null"]
)
def test_empty(raw):
    assert normalize_phone(raw) == PhoneResult(None, "empty", "no phone number")


@pytest.mark.parametrize(
    "raw, e164",
    [
        ("0812-3456-7890 / 0813-4567-8901", MOBILE),
        ("0812 3456 7890/0813 4567 8901", MOBILE),
        ("0812 3456 7890; 0813 4567 8901", MOBILE),
        ("0812 3456 7890, 0813 4567 8901", MOBILE),
        ("0812 3456 7890 atau 0813 4567 8901", MOBILE),
        ("0812 3456 7890 dan 0813 4567 8901", MOBILE),
        ("0812 3456 7890 & 0813 4567 8901", MOBILE),
        ("0812 3456 7890\n0813 4567 8901", MOBILE),
        # the landline comes first: the mobile after it is the one to use
        ("(0628) 20123 / 0812 3456 7890", MOBILE),
        ("Telp. 0628-20123, HP. 0812-3456-7890", MOBILE),
        ("12 / 0812 3456 7890", MOBILE),
    ],
)
def test_several_numbers_take_the_first_mobile(raw, e164):
    result = normalize_phone(raw)
    assert (result.e164, result.status) == (e164, "valid_mobile")
    assert "first mobile number of the 2 numbers" in result.reason


def test_several_numbers_without_a_mobile_describe_the_landline():
    result = normalize_phone("12 / 0628 20123 / 021 5551234")
    assert (result.e164, result.status) == ("+6262820123", "landline")


def test_foreign_numbers():
    assert normalize_phone("+44 7911 123456").status == "valid_mobile"
    # North American numbers do not say whether they are mobiles
    result = normalize_phone("+1 415 555 2671")
    assert (result.e164, result.status) == ("+14155552671", "landline")
    assert "cannot tell" in result.reason


def test_other_region():
    assert normalize_phone("07911 123456", region="GB").e164 == "+447911123456"


def test_normalising_twice_changes_nothing():
    for raw in ("0812-3456-7890", "(0628) 20123", "0817 123 456", "62820123"):
        first = normalize_phone(raw)
        again = normalize_phone(first.e164)
        assert (again.e164, again.status) == (first.e164, first.status)


def test_every_status_is_documented():
    seen = {
        normalize_phone(raw).status
        for raw in ("0812 3456 7890", "0628 20123", "12", "")
    }
    assert seen == set(STATUSES)
