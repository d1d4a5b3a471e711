#!/usr/bin/env python3
"""Kill and resume: SIGKILL a real Odoo server in the middle of its jobs.

``make kill-test`` (that is ``python3 dev/devtool.py kill-test``) installs the
addon into a fresh database, starts the SICANTIK sandbox (3,000 permits, some
latency) and a real Odoo server (two cron workers) against it, and then, job
after job, kills the server with SIGKILL at seeded random points while the
job runs, restarts it, and finally lets the job finish. Then it checks what a
permit office relies on: every permit the sandbox serves is present once,
every expiry date matches the sandbox's, no row is left running, and it
prints ``kills survived=N permits lost=N duplicates=N double sends=N``.

Options: ``--seed``, ``--kills`` (per job, at least 20 by default),
``--permits``, ``--keep`` (keep the database). Needs what ``make test`` needs
(devtool passes the Odoo command in ``SICANTIK_ODOO_CMD``).

A job is one entry of ``JOBS``: the cron it runs, how to give it work, how to
tell it is done or busy, and what to check afterwards. The reminder sender
talks to a loopback webhook gateway that counts what it receives: a message
received twice for one reminder row is a double send. That gateway posts its
delivery receipts (delivered, then read; duplicated, newest first) back to
the provider's webhook in Odoo, so the server is also killed while receipts
arrive; like a real gateway it retries any call not answered 200. At the end
no receipt may be left untaken (``receipts lost``) and every reminder the
gateway took must have ended "read" (``receipt states wrong``).
"""

import argparse
import faulthandler
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import NamedTuple

from psycopg2 import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import odoo_settings  # noqa: E402
from bench.deployment import (  # noqa: E402
    CACHE,
    Database,
    Odoo,
    OdooServer,
    connector_values,
    drop,
    free_port,
    gateway_double_sends,
    holder_duplicates,
    permit_figures,
    rows_left_running,
    say,
    setup_script,
    wait_for,
    webhook_provider_values,
)
from sandbox import SandboxServer  # noqa: E402
from sandbox.gateways import GatewayServer  # noqa: E402

# Seconds: how long to wait for the server to start working, and overall.
START_DEADLINE = 120
TOTAL_DEADLINE = 9 * 60
RECEIPTS_DEADLINE = 300
RECEIPT_SECRET = "kill-test-receipt-secret"


class Job(NamedTuple):
    name: str
    cron: str  # xml id (without the module) of its scheduled action
    endpoint: str | None  # sandbox endpoint whose requests show it at work
    give_work: object  # (ctx) -> None: a pass requested, permits due...
    finished: object  # (ctx) -> bool: nothing left, nothing running
    kill_window: tuple  # seconds after the first request of a life
    settings: dict  # connector settings for this job (pace, parallelism)
    idle: object = None  # (ctx) -> bool: nothing left to start (default: finished)
    settle: object = None  # (ctx) -> None: after it finished, server still up


def permits_give_work(ctx):
    ctx.db.rows(
        "UPDATE sicantik_config SET sync_requested = true WHERE id = %s",
        (ctx.config,),
    )


def permits_finished(ctx):
    state, requested, running = ctx.db.rows(
        "SELECT sync_pass_state, sync_requested, sync_log_id "
        "FROM sicantik_config WHERE id = %s",
        (ctx.config,),
    )[0]
    return state == "idle" and not requested and not running


def expiry_give_work(ctx):
    ctx.db.rows(
        "UPDATE sicantik_permit SET next_expiry_check = now() at time zone 'UTC' "
        "WHERE config_id = %s AND next_expiry_check IS NOT NULL",
        (ctx.config,),
    )


def expiry_finished(ctx):
    running = ctx.db.value(
        "SELECT expiry_log_id FROM sicantik_config WHERE id = %s", (ctx.config,)
    )
    due = ctx.db.value(
        "SELECT count(*) FROM sicantik_permit WHERE config_id = %s "
        "AND next_expiry_check <= now() at time zone 'UTC'",
        (ctx.config,),
    )
    return not running and not due


