import logging
import re
import time
from urllib.parse import urlencode

from odoo import http
from odoo.http import request

from ..tools import whatsapp_webhooks as wh

_logger = logging.getLogger(__name__)

# the path token: ``secrets.token_urlsafe(32)`` is 43 characters
_TOKEN = re.compile(r"[A-Za-z0-9_\-]{32,64}")
_GATEWAYS = ("meta", "waha", "fonnte", "webhook")


def _plain(status, text=""):
    return request.make_response(
        text, headers=[("Content-Type", "text/plain; charset=utf-8")], status=status
    )


class SicantikWhatsappWebhook(http.Controller):
    """Where the WhatsApp gateways report back: one URL per provider.

    In order, before any other work: the unguessable path names the
    provider (else 403); Meta's subscription GET is answered; the body is
    read under a cap (413 above it); the gateway's own signature is checked
    (403 without detail); a body already received is answered 200 and changes
    nothing. Then the receipts are recorded and applied in one short
    transaction, and the answer is 200 even when applying them failed: a
    gateway that gets an error retries for hours, and the event row keeps
    what went wrong for staff.
    """

    @http.route(
        "/sicantik/whatsapp/<string:token>",
        type="http",
        auth="public",
        methods=["GET", "POST"],
        csrf=False,
        save_session=False,
        max_content_length=wh.MAX_BODY_BYTES,
    )
    def sicantik_whatsapp_webhook(self, token, **_params):
        provider = self._provider(token)
        if provider is None:
            return _plain(403, "Forbidden")
        httprequest = request.httprequest
        if httprequest.method == "GET":
            return self._challenge(provider)
        body = httprequest.get_data(cache=True)
        if len(body) > wh.MAX_BODY_BYTES:
            return _plain(413, "Payload Too Large")
        form = dict(httprequest.form) if not body else None
        if form:
            # a form body (Fonnte may post one) was read by the framework
            body = urlencode(sorted(form.items())).encode()
        try:
            self._verify(provider, body)
        except wh.WebhookAuthError as err:
            _logger.warning(
                "WhatsApp webhook of provider %s refused: %s", provider.id, err
            )
            return _plain(403, "Forbidden")
        digest = wh.body_digest(body)
        Event = request.env["sicantik.whatsapp.event"].sudo()
        if Event._is_replay(provider, digest):
            return _plain(200, "duplicate")
        try:
            receipts = wh.parse(provider.provider_type, body, form=form)
        except wh.WebhookPayloadError as err:
            _logger.warning(
                "WhatsApp webhook of provider %s: unreadable body (%s)",
                provider.id,
                err,
            )
            receipts = None
        self._record(provider, receipts, digest)
        return _plain(200, "ok")

    # ------------------------------------------------------------

    def _provider(self, token):
        if not _TOKEN.fullmatch(token or ""):
            return None
        provider = (
            request.env["sicantik.whatsapp.provider"]
            .sudo()
            .search(
                [
                    ("webhook_token", "=", token),
                    ("provider_type", "in", _GATEWAYS),
                ],
                limit=1,
            )
        )
        return provider or None

    def _challenge(self, provider):
        """Meta confirms a subscription with a GET; nobody else uses one."""
        if provider.provider_type != "meta":
            return _plain(403, "Forbidden")
        try:
            challenge = wh.meta_challenge(
                provider.meta_verify_token, request.httprequest.args
            )
        except wh.WebhookAuthError:
            return _plain(403, "Forbidden")
        return _plain(200, challenge)

    def _verify(self, provider, body):
        headers = request.httprequest.headers
        kind = provider.provider_type
        secret = provider.webhook_secret or None
        if kind == "meta":
            wh.verify_meta(secret, body, headers)
        elif kind == "waha":
            wh.verify_waha(secret, body, headers)
        elif kind == "fonnte":
            wh.verify_fonnte(secret, request.httprequest.args)
        else:
            wh.verify_generic(secret, body, headers, now=time.time())

    def _lang(self, provider):
        """Notes and reasons in the office's language, not the anonymous
        caller's: the connector's language where it has one, else the
        provider company's."""
        configs = (
            request.env["sicantik.config"]
            .sudo()
            .search([("whatsapp_provider_id", "=", provider.id)], limit=1)
        )
        lang = configs["lang"] if "lang" in configs._fields and configs else None
        company = provider.company_id or request.env.ref("base.main_company")
        return lang or company.sudo().partner_id.lang or "en_US"

    def _record(self, provider, receipts, digest):
        """Record and apply the receipts; a failure keeps an error row."""
        env = request.env(context=dict(request.env.context, lang=self._lang(provider)))
        Event = env["sicantik.whatsapp.event"].sudo()
        if receipts is not None:
            try:
                with request.env.cr.savepoint():
                    Event._receive(provider, receipts, digest)
                return
            except Exception:
                _logger.exception(
                    "WhatsApp webhook of provider %s: receipts not applied",
                    provider.id,
                )
        Event.create(
            {
                "provider_id": provider.id,
                "body_digest": digest,
                "seq": 0,
                "kind": "other",
                "outcome": "error",
            }
        )
