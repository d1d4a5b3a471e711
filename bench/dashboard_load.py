"""dashboard_load: the dashboard's data on 100,000 permits, server side.

A fresh database gets 100,000 permits over 20 types (expiry dates from a
year past to two years ahead, some without a date, some revoked), 9,000
sync logs (90 days of 15-minute runs) and, when the reminder model is
installed, 20,000 reminders, all written with ``INSERT ... SELECT
generate_series`` (the sync is not what is measured); the expiry states are
then set by the addon's own nightly update. The measured step is
``sicantik.dashboard.get_dashboard_data()`` as the admin user (record rules
apply), warm, with the ORM cache cleared before every call as a new request
would have it. Bound 1 s; ratio = 1 / median.
"""

import math
import statistics
import time

from bench.common import OdooDatabase, new_connector

NEEDS_ODOO = True  # skipped where make bench finds no Odoo
NAME = "dashboard_load"
PERMITS = 100_000
TYPES = 20
LOGS = 9_000
REMINDERS = 20_000
CALLS = 20
BOUND_SECONDS = 1.0


def _fill(env):
    """Permits, sync logs and reminders, written in bulk; then the states."""
    config = new_connector(env, "bench dashboard")
    types = env["sicantik.permit.type"].create(
        [{"name": f"JENIS IZIN {i:02d}", "config_id": config.id} for i in range(TYPES)]
    )
    today = config._today()
    env.flush_all()
    _insert_permits(env.cr, config, types, today)
    env["sicantik.permit"]._update_expiry_states(config, today)
    env.cr.execute(
        "UPDATE sicantik_permit SET status = 'revoked' WHERE mod(id, 97) = 0 "
        "AND config_id = %s",
        (config.id,),
    )
    _insert_sync_logs(env.cr, config)
    if "sicantik.notification" in env:
        _insert_reminders(env.cr, config)
    # As autovacuum would have it on a database this size.
    env.cr.execute("ANALYZE sicantik_permit, sicantik_sync_log")
    env.invalidate_all()


def _insert_permits(cr, config, types, today):
    """Skewed type sizes (a squared hash); expiry dates spread over three
    years by a multiplicative hash of the row number, one in 19 undated."""
    from odoo.tools import SQL

    cr.execute(
        SQL(
            """
            INSERT INTO sicantik_permit (
                config_id, company_id, pendaftaran_id, no_surat, applicant_name,
                permit_type_id, expiry_date, expiry_unlimited, expiry_state,
                status, expiry_check_state, create_uid, write_uid,
                create_date, write_date)
            SELECT %(config)s, %(company)s, lpad(g::text, 16, '0'),
                   '503/' || g || '/DPM-PPTSP/2025', 'Pemohon ' || g,
                   (%(types)s::int[])[1 + floor(
                       %(ntypes)s * power(mod(g * 7907, 10007) / 10007.0, 2))::int],
                   CASE WHEN mod(g, 19) = 0 THEN NULL
                        ELSE %(today)s::date + (mod(g * 7919, 1095) - 365) END,
                   mod(g, 53) = 0, 'none', 'unknown', 'found', 1, 1,
                   now() at time zone 'UTC', now() at time zone 'UTC'
              FROM generate_series(1, %(permits)s) g
            """,
            config=config.id,
            company=config.company_id.id or None,
            types=types.ids,
            ntypes=TYPES,
            today=today,
            permits=PERMITS,
        )
    )


def _insert_sync_logs(cr, config):
    """90 days of 15-minute runs, one in 41 failed."""
    from odoo.tools import SQL

    cr.execute(
        SQL(
            """
            INSERT INTO sicantik_sync_log (
                config_id, company_id, operation, trigger, state, start_date,
                end_date, heartbeat, duration, request_count, retry_count,
                latency_p50_ms, latency_p95_ms, failure_reason, create_uid,
                write_uid, create_date, write_date)
            SELECT %(config)s, %(company)s,
                   (ARRAY['permits', 'expiry', 'status'])[1 + mod(g, 3)],
                   'schedule',
                   CASE WHEN mod(g, 41) = 0 THEN 'failed' ELSE 'done' END,
                   t, t + interval '40 seconds', t + interval '40 seconds', 40,
                   mod(g, 300), mod(g, 4), 150 + mod(g, 50), 300 + mod(g, 200),
                   CASE WHEN mod(g, 41) = 0 THEN 'The server did not answer.' END,
                   1, 1, t, t
              FROM generate_series(1, %(logs)s) g,
                   LATERAL (SELECT (now() at time zone 'UTC')
                                   - (%(logs)s - g) * interval '15 minutes' AS t) s
            """,
            config=config.id,
            company=config.company_id.id or None,
            logs=LOGS,
        )
    )


def _insert_reminders(cr, config):
    """A sent (or, one in 13, failed) 30-day reminder per dated permit."""
    from odoo.tools import SQL

    cr.execute(
        SQL(
            """
            INSERT INTO sicantik_notification (
                permit_id, config_id, company_id, stage, expiry_date, state,
                sent_at, create_uid, write_uid, create_date, write_date)
            SELECT id, config_id, company_id, 30, expiry_date,
                   CASE WHEN mod(id, 13) = 0 THEN 'failed' ELSE 'sent' END,
                   CASE WHEN mod(id, 13) = 0 THEN NULL
                        ELSE (now() at time zone 'UTC')
                             - mod(id, 60) * interval '1 day'
                   END,
                   1, 1, now() at time zone 'UTC', now() at time zone 'UTC'
              FROM sicantik_permit
             WHERE config_id = %(config)s AND expiry_date IS NOT NULL
             LIMIT %(reminders)s
            """,
            config=config.id,
            reminders=REMINDERS,
        )
    )


def _measure(odb):
    """Seconds of each call of the dashboard data, as the admin user."""
    from odoo import api

    with odb.env() as env:
        admin = env.ref("base.user_admin")
        env = api.Environment(env.cr, admin.id, {"tz": "Asia/Jakarta"})
        Dashboard = env["sicantik.dashboard"]
        data = Dashboard.get_dashboard_data()  # warm-up
        timings = []
        for _call in range(CALLS):
            env.invalidate_all()
            started = time.perf_counter()
            Dashboard.get_dashboard_data()
            timings.append(time.perf_counter() - started)
        return data["total"], timings


def run():
    with OdooDatabase("bench_dashboard") as odb:
        with odb.env() as env:
            _fill(env)
        total, timings = _measure(odb)
    median = statistics.median(timings)
    p95 = sorted(timings)[math.ceil(0.95 * len(timings)) - 1]
    line = (
        f"{NAME}: permits={total} median={median:.3f}s p95={p95:.3f}s "
        f"bound={BOUND_SECONDS:g}s ratio={BOUND_SECONDS / median:.3f}"
    )
    return line, total == PERMITS and median <= BOUND_SECONDS