def reminders_give_work(ctx):
    """Forget finished reminders (their gateway record stays) and queue the
    due ones again: new rows, new references."""
    ctx.db.rows(
        "DELETE FROM sicantik_notification WHERE config_id = %s "
        "AND state IN ('sent', 'delivered', 'read', 'logged', 'failed', "
        "'cancelled')",
        (ctx.config,),
    )
    cron = ctx.crons["ir_cron_check_expiring"]
    ctx.db.rows("UPDATE ir_cron SET active = true WHERE id = %s", (cron,))
    ctx.db.rows(
        """INSERT INTO ir_cron_trigger (cron_id, call_at, create_date, write_date)
           VALUES (%(cron)s, now() at time zone 'UTC', now() at time zone 'UTC',
                   now() at time zone 'UTC')""",
        {"cron": cron},
    )


def reminders_idle(ctx):
    # Only rows of killed sends left: they are reconciled, never sent again,
    # so a new life would make no request without new work.
    return not ctx.db.value(
        "SELECT count(*) FROM sicantik_notification WHERE config_id = %s "
        "AND state = 'queued'",
        (ctx.config,),
    )


def reminders_finished(ctx):
    return not ctx.db.value(
        "SELECT count(*) FROM sicantik_notification WHERE config_id = %s "
        "AND state IN ('queued', 'sending')",
        (ctx.config,),
    )


def receipts_settle(ctx):
    """The gateway's last receipts, taken while the server is up."""
    if not ctx.gateway.receipts.wait_idle(RECEIPTS_DEADLINE):
        say(f"  receipts: {ctx.gateway.receipts.pending()} still refused")


def receipt_figures(ctx):
    """(receipts posted, lost: never taken, reminders not ending "read")."""
    posted = ctx.gateway.receipts.posted()
    lost = sum(1 for p in posted if p.status != 200)
    taken = {m.message_id for m in ctx.gateway.messages("webhook")}
    rows = ctx.db.rows(
        "SELECT provider_message_id, state FROM sicantik_notification "
        "WHERE config_id = %s AND provider_message_id IS NOT NULL",
        (ctx.config,),
    )
    wrong = sum(1 for mid, state in rows if mid in taken and state != "read")
    return len(posted), lost, wrong


JOBS = (
    Job(
        "permits",
        "ir_cron_sync_permits",
        "listpermohonanterbit",
        permits_give_work,
        permits_finished,
        (0.0, 1.5),
        # 10 requests/s: a pass of pages of 20 lasts long enough for 20 kills
        {"rate_limit": 10, "max_workers": 4},
    ),
    Job(
        "expiry",
        "ir_cron_sync_expiry_dates",
        "cekperizinan",
        expiry_give_work,
        expiry_finished,
        (0.0, 3.0),
        # One request per permit: a faster pace keeps the run short.
        {"rate_limit": 40, "max_workers": 8},
    ),
    Job(
        "reminders",
        "ir_cron_send_reminders",
        "gateway",
        reminders_give_work,
        reminders_finished,
        (0.0, 1.5),
        {},
        reminders_idle,
        receipts_settle,
    ),
)


class Context(NamedTuple):
    db: Database
    server: OdooServer
    sandbox: SandboxServer
    gateway: GatewayServer
    config: int
    crons: dict


def poke(ctx, job):
    """Make the job due now (a trigger, as Sync Now or its schedule would)
    and wake the cron workers, which otherwise poll once a minute."""
    ctx.db.trigger(ctx.crons[job.cron])
    ctx.db.wake_cron_workers()


def requests_to(ctx, endpoint):
    if endpoint == "gateway":
        return len(ctx.gateway.requests("webhook"))
    return ctx.sandbox.stats()["by_endpoint"].get(endpoint, 0)


