"""Common ground of the WhatsApp gateway clients (pure Python, no Odoo import).

:class:`WhatsappGateway` is the interface every client implements::

    with gateway:
        result = gateway.send("+6281234567890", text, template, params)

:class:`HttpGateway` owns the HTTP side for the clients of ``whatsapp_meta``,
``whatsapp_fonnte``, ``whatsapp_waha`` and ``whatsapp_webhook``. On the
shared ``http_core`` (pooled session, (connect, read) timeouts, TLS
verification, no redirects, no transport retries, a ``User-Agent`` naming the
addon, answers read under a size cap and a deadline) it maps transport
failures and HTTP statuses to :class:`~.whatsapp_exceptions.WhatsappError`.

Sending is never retried here: a retry is the caller's decision, taken from
the failure type. A read timeout, or a connection dropped after the request
went out, is ``unknown``, never ``retryable``: the gateway may have taken the
message, and sending it again would be a duplicate. A failure before anything
was sent (connection refused, connect timeout, TLS) is ``retryable`` or
``config``.

Secrets (tokens, API keys, webhook header values and URL) are registered with
:meth:`HttpGateway._add_secrets` and redacted from every message; log lines
carry a masked phone number and never a credential.
"""

import contextlib
import json
import logging
import re
import threading
import time
from typing import NamedTuple
from urllib.parse import quote

import requests

from . import http_core
from .api_errors import AddressNotAllowed
from .http_core import parse_retry_after
from .storable import ID_MAX, MESSAGE_MAX, storable
from .whatsapp_exceptions import (
    WhatsappAddressNotAllowed,
    WhatsappConfigError,
    WhatsappError,
    WhatsappInvalidNumber,
    WhatsappPermanentError,
    WhatsappRateLimited,
    WhatsappRetryableError,
    WhatsappUnknownOutcome,
)

_logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = (5.0, 20.0)  # (connect, read) seconds
# The deadline of one request defaults to connect + 2 * read (http_core); the
# call deadline of one send, to the deadline times the requests of a send.
MAX_ANSWER_BYTES = 256 * 1024  # a send answer is a few hundred bytes
MAX_REMOTE_TEXT = 200  # characters of a gateway's error text we repeat
# Words of an Authorization value that are not secret ("Bearer <token>").
AUTH_SCHEMES = frozenset({"bearer", "basic", "token", "key", "apikey"})

_E164 = re.compile(r"\+?([1-9]\d{6,14})")


class SendResult(NamedTuple):
    """A message the gateway accepted.

    ``message_id`` is the gateway's id (Meta ``wamid.…``, Fonnte's number,
    WAHA's serialized id), None when the gateway gives none; ``raw_status``
    is its own word for the state (``accepted``, ``pending``, ``logged``…).
    """

    message_id: str | None
    raw_status: str | None = None


class _Answer(NamedTuple):
    status: int
    headers: dict
    payload: object  # decoded JSON, or None when the body is not JSON
    text: str  # the body as text (bounded), "" when unreadable
    readable: bool  # False when the body could not be read in full


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------
def mask_phone(e164):
    """``+6281234567890`` -> ``+62812*****890``: enough to tell numbers apart
    in a log, without writing a holder's full number there."""
    value = str(e164 or "")
    if len(value) <= 9:
        return value[:3] + "*" * max(0, len(value) - 3)
    return value[:6] + "*" * (len(value) - 9) + value[-3:]


def e164_digits(to):
    """The digits of an E.164 number (``+6281…`` -> ``6281…``).

    Gateways address recipients by these digits. Anything else is refused as
    an invalid number: callers normalise with ``tools.phone`` first.
    """
    match = _E164.fullmatch(str(to or "").strip())
    if not match:
        raise WhatsappInvalidNumber(
            f"{mask_phone(to) or 'an empty value'} is not an international "
            f"phone number (+62…)"
        )
    return match[1]


