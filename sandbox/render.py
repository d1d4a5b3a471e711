"""Bodies written the way the PHP server writes them.

XML follows CodeIgniter's REST_Controller on SimpleXML, values passed through
``htmlentities`` (so accented letters become HTML entities that XML does not
define); JSON follows ``json_encode`` defaults.
"""

import json
import re
from html.entities import codepoint2name

XML_TYPE = "application/xml"
JSON_TYPE = "application/json"
HTML_TYPE = "text/html"
XML_PROLOG = b'<?xml version="1.0" encoding="utf-8"?>\n'

# PHP htmlentities (ENT_COMPAT, HTML 4.01 table): & < > " plus every character
# with a named entity; the single quote and unnamed characters stay as they are.
_ENTITIES = {cp: f"&{name};" for cp, name in codepoint2name.items()}
_NOT_NAME = re.compile(r"[^A-Za-z_]")


def htmlentities(text):
    return text.translate(_ENTITIES)


def _element(name, value, out):
    tag = _NOT_NAME.sub("", name) if isinstance(name, str) else ""
    tag = tag or "item"  # numeric keys (list positions) become <item>
    if isinstance(value, dict):
        out.append(f"<{tag}>")
        for key, sub in value.items():
            _element(key, sub, out)
        out.append(f"</{tag}>")
    elif isinstance(value, list | tuple):
        out.append(f"<{tag}>")
        for sub in value:
            _element("item", sub, out)
        out.append(f"</{tag}>")
    elif value is None or value == "":
        out.append(f"<{tag}/>")
    else:
        if isinstance(value, bool):
            value = int(value)  # PHP prints true as 1
        out.append(f"<{tag}>{htmlentities(str(value))}</{tag}>")


def xml_items(items):
    """The ``<item>…</item>`` run of a list, without the document around it."""
    out = []
    for item in items:
        _element("item", item, out)
    return "".join(out).encode("utf-8")


def to_xml(payload):
    """The whole document: prolog, newline, one single-line <xml>, newline."""
    out = []
    if isinstance(payload, dict):
        for key, value in payload.items():
            _element(key, value, out)
    else:
        for item in payload:
            _element("item", item, out)
    return XML_PROLOG + b"<xml>" + "".join(out).encode("utf-8") + b"</xml>\n"


def to_json(payload):
    """Compact, ASCII-only, slashes escaped, no trailing newline."""
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=True)
    # Safe on the encoded text: "/" never occurs inside a JSON escape sequence.
    return text.replace("/", "\\/").encode("ascii")


def render(payload, fmt):
    """(content type, body) of a payload; None means an empty body."""
    if fmt == "json":
        return JSON_TYPE, b"" if payload is None else to_json(payload)
    if fmt == "xml":
        return XML_TYPE, b"" if payload is None else to_xml(payload)
    # No formatter for the format asked: PHP echoes the array itself.
    return HTML_TYPE, b"" if payload is None else b"Array"


def html_page(title, message):
    return (
        f"<!DOCTYPE html>\n<html>\n<head>\n<title>{title}</title>\n</head>\n"
        f"<body>\n<h1>{title}</h1>\n<p>{message}</p>\n</body>\n</html>\n"
    ).encode()


DISALLOWED_PAGE = html_page(
    "An Error Was Encountered", "The URI you submitted has disallowed characters."
)
NOT_FOUND_PAGE = html_page(
    "404 Page Not Found", "The page you requested was not found."
)
DATABASE_ERROR_PAGE = html_page(
    "A Database Error Occurred",
    "Unable to connect to your database server using the provided settings.",
)
