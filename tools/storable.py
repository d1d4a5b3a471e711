"""Text from SICANTIK or a gateway, made fit for storage before the ORM sees it.

PostgreSQL refuses a NUL character, the database driver a lone surrogate, and
a b-tree index an entry over about 2,700 bytes (a third of a page). Control
characters and bidirectional overrides are never data a permit office means:
they garble lists and let a name display as something else (in a WhatsApp
message too). So every text is cleaned here, by construction:

* NUL, the other C0/C1 controls and lone surrogates are removed; tabs and
  newlines are kept only where a field holds several lines;
* the text is put in Unicode NFC form, so equal names compare equal;
* bidirectional overrides, embeddings, isolates and marks are removed, and
  so are the invisible characters that make equal names differ (zero-width
  space, word joiner, BOM);
* the text is cut to a length that fits its column and every index on it.

The caps, in characters (UTF-8 takes at most 4 bytes each, so 4 x cap stays
under the 2,704-byte b-tree limit for every value a column index holds):

* ``ID_MAX`` 64: a registration id (16 digits when sane), unique index;
* ``NAME_MAX`` 256: applicant, company and permit-type names; the holder
  contact's name is b-tree indexed (``res_partner.name``);
* ``NUMBER_MAX`` 255: a permit letter number, as the server's own column;
* ``PHONE_MAX`` 64 and ``CODE_MAX`` 64: phone numbers, tax numbers;
* ``TEXT_MAX`` 512: addresses, village and district names;
* ``MESSAGE_MAX`` 2,000: error texts kept for staff and managers (in text
  columns no index covers).
"""

import unicodedata

ID_MAX = 64
NAME_MAX = 256
NUMBER_MAX = 255
PHONE_MAX = 64
CODE_MAX = 64
TEXT_MAX = 512
MESSAGE_MAX = 2000

# Bidirectional formatting: embeddings and overrides (LRE, RLE, PDF, LRO,
# RLO), isolates (LRI, RLI, FSI, PDI) and the implicit marks (LRM, RLM, ALM).
BIDI_CONTROLS = frozenset(
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
)
# Invisible characters that make equal names differ (zero-width space, word
# joiner, zero-width no-break space / BOM); the zero-width joiner and
# non-joiner stay: emoji and Indic and Arabic scripts need them.
INVISIBLE = frozenset("\u200b\u2060\ufeff")
_MULTILINE_KEEP = frozenset("\t\n")


def _unwanted(char, multiline, keep_bidi):
    if multiline and char in _MULTILINE_KEEP:
        return False
    if not keep_bidi and (char in BIDI_CONTROLS or char in INVISIBLE):
        return True
    category = unicodedata.category(char)
    # Cc: C0/C1 controls, NUL included. Cs: lone surrogates. Co/Cn (private
    # use, unassigned) are stored fine and left alone.
    return category in ("Cc", "Cs")


def storable(
    value, limit, *, multiline=False, normalise=True, keep_bidi=False, collapse=True
):
    """``value`` cleaned and cut to ``limit`` characters; None when nothing
    is left (or when ``value`` is None).

    ``normalise=False`` keeps the characters as served (a permit number: the
    server matches its base64 byte for byte) and only removes what cannot be
    stored. ``collapse`` folds runs of white space to one space (and strips);
    a multi-line text keeps its line breaks.
    """
    if value is None:
        return None
    text = str(value)
    if multiline:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    # Fast path (C speed): printable text holds no control, surrogate,
    # format (bidi, zero-width) or odd space character; only the rest is
    # looked at character by character.
    if not text.isprintable():
        text = "".join(
            char for char in text if not _unwanted(char, multiline, keep_bidi)
        )
    if normalise and not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    if collapse:
        if multiline:
            text = "\n".join(" ".join(line.split()) for line in text.split("\n"))
            text = text.strip("\n")
        else:
            text = " ".join(text.split())
    if len(text) > limit:
        text = text[:limit]
        if collapse:
            text = text.rstrip()
    return text or None


def message_safe(value, limit=NAME_MAX):
    """A value that goes into a WhatsApp message: one line, no overrides."""
    return storable(value, limit) or ""