# --------------------------------------------------------------------------
# Base classes
# --------------------------------------------------------------------------
class WhatsappGateway:
    """Interface of every gateway: ``send()``, ``close()``, ``with`` block."""

    provider = "gateway"  # short name, as in the provider model's selection
    label = "WhatsApp gateway"  # for messages

    def __init__(self, *, limiter=None, logger=None):
        self.limiter = limiter
        # Seconds the last send waited for the limiter (its slot, and a
        # fresh one at the write): not the gateway's response time.
        self.limiter_wait = 0.0
        self._log = logger or _logger

    def send(self, to, text, template=None, params=None, *, reference=None):
        """Send one message to ``to`` (E.164); return a :class:`SendResult`.

        :param text: the rendered message (used by every gateway but Meta
            templates)
        :param template: name of an approved template (Meta); None for text
        :param params: template body parameters, in order
        :param reference: the caller's stable id for this message (e.g.
            ``sicantik.notification:42``), passed to gateways that echo it
            back (Meta ``biz_opaque_callback_data``, webhook
            ``Idempotency-Key``) so a lost answer can be reconciled
        :raises WhatsappError: see ``whatsapp_exceptions`` for failure types
        """
        try:
            digits = e164_digits(to)
            self.limiter_wait = 0.0
            if self.limiter is not None:
                self.limiter_wait = self.limiter.acquire() or 0.0
            result = self._send_message(
                digits, text, template, [str(p) for p in params or ()], reference
            )
        except WhatsappError as err:
            self._log.warning(
                "WhatsApp %s: message to %s not sent [%s]: %s",
                self.provider,
                mask_phone(to),
                err.failure_type,
                err,
            )
            raise
        # The gateway's words are stored on the reminder: storable, short.
        result = SendResult(
            storable(result.message_id, ID_MAX),
            storable(result.raw_status, ID_MAX),
        )
        self._log.info(
            "WhatsApp %s: message to %s accepted, id %s (%s)",
            self.provider,
            mask_phone(to),
            result.message_id,
            result.raw_status,
        )
        return result

    def _send_message(self, digits, text, template, params, reference):
        raise NotImplementedError

    def close(self):
        """Release the connections (idempotent)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        return f"{type(self).__name__}()"


class HttpGateway(WhatsappGateway):
    """A gateway reached over HTTP(S) with ``requests``.

    One private :meth:`_request` owns the URL, the timeouts (connect, read),
    the refusal of redirects, the bounded JSON decoding and the mapping of
    transport errors; subclasses build the payload and read the answer.

    :param base_url: the gateway's URL (http or https)
    :param timeout: ``(connect, read)`` seconds, read being per socket read
    :param deadline: seconds one request may take, from connecting until its
        answer is fully read, status line and headers included (default
        ``connect + 2 * read``); whatever the gateway does, the request is
        cut there (``http_core.Guard``)
    :param call_deadline: seconds one :meth:`send` may take, all its
        requests included (default: ``deadline`` per request a send makes,
        i.e. ``deadline``, or ``2 * deadline`` for WAHA checking the number
        first). Stated bound: a send ends within ``call_deadline +
        const.DEADLINE_MARGIN`` seconds after its first request starts
        (a send is never retried).
    :param limiter: a shared limiter (``RateLimiter``, ``PgRateLimiter``)
        paced before each send; its slot is checked again when the send's
        first request is written (``http_core.SendGate``)
    :param logger: logger or ``LoggerAdapter`` naming the provider
    :param address_policy: an ``addresses.AddressPolicy``: every connection
        is checked against it, on the address actually connected to, and a
        refused one raises ``WhatsappAddressNotAllowed`` before any byte is
        sent. None (the default) checks nothing.
    """

    # Whether the configured URL itself is a secret (webhooks): then its path
    # never appears anywhere, not even in a chained exception.
    _secret_url = False

    def __init__(
        self,
        base_url,
        *,
        timeout=DEFAULT_TIMEOUT,
        deadline=None,
        limiter=None,
        logger=None,
        call_deadline=None,
        address_policy=None,
    ):
        super().__init__(limiter=limiter, logger=logger)
        self.base_url, self.host = self._check_url(base_url)
        try:
            self.timeout = http_core.check_timeout(timeout)
            self.deadline = http_core.attempt_deadline(self.timeout, deadline)
            if call_deadline is not None:
                call_deadline = http_core.attempt_deadline(self.timeout, call_deadline)
        except ValueError as e:
            raise self._config_error(str(e)) from None
        self._call_deadline = call_deadline
        self._call = threading.local()  # the end of the running send
        self._secrets = ()
        self.address_policy = address_policy
        self._guard = http_core.Guard(address_policy)
        self._session = http_core.make_session(
            accept="application/json", pool_maxsize=2, guard=self._guard
        )
        self._closed = False

    @property
    def call_deadline(self):
        """Seconds one :meth:`send` may take (see the class doc)."""
        if self._call_deadline is not None:
            return self._call_deadline
        return self.deadline * self._requests_per_send()

    def _requests_per_send(self):
        """HTTP requests one send makes (at most)."""
        return 1

    def send(self, to, text, template=None, params=None, *, reference=None):
        # The clock of the call deadline starts at the send's first request.
        self._call.active, self._call.end = True, None
        try:
            return super().send(to, text, template, params, reference=reference)
        finally:
            self._call.active, self._call.end = False, None

    def _request_deadline(self):
        """The deadline of a request starting now: its own, within the send's."""
        now = time.monotonic()
        end = getattr(self._call, "end", None)
        if end is None:
            end = now + self.call_deadline
            if getattr(self._call, "active", False):
                self._call.end = end
        return min(now + self.deadline, end)

    # -- configuration --------------------------------------------------
    def _config_error(self, text):
        return WhatsappConfigError(f"{self.label}: {text}")

    def _check_url(self, url):
        try:
            return http_core.check_base_url(
                url, keep_query=self._secret_url, keep_path=self._secret_url
            )
        except http_core.UrlProblem as e:
            # never the library's words: they could repeat a secret URL
            raise self._config_error(f"the URL {e}") from None

    def _require(self, value, what):
        if not isinstance(value, str) or not value.strip():
            raise self._config_error(f"no {what} is set")
        return value.strip()

    def _add_secrets(self, *values):
        """Values that must never appear in a message (redacted in any text)."""
        found = set(self._secrets)
        for value in values:
            if not isinstance(value, str) or not value.strip():
                continue
            # Whatever its length: a short token is still a token.
            found.update({value, value.strip(), quote(value.strip(), safe="")})
            # "Bearer <token>": the token alone must not show either
            parts = value.split()
            if len(parts) > 1 and parts[0].lower() in AUTH_SCHEMES:
                parts = parts[1:]  # the scheme word is no secret, the rest is
            found.update(parts)
        # longest first, so a secret containing another is removed whole
        self._secrets = tuple(sorted(found, key=len, reverse=True))

    def _redact(self, text):
        text = str(text)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _remote_text(self, value):
        """A gateway's own error text, made safe to repeat: one line, short,
        without our secrets."""
        text = storable(value, MESSAGE_MAX) or ""
        text = self._redact(text)
        if len(text) > MAX_REMOTE_TEXT:
            text = text[: MAX_REMOTE_TEXT - 1] + "…"
        return text

    def close(self):
        if not self._closed:
            self._closed = True
            self._session.close()

    def __repr__(self):
        return f"{type(self).__name__}({self.host!r})"

    # -- transport ------------------------------------------------------
    def _url(self, path):
        if not path:
            return self.base_url
        return self.base_url + path

    def _request(
        self,
        method,
        path,
        *,
        json_body=None,
        form=None,
        params=None,
        headers=None,
        sends_message=True,
    ):
        """One HTTP exchange; return an :class:`_Answer` for any status.

        ``sends_message`` says whether the request delivers a message: only
        then is a lost answer an ``unknown`` outcome rather than a retryable
        failure.
        """
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed")
        started = time.monotonic()
        with self._gated_attempt() as guarded:
            try:
                request, send_kwargs = http_core.prepare(
                    self._session,
                    method,
                    self._url(path),
                    timeout=self.timeout,
                    params=params,
                    json_body=json_body,
                    data=form,
                    headers=headers,
                )
                response = self._session.send(request, **send_kwargs)
            except AddressNotAllowed as e:
                self._log.warning(
                    "WhatsApp %s: %s refused by the address policy (%s)",
                    self.provider,
                    self.host,
                    e.category,
                )
                raise WhatsappAddressNotAllowed(
                    host=self.host, category=e.category
                ) from None
            except requests.RequestException as e:
                if guarded.expired or guarded.left() <= 0:
                    seconds = guarded.deadline - started - guarded.paused
                    error = self._deadline_error(seconds, sends_message)
                else:
                    error = self._transport_error(e, sends_message)
                # requests' own message names the URL path: keep it out of any
                # traceback when the URL is a secret
                raise error from (None if self._secret_url else e)
            with response:
                if guarded.expired:
                    # cut in the headers: http.client takes an end for an end
                    raise self._deadline_error(
                        guarded.deadline - started - guarded.paused, sends_message
                    )
                raw, readable = self._read_body(response, guarded.deadline)
        status = response.status_code
        if 300 <= status < 400:
            raise self._config_error(
                f"{self.host} answered with a redirect (HTTP {status}); "
                f"check the URL"
            )
        text = raw.decode(response.encoding or "utf-8", errors="replace")
        try:
            payload = json.loads(text) if text.strip() else None
        except ValueError:
            payload = None
        return _Answer(status, dict(response.headers), payload, text, readable)

    @contextlib.contextmanager
    def _gated_attempt(self):
        """One request's ``http_core.Attempt``, gated by the send's limiter.

        The slot the send took (:meth:`WhatsappGateway.send`) is checked
        again at the write (``http_core.SendGate``; the first request of a
        send uses it up), and a wait there for a fresh slot moves the send's
        call deadline back as it moves the request's: it is the limiter's
        time, not the gateway's.
        """
        gate = http_core.SendGate.for_limiter(self.limiter)
        deadline = self._request_deadline()
        with self._guard.attempt(deadline, before_send=gate) as guarded:
            try:
                yield guarded
            finally:
                self.limiter_wait += guarded.paused or 0.0
                if guarded.paused and getattr(self._call, "end", None) is not None:
                    self._call.end += guarded.paused

    def _read_body(self, response, deadline):
        """``(body, readable)``: a body that cannot be read in full (too large,
        cut, too slow, unknown encoding) is kept as far as it came."""
        sink = None
        try:
            sink = http_core.BoundedBody(
                MAX_ANSWER_BYTES, response.headers.get("Content-Encoding")
            )
            body = http_core.read_body(
                response, sink, deadline=deadline, read_timeout=self.timeout[1]
            )
        except http_core.BodyError:
            return (sink.received() if sink is not None else b""), False
        return body, True

    def _deadline_error(self, seconds, sends_message):
        """The request was cut at its deadline before an answer was read."""
        where = f"{self.label} ({self.host})"
        if not sends_message:
            return WhatsappRetryableError(
                f"{where} did not answer within {round(seconds, 1):g} s"
            )
        return WhatsappUnknownOutcome(
            f"{where} did not answer within {round(seconds, 1):g} s; "
            f"the message may have been sent"
        )

    def _transport_error(self, error, sends_message):
        """Map a ``requests`` exception raised before any answer."""
        family = http_core.transport_failure(error)
        where = f"{self.label} ({self.host})"
        if family == http_core.TF_TLS:
            return WhatsappConfigError(
                f"secure connection to {where} failed; check its certificate"
            )
        if family == http_core.TF_CONNECT_TIMEOUT:
            return WhatsappRetryableError(
                f"connecting to {where} timed out after {self.timeout[0]:g} s"
            )
        if family == http_core.TF_BAD_REQUEST:
            return self._config_error("the request could not be built; check the URL")
        if family == http_core.TF_NOT_CONNECTED:
            return WhatsappRetryableError(f"cannot connect to {where}")
        if not sends_message:
            return WhatsappRetryableError(f"{where} did not answer")
        if family == http_core.TF_READ_TIMEOUT:
            return WhatsappUnknownOutcome(
                f"{where} did not answer within {self.timeout[1]:g} s; "
                f"the message may have been sent"
            )
        return WhatsappUnknownOutcome(
            f"the connection to {where} broke before its answer; "
            f"the message may have been sent"
        )

    def _status_error(self, answer, detail=None, error_code=None, sends_message=True):
        """The error for a non-2xx answer, by HTTP status."""
        status = answer.status
        what = f"{self.label} ({self.host}) answered HTTP {status}"
        if detail:
            what += f": {self._remote_text(detail)}"
        kwargs = {"status": status, "error_code": error_code}
        retry_after = parse_retry_after(answer.headers.get("Retry-After"))
        if status == 429:
            return WhatsappRateLimited(what, retry_after=retry_after, **kwargs)
        if status in (401, 403, 407):
            return WhatsappConfigError(f"{what}; check the credentials", **kwargs)
        if status in (404, 405):
            return WhatsappConfigError(f"{what}; check the URL", **kwargs)
        if status == 504 and sends_message:
            # a proxy gave up waiting for the gateway, which may have sent it
            return WhatsappUnknownOutcome(
                f"{what}; the message may have been sent", **kwargs
            )
        if status == 408 or status >= 500:
            return WhatsappRetryableError(what, retry_after=retry_after, **kwargs)
        return WhatsappPermanentError(what, **kwargs)

    def _unreadable_success(self, answer):
        return WhatsappUnknownOutcome(
            f"{self.label} ({self.host}) answered HTTP {answer.status} with an "
            f"answer that cannot be read; the message may have been sent",
            status=answer.status,
        )

    @staticmethod
    def _require_text(text):
        if not isinstance(text, str) or not text.strip():
            raise WhatsappPermanentError("the message text is empty")
        return text
