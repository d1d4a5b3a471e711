"""Pure-Python helpers of the addon (no Odoo import).

Public names are re-exported lazily, so importing ``tools.const`` (or this
package) does not load ``requests`` or ``lxml`` until a client is used.
"""

_EXPORTS = {
    "SicantikApi": ".sicantik_api",
    "parse_retry_after": ".http_core",
    "ApiError": ".api_errors",
    "RateLimiter": ".rate_limiter",
    "AdaptivePace": ".adaptive_pace",
    "PgRateLimiter": ".pg_rate_limiter",
    "ClientStats": ".stats",
    "Page": ".records",
    "IssuedPermit": ".records",
    "PermitDetails": ".records",
    "PermitType": ".records",
    "SkippedRecord": ".records",
    "encode_no_izin": ".records",
    "SicantikError": ".sicantik_exceptions",
    "SicantikConfigError": ".sicantik_exceptions",
    "SicantikNetworkError": ".sicantik_exceptions",
    "SicantikTimeout": ".sicantik_exceptions",
    "SicantikConnectionError": ".sicantik_exceptions",
    "SicantikTLSError": ".sicantik_exceptions",
    "SicantikServerError": ".sicantik_exceptions",
    "SicantikRateLimited": ".sicantik_exceptions",
    "SicantikBadRequest": ".sicantik_exceptions",
    "SicantikResponseError": ".sicantik_exceptions",
    "SicantikDataError": ".sicantik_exceptions",
    "normalize_phone": ".phone",
    "PhoneResult": ".phone",
    "SendResult": ".whatsapp_gateways",
    "WhatsappGateway": ".whatsapp_gateways",
    "LogOnlyGateway": ".whatsapp_gateways",
    "MetaCloudGateway": ".whatsapp_gateways",
    "FonnteGateway": ".whatsapp_gateways",
    "WahaGateway": ".whatsapp_gateways",
    "WebhookGateway": ".whatsapp_gateways",
    "WhatsappError": ".whatsapp_exceptions",
    "WhatsappConfigError": ".whatsapp_exceptions",
    "WhatsappRetryableError": ".whatsapp_exceptions",
    "WhatsappRateLimited": ".whatsapp_exceptions",
    "WhatsappPermanentError": ".whatsapp_exceptions",
    "WhatsappInvalidNumber": ".whatsapp_exceptions",
    "WhatsappUnknownOutcome": ".whatsapp_exceptions",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
