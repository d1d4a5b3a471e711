"""expiry_sync_deploy: two connectors' expiry syncs on 2 real Odoo servers.

A deployment as a bigger office runs it: one database, two Odoo servers in
prefork mode (``--workers 2 --max-cron-threads 2`` each, real processes),
two connectors at 10 requests/s pointing at ONE sandbox (300 ms +/- 100 ms).
Both connectors first list the permits (their permit syncs, not measured);
then a SICANTIK manager starts "Sync All Expiry Dates" on each (the wizard,
over JSON-RPC, for all of them: about 518 each, over 1,000 in all), and the
servers' cron workers run them.

The two connectors share the server's limit, so the bound is the rate limit
over all the checks: checks / 10 (about 104 s); ratio = bound / measured
(from the press to the end of both runs), target >= 0.90. The sandbox must not have
seen more than 10 requests in any sliding one-second window: ``violations``
counts the requests that found more in the second before them (target 0).
"""

import os
import secrets
import time

from bench.common import ArrivalLog, odoo_settings, window_figures
from bench.deployment import (
    CACHE,
    Database,
    JsonRpc,
    Odoo,
    Poker,
    drop,
    permit_figures,
    setup_script,
    wait_for,
)

NEEDS_ODOO = True  # skipped where make bench finds no Odoo
NAME = "expiry_sync_deploy"
CONNECTORS = 2
PERMITS = 1000  # at least, over both connectors
RATE_LIMIT = 10
LATENCY = 0.3
JITTER = 0.1
PAGE_SIZE = 200
WORKERS = 8  # rate x worst latency (4 in flight), doubled for headroom
DATASET_PERMITS = 540  # about 96 % are listed: over 500 due per connector
SEED = 1
MIN_RATIO = 0.90
SERVERS = 2


def set_up_text(url, password):
    """The ``odoo-bin shell`` set-up: the connectors on the sandbox at
    ``url``, no WhatsApp provider, a manager, only the two sync jobs."""
    connectors = [
        {
            "name": f"bench deploy {n}",
            "api_url": url,
            "page_size": PAGE_SIZE,
            "rate_limit": RATE_LIMIT,
            "max_workers": WORKERS,
        }
        for n in range(CONNECTORS)
    ]
    manager = {"name": "bench manager", "login": "bench_manager", "password": password}
    return setup_script(
        "BENCH",
        connectors,
        None,
        manager=manager,
        crons=("ir_cron_sync_permits", "ir_cron_sync_expiry_dates"),
    )


def _listed(db, configs):
    """Both permit syncs have completed a pass."""
    return db.value(
        "SELECT count(*) FROM sicantik_config WHERE id = ANY(%s) "
        "AND sync_pass_state = 'idle' AND NOT sync_requested "
        "AND sync_log_id IS NULL AND last_sync_log_id IS NOT NULL",
        (configs,),
    ) == len(configs)


WIZARD_RUNS = """
    FROM sicantik_sync_log WHERE config_id = ANY(%s) AND operation = 'expiry'
     AND trigger = 'wizard' AND state != 'running' AND end_date IS NOT NULL"""


def _expiry_done(db, configs):
    """Both runs started by the wizard have ended."""
    return db.value("SELECT count(*)" + WIZARD_RUNS, (configs,)) == len(configs)


