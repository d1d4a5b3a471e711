"""Safe decoding of SICANTIK answers: bytes in, plain Python data out.

* :class:`BoundedBody` is the HTTP core's bounded decompressor with the
  client's own errors: the size cap counts *decoded* bytes, so a compression
  bomb stops at the cap.
* :func:`decode_payload` turns a body into plain Python data (lists, dicts,
  strings, numbers, None). The format is detected from the first non-space
  byte, not from the Content-Type. XML is parsed by lxml with entity
  resolution, DTD loading and network access disabled, after refusing any
  ``<!DOCTYPE``/``<!ENTITY`` outright and translating the HTML named entities
  PHP's ``htmlentities`` writes (``&eacute;``) into numeric references.
  Nothing in an answer can make the parser read a file or a URL.

Turning the data into records is the job of ``normalise.py``.
"""

import html.entities
import json
import re

from lxml import etree

from . import http_core
from .const import FT_BAD_RESPONSE
from .sicantik_exceptions import SicantikResponseError

# ==========================================================================
# 1. Bounded body (decompression with a cap on decoded bytes)
# ==========================================================================


class BoundedBody(http_core.BoundedBody):
    """:class:`http_core.BoundedBody` raising ``SicantikResponseError``.

    Exceeding the cap is ``too_large`` (not retryable), an unknown encoding is
    not retryable either, corrupt or incomplete compressed data is.
    """

    def __init__(self, limit, content_encoding=None, *, endpoint=None):
        self.endpoint = endpoint
        super().__init__(limit, content_encoding)

    def _error(self, kind, detail=""):
        where = self.endpoint or "the server"
        if kind == http_core.BodyError.TOO_LARGE:
            return SicantikResponseError.too_large(self.limit, endpoint=self.endpoint)
        if kind == http_core.BodyError.ENCODING:
            return SicantikResponseError(
                f"answer of {where} uses an unsupported content encoding {detail!r}",
                retryable=False,
                endpoint=self.endpoint,
            )
        if kind == http_core.BodyError.TRUNCATED:
            return SicantikResponseError(
                f"answer of {where} is truncated ({detail})",
                retryable=True,
                endpoint=self.endpoint,
            )
        return _unreadable(detail, endpoint=self.endpoint)


# ==========================================================================
# 2. Payload decoding (bytes -> plain Python data)
# ==========================================================================

FORMAT_JSON = "json"
FORMAT_XML = "xml"

_LEADING_SPACE = b" \t\r\n\f\v"
_BOM = b"\xef\xbb\xbf"
# Declarations that have no place in an API answer (XXE, entity bombs).
_DTD_RE = re.compile(rb"<!\s*(?:DOCTYPE|ENTITY|ELEMENT|ATTLIST|NOTATION)", re.I)
_HTML_RE = re.compile(rb"(?:<!doctype\s+html|<html[\s>/])", re.I)
_NAMED_ENTITY_RE = re.compile(rb"&([A-Za-z][A-Za-z0-9]{0,31});")
# An ampersand that starts no valid reference: escaped rather than fatal.
_BARE_AMP_RE = re.compile(
    rb"&(?!(?:[A-Za-z][A-Za-z0-9]{0,31}|#[0-9]{1,7}|#x[0-9A-Fa-f]{1,6});)"
)
_XML_ENTITIES = frozenset({b"amp", b"lt", b"gt", b"quot", b"apos"})


def _unreadable(what, *, retryable=True, endpoint=None):
    return SicantikResponseError(
        f"answer of {endpoint or 'the server'} is unreadable: {what}",
        failure_type=FT_BAD_RESPONSE,
        retryable=retryable,
        endpoint=endpoint,
    )


def _strip_start(body):
    start = body[: len(_BOM)]
    if start == _BOM:
        body = body[len(_BOM) :]
    return body.lstrip(_LEADING_SPACE)


def detect_format(body):
    """``"json"``, ``"xml"`` or None, from the first non-space byte of ``body``."""
    head = _strip_start(body[:4096])
    if head[:1] in (b"[", b"{"):
        return FORMAT_JSON
    if head[:1] == b"<":
        return FORMAT_XML
    return None


