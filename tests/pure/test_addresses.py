"""The outbound address policy: the table of refusals, and both clients
refused at connect time, DNS rebinding included, over real loopback HTTP.

Names are resolved by a fake resolver (or a patched ``socket.getaddrinfo``):
nothing here asks a real DNS server.
"""

import socket

import pytest
from loopback import TrickleServer, self_signed_tls

from tools import addresses
from tools.addresses import AddressPolicy
from tools.api_errors import AddressNotAllowed
from tools.const import ALLOWED_HOSTS_PARAM
from tools.sicantik_api import SicantikApi
from tools.sicantik_exceptions import SicantikAddressNotAllowed
from tools.whatsapp_exceptions import WhatsappAddressNotAllowed
from tools.whatsapp_gateways import (
    FonnteGateway,
    MetaCloudGateway,
    WahaGateway,
    WebhookGateway,
)

PUBLIC_V4 = "93.184.216.34"
COUNT_ANSWER = [(0, b'[{"jumlahPerizinan": "7"}]')]
JSON_HEAD = "HTTP/1.1 200 OK\r\nContent-Type: application/json"


def fake_resolver(table):
    """A ``getaddrinfo`` that answers names from ``table`` (name -> IPs)
    and IP literals as themselves."""

    def resolve(host, port, family=0, type=0, *args):
        ips = table.get(host, [host])
        return [
            (
                socket.AF_INET6 if ":" in ip else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (ip, port, 0, 0) if ":" in ip else (ip, port),
            )
            for ip in ips
        ]

    return resolve


