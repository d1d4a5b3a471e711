"""reminder_scan: the 09:00 job over 50,000 permits in a real Odoo database.

50,000 permits with expiry dates spread from a month past to a year ahead,
their holders reachable on WhatsApp, are written straight into a fresh
database. The measured step is the whole scheduled job
(``_cron_queue_reminders``: select the due reminders and queue them), then the
same job right after, which must queue nothing. Bound 15 s;
ratio = 15 / first run.
"""

import random
import time
from datetime import timedelta

from bench.common import OdooDatabase, new_connector

NEEDS_ODOO = True  # skipped where make bench finds no Odoo
NAME = "reminder_scan"
PERMITS = 50_000
HOLDERS = 5_000
BOUND_SECONDS = 15.0
SEED = 1


def _fill(env):
    """Holders and permits, written in bulk (the sync is not what is measured)."""
    from odoo.addons.sicantik_connector.models.bulk_sql import bulk_insert

    config = new_connector(env, "bench reminders")
    partners = env["res.partner"].create(
        [
            {"name": f"Holder {i}", "whatsapp_number": f"0812{i:08d}"}
            for i in range(HOLDERS)
        ]
    )
    rng = random.Random(SEED)
    today = config._today()
    Permit = env["sicantik.permit"]
    for start in range(0, PERMITS, 5_000):
        rows = []
        for i in range(start, min(start + 5_000, PERMITS)):
            expiry = today + timedelta(days=rng.randint(-30, 365))
            rows.append(
                {
                    "config_id": config.id,
                    "pendaftaran_id": f"{i:016d}",
                    "no_surat": f"503/{i:05d}/XI/TDP/DPM-PPTSP/2025",
                    "applicant_name": f"Holder {i % HOLDERS}",
                    "partner_id": partners[i % HOLDERS].id,
                    "expiry_date": expiry,
                    "expiry_state": "ok",
                    "status": "active",
                }
            )
        bulk_insert(Permit, rows)
    env.invalidate_all()
    return config.id


def _check(odb):
    """Run the 09:00 job once, committed; return (seconds, queued)."""
    with odb.env() as env:
        before = env["sicantik.notification"].search_count([])
        started = time.perf_counter()
        env["sicantik.notification"]._cron_queue_reminders()
        env.cr.commit()
        elapsed = time.perf_counter() - started
        return elapsed, env["sicantik.notification"].search_count([]) - before


def run():
    with OdooDatabase("bench_reminders") as odb:
        with odb.env() as env:
            _fill(env)
        first, queued = _check(odb)
        second, again = _check(odb)
    line = (
        f"{NAME}: permits={PERMITS} queued={queued} first={first:.2f}s "
        f"second={second:.2f}s queued_again={again} bound={BOUND_SECONDS:g}s "
        f"ratio={BOUND_SECONDS / first:.3f}"
    )
    return line, first <= BOUND_SECONDS and again == 0 and queued > 0
