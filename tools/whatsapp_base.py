"""Common ground of the WhatsApp gateway clients (pure Python, no Odoo import).

:class:`WhatsappGateway` is the interface every client implements::

    with gateway:
        result = gateway.send("+6281234567890", text, template, params)

:class:`HttpGateway` owns the HTTP side for the clients of ``whatsapp_meta``,
``whatsapp_fonnte``, ``whatsapp_waha`` and ``whatsapp_webhook``: a
``requests.Session`` with (connect, read) timeouts, TLS verification, no
redirects, no transport retries, a ``User-Agent`` naming the addon, bounded
answers, and the mapping of transport failures and HTTP statuses to
:class:`~.whatsapp_exceptions.WhatsappError`.

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

import email.utils
import json
import logging
import re
from datetime import datetime, timezone
from http.cookiejar import DefaultCookiePolicy
from typing import NamedTuple
from urllib.parse import quote, urlsplit, urlunsplit

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter

from .const import USER_AGENT
from .whatsapp_exceptions import (
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
MAX_ANSWER_BYTES = 256 * 1024  # a send answer is a few hundred bytes
MAX_REMOTE_TEXT = 200  # characters of a gateway's error text we repeat

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
def parse_retry_after(value, *, now=None):
    """Seconds from a ``Retry-After`` header (seconds or HTTP date), or None."""
    value = str(value or "").strip()
    if not value:
        return None
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


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


def _innermost(error):
    """The root cause inside requests/urllib3 wrappers."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        reason = getattr(error, "reason", None)
        if isinstance(error, urllib3.exceptions.MaxRetryError) and reason:
            error = reason
        elif error.args and isinstance(error.args[0], BaseException):
            error = error.args[0]
        else:
            break
    return error


def _never_connected(error):
    """Whether a connection error happened before the request went out."""
    root = _innermost(error)
    return isinstance(
        root,
        urllib3.exceptions.NewConnectionError
        | urllib3.exceptions.ConnectTimeoutError
        | ConnectionRefusedError,
    ) or isinstance(error, requests.exceptions.ProxyError)


# --------------------------------------------------------------------------
# Base classes
# --------------------------------------------------------------------------
class WhatsappGateway:
    """Interface of every gateway: ``send()``, ``close()``, ``with`` block."""

    provider = "gateway"  # short name, as in the provider model's selection
    label = "WhatsApp gateway"  # for messages

    def __init__(self, *, limiter=None, logger=None):
        self.limiter = limiter
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
            if self.limiter is not None:
                self.limiter.acquire()
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
    """

    # Whether the configured URL itself is a secret (webhooks): then its path
    # never appears anywhere, not even in a chained exception.
    _secret_url = False

    def __init__(self, base_url, *, timeout=DEFAULT_TIMEOUT, limiter=None, logger=None):
        super().__init__(limiter=limiter, logger=logger)
        self.base_url, self.host = self._check_url(base_url)
        self.timeout = self._check_timeout(timeout)
        self._secrets = ()
        self._session = self._make_session()
        self._closed = False

    # -- configuration --------------------------------------------------
    def _config_error(self, text):
        return WhatsappConfigError(f"{self.label}: {text}")

    def _check_url(self, url):
        if not isinstance(url, str) or not url.strip():
            raise self._config_error("no URL is set")
        try:
            parts = urlsplit(url.strip())
            _port = parts.port  # ValueError on a bad port
        except ValueError:
            # the library's message would repeat the URL, which may be secret
            raise self._config_error("the URL is not valid") from None
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise self._config_error("the URL must start with http:// or https://")
        if "@" in parts.netloc:
            raise self._config_error("the URL must not contain a user or password")
        if parts.fragment:
            raise self._config_error("the URL must not contain a fragment")
        if parts.query and not self._secret_url:
            raise self._config_error("the URL must not contain a query string")
        path = parts.path.rstrip("/") if not self._secret_url else parts.path
        clean = urlunsplit((parts.scheme.lower(), parts.netloc, path, parts.query, ""))
        return clean, parts.netloc

    def _check_timeout(self, timeout):
        values = timeout if isinstance(timeout, tuple | list) else (timeout, timeout)
        try:
            connect, read = (float(v) for v in values)
        except (TypeError, ValueError):
            raise self._config_error(
                "the timeout must be seconds or a (connect, read) pair"
            ) from None
        if not (connect > 0 and read > 0):
            raise self._config_error("timeouts must be positive")
        return connect, read

    def _require(self, value, what):
        if not isinstance(value, str) or not value.strip():
            raise self._config_error(f"no {what} is set")
        return value.strip()

    def _add_secrets(self, *values):
        """Values that must never appear in a message (redacted in any text)."""
        found = set(self._secrets)
        for value in values:
            if not isinstance(value, str) or len(value.strip()) < 4:
                continue
            found.update({value, value.strip(), quote(value.strip(), safe="")})
            # "Bearer <token>": the token alone must not show either
            found.update(part for part in value.split() if len(part) >= 8)
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
        text = " ".join(str(value or "").split())
        text = self._redact(text)
        if len(text) > MAX_REMOTE_TEXT:
            text = text[: MAX_REMOTE_TEXT - 1] + "…"
        return text

    def _make_session(self):
        session = requests.Session()
        session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        session.verify = True
        # gateways are stateless: no cookie ever travels from one send to another
        session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        # no transport-level retry: a resend is the caller's decision
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=2, max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

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
        try:
            response = self._session.request(
                method,
                self._url(path),
                json=json_body,
                data=form,
                params=params,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
                stream=True,
            )
        except requests.RequestException as e:
            error = self._transport_error(e, sends_message)
            # requests' own message names the URL path: keep it out of any
            # traceback when the URL is a secret
            raise error from (None if self._secret_url else e)
        with response:
            raw, readable = self._read_body(response)
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

    @staticmethod
    def _read_body(response):
        chunks, size = [], 0
        try:
            for chunk in response.iter_content(16 * 1024):
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    return b"".join(chunks)[:MAX_ANSWER_BYTES], False
        except (requests.RequestException, OSError):
            return b"".join(chunks), False
        return b"".join(chunks), True

    def _transport_error(self, error, sends_message):
        """Map a ``requests`` exception raised before any answer."""
        exc = requests.exceptions
        where = f"{self.label} ({self.host})"
        if isinstance(error, exc.SSLError):
            return WhatsappConfigError(
                f"secure connection to {where} failed; check its certificate"
            )
        if isinstance(error, exc.ConnectTimeout):
            return WhatsappRetryableError(
                f"connecting to {where} timed out after {self.timeout[0]:g} s"
            )
        if isinstance(
            error,
            exc.InvalidURL | exc.InvalidSchema | exc.MissingSchema | exc.InvalidHeader,
        ):
            return self._config_error("the request could not be built; check the URL")
        if isinstance(error, exc.ConnectionError) and _never_connected(error):
            return WhatsappRetryableError(f"cannot connect to {where}")
        if not sends_message:
            return WhatsappRetryableError(f"{where} did not answer")
        if isinstance(error, exc.ReadTimeout):
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
