"""Command line: the loopback WhatsApp gateways for ``make run``.

``python -m sandbox.gateway_demo --port 8766 --receipts-to URL --secret S``
serves the four gateways (``sandbox.gateways``) and posts the generic
webhook's delivery receipts (delivered, then read, a few seconds apart) to
``URL``, the demo provider's webhook in Odoo, signed with ``S``; until Odoo
answers, they are retried, as a real gateway does.
"""

import argparse
import signal
import sys
import threading

from .gateways import GatewayServer

DEMO_HEADERS = {"Authorization": "Bearer sicantik-demo-gateway"}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sandbox.gateway_demo")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--receipts-to", help="the provider's webhook URL in Odoo")
    parser.add_argument("--secret", help="the provider's webhook secret")
    parser.add_argument("--delay", type=float, default=3.0)
    args = parser.parse_args(argv)
    server = GatewayServer(port=args.port, webhook_headers=DEMO_HEADERS)
    if args.receipts_to:
        server.send_receipts(
            "webhook", args.receipts_to, secret=args.secret, delay=args.delay
        )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        server.start()
    except OSError as err:
        parser.exit(1, f"gateways: cannot listen on port {args.port}: {err}\n")
    sys.stdout.write(f"gateways: WhatsApp loopback gateways at {server.url}\n")
    sys.stdout.flush()
    try:
        while not stop.wait(0.2):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
