"""The error base of every remote-API client of the addon (standard library only).

``SicantikError`` and ``WhatsappError`` derive from :class:`ApiError`, so a
caller can read any client failure the same way:

* ``failure_type``: what failed, in the words of the client's family;
* ``retryable``: whether trying again later may succeed;
* ``scope``: how wide the failure is (one record or message, or the whole
  server or provider);
* ``retry_after``: seconds the remote side asked us to wait, or None;
* ``status``: the HTTP status, when an answer came;
* ``message``: plain English, safe to show and to log.

Each family declares its own vocabulary (``failure_types``, ``scopes``) and
defaults; the values given to an error are checked against them, so a typo
fails where it is made instead of reaching a stored log. The message may quote
what a server sent: it is made storable (``storable.py``) on the way in, as it
ends up in a sync log or on a reminder.
"""

from .const import ALLOWED_HOSTS_PARAM
from .storable import MESSAGE_MAX, storable


class ApiError(Exception):
    """Base class of the errors raised by the addon's API clients."""

    failure_types = ()  # the family's failure types; set by each family
    scopes = ()  # the family's scopes
    default_failure_type = None
    default_scope = None
    default_retryable = False

    def __init__(
        self,
        message,
        *,
        failure_type=None,
        retryable=None,
        scope=None,
        status=None,
        retry_after=None,
    ):
        message = storable(message, MESSAGE_MAX, multiline=True) or ""
        super().__init__(message)
        failure_type = failure_type or self.default_failure_type
        scope = scope or self.default_scope
        if failure_type not in self.failure_types:
            raise ValueError(f"unknown failure_type {failure_type!r}")
        if scope not in self.scopes:
            raise ValueError(f"unknown scope {scope!r}")
        self.message = message
        self.failure_type = failure_type
        self.retryable = (
            self._default_retryable(failure_type) if retryable is None else retryable
        )
        self.scope = scope
        self.status = status
        self.retry_after = retry_after

    def _default_retryable(self, failure_type):
        """Whether an error of ``failure_type`` is retryable when not told."""
        return self.default_retryable

    def __str__(self):
        return self.message

    def __repr__(self):
        return (
            f"{type(self).__name__}({self.message!r}, "
            f"failure_type={self.failure_type!r}, retryable={self.retryable!r}, "
            f"scope={self.scope!r}, retry_after={self.retry_after!r})"
        )


class AddressNotAllowed(ApiError):
    """An outbound address refused by the address policy (``addresses.py``).

    Each client family raises its own subclass (``SicantikAddressNotAllowed``,
    ``WhatsappAddressNotAllowed``), so ``except AddressNotAllowed`` catches
    the refusal of a saved URL and of either client alike. The text is the
    same whatever the reason and never names an address: it names the host
    as written in the URL and says how an administrator allows it.
    ``category`` says why (``addresses.CAT_*``), for the server log only.
    """

    failure_types = ("config",)
    scopes = ("system",)
    default_failure_type = "config"
    default_scope = "system"

    def __init__(self, message=None, *, host="", category=None, **kwargs):
        super().__init__(message or address_refusal(host), **kwargs)
        self.host = host
        self.category = category


# The failure type of a rate limit that could not hand out a send time.
FT_LIMITER = "limiter"


class LimiterUnavailable(ApiError):
    """The shared rate limit could not hand out a send time: the database that
    holds it (``pg_rate_limiter.py``) stayed unreachable. Nothing was sent;
    trying again later may succeed.

    Raised for any server or gateway; a client family that wants its callers
    to catch it with its other errors gives the limiter a subclass that also
    derives from the family's base (``SicantikLimiterUnavailable``).
    """

    failure_types = (FT_LIMITER,)
    scopes = ("system",)
    default_failure_type = FT_LIMITER
    default_scope = "system"
    default_retryable = True


def address_refusal(host):
    """The one text of an address refusal."""
    return (
        f"the address of {host or 'this server'} is not allowed for outgoing "
        f"connections; an administrator can allow it by adding the host name, "
        f"its IP address or its network (e.g. 10.0.0.0/8) to the system "
        f"parameter {ALLOWED_HOSTS_PARAM}"
    )
