"""Command line: serve the sandbox until SIGINT or SIGTERM.

Example: ``python -m sandbox --port 8765 --permits 10000 --latency 0.3``.
"""

import argparse
import ipaddress
import signal
import sys
import threading
from datetime import date

from .data import generate_dataset
from .server import SandboxServer

# (option, knob, type, help) of the fault knobs settable at start-up
_KNOB_OPTIONS = (
    ("--latency", "latency", float, "seconds added to every API answer"),
    ("--jitter", "jitter", float, "random +/- seconds around the latency"),
    ("--error-rate", "error_rate", float, "share answered 500/502/503"),
    ("--throttle-rate", "throttle_rate", float, "share answered 429"),
    ("--retry-after", "retry_after", int, "Retry-After seconds on 429/503"),
    ("--throttle-above-rps", "throttle_above_rps", float, "429 above this rate"),
    ("--hang-rate", "hang_rate", float, "share that hangs --hang-seconds"),
    ("--hang-seconds", "hang_seconds", float, "how long a hang lasts"),
    ("--truncate-rate", "truncate_rate", float, "share with a cut body"),
    ("--malformed-rate", "malformed_rate", float, "share with broken XML/JSON"),
    ("--fault-seed", "seed", int, "seed of the fault RNG (default: --seed)"),
)


def is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description="Serve a fake SICANTIK backoffice API with generated data.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free one")
    parser.add_argument("--permits", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--today", type=date.fromisoformat, help="reference day, YYYY-MM-DD"
    )
    parser.add_argument(
        "--future-api",
        action="store_true",
        help="listpermohonanterbit items also carry d_berlaku_izin",
    )
    parser.add_argument(
        "--second-letters",
        type=float,
        default=0.01,
        help="share of permits that are a registration's second letter "
        "(default 0.01; 0 for none)",
    )
    parser.add_argument(
        "--shuffle-ties",
        choices=("off", "pass", "request"),
        default="off",
        help="reorder the list rows that share a receipt date (seeded): when "
        "a pass starts (offset 0), or before every list request",
    )
    parser.add_argument(
        "--error-statuses",
        help="comma-separated statuses for --error-rate (default 500,502,503)",
    )
    for option, _knob, kind, text in _KNOB_OPTIONS:
        parser.add_argument(option, type=kind, help=text)
    parser.add_argument("--verbose", action="store_true", help="log each request")
    parser.add_argument(
        "--allow-non-loopback",
        action="store_true",
        help="accept a --host other than a loopback address",
    )
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not is_loopback(args.host) and not args.allow_non_loopback:
        parser.error(
            f"refusing to listen on {args.host}, which is not a loopback address; "
            "add --allow-non-loopback to do it anyway"
        )
    knobs = {
        knob: getattr(args, option[2:].replace("-", "_"))
        for option, knob, _kind, _text in _KNOB_OPTIONS
        if getattr(args, option[2:].replace("-", "_")) is not None
    }
    if args.error_statuses:
        knobs["error_statuses"] = [s.strip() for s in args.error_statuses.split(",")]
    try:
        dataset = generate_dataset(
            permits=args.permits,
            seed=args.seed,
            today=args.today,
            second_letters=args.second_letters,
        )
    except ValueError as err:
        parser.error(str(err))
    dataset.shuffle_ties = None if args.shuffle_ties == "off" else args.shuffle_ties
    server = SandboxServer(
        dataset=dataset,
        seed=args.seed,
        host=args.host,
        port=args.port,
        future_api=args.future_api,
        today=args.today,
        verbose=args.verbose,
    )
    try:
        server.configure(**knobs)
    except ValueError as err:
        parser.error(str(err))
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        server.start()
    except OSError as err:
        parser.exit(1, f"sandbox: cannot listen on {args.host}:{args.port}: {err}\n")
    count = len(server.dataset.permits)
    sys.stdout.write(f"sandbox: serving {count} permits at {server.url}\n")
    sys.stdout.flush()
    try:
        # A timed wait lets the signal handlers run promptly.
        while not stop.wait(0.2):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