def run_job(ctx, job, rng, kills_wanted):
    """Kill the server during ``job`` until ``kills_wanted`` kills hit it
    with work left, then let it finish. Returns (kills, kills after its end)."""
    for other in JOBS:  # one job at a time: its kills are its own
        ctx.db.rows(
            "UPDATE ir_cron SET active = %s WHERE id = %s",
            (other is job, ctx.crons[other.cron]),
        )
    for column, value in job.settings.items():
        query = sql.SQL("UPDATE sicantik_config SET {} = %s WHERE id = %s")
        ctx.db.rows(query.format(sql.Identifier(column)), (value, ctx.config))
    job.give_work(ctx)
    kills = late = 0
    while kills < kills_wanted:
        if (job.idle or job.finished)(ctx):
            job.give_work(ctx)  # ended before enough kills: once more
        seen = requests_to(ctx, job.endpoint)
        ctx.server.start()
        wait_for(
            lambda seen=seen: requests_to(ctx, job.endpoint) > seen,
            START_DEADLINE,
            f"the {job.name} job to start after a restart",
            poke=lambda: poke(ctx, job),
        )
        delay = rng.uniform(*job.kill_window)
        time.sleep(delay)  # the random kill point
        ctx.server.kill(ctx.db)
        if job.finished(ctx):
            late += 1  # it ended before the kill: not a kill during the job
        else:
            kills += 1
        say(
            f"  {job.name}: kill {kills + late} at +{delay:.2f} s after its "
            f"first request ({requests_to(ctx, job.endpoint) - seen} requests)"
        )
    ctx.server.start()
    wait_for(
        lambda: job.finished(ctx),
        TOTAL_DEADLINE,
        f"the {job.name} job to finish",
        poke=lambda: poke(ctx, job),
        every=0.5,
    )
    if job.settle:
        job.settle(ctx)
    ctx.server.stop(ctx.db)
    # Killed callbacks must not have cost the job its schedule.
    alive = ctx.db.value(
        "SELECT active FROM ir_cron WHERE id = %s", (ctx.crons[job.cron],)
    )
    return kills, late, alive


def double_sends(ctx):
    """(reminders delivered, delivered more than once, unknown outcomes)."""
    delivered, doubles = gateway_double_sends(ctx.gateway)
    unknown = ctx.db.value(
        "SELECT count(*) FROM sicantik_notification WHERE config_id = %s "
        "AND failure_type = 'unknown'",
        (ctx.config,),
    )
    return delivered, doubles, unknown


def check(ctx):
    """The figures: permits lost, duplicates, wrong dates, rows left running."""
    figures = permit_figures(ctx.db, ctx.sandbox.dataset, ctx.config)
    figures["duplicates"] += holder_duplicates(ctx.db)
    figures["running"] = rows_left_running(ctx.db)
    figures["interrupted"] = ctx.db.value(
        "SELECT count(*) FROM sicantik_sync_log WHERE state = 'interrupted'"
    )
    return figures


def set_up_text(sandbox_url, gateway):
    """The ``odoo-bin shell`` set-up: one connector on the sandbox, its
    reminders through the webhook of ``gateway``, receipts signed."""
    return setup_script(
        "KILLTEST",
        [connector_values("Kill test", sandbox_url, rate_limit=10, max_workers=4)],
        webhook_provider_values(
            "Kill test webhook", gateway, webhook_secret=RECEIPT_SECRET
        ),
        params={
            # Short callbacks with a commit per page or chunk: many kill points.
            "cron_time_budget": "2",
            "expiry_chunk_size": "20",
            # A claim older than a few seconds belongs to a killed worker.
            "reminder_stale_seconds": "5",
        },
    )


def set_up(odoo, sandbox, gateway):
    """Run the set-up in ``odoo-bin shell``: {"configs": [id], "crons": ...}."""
    return odoo.shell(set_up_text(sandbox.url, gateway), "KILLTEST")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kills", type=int, default=20, help="per job")
    parser.add_argument("--permits", type=int, default=3000)
    parser.add_argument("--keep", action="store_true", help="keep the database")
    return parser.parse_args()


def run_jobs(ctx, rng, kills_per_job):
    """Every job of JOBS in turn; returns (kills during jobs, jobs deactivated)."""
    total = deactivated = 0
    for job in JOBS:
        kills, late, alive = run_job(ctx, job, rng, kills_per_job)
        total += kills
        deactivated += not alive
        say(
            f"{job.name}: {kills} kills during the job"
            + (f" ({late} more after it had ended)" if late else "")
            + f", then finished; its schedule {'active' if alive else 'OFF'}"
        )
    return total, deactivated


