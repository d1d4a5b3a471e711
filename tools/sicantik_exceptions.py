"""Typed errors of the SICANTIK API client.

Every failure the client reports is a :class:`SicantikError` carrying:

* ``failure_type``: a short code (``config``, ``timeout``, ``connection``, ``tls``,
  ``server``, ``rate_limited``, ``bad_request``, ``not_found``, ``bad_response``,
  ``too_large``, ``data``) that the Odoo layer stores and translates;
* ``retryable``: whether trying again later can succeed;
* ``scope``: ``"record"`` when one permit is affected (carry on with the others)
  or ``"system"`` when configuration, network or server is at fault (stop the run);
* ``retry_after``: seconds the server asked us to wait, when it said so;
* ``status`` / ``endpoint``: the HTTP status and remote method, when known;
* ``attempts``: how many HTTP attempts were made before giving up;
* ``key``: set by ``SicantikApi.fetch_permit_details`` to the caller's key of the
  item whose failure stopped the run.

The attributes shared with the WhatsApp clients come from
:class:`~.api_errors.ApiError`. Messages are plain English and never contain
query strings or anything secret; the endpoint name is the only part of a URL
they mention.
"""

from .api_errors import AddressNotAllowed, ApiError, LimiterUnavailable
from .const import (
    EP_PERMIT_DETAILS,
    FAILURE_TYPES,
    FT_BAD_REQUEST,
    FT_BAD_RESPONSE,
    FT_CONFIG,
    FT_CONNECTION,
    FT_DATA,
    FT_RATE_LIMITED,
    FT_SERVER,
    FT_TIMEOUT,
    FT_TLS,
    FT_TOO_LARGE,
    SCOPE_RECORD,
    SCOPE_SYSTEM,
    SCOPES,
)


class SicantikError(ApiError):
    """Base class of every error raised by the SICANTIK client."""

    failure_types = FAILURE_TYPES
    scopes = SCOPES
    default_failure_type = FT_BAD_RESPONSE
    default_retryable = False
    default_scope = SCOPE_SYSTEM

    def __init__(self, message, *, endpoint=None, **kwargs):
        super().__init__(message, **kwargs)
        self.endpoint = endpoint
        self.attempts = 1
        self.key = None

    def __str__(self):
        if self.attempts > 1:
            return f"{self.message} (after {self.attempts} attempts)"
        return self.message


class SicantikLimiterUnavailable(LimiterUnavailable, SicantikError):
    """No send time for a SICANTIK request (the rate limit's database stayed
    unreachable): a system-scope, retryable ``SicantikError``, so the syncs
    stop, log it and try again later like any other server failure."""


class SicantikConfigError(SicantikError):
    """The client is misconfigured (URL, redirect, unknown method, access)."""

    default_failure_type = FT_CONFIG


class SicantikAddressNotAllowed(SicantikConfigError, AddressNotAllowed):
    """The SICANTIK URL's host resolves to an address the address policy
    refuses (see ``addresses.py``); nothing was sent."""

    def __init__(self, message=None, **kwargs):
        super().__init__(message, **kwargs)


class SicantikNetworkError(SicantikError):
    """No usable answer reached us (timeout, connection, TLS)."""

    default_failure_type = FT_CONNECTION
    default_retryable = True


class SicantikTimeout(SicantikNetworkError):
    """Connecting or reading took longer than the configured timeout."""

    default_failure_type = FT_TIMEOUT


class SicantikConnectionError(SicantikNetworkError):
    """The connection could not be made or broke (refused, reset, DNS)."""

    default_failure_type = FT_CONNECTION


class SicantikTLSError(SicantikNetworkError):
    """The TLS handshake failed (certificate not trusted, name mismatch...)."""

    default_failure_type = FT_TLS
    default_retryable = False


class SicantikServerError(SicantikError):
    """The server failed (5xx; SICANTIK answers SQL errors with an empty 500)."""

    default_failure_type = FT_SERVER
    default_retryable = True


class SicantikRateLimited(SicantikError):
    """The server throttled us (429); ``retry_after`` says when to come back."""

    default_failure_type = FT_RATE_LIMITED
    default_retryable = True

    def __init__(self, message, *, retry_after=None, **kwargs):
        super().__init__(message, retry_after=retry_after, **kwargs)


class SicantikBadRequest(SicantikError):
    """The server rejected our request (its 404 with an empty body, or a 4xx).

    The client builds every request itself, so this is a bug on our side and
    sending the same request again cannot help.
    """

    default_failure_type = FT_BAD_REQUEST


class SicantikResponseError(SicantikError):
    """The answer could not be used: unreadable, truncated, refused, too large."""

    default_failure_type = FT_BAD_RESPONSE

    @classmethod
    def too_large(cls, limit, *, endpoint=None, status=None):
        return cls(
            f"answer of {endpoint or 'the server'} is larger than the "
            f"{limit} bytes allowed",
            failure_type=FT_TOO_LARGE,
            retryable=False,
            endpoint=endpoint,
            status=status,
        )


class SicantikDataError(SicantikError):
    """A value we were asked to send or received is unusable (one record)."""

    default_failure_type = FT_DATA
    default_scope = SCOPE_RECORD

    @classmethod
    def no_letter_number(cls):
        """A permit without ``no_surat``: never asked (the server would
        answer with every permit that has no number)."""
        return cls(
            "the permit has no letter number (no_surat); cekperizinan is not "
            "asked with an empty value",
            endpoint=EP_PERMIT_DETAILS,
        )