def _run_in(deployment, sandbox, log):
    """Everything after the install; returns the figures."""
    odoo, db, password = deployment
    setup = odoo.shell(set_up_text(sandbox.url, password), "BENCH")
    configs, crons = setup["configs"], setup["crons"]
    db.open()
    servers = [odoo.prefork_server() for _n in range(SERVERS)]
    poker = Poker(db.name, application_name=NAME)
    try:
        for server in servers:
            server.start()
        for server in servers:
            server.wait_serving()
        poker.start()
        # Step 1 (not measured): both permit syncs, on the servers' crons.
        listing = crons["ir_cron_sync_permits"]
        expiry = crons["ir_cron_sync_expiry_dates"]
        db.rows("UPDATE ir_cron SET active = (id = %s)", (listing,))
        db.rows(
            "UPDATE sicantik_config SET sync_requested = true WHERE id = ANY(%s)",
            (configs,),
        )
        poker.crons = {listing: Poker.TICK}
        wait_for(lambda: _listed(db, configs), 300, "the permit syncs", prog=NAME)
        # Listed permits are due: the expiry job waits for the presses, so
        # that the runs are the wizard's, not the schedule's.
        db.rows("UPDATE ir_cron SET active = false")
        poker.crons = {}
        # Step 2: the manager starts both expiry runs, over JSON-RPC.
        rpc = JsonRpc(servers[0].port, db.name, "bench_manager", password)
        rpc.authenticate()
        started = time.monotonic()
        first = log.clock()
        for config in configs:
            wizard = rpc.call(
                "sicantik.config.expiry.sync",
                "create",
                {"config_id": config, "mode": "all"},
            )
            rpc.call("sicantik.config.expiry.sync", "action_start", [wizard])
        rpc.close()
        db.rows("UPDATE ir_cron SET active = (id = %s)", (expiry,))
        poker.crons = {expiry: Poker.TICK}
        wait_for(
            lambda: _expiry_done(db, configs),
            PERMITS / RATE_LIMIT * 5,
            "the expiry syncs",
            every=0.05,
            prog=NAME,
        )
        elapsed = time.monotonic() - started
        poker.stop()
    finally:
        poker.stop()
        for server in servers:
            if server.running:
                server.stop(db)
    checked = db.value("SELECT sum(progress_done)" + WIZARD_RUNS, (configs,))
    wrong = 0
    for config in configs:
        figures = permit_figures(db, sandbox.dataset, config)
        # Only the permits this run settled: the others are still pending.
        wrong += sum(1 for m in figures["mismatches"] if m[1][0] != "pending")
    settled = db.value(
        "SELECT count(*) FROM sicantik_permit WHERE config_id = ANY(%s) "
        "AND expiry_check_state != 'pending'",
        (configs,),
    )
    cek = [t for t in log.times("cekperizinan") if t >= first]
    peak, violations = window_figures(log.times(), RATE_LIMIT)
    return elapsed, checked, settled, wrong, len(cek), peak, violations


def run():
    from sandbox import SandboxServer

    cmd, paths, data_dir = odoo_settings()
    name = f"bench_expiry_deploy_{os.getpid()}"
    odoo = Odoo(cmd, name, paths, data_dir, CACHE / f"{name}.log", prog=NAME)
    db = Database(name, application_name=NAME)
    drop(name)
    with SandboxServer(permits=DATASET_PERMITS, seed=SEED) as sandbox:
        sandbox.configure(latency=LATENCY, jitter=JITTER, seed=SEED)
        log = ArrivalLog(sandbox)
        try:
            odoo.install(announce=False)
            figures = _run_in((odoo, db, secrets.token_urlsafe(16)), sandbox, log)
            stats = sandbox.stats()
        finally:
            db.close()
            drop(name)
    elapsed, checked, settled, wrong, cek, peak, violations = figures
    peak = max(peak, stats["peak_rate"])
    bound = checked / RATE_LIMIT
    ratio = bound / elapsed
    line = (
        f"{NAME}: servers={SERVERS} connectors={CONNECTORS} permits={checked} "
        f"expiry={elapsed:.2f}s bound={bound:g}s cekperizinan={cek} "
        f"peak_1s={peak} limit={RATE_LIMIT} violations={violations} "
        f"ratio={ratio:.3f}"
    )
    ok = ratio >= MIN_RATIO and not violations and peak <= RATE_LIMIT
    ok &= checked >= PERMITS and settled == checked and not wrong
    if wrong or settled != checked:
        line += f" (settled={settled} wrong={wrong})"
    if ok:
        odoo.logfile.unlink(missing_ok=True)
    else:
        line += f" (Odoo log: {odoo.logfile})"
    return line, ok
