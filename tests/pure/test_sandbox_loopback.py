"""The loopback server base under the SICANTIK sandbox and the gateways."""

import http.client
import socket
import threading

import pytest

from sandbox import SandboxServer, generate_dataset
from sandbox.gateways import GatewayServer
from sandbox.loopback import (
    MAX_REQUEST_BODY,
    Drop,
    LoopbackHandler,
    LoopbackServer,
)


class _EchoHandler(LoopbackHandler):
    server_version = "echo"

    def do_POST(self):
        body = self._read_body()
        if body == b"drop":
            raise Drop
        answer = b"%d" % len(body)
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


class EchoServer(LoopbackServer):
    handler_class = _EchoHandler
    thread_name = "echo"
    already_running = "echo is already running"

    def __init__(self, host="127.0.0.1", port=0):
        super().__init__(host, port, verbose=False)


def connection_threads(name):
    return {t for t in threading.enumerate() if t.name == f"{name}-connection"}


def post(conn, body):
    conn.request("POST", "/", body=body)
    response = conn.getresponse()
    return response.status, response.read()


def test_start_stop_lifecycle():
    server = EchoServer()
    assert not server.running and server.start() is server and server.running
    assert server.port
    with pytest.raises(RuntimeError, match="echo is already running"):
        server.start()
    server.stop()
    server.stop()  # twice is fine
    assert not server.running
    with EchoServer() as again:
        assert again.running
    assert not again.running


def test_stop_ends_idle_keep_alive_connections():
    before = connection_threads("echo")
    server = EchoServer().start()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        assert post(conn, b"abc") == (200, b"3")
        assert connection_threads("echo") - before  # kept alive, waiting
        server.stop(timeout=2)
        assert not connection_threads("echo") - before
    finally:
        conn.close()


def test_drop_leaves_the_request_unanswered():
    with EchoServer() as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            post(conn, b"drop")
        conn.close()


def test_a_body_above_the_limit_is_not_read():
    with EchoServer() as server:
        with socket.create_connection(("127.0.0.1", server.port), 5) as sock:
            sock.sendall(
                b"POST / HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: %d\r\n\r\n" % (MAX_REQUEST_BODY + 1)
            )
            answer = b""
            while chunk := sock.recv(4096):  # until the server hangs up
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"\r\n0")


def test_ipv6_loopback():
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    try:
        server = EchoServer(host="::1").start()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    try:
        conn = http.client.HTTPConnection("::1", server.port, timeout=5)
        assert post(conn, b"") == (200, b"0")
        conn.close()
    finally:
        server.stop()


def test_both_sandboxes_share_the_base():
    sandbox = SandboxServer(dataset=generate_dataset(permits=5, seed=1))
    gateways = GatewayServer()
    for server, name in ((sandbox, "sandbox"), (gateways, "gateway-sandbox")):
        assert isinstance(server, LoopbackServer)
        before = connection_threads(name)
        with server:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
            conn.request("GET", "/nowhere")
            assert conn.getresponse().status == 404
            conn.close()
        assert not connection_threads(name) - before
    with sandbox, pytest.raises(RuntimeError, match="the sandbox is already"):
        sandbox.start()
    with gateways, pytest.raises(RuntimeError, match="the gateway sandbox is"):
        gateways.start()