def _entity_to_reference(match):
    name = match.group(1)
    if name in _XML_ENTITIES:
        return match.group(0)
    text = html.entities.html5.get(name.decode("ascii") + ";")
    if text is None:
        # Unknown name: keep it as literal text instead of losing the page.
        return b"&amp;" + name + b";"
    return "".join(f"&#{ord(char)};" for char in text).encode("ascii")


def html_entities_to_xml(body):
    """Rewrite HTML named entities as numeric references XML understands.

    ``&eacute;`` -> ``&#233;``; the five XML entities stay; unknown names and
    bare ampersands are escaped so they survive as text.
    """
    body = _NAMED_ENTITY_RE.sub(_entity_to_reference, body)
    return _BARE_AMP_RE.sub(b"&amp;", body)


def _xml_parser():
    # A new parser per call: lxml parsers must not be shared between threads.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        collect_ids=False,
    )


def _element_value(element):
    if len(element):
        return {child.tag: _element_value(child) for child in element}
    return element.text  # <tag/> (NULL or empty) -> None


def decode_xml(body, *, endpoint=None):
    """Parse a SICANTIK XML answer into plain data.

    ``<xml><item>..</item>..</xml>`` -> list of dicts (an ``<item>`` without
    children -> its text); ``<xml><error>..</error></xml>`` -> ``{"error": ..}``;
    ``<xml/>`` -> ``[]``. Everything is text or None, as the server writes it.
    """
    if _HTML_RE.match(_strip_start(body[:4096])):
        # An error page of a proxy or of PHP: transient, and never parsed.
        raise _unreadable("the server sent an HTML page", endpoint=endpoint)
    if _DTD_RE.search(body):
        raise _unreadable(
            "it contains a document type or entity declaration, refused",
            retryable=False,
            endpoint=endpoint,
        )
    try:
        root = etree.fromstring(html_entities_to_xml(body), _xml_parser())
    except (etree.XMLSyntaxError, ValueError) as e:
        raise _unreadable(f"malformed XML ({str(e)[:120]})", endpoint=endpoint) from e
    if root.tag != "xml":
        tag = str(root.tag)[:40]
        raise _unreadable(f"unexpected XML root element <{tag}>", endpoint=endpoint)
    children = list(root)
    if not children:
        return []
    if all(child.tag == "item" for child in children):
        return [_element_value(child) for child in children]
    return {child.tag: _element_value(child) for child in children}


def decode_json(body, *, endpoint=None):
    """``json.loads`` into plain types, turning every failure into an error."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError, UnicodeDecodeError) as e:
        raise _unreadable(f"malformed JSON ({str(e)[:120]})", endpoint=endpoint) from e


def decode_payload(body, *, endpoint=None):
    """Decode an answer body whatever its Content-Type says.

    Raises a retryable ``SicantikResponseError`` for an empty, HTML or
    malformed body, and a non-retryable one for a refused XML declaration.
    """
    fmt = detect_format(body)
    if fmt == FORMAT_JSON:
        return decode_json(body, endpoint=endpoint)
    if fmt == FORMAT_XML:
        return decode_xml(body, endpoint=endpoint)
    if not _strip_start(body):
        raise _unreadable("empty body", endpoint=endpoint)
    raise _unreadable("neither JSON nor XML", endpoint=endpoint)


def error_text(payload):
    """The text of an ``{"error": ...}`` answer, else None."""
    if isinstance(payload, dict):
        value = payload.get("error")
        if isinstance(value, str):
            return value
    return None


def expect_rows(payload, *, endpoint=None):
    """Check that a data answer is a list (a JSON object is a shape error)."""
    if isinstance(payload, list):
        return payload
    kind = "an object" if isinstance(payload, dict) else type(payload).__name__
    raise SicantikResponseError(
        f"answer of {endpoint or 'the server'} is {kind} where a list was expected",
        retryable=False,
        endpoint=endpoint,
    )