REFUSED = [
    # (host as written in the URL, category)
    ("127.0.0.1", "loopback"),
    ("127.8.9.10", "loopback"),
    ("[::1]", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.254", "private"),
    ("192.168.1.1", "private"),
    ("[fd12:3456::1]", "private"),
    ("169.254.1.1", "link_local"),
    ("[fe80::1]", "link_local"),
    ("100.64.0.1", "shared"),
    ("100.127.255.254", "shared"),
    ("224.0.0.1", "multicast"),
    ("239.255.1.2", "multicast"),
    ("[ff02::1]", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("[::]", "unspecified"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("198.18.0.1", "private"),
    # cloud metadata
    ("169.254.169.254", "metadata"),
    ("[fd00:ec2::254]", "metadata"),
    ("100.100.100.200", "metadata"),
    ("168.63.129.16", "metadata"),
    ("192.0.0.192", "metadata"),
    # IPv4 inside IPv6
    ("[::ffff:127.0.0.1]", "loopback"),
    ("[::ffff:7f00:1]", "loopback"),
    ("[::ffff:10.0.0.1]", "private"),
    ("[::ffff:169.254.169.254]", "metadata"),
    ("[64:ff9b::7f00:1]", "loopback"),
    ("[2002:7f00:1::1]", "loopback"),
    ("[::127.0.0.1]", "loopback"),
    # odd IPv4 spellings, read as the resolver reads them
    ("2130706433", "loopback"),
    ("0x7f.1", "loopback"),
    ("0x7f000001", "loopback"),
    ("0177.0.0.1", "loopback"),
    ("127.1", "loopback"),
    ("017700000001", "loopback"),
    ("2852039166", "metadata"),  # 169.254.169.254
    # names
    ("localhost", "loopback"),
    ("intranet.test", "private"),
    ("mixed.test", "private"),  # one public, one private answer
    ("rebound.test", "loopback"),
]
NAMES = {
    "localhost": ["127.0.0.1", "::1"],
    "intranet.test": ["10.20.30.40"],
    "mixed.test": [PUBLIC_V4, "192.168.0.10"],
    "rebound.test": ["::ffff:127.0.0.1"],
    "public.test": [PUBLIC_V4, "2606:2800:220:1:248:1893:25c8:1946"],
    "sicantik.internal": ["10.0.0.5"],
    "metadata.internal": ["169.254.169.254"],
}


@pytest.mark.parametrize("host, category", REFUSED)
def test_non_public_addresses_are_refused(host, category):
    policy = AddressPolicy(resolver=fake_resolver(NAMES))
    with pytest.raises(AddressNotAllowed) as info:
        policy.check_url(f"https://{host}/backoffice/api")
    assert info.value.category == category
    # one text whatever the reason: it names the host as written and the
    # way to allow it, never the address it resolved to
    assert str(info.value) == (
        f"the address of {host.strip('[]').lower()} is not allowed for outgoing "
        f"connections; an administrator can allow it by adding the host name, "
        f"its IP address or its network (e.g. 10.0.0.0/8) to the system "
        f"parameter {ALLOWED_HOSTS_PARAM}"
    )
    assert info.value.failure_type == "config" and not info.value.retryable


@pytest.mark.parametrize(
    "host",
    [
        "8.8.8.8",
        PUBLIC_V4,
        "[2606:4700:4700::1111]",
        "[::ffff:8.8.8.8]",
        "[64:ff9b::808:808]",  # NAT64 of a public address
        "public.test",
        "perizinan.karokab.go.id",  # does not resolve: checked at connect
    ],
)
def test_public_addresses_pass(host):
    policy = AddressPolicy(resolver=fake_resolver(NAMES))
    if host == "perizinan.karokab.go.id":
        policy = AddressPolicy(resolver=_unresolvable)
    assert isinstance(policy.check_url(f"https://{host}:8443/api"), list)


def _unresolvable(*args):
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


@pytest.mark.parametrize(
    "allowed, host",
    [
        (["sicantik.internal"], "sicantik.internal"),
        (["SICANTIK.internal:8080"], "sicantik.internal"),  # any case, port
        ("sicantik.internal, other.test", "Sicantik.Internal."),
        (["10.0.0.0/8"], "sicantik.internal"),
        (["10.0.0.0/8"], "10.1.2.3"),
        (["127.0.0.1"], "127.0.0.1"),
        (["127.0.0.1"], "[::ffff:127.0.0.1]"),
        (["127.0.0.0/8"], "2130706433"),
        (["[::1]"], "[::1]"),
        (["fd00::/8"], "[fd12:3456::1]"),
        (["169.254.169.254"], "169.254.169.254"),
        (["100.64.0.0/10"], "100.64.0.1"),
    ],
)
def test_allowed_hosts_and_networks_let_through(allowed, host):
    policy = AddressPolicy(allowed, resolver=fake_resolver(NAMES))
    assert policy.check_url(f"http://{host}/api")


@pytest.mark.parametrize(
    "allowed, host",
    [
        (["other.internal"], "sicantik.internal"),
        (["10.0.0.0/16"], "10.1.2.3"),
        (["127.0.0.2"], "127.0.0.1"),
        # a metadata address only passes when listed itself
        (["169.254.0.0/16"], "169.254.169.254"),
        (["metadata.internal"], "metadata.internal"),
        (["0.0.0.0/0", "::/0"], "168.63.129.16"),
    ],
)
def test_what_allowed_hosts_do_not_cover_stays_refused(allowed, host):
    policy = AddressPolicy(allowed, resolver=fake_resolver(NAMES))
    with pytest.raises(AddressNotAllowed):
        policy.check_url(f"http://{host}/api")


def test_allowed_hosts_entries_are_checked():
    for bad in (["http://x.test/"], ["10.0.0.0/33x"], ["a b/c"]):
        with pytest.raises(ValueError):
            AddressPolicy(bad)
    policy = AddressPolicy("a.test\n b.test,10.0.0.0/8 ,, [::1]")
    assert policy.allowed_names == {"a.test", "b.test"}
    assert [str(n) for n in policy.allowed_networks] == ["10.0.0.0/8", "::1/128"]


def test_the_refusals_of_both_clients_are_address_refusals():
    for error_class in (SicantikAddressNotAllowed, WhatsappAddressNotAllowed):
        error = error_class(host="h.test", category=addresses.CAT_LOOPBACK)
        assert isinstance(error, AddressNotAllowed)
        assert error.failure_type == "config" and not error.retryable
        assert str(error) == str(AddressNotAllowed(host="h.test"))


# --------------------------------------------------------------------------
# At connect time, in both clients
# --------------------------------------------------------------------------
@pytest.fixture
def server():
    srv = TrickleServer()
    srv.answer(JSON_HEAD, COUNT_ANSWER)
    yield srv
    srv.close()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)


def sicantik(url, **settings):
    return SicantikApi(url + "/api", rate_limit=None, backoff_base=0, **settings)


GATEWAYS = {
    "fonnte": lambda url, **kw: FonnteGateway("token-1234", base_url=url, **kw),
    "meta": lambda url, **kw: MetaCloudGateway("tok", "123", base_url=url, **kw),
    "waha": lambda url, **kw: WahaGateway(url, **kw),
    "webhook": lambda url, **kw: WebhookGateway(url + "/hook", **kw),
}


@pytest.mark.parametrize("spelling", ["127.0.0.1", "2130706433", "0x7f.1", "localhost"])
def test_sicantik_client_is_refused_a_loopback_server(server, spelling):
    url = server.url.replace("127.0.0.1", spelling)
    with sicantik(url, address_policy=AddressPolicy()) as client:
        with pytest.raises(SicantikAddressNotAllowed) as info:
            client.count_permit_types()
    assert info.value.attempts == 1  # a refusal is not retried
    assert server.connections == 0
    with sicantik(url) as client:  # no policy: today's behaviour
        assert client.count_permit_types() == 7
    assert server.connections == 1


def test_allowed_hosts_let_the_clients_through(server):
    policy = AddressPolicy(["127.0.0.0/8"])
    with sicantik(server.url, address_policy=policy) as client:
        assert client.count_permit_types() == 7
    policy = AddressPolicy([f"127.0.0.1:{server.port}"])
    with sicantik(server.url, address_policy=policy) as client:
        assert client.count_permit_types() == 7


@pytest.mark.parametrize("provider", sorted(GATEWAYS))
def test_every_gateway_is_refused_a_loopback_server(server, provider):
    gateway = GATEWAYS[provider](server.url, address_policy=AddressPolicy())
    with gateway, pytest.raises(WhatsappAddressNotAllowed) as info:
        gateway.send("+6281234567890", "Yth. Budi", "tpl", ["a"])
    assert info.value.scope == "provider" and not info.value.retryable
    assert server.connections == 0


def test_dns_rebinding_is_refused_at_connect_time(server, monkeypatch):
    """Public when the URL is saved, 127.0.0.1 when the client connects."""
    real = socket.getaddrinfo
    answers = {"n": 0}

    def rebinding(host, port, *args, **kwargs):
        if host != "rebind.test":
            return real(host, port, *args, **kwargs)
        answers["n"] += 1
        ip = PUBLIC_V4 if answers["n"] == 1 else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    url = f"http://rebind.test:{server.port}"
    policy = AddressPolicy()
    assert policy.check_url(url + "/api") == [PUBLIC_V4]  # saved: fine
    with sicantik(url, address_policy=policy, max_retries=2) as client:
        with pytest.raises(SicantikAddressNotAllowed) as info:
            client.count_permit_types()
    assert "rebind.test" in str(info.value) and "127.0.0.1" not in str(info.value)
    gateway = GATEWAYS["webhook"](url, address_policy=policy)
    with gateway, pytest.raises(WhatsappAddressNotAllowed):
        gateway.send("+6281234567890", "Yth. Budi")
    assert answers["n"] >= 3
    assert server.connections == 0
    # the same name, allowed by an administrator, connects
    allowed = AddressPolicy(["rebind.test"])
    with sicantik(url, address_policy=allowed) as client:
        assert client.count_permit_types() == 7
    assert server.connections == 1


def test_the_host_name_is_kept_for_the_host_header_and_tls(server, monkeypatch):
    """Connecting to the checked IP must not replace the name the server sees."""
    seen = []
    real_send = socket.socket.sendall

    def spy(sock, data, *args):
        seen.append(bytes(data))
        return real_send(sock, data, *args)

    monkeypatch.setattr(socket.socket, "sendall", spy)
    policy = AddressPolicy(["localhost"])
    url = server.url.replace("127.0.0.1", "localhost")
    with sicantik(url, address_policy=policy) as client:
        assert client.count_permit_types() == 7
    request = b"".join(seen)
    assert f"Host: localhost:{server.port}".encode() in request


def test_through_a_proxy_the_url_is_checked_before_sending(server, monkeypatch):
    """The proxy resolves the name: the client checks the URL itself, and the
    proxy's own (private) address is not held against it."""
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", server.url)  # the loopback server proxies
    real = socket.getaddrinfo
    names = {"intranet.test": "10.20.30.40", "public.test": PUBLIC_V4}

    def resolve(host, port, *args, **kwargs):
        if host in names:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (names[host], port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    policy = AddressPolicy()
    with sicantik("http://intranet.test", address_policy=policy) as client:
        with pytest.raises(SicantikAddressNotAllowed):
            client.count_permit_types()
    gateway = GATEWAYS["waha"]("http://intranet.test", address_policy=policy)
    with gateway, pytest.raises(WhatsappAddressNotAllowed):
        gateway.send("+6281234567890", "Yth. Budi")
    assert server.connections == 0
    with sicantik("http://public.test", address_policy=policy) as client:
        assert client.count_permit_types() == 7
    assert server.connections == 1


def test_tls_checks_the_host_name_not_the_checked_address(tmp_path, monkeypatch):
    """Connected to the checked 127.0.0.1, the client still verifies the
    certificate against the name in the URL (the certificate names only
    ``localhost``)."""
    context, ca_file = self_signed_tls(tmp_path, with_ip=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_file)
    srv = TrickleServer(tls=context)
    srv.answer(JSON_HEAD, COUNT_ANSWER)
    try:
        url = f"https://localhost:{srv.port}"
        policy = AddressPolicy(["localhost"])
        with sicantik(url, address_policy=policy) as client:
            assert client.count_permit_types() == 7
    finally:
        srv.close()
