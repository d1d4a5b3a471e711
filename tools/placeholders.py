"""The one rule for SICANTIK's placeholder values: what "nothing" looks like.

Counter staff type something into every required box of SICANTIK's forms,
so a value that means "none" arrives in many spellings: ``-``, ``--``, ``0``,
``000``, ``.``, a tax number of zeros (``00.000.000.0-000.000``), or a blank.
The server itself writes SQL NULL as JSON ``null`` or an empty XML element,
never as the word; the word ``null`` (and ``none``, ``n/a``) only comes from
an import or a clerk, and is no more a name than ``0`` is.

The rule, for every text field that is stored (names, letter numbers,
addresses, phones, tax numbers, villages): a value is a placeholder when,
once stripped, it holds no letter and no digit other than zero, or is one of
:data:`PLACEHOLDER_WORDS` (any case). A placeholder is stored as empty.
"""

import unicodedata

# Words that stand for "no value" (compared case-insensitively).
PLACEHOLDER_WORDS = frozenset({"null", "none", "n/a"})


def _means_something(char):
    if char.isalpha():
        return True
    # Any script's digits count, except its zero.
    return char.isdigit() and unicodedata.digit(char, 1) != 0


def is_placeholder(value):
    """True when ``value`` (text or None) stands for "no value"."""
    if value is None:
        return True
    text = str(value).strip()
    if text.casefold() in PLACEHOLDER_WORDS:
        return True
    return not any(_means_something(char) for char in text)


def blank_placeholder(value):
    """``value`` unchanged, or None when it is a placeholder."""
    return None if is_placeholder(value) else value
