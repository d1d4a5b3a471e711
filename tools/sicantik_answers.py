"""What a SICANTIK answer means: its status conventions, read into data or errors.

The server's conventions (see ``sicantik-api.md``): 200 carries data; 404
with ``Tidak ada data..`` means "nothing found" or the end of a list; 404
with ``Unknown method.`` a wrong base URL; 404 with an empty body a request
the server refused; an empty 500 a server or SQL error; 429 and 503 may say
when to come back. Redirects are never followed.
"""

from collections import namedtuple
from urllib.parse import urlsplit

from .const import (
    ACCESS_DENIED_STATUSES,
    NO_DATA_MARKER,
    PERMANENT_SERVER_STATUSES,
    RETRY_AFTER_STATUSES,
    UNKNOWN_METHOD_MARKER,
)
from .decoders import decode_payload, error_text
from .http_core import parse_retry_after
from .sicantik_exceptions import (
    SicantikBadRequest,
    SicantikConfigError,
    SicantikRateLimited,
    SicantikResponseError,
    SicantikServerError,
)

# A decoded answer: ``no_data`` is True for the 404 "Tidak ada data.." marker.
Answer = namedtuple("Answer", "payload no_data")


def interpret(endpoint, status, headers, body, *, host, base_url, empty_404_is_empty):
    """The ``Answer`` of one HTTP answer, or the SicantikError it stands for."""
    if status == 200:
        return Answer(decode_payload(body, endpoint=endpoint), False)
    if 300 <= status < 400:
        raise SicantikConfigError(
            _redirect_message(
                endpoint, status, headers.get("Location"), host, base_url
            ),
            status=status,
            endpoint=endpoint,
        )
    if status == 404:
        return _interpret_404(endpoint, body, host, empty_404_is_empty)
    if status == 429:
        retry_after = parse_retry_after(headers.get("Retry-After"))
        hint = "" if retry_after is None else f", retry after {retry_after:g} s"
        raise SicantikRateLimited(
            f"{host} throttled {endpoint} (HTTP 429{hint})",
            retry_after=retry_after,
            status=status,
            endpoint=endpoint,
        )
    if status in ACCESS_DENIED_STATUSES:
        raise SicantikConfigError(
            f"{host} refused access to {endpoint} (HTTP {status}); "
            f"check the URL and that this server may call the API",
            status=status,
            endpoint=endpoint,
        )
    if 500 <= status < 600:
        retry_after = None
        if status in RETRY_AFTER_STATUSES:
            retry_after = parse_retry_after(headers.get("Retry-After"))
        detail = "empty answer: a server or SQL error" if not body.strip() else ""
        raise SicantikServerError(
            f"{endpoint} failed on {host} (HTTP {status}"
            f"{', ' + detail if detail else ''})",
            retryable=status not in PERMANENT_SERVER_STATUSES,
            retry_after=retry_after,
            status=status,
            endpoint=endpoint,
        )
    if 400 <= status < 500:
        raise SicantikBadRequest(
            f"{host} rejected our {endpoint} request (HTTP {status})",
            status=status,
            endpoint=endpoint,
        )
    raise SicantikResponseError(
        f"{endpoint} answered with the unexpected HTTP status {status}",
        retryable=200 <= status < 300,
        status=status,
        endpoint=endpoint,
    )


def _interpret_404(endpoint, body, host, empty_404_is_empty):
    if not body.strip():
        if empty_404_is_empty:
            return Answer([], True)
        raise SicantikBadRequest(
            f"{host} rejected our {endpoint} request as missing or bad "
            f"parameters (HTTP 404 with an empty body); this is a client bug",
            status=404,
            endpoint=endpoint,
        )
    try:
        text = error_text(decode_payload(body, endpoint=endpoint)) or ""
    except SicantikResponseError:
        text = ""
    if NO_DATA_MARKER in text:
        return Answer(None, True)
    if UNKNOWN_METHOD_MARKER in text or UNKNOWN_METHOD_MARKER.encode() in body:
        raise SicantikConfigError(
            f"{host} does not know the method {endpoint} (HTTP 404 "
            f"'Unknown method.'); check that the URL ends in /backoffice/api",
            status=404,
            endpoint=endpoint,
        )
    raise SicantikConfigError(
        f"{endpoint} does not exist on {host} (HTTP 404); check the URL",
        status=404,
        endpoint=endpoint,
    )


def _redirect_message(endpoint, status, location, host, base_url):
    """Where a redirect leads, naming the host only (never path or query)."""
    target = "another address"
    if location:
        parts = urlsplit(location)
        if parts.netloc:
            target = f"{parts.scheme or 'http'}://{parts.hostname or ''}"
            if parts.hostname == urlsplit(base_url).hostname:
                target += " (same host)"
        else:
            target = f"a path on {host}"
    return (
        f"{host} redirected {endpoint} (HTTP {status}) to {target}; "
        f"redirects are not followed, update the SICANTIK URL"
    )
