"""``python -m bench [name ...]``: run benchmarks (all when none is named)."""

import argparse
import importlib
import sys

from bench import BENCHMARKS
from bench.common import odoo_settings


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="name", help="benchmarks to run")
    parser.add_argument("--list", action="store_true", help="list the benchmarks")
    args = parser.parse_args(argv)
    if args.list:
        for name, (_module, description) in BENCHMARKS.items():
            sys.stdout.write(f"{name}: {description}\n")
        return 0
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        known = ", ".join(BENCHMARKS)
        parser.error(f"unknown benchmark {', '.join(unknown)} (known: {known})")
    status = 0
    for name in args.names or list(BENCHMARKS):
        module = importlib.import_module(BENCHMARKS[name][0])
        if getattr(module, "NEEDS_ODOO", False) and odoo_settings() is None:
            sys.stdout.write(f"{name}: skipped (no Odoo; run it with make bench)\n")
            continue
        line, ok = module.run()
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        status = max(status, 0 if ok else 1)
    return status


if __name__ == "__main__":
    sys.exit(main())
