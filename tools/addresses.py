"""Which addresses the addon may connect to (pure Python, no Odoo import).

The SICANTIK URL and the gateway URLs are typed in by people, so without a
check the server could be made to call itself (``http://127.0.0.1:8069``),
the office network, or the cloud metadata service that hands out its
credentials. :class:`AddressPolicy` refuses every address that is not a
public one:

* loopback, private (RFC 1918, IPv6 ULA), link-local, shared / CGNAT
  (100.64.0.0/10), multicast, unspecified, reserved and any other
  non-global range;
* the cloud metadata addresses of ``const.METADATA_ADDRESSES``;
* IPv4 hidden in IPv6 (``::ffff:127.0.0.1``, NAT64 ``64:ff9b::/96``,
  6to4, IPv4-compatible) is judged as the IPv4 address it carries;
* host names are resolved (every address must pass), and odd IPv4
  spellings (``2130706433``, ``0x7f.1``, ``0177.0.0.1``) are read as the
  address they stand for, exactly as the resolver would read them.

``allowed_hosts`` lets an administrator open a door: a host name (as
written in the URL, without port, any case), an IP address, or a network
such as ``10.0.0.0/8``. A metadata address is only let through when it is
listed itself, never by a network or a host name that resolves to it.

The same check runs twice: when a URL is saved (:meth:`AddressPolicy.check_url`)
and when the HTTP core connects (:meth:`AddressPolicy.resolve`, against the
addresses actually connected to), so a name that resolves to a public
address at saving and to 127.0.0.1 at connecting (DNS rebinding) is still
refused. The refusal (:class:`~.api_errors.AddressNotAllowed`) has one text
whatever the reason, and nothing is ever sent to a refused address, so it
tells nothing about what listens there.
"""

import contextlib
import ipaddress
import socket
from urllib.parse import urlsplit

from .api_errors import AddressNotAllowed
from .const import METADATA_ADDRESSES

# Categories of refused addresses (for the server log and the tests; the
# refusal's text never depends on them).
CAT_METADATA = "metadata"
CAT_LOOPBACK = "loopback"
CAT_PRIVATE = "private"
CAT_LINK_LOCAL = "link_local"
CAT_SHARED = "shared"  # 100.64.0.0/10, carrier-grade NAT
CAT_MULTICAST = "multicast"
CAT_UNSPECIFIED = "unspecified"
CAT_RESERVED = "reserved"
CAT_NOT_GLOBAL = "not_global"  # any other special-purpose range

_SHARED = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_V4_COMPATIBLE = ipaddress.ip_network("::/96")
_METADATA = frozenset(ipaddress.ip_address(a) for a in METADATA_ADDRESSES)


