"""The shape of a SICANTIK API URL: a base address, not a method URL.

The connector stores the base of the backoffice API
(``https://perizinan.karokab.go.id/backoffice/api``) and appends one method
name per request. A URL typed with a method at its end
(``…/api/jumlahPerizinan``) still answers on the real server (the method
name becomes a path argument), so only its shape tells it apart: this module
says what is wrong and which part to remove, without Odoo.
"""

import re
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

# Every method of the backoffice API (the server matches them whatever the
# case): a path segment named so is where the base ends.
API_METHODS = frozenset(
    name.lower()
    for name in (
        "jumlahPerizinan",
        "listpermohonanterbit",
        "cekperizinan",
        "cekperizinanizin",
        "jenisperizinanlist",
        "jenisPermohonanList",
        "listpermohonanproses",
        "listpermohonanambil",
        "listtolak",
        "permohonan2",
        "propinsi",
        "kabupaten",
        "kecamatan",
        "kelurahan",
    )
)
# A method may carry a format suffix (``jumlahPerizinan.json``).
_FORMAT_SUFFIX = re.compile(r"\.(json|xml|csv|html|php|serialized)$", re.IGNORECASE)

# Problems, in the order they are checked.
EMPTY = "empty"
SPACE = "space"
SCHEME = "scheme"
HOST = "host"
CREDENTIALS = "credentials"
PORT = "port"
QUERY = "query"
METHOD = "method"


@dataclass(frozen=True)
class UrlShape:
    """What is wrong with a URL (``problem`` None: nothing), the part to
    remove when there is one, and the base URL to use instead when it can
    be told."""

    problem: str | None = None
    part: str = ""
    base: str = ""

    @property
    def ok(self):
        return self.problem is None


def method_segment(path):
    """Index of the first path segment that names an API method, or None."""
    segments = path.split("/")
    for index, segment in enumerate(segments):
        name = _FORMAT_SUFFIX.sub("", segment).lower()
        if name in API_METHODS:
            return index
    return None


def check_base_url(url):
    """The :class:`UrlShape` of ``url`` (surrounding blanks ignored)."""
    text = (url or "").strip()
    if not text:
        return UrlShape(EMPTY)
    blank = re.search(r"\s", text)
    if blank:
        return UrlShape(SPACE, part=repr(blank.group())[1:-1])
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https"):
        return UrlShape(SCHEME, part=f"{parts.scheme}:" if parts.scheme else "")
    if not parts.hostname:
        return UrlShape(HOST)
    if parts.username is not None or parts.password is not None:
        return UrlShape(CREDENTIALS, part=parts.netloc.rpartition("@")[0] + "@")
    try:
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        return UrlShape(PORT, part=parts.netloc.rpartition(":")[2])
    index = method_segment(parts.path)
    base_path = parts.path
    if index is not None:
        base_path = "/".join(parts.path.split("/")[:index])
    base = urlunsplit((parts.scheme, parts.netloc, base_path.rstrip("/"), "", ""))
    if parts.query or parts.fragment:
        # The part is not repeated: a query may hold a secret (an API key).
        return UrlShape(QUERY, part="?" if parts.query else "#", base=base)
    if index is not None:
        # The method's name; what follows it (path arguments, which may
        # hold a secret too) is only hinted at.
        rest = parts.path.split("/")[index:]
        part = "/" + rest[0] + ("/…" if any(rest[1:]) else "")
        return UrlShape(METHOD, part=part, base=base)
    return UrlShape()
