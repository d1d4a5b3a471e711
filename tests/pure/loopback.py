"""A loopback HTTP(S) server that paces its bytes, for the HTTP core's tests.

Each connection gets the configured answer, piece by piece, each piece after
its delay: a server that trickles its status line, headers, chunk sizes or
body, or accepts and never answers. The server paces; the tests never sleep
to wait for it. ``connections`` counts the connections it accepted.
"""

import datetime
import ipaddress
import socket
import ssl
import threading

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


class LoopbackServer:
    """A listener on 127.0.0.1 whose accept loop runs in a thread of its own
    and hands each connection to ``_handle(conn)`` in a new thread;
    ``connections`` counts them, ``close()`` stops it all."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._serve, daemon=True)]
        self.threads[0].start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn, _addr = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            thread = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _handle(self, conn):
        raise NotImplementedError

    def close(self):
        self.stop.set()
        self.listener.close()
        for thread in self.threads:
            thread.join(5)


class TrickleServer(LoopbackServer):
    """Loopback HTTP/1.1 server: each connection gets ``head``, then each
    ``(delay, data)`` piece of ``pieces`` after its delay, then is closed.
    With ``tls`` (a server ``ssl.SSLContext``) it speaks HTTPS; with
    ``keep_alive`` it answers every request of a connection the same way."""

    def __init__(self, tls=None, *, keep_alive=False):
        self.tls = tls
        self.keep_alive = keep_alive
        self.head, self.pieces = b"", []
        self.unasked = False
        super().__init__()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"

    def answer(self, head, pieces=(), *, length=None, chunked=False):
        lines = [head]
        if chunked:
            lines.append("Transfer-Encoding: chunked")
        else:
            size = sum(len(data) for _delay, data in pieces)
            lines.append(f"Content-Length: {size if length is None else length}")
        self.head = ("\r\n".join(lines) + "\r\n\r\n").encode()
        self.pieces = list(pieces)

    def answer_raw(self, pieces, *, unasked=False):
        """Send only ``pieces``, status line and headers included; with
        ``unasked``, without waiting for a request (a TLS client waits)."""
        self.head, self.pieces = b"", list(pieces)
        self.unasked = unasked

    def _handle(self, conn):
        # the answer configured when the connection came in
        self._answer(conn, self.head, self.pieces)

    def _answer(self, conn, head, pieces):
        conn.settimeout(5)
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            with conn:
                while self.unasked or self._read_request(conn):
                    conn.sendall(head)
                    for delay, data in pieces:
                        if delay and self.stop.wait(delay):
                            return
                        conn.sendall(data)
                    if self.unasked or not self.keep_alive:
                        return
        except (OSError, ssl.SSLError):
            return  # the client gave up, as the deadline tests expect
        finally:
            conn.close()

    @staticmethod
    def _read_request(conn):
        """Read one request head (there is no body); False at the end."""
        request = b""
        while b"\r\n\r\n" not in request and len(request) < 65536:
            data = conn.recv(1)  # byte by byte: the next request stays unread
            if not data:
                return False
            request += data
        return True


def self_signed_tls(folder, *, with_ip=True):
    """``(server SSLContext, CA file)`` for a certificate of ``localhost``
    and, ``with_ip``, of 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    names = [x509.DNSName("localhost")]
    if with_ip:
        names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(names),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file = folder / "cert.pem"
    key_file = folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context, str(cert_file)
