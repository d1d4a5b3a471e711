"""Client of a generic WhatsApp webhook (pure Python, no Odoo import).

For any gateway without its own client: a JSON POST to a configured URL with
configured headers. The contract is the one of :class:`WebhookGateway`.
"""

import re
from urllib.parse import urlsplit

from .whatsapp_base import HttpGateway, SendResult
from .whatsapp_exceptions import (
    SCOPE_PROVIDER,
    WhatsappInvalidNumber,
    WhatsappPermanentError,
    WhatsappRetryableError,
)

MIN_SECRET_PIECE = 12  # a URL segment this long may be a token
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _is_id(value):
    return (isinstance(value, str) and value != "") or (
        isinstance(value, int) and not isinstance(value, bool)
    )


class WebhookGateway(HttpGateway):
    """Any other gateway, through a JSON POST to a configured URL.

    Request body::

        {"to": "+6281…", "phone": "6281…", "text": "…",
         "template": null | "name", "params": [...], "reference": null | "…"}

    with the configured headers (e.g. ``Authorization``) and, when the caller
    gives a reference, an ``Idempotency-Key`` header so the receiver can drop
    a duplicate. The answer:

    * any 2xx is accepted; a JSON body may give the id in ``id``,
      ``message_id`` or ``messageId`` and a word in ``status``;
    * a 2xx JSON body with ``ok``, ``success`` or ``status`` false is a
      refusal (``error``/``reason``/``message`` says why);
    * ``"code": "invalid_number"`` (any status) is an invalid number, and a
      refusal with ``"retryable": true`` may be retried;
    * otherwise statuses are read as HTTP means them: 429 (+ ``Retry-After``)
      rate limited, 401/403 configuration, 5xx retryable, 504 unknown, other
      4xx permanent.

    The URL may carry a secret (``https://hooks.example/T0KEN``): it is never
    repeated, only its host.
    """

    provider = "webhook"
    label = "Webhook"
    _secret_url = True

    def __init__(
        self,
        url,
        headers=None,
        **options,
    ):
        # ``options``: the connection options of ``HttpGateway`` (timeouts,
        # deadlines, limiter, logger, address policy).
        super().__init__(url, **options)
        self._headers = self._check_headers(headers or {})
        # header values, the URL's path and query, and the parts of them
        # long enough to be tokens
        parts = urlsplit(self.base_url)
        pieces = [*parts.path.split("/"), *re.split(r"[&=]", parts.query)]
        self._add_secrets(
            *self._headers.values(),
            parts.path if parts.path not in ("", "/") else None,
            parts.query,
            *(p for p in pieces if len(p) >= MIN_SECRET_PIECE),
        )

    def _check_headers(self, headers):
        if not isinstance(headers, dict):
            raise self._config_error("the headers must be a name -> value mapping")
        checked = {}
        for name, value in headers.items():
            if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
                raise self._config_error(f"{str(name)[:40]!r} is not a header name")
            if not isinstance(value, str) or "\r" in value or "\n" in value:
                raise self._config_error(f"the value of header {name} is not valid")
            checked[name] = value
        return checked

    def _url(self, path):
        return self.base_url  # the configured URL as is, query included

    def _send_message(self, digits, text, template, params, reference):
        body = {
            "to": f"+{digits}",
            "phone": digits,
            "text": self._require_text(text),
            "template": (template or "").strip() or None,
            "params": params,
            "reference": str(reference) if reference else None,
        }
        headers = dict(self._headers)
        headers["Content-Type"] = "application/json"
        if reference:
            headers["Idempotency-Key"] = str(reference)
        answer = self._request("POST", "", json_body=body, headers=headers)
        payload = answer.payload if isinstance(answer.payload, dict) else {}
        if not 200 <= answer.status < 300 or any(
            payload.get(key) is False for key in ("ok", "success", "status")
        ):
            raise self._refusal(answer, payload)
        message_id = next(
            (
                str(payload[key])
                for key in ("id", "message_id", "messageId")
                if _is_id(payload.get(key))
            ),
            None,
        )
        status = payload.get("status")
        return SendResult(message_id, status if isinstance(status, str) else "accepted")

    def _refusal(self, answer, payload):
        detail = next(
            (
                payload[key]
                for key in ("error", "reason", "message", "detail")
                if isinstance(payload.get(key), str) and payload[key]
            ),
            None,
        )
        code = payload.get("code") or payload.get("error_code")
        code = str(code) if _is_id(code) else None
        reason = self._remote_text(detail) or "no reason given"
        text = f"{self.label} ({self.host}) refused the message: {reason}"
        kwargs = {"status": answer.status, "error_code": code}
        if code == "invalid_number":
            return WhatsappInvalidNumber(text, **kwargs)
        if 200 <= answer.status < 300:
            if payload.get("retryable") is True:
                return WhatsappRetryableError(text, scope=SCOPE_PROVIDER, **kwargs)
            return WhatsappPermanentError(text, **kwargs)
        return self._status_error(answer, detail, error_code=code)
