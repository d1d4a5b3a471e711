"""The default reminder text reads naturally whatever the permit type's name."""

import re
from datetime import date

import pytest

from tools import reminders

NAMES = [
    "IZIN GANGGUAN USAHA",
    "Izin Mendirikan Bangunan (IMB)",
    "SURAT IZIN USAHA PERDAGANGAN (SIUP)",
    "TANDA DAFTAR PERUSAHAAN (TDP)",
    "Reklame",
    "ijin trayek",
]


@pytest.mark.parametrize(
    "template", [reminders.DEFAULT_TEMPLATE, reminders.DEFAULT_TEMPLATE_TODAY]
)
@pytest.mark.parametrize("name", NAMES)
def test_no_doubled_word_for_any_type_name(template, name):
    text = reminders.render(
        template,
        {
            "holder": "Budi",
            "permit_type": name,
            "permit_number": "503/1/2025",
            "expiry_date": date(2025, 12, 31),
            "days": 7,
        },
    )
    words = re.findall(r"\w+", text.casefold())
    doubled = [a for a, b in zip(words, words[1:], strict=False) if a == b]
    assert not doubled, text
    assert not re.search(r"\b(izin|ijin)\W+(izin|ijin)\b", text, re.IGNORECASE), text
    assert name in text and "503/1/2025" in text and "31-12-2025" in text


def test_old_defaults_map_to_the_new_ones():
    assert set(reminders.OLD_DEFAULT_TEMPLATES.values()) == {
        reminders.DEFAULT_TEMPLATE,
        reminders.DEFAULT_TEMPLATE_TODAY,
    }
    for old in reminders.OLD_DEFAULT_TEMPLATES:
        assert "izin {permit_type}" in old  # the text that doubled the word