def report(ctx, total, deactivated, started):
    """Print the figures; returns what went wrong (empty: nothing)."""
    delivered, doubles, unknown = double_sends(ctx)
    say(
        f"reminders: {delivered} delivered to the gateway, {unknown} left as "
        "outcome unknown for staff (killed between claim and answer)"
    )
    receipts, receipts_lost, states_wrong = receipt_figures(ctx)
    say(
        f"receipts: {receipts} posted back (duplicates included), "
        f"receipts lost={receipts_lost} receipt states wrong={states_wrong}"
    )
    figures = check(ctx)
    elapsed = time.monotonic() - started
    for pid, got, expected in figures["mismatches"][:10]:
        say(f"  expiry mismatch {pid}: stored {got}, sandbox {expected}")
    say(
        f"checks: {figures['served']} permits served, expiry mismatches="
        f"{len(figures['mismatches'])} unknown permits={figures['extra']} "
        f"rows left running={figures['running']} runs closed as interrupted="
        f"{figures['interrupted']} jobs deactivated={deactivated} "
        f"in {elapsed:.0f} s"
    )
    say(
        f"kills survived={total} permits lost={figures['lost']} "
        f"duplicates={figures['duplicates']} double sends={doubles}"
    )
    problems = {
        "permits lost": figures["lost"],
        "unknown permits": figures["extra"],
        "duplicates": figures["duplicates"],
        "expiry mismatches": len(figures["mismatches"]),
        "rows left running": figures["running"],
        "double sends": doubles,
        "receipts lost": receipts_lost,
        "receipt states wrong": states_wrong,
        "no receipt posted": not receipts,
        "no reminder delivered": not delivered,
        "jobs deactivated": deactivated,
    }
    return [what for what, value in problems.items() if value]


def main():
    args = parse_args()
    faulthandler.register(signal.SIGUSR1)  # a stack dump on demand, if stuck
    started = time.monotonic()
    settings = odoo_settings()
    if settings is None:
        raise SystemExit(
            "kill-test: run it with `make kill-test` (python3 dev/devtool.py "
            "kill-test), which finds Odoo 18 and PostgreSQL first"
        )
    cmd, paths, data_dir = settings
    name = f"sicantik_kill_{os.getpid()}"
    odoo = Odoo(cmd, name, paths, data_dir, CACHE / f"{name}.log")
    sandbox = SandboxServer(permits=args.permits, seed=args.seed).start()
    sandbox.configure(latency=0.05, jitter=0.02)
    gateway = GatewayServer().start()
    db = Database(name)
    drop(name)
    try:
        odoo.install()
        setup = set_up(odoo, sandbox, gateway)
        db.open()
        port = free_port()
        # Receipts come back signed, a little later, twice and newest first.
        gateway.send_receipts(
            "webhook",
            f"http://127.0.0.1:{port}/sicantik/whatsapp/{setup['webhook_token']}",
            secret=RECEIPT_SECRET,
            delay=0.3,
            duplicate=True,
            out_of_order=True,
        )
        ctx = Context(
            db, odoo.server(port), sandbox, gateway, setup["configs"][0], setup["crons"]
        )
        listed = len({p.pendaftaran_id for p, _who in sandbox.dataset.rows})
        say(
            f"kill-test: sandbox {args.permits} permits ({listed} listed), "
            f"seed {args.seed}, {args.kills} kills per job, 2 cron workers"
        )
        total, deactivated = run_jobs(ctx, random.Random(args.seed), args.kills)
        bad = report(ctx, total, deactivated, started)
        if total < args.kills * len(JOBS):
            bad.append("too few kills")
        if bad:
            say(f"kill-test: failed: {', '.join(bad)}")
        elif not args.keep:
            odoo.logfile.unlink(missing_ok=True)
        return 1 if bad else 0
    finally:
        db.close()
        sandbox.stop()
        gateway.stop()
        if not args.keep:
            drop(name)


if __name__ == "__main__":
    sys.exit(main())
