"""What each SICANTIK method answers: URL in, (status, payload) out.

No HTTP here, so every rule of the reference can be read in one place.
A payload of None means an empty body.
"""

import base64
import re
from typing import NamedTuple
from urllib.parse import parse_qsl

NOT_FOUND = {"error": "Tidak ada data.."}
UNKNOWN_METHOD = {"error": "Unknown method."}
FORMATS = ("xml", "json")

# The server's permitted URI characters. ASCII only: with re.IGNORECASE alone,
# [a-z] would also accept the Kelvin sign and the long s.
_PATH_CHARS = re.compile(r"[a-z0-9~.:_\-?=]+", re.IGNORECASE | re.ASCII)
_SUFFIX = re.compile(r"(.*)\.(xml|json)")
# MySQL takes digits with blanks around them; anything else is a syntax error.
_SQL_UINT = re.compile(r"\s*(\d+)\s*", re.ASCII)
_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/]")


class DisallowedCharacters(ValueError):
    """A path segment holds a character the server refuses (HTTP 400)."""


class Reply(NamedTuple):
    status: int
    payload: object = None


class Route(NamedTuple):
    method: str  # lower case, format suffix removed
    args: dict  # key/value pairs from the path
    suffix: str | None  # "xml"/"json" from a ".json" ending, else None


def endpoint_name(segments):
    """The lower-case method name of an API path, for statistics."""
    if not segments:
        return ""
    match = _SUFFIX.fullmatch(segments[0])
    return (match.group(1) if match else segments[0]).lower()


def parse_path(segments):
    """Split the segments after /backoffice/api into a Route."""
    for segment in segments:
        if not _PATH_CHARS.fullmatch(segment):
            raise DisallowedCharacters(segment)
    segments = list(segments)
    suffix = None
    if segments:
        match = _SUFFIX.fullmatch(segments[-1])
        if match:
            segments[-1], suffix = match.group(1), match.group(2)
    method = segments[0].lower() if segments else ""
    rest = segments[1:]
    # An odd last key has no value: PHP sees it as absent.
    args = {rest[i]: rest[i + 1] for i in range(0, len(rest) - 1, 2)}
    return Route(method, args, suffix)


def merge_args(query, path_args):
    """Query-string arguments overlaid with path arguments (the path wins).

    Decoded as PHP fills $_GET: "+" is a space, the last duplicate wins.
    """
    args = dict(parse_qsl(query, keep_blank_values=True))
    args.update(path_args)
    return args


def choose_format(args, suffix, accept):
    """The format asked for: "xml", "json", or another string (``Array``)."""
    if suffix:
        return suffix
    if "format" in args:
        return args["format"]
    if accept and "application/json" in accept:
        return "json"
    return "xml"  # also for */* and browser Accept headers


def _sql_uint(value):
    match = _SQL_UINT.fullmatch(value)
    return int(match.group(1)) if match else None


def php_base64_decode(value):
    """base64_decode without strict mode: drops foreign characters, accepts
    missing padding, ignores a lone trailing character."""
    clean = _NOT_BASE64.sub("", value)
    if len(clean) % 4 == 1:
        clean = clean[:-1]
    return base64.b64decode(clean + "=" * (-len(clean) % 4))


# -- endpoints -------------------------------------------------------------


def jumlah_perizinan(dataset, args, **_options):
    # Counts permit types, not permits, and never fails.
    return Reply(200, [{"jumlahPerizinan": len(dataset.permit_types)}])


def jenis_perizinan_list(dataset, args, **_options):
    if not dataset.permit_types:
        return Reply(404)
    return Reply(200, [dict(t) for t in dataset.permit_types])


def list_permohonan_terbit(
    dataset, args, future_api=False, repeat_page=False, page_factor=1
):
    limit, offset = args.get("limit"), args.get("offset")
    if limit is None or offset is None:
        return Reply(404)
    limit, offset = _sql_uint(limit), _sql_uint(offset)
    if limit is None or offset is None:
        return Reply(500)  # the values reach SQL unchecked: syntax error
    # Sorted by receipt date only: the order of ties may change (see
    # Dataset.shuffle_ties). Rows are one per applicant and letter.
    dataset.before_list_request(offset)
    if repeat_page:
        offset = 0
    # page_factor > 1: a server that serves more rows than the limit asked
    rows = dataset.rows[offset : offset + limit * page_factor]
    if not rows:
        return Reply(404, NOT_FOUND)  # past the end or limit=0: never []
    return Reply(200, [dataset.list_item(p, who, future_api) for p, who in rows])


def _permit_items(permits):
    # Inner joins on company and village drop permits that lack either.
    items = [item for p in permits if p.answers_cekperizinan for item in p.items()]
    return Reply(200, items) if items else Reply(404, NOT_FOUND)


def cek_perizinan(dataset, args, **_options):
    # Compared verbatim with the stored base64; a missing value compares as ''.
    return _permit_items(dataset.lookup_no_izin(args.get("no_izin") or ""))


def cek_perizinan_izin(dataset, args, **_options):
    try:
        number = php_base64_decode(args.get("no_izin") or "").decode("utf-8")
    except ValueError:  # also UnicodeDecodeError and binascii.Error
        return Reply(404, NOT_FOUND)
    return _permit_items(dataset.lookup_no_surat(number))


ENDPOINTS = {
    "jumlahperizinan": jumlah_perizinan,
    "jenisperizinanlist": jenis_perizinan_list,
    "listpermohonanterbit": list_permohonan_terbit,
    "cekperizinan": cek_perizinan,
    "cekperizinanizin": cek_perizinan_izin,
}


def handle(
    dataset, method, args, *, future_api=False, repeat_page=False, page_factor=1
):
    """The Reply of a GET on ``method`` (any case) with merged ``args``.

    ``repeat_page`` and ``page_factor`` are faults of the permit list: the
    first page whatever the offset, ``page_factor`` times the rows asked.
    """
    endpoint = ENDPOINTS.get(method.lower())
    if endpoint is None:
        return Reply(404, UNKNOWN_METHOD)
    return endpoint(
        dataset,
        args,
        future_api=future_api,
        repeat_page=repeat_page,
        page_factor=page_factor,
    )
