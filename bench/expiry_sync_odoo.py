"""expiry_sync_odoo: the two-step expiry sync of 500 permits, end to end in Odoo.

Against a sandbox answering in 300 ms +/- 100 ms, with the connector at 10
requests per second: step 1 lists the permits (the permit sync, pages of
200), step 2 asks ``cekperizinan`` about 500 of them (the expiry sync, started
the way "Sync All Expiry Dates" starts it, with a maximum of 500). Both run
through Odoo's cron machinery with commits and progress notifications, in a
fresh database.

The bound is the time the rate limit alone imposes on step 2:
500 / 10 = 50 s; ratio = 50 / measured, target >= 0.90. The line shows the
time of both steps, the ratio is taken on both together (the permits must be
listed before their expiry dates can be asked).
"""

import sys

from bench.common import OdooDatabase, new_connector

NEEDS_ODOO = True  # skipped where make bench finds no Odoo
NAME = "expiry_sync_odoo"
PERMITS = 500
RATE_LIMIT = 10
LATENCY = 0.3
JITTER = 0.1
PAGE_SIZE = 200
WORKERS = 8  # rate x worst latency (4 in flight), doubled for headroom
DATASET_PERMITS = 540  # about 96 % of them are listed
SEED = 1
MIN_RATIO = 0.90


def _mismatches(env, config_id, dataset):
    """Permits whose stored outcome disagrees with the sandbox's data."""
    wrong = []
    permits = env["sicantik.permit"].search(
        [("config_id", "=", config_id), ("expiry_check_state", "!=", "pending")]
    )
    for permit in permits:
        source = dataset.by_pendaftaran_id[permit.pendaftaran_id]
        if not source.no_surat.strip() or not source.answers_cekperizinan:
            ok = permit.expiry_check_state == "unavailable"
        elif source.d_berlaku_izin == "0000-00-00":
            ok = permit.expiry_unlimited
        elif source.d_berlaku_izin:
            ok = str(permit.expiry_date) == source.d_berlaku_izin
        else:
            ok = permit.expiry_check_state == "no_date"
        if not ok:
            wrong.append(permit.pendaftaran_id)
    return len(permits), wrong


def run():
    from sandbox import SandboxServer

    with SandboxServer(permits=DATASET_PERMITS, seed=SEED) as server:
        server.configure(latency=LATENCY, jitter=JITTER, seed=SEED)
        with OdooDatabase("bench_expiry_sync") as odb:
            with odb.env() as env:
                config = new_connector(
                    env,
                    "bench expiry",
                    server.url,
                    page_size=PAGE_SIZE,
                    rate_limit=RATE_LIMIT,
                    max_workers=WORKERS,
                )
                config.action_sync_now()
                config_id = config.id
            server.reset_stats()
            step1 = odb.run_jobs_until(
                config_id,
                lambda c: c.sync_pass_state == "idle" and c.last_sync_log_id,
            )
            with odb.env() as env:
                wizard = env["sicantik.config.expiry.sync"].create(
                    {"config_id": config_id, "mode": "limit", "limit": PERMITS}
                )
                wizard.action_start()
            step2 = odb.run_jobs_until(
                config_id,
                lambda c: not c.expiry_run_requested
                and not c.expiry_log_id
                and c.last_expiry_log_id.run_limit == PERMITS,
            )
            stats = server.stats()
            with odb.env() as env:
                log = env["sicantik.config"].browse(config_id).last_expiry_log_id
                checked, state = log.progress_done, log.state
                settled, wrong = _mismatches(env, config_id, server.dataset)
    bound = PERMITS / RATE_LIMIT
    total = step1 + step2
    ratio = bound / total
    cek = stats["by_endpoint"].get("cekperizinan", 0)
    # peak_rate: the most arrivals in any 1 s window, not per whole second
    violations = 1 if stats["peak_rate"] > RATE_LIMIT else 0
    line = (
        f"{NAME}: permits={checked} list={step1:.2f}s expiry={step2:.2f}s "
        f"total={total:.2f}s cekperizinan={cek} peak_rate={stats['peak_rate']}/s "
        f"limit={RATE_LIMIT} violations={violations} ratio={ratio:.3f}"
    )
    ok = ratio >= MIN_RATIO and not violations and checked == PERMITS
    ok &= settled == PERMITS and not wrong and state in ("done", "partial")
    if wrong or settled != PERMITS:
        sys.stderr.write(
            f"{NAME}: {settled} permits settled, {len(wrong)} wrong "
            f"(first: {wrong[:3]!r})\n"
        )
    return line, ok
