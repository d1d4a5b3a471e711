"""Client of WAHA, the self-hosted WhatsApp HTTP API (pure Python, no Odoo).

``POST {base}/api/sendText`` with ``X-Api-Key``; see the project's
``whatsapp-gateways.md``. WAHA drives a WhatsApp app, not an official API:
the office should pace it gently (provider rate limit) to avoid a ban.
"""

from .whatsapp_base import HttpGateway, SendResult
from .whatsapp_exceptions import WhatsappInvalidNumber, WhatsappRetryableError

WAHA_DEFAULT_SESSION = "default"


class WahaGateway(HttpGateway):
    """WAHA: ``POST {base}/api/sendText`` with ``X-Api-Key``.

    With ``check_number`` (the default, as WAHA's "avoid blocking" advice
    asks), ``GET /api/contacts/check-exists`` runs first: a number without
    WhatsApp is reported as ``invalid_number`` before anything is sent.
    """

    provider = "waha"
    label = "WAHA"

    def __init__(
        self,
        base_url,
        api_key=None,
        session=WAHA_DEFAULT_SESSION,
        *,
        check_number=True,
        **options,
    ):
        # ``options``: the connection options of ``HttpGateway`` (timeouts,
        # deadlines, limiter, logger, address policy).
        super().__init__(base_url, **options)
        self._api_key = (api_key or "").strip() or None
        self._add_secrets(self._api_key)
        self.session = (session or "").strip() or WAHA_DEFAULT_SESSION
        self.check_number = check_number

    def _requests_per_send(self):
        return 2 if self.check_number else 1

    def _headers(self):
        return {"X-Api-Key": self._api_key} if self._api_key else {}

    def _send_message(self, digits, text, template, params, reference):
        text = self._require_text(text)
        chat_id = f"{digits}@c.us"
        if self.check_number:
            chat_id = self._check_exists(digits) or chat_id
        answer = self._request(
            "POST",
            "/api/sendText",
            json_body={"session": self.session, "chatId": chat_id, "text": text},
            headers=self._headers(),
        )
        if not 200 <= answer.status < 300:
            raise self._waha_error(answer)
        if not isinstance(answer.payload, dict) or not answer.readable:
            raise self._unreadable_success(answer)
        payload = answer.payload
        raw_status = payload.get("ackName") or payload.get("status") or "sent"
        return SendResult(self._message_id(payload), str(raw_status))

    def _check_exists(self, digits):
        """The chat id WAHA knows the number by; raise when it has none."""
        answer = self._request(
            "GET",
            "/api/contacts/check-exists",
            params={"phone": digits, "session": self.session},
            headers=self._headers(),
            sends_message=False,
        )
        if not 200 <= answer.status < 300:
            raise self._waha_error(answer, sends_message=False)
        payload = answer.payload if isinstance(answer.payload, dict) else {}
        if payload.get("numberExists") is False:
            raise WhatsappInvalidNumber(
                "WAHA: this number has no WhatsApp account",
                status=answer.status,
                error_code="numberExists:false",
            )
        chat_id = payload.get("chatId")
        return chat_id if isinstance(chat_id, str) and "@" in chat_id else None

    @staticmethod
    def _message_id(payload):
        # The shape depends on the engine: GOWS a string, WEBJS an object
        # with ``_serialized``, NOWEB a Baileys ``key``.
        key = payload.get("key")
        for value in (
            payload.get("id"),
            key.get("id") if isinstance(key, dict) else None,
        ):
            if isinstance(value, dict):
                value = value.get("_serialized") or value.get("id")
            if isinstance(value, str) and value:
                return value
        return None

    def _waha_error(self, answer, sends_message=True):
        payload = answer.payload if isinstance(answer.payload, dict) else {}
        detail = payload.get("message") or payload.get("error")
        if isinstance(detail, list):
            detail = "; ".join(str(d) for d in detail)
        if answer.status == 422:
            # the session exists but is not WORKING (phone offline, logged out)
            return WhatsappRetryableError(
                f"WAHA session {self.session!r} is not ready: "
                f"{self._remote_text(detail) or 'not working'}",
                status=422,
            )
        return self._status_error(answer, detail, sends_message=sends_message)
