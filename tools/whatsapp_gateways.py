"""WhatsApp gateway clients: the catalogue (pure Python, no Odoo import).

One class per gateway, all with the interface of
:class:`~.whatsapp_base.WhatsappGateway`::

    gateway = FonnteGateway(token, timeout=(5, 20))
    with gateway:
        result = gateway.send("+6281234567890", "Yth. Budi, …")
    result.message_id, result.raw_status

``send(to, text, template=None, params=None, *, reference=None)`` takes the
recipient in E.164 (``+62812…``, see ``tools.phone``), the rendered text and,
for gateways with approved templates (Meta), a template name and its body
parameters. It returns a :class:`SendResult` once the gateway has accepted
the message, or raises a :class:`~.whatsapp_exceptions.WhatsappError` whose
``failure_type`` says what to do: ``retryable`` / ``rate_limited`` (send
again later), ``permanent``, ``invalid_number``, ``config``, or ``unknown``
(the message may have gone: reconcile, never resend automatically).

========  ======================  =============================================
provider  class                   module
========  ======================  =============================================
log       LogOnlyGateway          here (sends nothing)
meta      MetaCloudGateway        ``whatsapp_meta``
fonnte    FonnteGateway           ``whatsapp_fonnte``
waha      WahaGateway             ``whatsapp_waha``
webhook   WebhookGateway          ``whatsapp_webhook``
========  ======================  =============================================
"""

import uuid

from .whatsapp_base import (
    DEFAULT_TIMEOUT,
    HttpGateway,
    SendResult,
    WhatsappGateway,
    e164_digits,
    mask_phone,
)
from .whatsapp_fonnte import FonnteGateway
from .whatsapp_meta import MetaCloudGateway
from .whatsapp_waha import WahaGateway
from .whatsapp_webhook import WebhookGateway

__all__ = [
    "DEFAULT_TIMEOUT",
    "FonnteGateway",
    "HttpGateway",
    "LogOnlyGateway",
    "MetaCloudGateway",
    "SendResult",
    "WahaGateway",
    "WebhookGateway",
    "WhatsappGateway",
    "e164_digits",
    "mask_phone",
]


class LogOnlyGateway(WhatsappGateway):
    """Sends nothing: writes the message to the log, returns a made-up id."""

    provider = "log"
    label = "Log only"

    def send(self, to, text, template=None, params=None, *, reference=None):
        e164_digits(to)  # same verdict on a bad number as a real gateway
        self._log.info("WhatsApp (log only) to %s: %s", to, text)
        return SendResult(f"log-{uuid.uuid4().hex[:12]}", "logged")