def _embedded_ipv4(ip):
    """The IPv4 address an IPv6 address stands for, or None."""
    if ip.version != 6:
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64 or (ip in _V4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def effective_address(ip):
    """``ip`` as it is reached: the IPv4 address an IPv6 form carries."""
    return _embedded_ipv4(ip) or ip


def refused_category(ip):
    """Why ``ip`` (an ``ipaddress`` object) is refused, or None when public."""
    inner = _embedded_ipv4(ip)
    if inner is not None:
        verdict = refused_category(inner)
        if verdict or ip.ipv4_mapped is not None or ip in _NAT64:
            return verdict
        # 6to4 / IPv4-compatible: the IPv6 form must pass too
    if ip in _METADATA:
        return CAT_METADATA
    checks = (
        (ip.is_unspecified, CAT_UNSPECIFIED),
        (ip.is_loopback, CAT_LOOPBACK),
        (ip.is_link_local, CAT_LINK_LOCAL),
        (ip.is_multicast, CAT_MULTICAST),
        (ip.version == 4 and ip in _SHARED, CAT_SHARED),
        (ip.is_reserved, CAT_RESERVED),
        (ip.is_private, CAT_PRIVATE),
        (getattr(ip, "is_site_local", False), CAT_PRIVATE),
        (not ip.is_global, CAT_NOT_GLOBAL),
    )
    return next((category for hit, category in checks if hit), None)


def _parse_ip(text):
    """An ``ipaddress`` object from a resolver's or a person's spelling."""
    text = text.strip().strip("[]").split("%", 1)[0]  # IPv6 zone id
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(text)
    if text and all(c in "0123456789abcdefx." for c in text.lower()):
        # 2130706433, 0x7f.1, 0177.0.0.1: what inet_aton (and so the
        # resolver) makes of them
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


def _host_key(host):
    return (host or "").strip().strip("[]").rstrip(".").lower()


class AddressPolicy:
    """Refuses outbound connections to non-public addresses.

    :param allowed_hosts: host names, IP addresses or networks (CIDR) that are
        allowed anyway; an iterable, or one string with entries separated by
        commas, spaces or new lines. A ``:port`` after a name is ignored.
        ValueError on an entry that is none of these.
    :param resolver: ``getaddrinfo``-like function (default
        ``socket.getaddrinfo``, looked up at each call so a test can patch it).
    """

    def __init__(self, allowed_hosts=(), *, resolver=None):
        if isinstance(allowed_hosts, str):
            allowed_hosts = allowed_hosts.replace(",", " ").split()
        names, networks = set(), []
        for entry in allowed_hosts or ():
            name, network = self._parse_entry(entry)
            if network is not None:
                networks.append(network)
            elif name:
                names.add(name)
        self.allowed_names = frozenset(names)
        self.allowed_networks = tuple(networks)
        self._resolver = resolver

    @staticmethod
    def _parse_entry(entry):
        text = str(entry or "").strip().lower()
        if not text:
            return None, None
        with contextlib.suppress(ValueError):
            return None, ipaddress.ip_network(text.strip("[]"), strict=False)
        name, _colon, port = text.partition(":")
        if port and not port.isdigit():
            name = text  # refused below
        name = _host_key(name)
        if not name or any(c in name for c in "/@?#[]: \\"):
            raise ValueError(f"{str(entry)[:80]!r} is not a host name, IP or network")
        return name, None

    def __repr__(self):
        return (
            f"AddressPolicy({len(self.allowed_names)} hosts, "
            f"{len(self.allowed_networks)} networks)"
        )

    # ------------------------------------------------------------------
    def _allowed_by_list(self, ip, host_allowed):
        """Whether ``allowed_hosts`` lets ``ip`` through."""
        ip = effective_address(ip)
        if ip in _METADATA:
            # only when listed itself: never by a network or a name
            exact = ip.max_prefixlen
            return any(n.prefixlen == exact and ip in n for n in self.allowed_networks)
        if host_allowed:
            return True
        return any(ip.version == n.version and ip in n for n in self.allowed_networks)

    def check_address(self, ip, host=""):
        """Raise :class:`AddressNotAllowed` unless ``ip`` may be connected to.

        ``ip`` is a string or an ``ipaddress`` object; ``host`` is the name
        of the URL it was resolved from (for ``allowed_hosts`` and the text).
        """
        parsed = ip if not isinstance(ip, str) else _parse_ip(ip)
        if parsed is None:
            raise AddressNotAllowed(host=host or str(ip), category=CAT_RESERVED)
        category = refused_category(parsed)
        if category and not self._allowed_by_list(
            parsed, _host_key(host) in self.allowed_names
        ):
            raise AddressNotAllowed(host=host or str(parsed), category=category)
        return parsed

    def resolve(self, host, port, family=socket.AF_UNSPEC):
        """The ``getaddrinfo`` entries (TCP) of ``host`` once all are checked.

        Raises :class:`AddressNotAllowed` when any address is refused (a name
        that mixes public and private answers is not trusted), and
        ``socket.gaierror`` when the name does not resolve.
        """
        key = _host_key(host)
        literal = _parse_ip(key)
        if literal is not None:
            # read as the resolver would, but without asking it
            self.check_address(literal, host)
            target = str(literal)
        else:
            target = key
        resolver = self._resolver or socket.getaddrinfo
        entries = resolver(target, port, family, socket.SOCK_STREAM)
        for entry in entries:
            self.check_address(entry[4][0], host)
        return entries

    def check_url(self, url):
        """Raise :class:`AddressNotAllowed` when ``url``'s host resolves to
        any refused address. A host that does not resolve now is not
        refused (the connection is checked again when it is made); returns
        the checked addresses as strings."""
        parts = urlsplit(str(url or "").strip())
        try:
            host, port = parts.hostname, parts.port
        except ValueError:
            host = port = None
        if not host:
            raise ValueError("the URL has no host")
        port = port or (443 if parts.scheme.lower() == "https" else 80)
        try:
            entries = self.resolve(host, port)
        except (socket.gaierror, UnicodeError):
            return []
        return sorted({entry[4][0] for entry in entries})
