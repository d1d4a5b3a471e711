"""Benchmarks of the addon, run with ``python -m bench [name ...]``.

Each benchmark is a module with a ``run() -> (line, ok)``: one line ending in
``ratio=<bound/measured>``, and whether the target is met. Modules that need
Odoo set ``NEEDS_ODOO = True`` and are skipped where none is configured.
Adding a benchmark is one entry in ``BENCHMARKS``: the module is imported
only when it runs, so benchmarks that need Odoo do not burden the others.
"""

BENCHMARKS = {
    # name: (module, one-line description)
    "expiry_fetch": (
        "bench.expiry_fetch",
        "cekperizinan for 500 permits at 10 req/s against a 300 ms sandbox",
    ),
    "permit_sync": (
        "bench.permit_sync",
        "20,000 sandbox permits into a fresh Odoo database, pages of 50 and 200",
    ),
    "expiry_sync_odoo": (
        "bench.expiry_sync_odoo",
        "two-step expiry sync of 500 permits in Odoo at 10 req/s, 300 ms sandbox",
    ),
    "reminder_scan": (
        "bench.reminder_scan",
        "the 09:00 reminder job over 50,000 permits, then again (queues 0)",
    ),
    "dashboard_load": (
        "bench.dashboard_load",
        "the dashboard's figures over 100,000 permits, server side (< 1 s)",
    ),
    "expiry_sync_deploy": (
        "bench.expiry_sync_deploy",
        "2 connectors' expiry syncs (1,000 permits) on 2 prefork Odoo servers",
    ),
    "future_api": (
        "bench.future_api",
        "20,000 permits whose list carries d_berlaku_izin, against the two-step",
    ),
}
