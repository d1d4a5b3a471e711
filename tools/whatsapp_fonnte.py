"""Client of Fonnte, fonnte.com (pure Python, no Odoo import).

``POST https://api.fonnte.com/send`` with the raw device token in
``Authorization`` and form fields; see the project's ``whatsapp-gateways.md``.
"""

from .whatsapp_base import HttpGateway, SendResult
from .whatsapp_exceptions import (
    WhatsappConfigError,
    WhatsappInvalidNumber,
    WhatsappPermanentError,
    WhatsappRetryableError,
)

FONNTE_BASE_URL = "https://api.fonnte.com"

# Fonnte answers HTTP 200 with ``status: false`` and one of these reasons
# (matched as lower-case substrings); any other reason is permanent.
FONNTE_REASONS = (
    ("token invalid", WhatsappConfigError),
    ("devices must belong to an account", WhatsappConfigError),
    ("insufficient quota", WhatsappRetryableError),
    ("disconnect", WhatsappRetryableError),
    ("not connect", WhatsappRetryableError),
    ("target invalid", WhatsappInvalidNumber),
    ("invalid target", WhatsappInvalidNumber),
)


def _truthy(value):
    # "status" is a JSON boolean, but some answers spell it "Status" or "true"
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "ok", "success")
    return value is True or value == 1


class FonnteGateway(HttpGateway):
    """Fonnte: ``POST /send``, form fields, raw token in ``Authorization``.

    Fonnte answers HTTP 200 either way; ``status: false`` (or ``Status``) with
    a ``reason`` is a failure. Success means "queued on the device".
    """

    provider = "fonnte"
    label = "Fonnte"

    def __init__(
        self,
        token,
        base_url=None,
        **options,
    ):
        # ``options``: the connection options of ``HttpGateway`` (timeouts,
        # deadlines, limiter, logger, address policy).
        super().__init__(base_url or FONNTE_BASE_URL, **options)
        self._token = self._require(token, "device token")
        self._add_secrets(self._token)

    def _send_message(self, digits, text, template, params, reference):
        form = {
            "target": digits,
            "message": self._require_text(text),
            # the target is already international: no leading-0 rewriting
            "countryCode": "0",
        }
        answer = self._request(
            "POST", "/send", form=form, headers={"Authorization": self._token}
        )
        payload = answer.payload if isinstance(answer.payload, dict) else None
        if not 200 <= answer.status < 300:
            reason = payload and (payload.get("reason") or payload.get("detail"))
            raise self._status_error(answer, reason)
        if payload is None or not answer.readable:
            raise self._unreadable_success(answer)
        status = payload.get("status", payload.get("Status"))
        if not _truthy(status):
            raise self._refusal(payload.get("reason") or payload.get("detail"))
        ids = payload.get("id")
        if isinstance(ids, list):
            ids = ids[0] if ids else None
        message_id = str(ids) if isinstance(ids, str | int) and ids != "" else None
        return SendResult(message_id, str(payload.get("process") or "queued"))

    def _refusal(self, reason):
        text = self._remote_text(reason) or "no reason given"
        lowered = text.lower()
        error_class = next(
            (cls for marker, cls in FONNTE_REASONS if marker in lowered),
            WhatsappPermanentError,
        )
        return error_class(
            f"Fonnte refused the message: {text}", status=200, error_code=text
        )
