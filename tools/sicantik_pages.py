"""Pagination of ``listpermohonanterbit``: one page built, every page walked.

A page advances by the rows served (never by a count the server claims). The
walk stops at the server's 404 end marker or a short page, and refuses a
server that ignores the offset (the same rows again) or a list longer than
``max_pages`` pages.
"""

import hashlib
import logging

from .const import EP_ISSUED_PERMITS
from .normalise import normalise_issued_rows
from .records import Page
from .sicantik_exceptions import SicantikResponseError

_logger = logging.getLogger(__name__)


def check_page_args(limit, offset):
    for name, value, minimum in (("limit", limit, 1), ("offset", offset, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}")


def row_fingerprint(row):
    """Hashable image of a raw row, to notice a page served twice."""
    if isinstance(row, dict):
        return tuple(sorted((str(k), repr(v)) for k, v in row.items()))
    return repr(row)


def build_page(rows, offset, limit):
    """The :class:`Page` of ``rows`` served for ``offset``/``limit``.

    Raises a retryable ``SicantikResponseError`` when rows came but not one
    is usable: the answer is broken, not the permits, and advancing past it
    would leave these rows out of the pass. A server that serves more rows
    than asked for has its page cut to ``limit`` (the next page starts after
    the rows kept, so nothing is lost), and the anomaly is logged.
    """
    if len(rows) > limit:
        _logger.warning(
            "SICANTIK %s at offset %d: %d rows served for a page of %d; "
            "kept the first %d",
            EP_ISSUED_PERMITS,
            offset,
            len(rows),
            limit,
            limit,
        )
        rows = rows[:limit]
    permits, skipped = normalise_issued_rows(rows)
    if rows and not permits:
        raise SicantikResponseError(
            f"none of the {len(rows)} rows of {EP_ISSUED_PERMITS} at "
            f"offset {offset} is usable ({skipped[0].reason})",
            retryable=True,
            endpoint=EP_ISSUED_PERMITS,
        )
    fingerprint = tuple(map(row_fingerprint, rows))
    return Page(
        offset=offset,
        limit=limit,
        raw_count=len(rows),
        permits=permits,
        skipped=skipped,
        is_last=len(rows) < limit,
        digest=hashlib.sha256(repr(fingerprint).encode()).hexdigest(),
    )


def iter_pages(api, page_size, start_offset, previous_digest):
    """The generator behind ``SicantikApi.iter_issued_permits``."""
    check_page_args(page_size, start_offset)
    offset = start_offset
    previous = previous_digest
    pages = rows = 0
    while True:
        if pages >= api.max_pages:
            raise SicantikResponseError(
                f"{EP_ISSUED_PERMITS} still had data after {api.max_pages} "
                f"pages; stopped (raise max_pages if the list is that long)",
                endpoint=EP_ISSUED_PERMITS,
            )
        page = api._list_page(page_size, offset)
        pages += 1
        if not page.raw_count:
            break
        if page.digest == previous:
            raise SicantikResponseError(
                f"{EP_ISSUED_PERMITS} served the same page at offset {offset} "
                f"as at offset {offset - page_size}: the server ignores "
                f"the offset",
                endpoint=EP_ISSUED_PERMITS,
            )
        previous = page.digest
        rows += page.raw_count
        yield page
        if page.is_last:
            break
        offset = page.next_offset
    api._log.info(
        "SICANTIK %s: %s done: %d rows in %d requests",
        api.host,
        EP_ISSUED_PERMITS,
        rows,
        pages,
    )
