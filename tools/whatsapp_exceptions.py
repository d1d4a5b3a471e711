"""Typed errors of the WhatsApp gateway clients (pure Python, no Odoo import).

Every failure of ``gateway.send()`` is a :class:`WhatsappError` carrying:

* ``failure_type``, what the caller should do with the message:

  - ``retryable``: not sent; the same message may be sent again later
    (gateway down, 5xx, connection refused, device offline, no quota);
  - ``rate_limited``: not sent; send again after ``retry_after`` seconds
    (or a backoff of the caller's choice when the gateway did not say);
  - ``permanent``: not sent and sending it again cannot help (bad request,
    message refused by policy);
  - ``invalid_number``: not sent; the recipient's number cannot receive
    WhatsApp: flag the number, do not retry;
  - ``config``: not sent; the provider settings are wrong (token, URL,
    template, phone number id): fix them, then retry by hand;
  - ``unknown``: the request left us but no verdict came back (read timeout,
    connection dropped after sending, unreadable success answer). The message
    **may have been delivered**: do not resend automatically, reconcile
    (provider dashboard, status webhook) or let a person decide.

* ``retryable``: whether an automatic retry is safe and may succeed (true for
  ``retryable`` and ``rate_limited`` only);
* ``retry_after``: seconds the gateway asked us to wait, or None;
* ``scope``: ``"message"`` when only this message is affected, ``"provider"``
  when every message through this provider will fail the same way (rate
  limit, configuration, gateway down): a batch sender should stop early;
* ``status`` / ``error_code``: HTTP status and the gateway's own error code
  (Meta error code, Fonnte reason...), when known.

Messages are plain English, name the gateway and its host, and never contain
tokens, API keys, header values or URL paths and queries (a webhook URL may
carry a secret): the clients redact every configured secret before building
one.

The attributes shared with the SICANTIK client come from
:class:`~.api_errors.ApiError`.
"""

from .api_errors import AddressNotAllowed, ApiError
from .storable import ID_MAX, storable

FT_RETRYABLE = "retryable"
FT_RATE_LIMITED = "rate_limited"
FT_PERMANENT = "permanent"
FT_INVALID_NUMBER = "invalid_number"
FT_CONFIG = "config"
FT_UNKNOWN = "unknown"
FAILURE_TYPES = (
    FT_RETRYABLE,
    FT_RATE_LIMITED,
    FT_PERMANENT,
    FT_INVALID_NUMBER,
    FT_CONFIG,
    FT_UNKNOWN,
)
RETRYABLE_FAILURE_TYPES = frozenset({FT_RETRYABLE, FT_RATE_LIMITED})

SCOPE_MESSAGE = "message"
SCOPE_PROVIDER = "provider"
SCOPES = (SCOPE_MESSAGE, SCOPE_PROVIDER)


class WhatsappError(ApiError):
    """Base class of every error raised by a WhatsApp gateway client."""

    failure_types = FAILURE_TYPES
    scopes = SCOPES
    default_failure_type = FT_PERMANENT
    default_scope = SCOPE_MESSAGE

    def __init__(self, message, *, error_code=None, **kwargs):
        super().__init__(message, **kwargs)
        # a gateway's own code: kept short, as it may be stored with the error
        self.error_code = storable(error_code, ID_MAX)

    def _default_retryable(self, failure_type):
        return failure_type in RETRYABLE_FAILURE_TYPES


class WhatsappConfigError(WhatsappError):
    """Provider settings are wrong: missing or refused token, bad URL,
    unknown template or phone number id. Nothing was sent."""

    default_failure_type = FT_CONFIG
    default_scope = SCOPE_PROVIDER


class WhatsappAddressNotAllowed(WhatsappConfigError, AddressNotAllowed):
    """The gateway URL's host resolves to an address the address policy
    refuses (see ``addresses.py``); nothing was sent."""

    def __init__(self, message=None, **kwargs):
        super().__init__(message, **kwargs)


class WhatsappRetryableError(WhatsappError):
    """Nothing was sent and trying again later may work (5xx, connection
    refused, connect timeout, device offline, quota used up)."""

    default_failure_type = FT_RETRYABLE
    default_scope = SCOPE_PROVIDER


class WhatsappRateLimited(WhatsappError):
    """The gateway throttled us; ``retry_after`` says when to come back,
    when it said so."""

    default_failure_type = FT_RATE_LIMITED
    default_scope = SCOPE_PROVIDER


class WhatsappPermanentError(WhatsappError):
    """The gateway refused this message for good (bad request, policy)."""

    default_failure_type = FT_PERMANENT


class WhatsappInvalidNumber(WhatsappError):
    """The recipient's number cannot receive WhatsApp messages."""

    default_failure_type = FT_INVALID_NUMBER


class WhatsappUnknownOutcome(WhatsappError):
    """The request was sent but no verdict came back: the message may have
    been delivered. Never resent automatically (``retryable`` is False)."""

    default_failure_type = FT_UNKNOWN
