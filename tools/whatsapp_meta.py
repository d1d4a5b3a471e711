"""Client of the Meta WhatsApp Cloud API (pure Python, no Odoo import).

``POST https://graph.facebook.com/{version}/{phone_number_id}/messages`` with
``Authorization: Bearer <token>``; see the project's ``whatsapp-gateways.md``.
"""

import re

from .http_core import parse_retry_after
from .whatsapp_base import HttpGateway, SendResult
from .whatsapp_exceptions import (
    SCOPE_MESSAGE,
    WhatsappConfigError,
    WhatsappInvalidNumber,
    WhatsappPermanentError,
    WhatsappRateLimited,
    WhatsappRetryableError,
)

META_BASE_URL = "https://graph.facebook.com"
META_DEFAULT_VERSION = "v21.0"
_API_VERSION = re.compile(r"v?(\d{1,3})(?:\.(\d{1,2}))?")

# --------------------------------------------------------------------------
# Meta Cloud API error codes (developers.facebook.com, "Error codes");
# a code in none of these tables is a permanent refusal of the message.
# --------------------------------------------------------------------------
# throughput 130429, pair rate 131056, app/WABA 4 and 80007, spam 131048,
# marketing per-user cap 131049, (de)registration 133016
META_RATE_LIMITED_CODES = frozenset({4, 80007, 130429, 131048, 131049, 131056, 133016})
# limits that concern one recipient, not the whole number
META_PER_RECIPIENT_CODES = frozenset({131049, 131056})
# unknown error, temporary downtime, service unavailable, maintenance
META_RETRYABLE_CODES = frozenset({1, 2, 131000, 131016, 131057, 133004})
# message undeliverable: not a WhatsApp number (or an outdated app)
META_INVALID_NUMBER_CODES = frozenset({131026})
# token, permissions, account state, templates, phone number registration,
# test-mode recipient list
META_CONFIG_CODES = frozenset(
    {0, 3, 10, 190, 368, 131005, 131030, 131031, 131042, 131045}
    | {132000, 132001, 132005, 132007, 132012, 132015, 132016}
    | {133000, 133006, 133010}
    | set(range(200, 300))
)
META_CODE_NONEXISTENT_OBJECT = (100, 33)  # (code, error_subcode): bad phone id
# more than 24 h since the user last wrote: only a template may be sent
META_REENGAGEMENT_CODE = 131047


class MetaCloudGateway(HttpGateway):
    """Meta WhatsApp Cloud API: ``POST /{version}/{phone_number_id}/messages``.

    Reminders are business-initiated, so they must be approved templates
    (``template`` here or per ``send``), filled with ``params`` as positional
    body parameters. Without a template a plain text message is sent, which
    Meta only delivers inside the 24-hour customer-service window (131047
    otherwise).
    """

    provider = "meta"
    label = "Meta WhatsApp Cloud API"

    def __init__(
        self,
        token,
        phone_number_id,
        template=None,
        language="id",
        api_version=META_DEFAULT_VERSION,
        base_url=None,
        **options,
    ):
        # ``options``: the connection options of ``HttpGateway`` (timeouts,
        # deadlines, limiter, logger, address policy).
        super().__init__(base_url or META_BASE_URL, **options)
        self._token = self._require(token, "access token")
        self._add_secrets(self._token)
        phone_number_id = self._require(phone_number_id, "phone number id")
        if not phone_number_id.isdigit():
            raise self._config_error("the phone number id must be digits")
        self.phone_number_id = phone_number_id
        self.api_version = self._check_version(api_version)
        self.template = (template or "").strip() or None
        self.language = (language or "").strip() or "id"

    def _check_version(self, value):
        match = _API_VERSION.fullmatch(str(value or "").strip())
        if not match:
            raise self._config_error("the Graph API version must look like v21.0")
        return f"v{int(match[1])}.{int(match[2] or 0)}"

    @staticmethod
    def _param_text(value):
        # Meta refuses empty parameters and new lines, tabs or more than four
        # spaces in a row inside one (132018): keep the text, flatten it.
        text = " ".join(str(value).split())
        return text or "-"

    def _prepare_payload(self, digits, text, template, params, reference):
        payload = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": digits,
        }
        template = (template or "").strip() or self.template
        if template:
            body = {"name": template, "language": {"code": self.language}}
            if params:
                body["components"] = [
                    {
                        "type": "body",
                        "parameters": [
                            {"type": "text", "text": self._param_text(p)}
                            for p in params
                        ],
                    }
                ]
            payload.update(type="template", template=body)
        else:
            payload.update(
                type="text",
                text={"preview_url": False, "body": self._require_text(text)},
            )
        if reference:
            payload["biz_opaque_callback_data"] = str(reference)[:512]
        return payload

    def _send_message(self, digits, text, template, params, reference):
        answer = self._request(
            "POST",
            f"/{self.api_version}/{self.phone_number_id}/messages",
            json_body=self._prepare_payload(digits, text, template, params, reference),
            headers={"Authorization": f"Bearer {self._token}"},
        )
        if not 200 <= answer.status < 300:
            raise self._meta_error(answer)
        payload = answer.payload if isinstance(answer.payload, dict) else {}
        messages = payload.get("messages")
        first = messages[0] if isinstance(messages, list) and messages else None
        message_id = first.get("id") if isinstance(first, dict) else None
        if not isinstance(message_id, str) or not message_id:
            raise self._unreadable_success(answer)
        return SendResult(message_id, first.get("message_status") or "accepted")

    def _meta_error(self, answer):
        payload = answer.payload if isinstance(answer.payload, dict) else {}
        error = payload.get("error")
        if not isinstance(error, dict) or not isinstance(error.get("code"), int):
            return self._status_error(answer)
        code = error["code"]
        subcode = error.get("error_subcode")
        data = error.get("error_data")
        details = data.get("details") if isinstance(data, dict) else None
        remote = self._remote_text(error.get("message") or details or "")
        text = f"Meta refused the message (error {code}): {remote}"
        kwargs = {"status": answer.status, "error_code": str(code)}
        if code in META_RATE_LIMITED_CODES:
            scope = SCOPE_MESSAGE if code in META_PER_RECIPIENT_CODES else None
            return WhatsappRateLimited(
                text,
                retry_after=parse_retry_after(answer.headers.get("Retry-After")),
                scope=scope,
                **kwargs,
            )
        if code in META_INVALID_NUMBER_CODES:
            return WhatsappInvalidNumber(
                f"{text} (the number cannot receive WhatsApp messages)", **kwargs
            )
        if code in META_RETRYABLE_CODES:
            return WhatsappRetryableError(text, **kwargs)
        if code in META_CONFIG_CODES or (code, subcode) == META_CODE_NONEXISTENT_OBJECT:
            return WhatsappConfigError(f"{text}; check the provider settings", **kwargs)
        if code == META_REENGAGEMENT_CODE:
            return WhatsappPermanentError(
                f"{text} (outside the 24-hour window only approved templates "
                f"can be sent)",
                **kwargs,
            )
        return WhatsappPermanentError(text, **kwargs)
