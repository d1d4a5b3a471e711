#!/usr/bin/env python3
"""Deployment proof: one rate limit across 2 prefork Odoo servers, then kills.

``make deploy-test`` (that is ``python3 dev/devtool.py deploy-test``) builds
what a bigger office runs: one database with the addon, two Odoo servers in
prefork mode on it (``--workers 2 --max-cron-threads 2`` each, their own
ports), two connectors at 10 requests/s pointing at ONE SICANTIK server (the
sandbox, 300 ms +/- 100 ms latency), and a loopback WhatsApp webhook gateway.

1. listing: both connectors' permit syncs, run by the servers' cron workers;
2. load: both connectors' expiry syncs and a new permit sync pass of each at
   the same time, while a SICANTIK manager presses Test Connection and Test
   Expiry Sync over JSON-RPC on either server. Once the permit passes have
   ended, the expiry phase (presses going on) is measured: the combined
   throughput the sandbox saw must be >= 0.90 of the bound;
3. kills: one of the servers, picked at random, is SIGKILLed (its whole
   process group: master, workers, gevent) at seeded random points and
   restarted, at least ``--kills`` times, while the expiry syncs and the
   reminder jobs run; then everything is left to finish.

Checks: the sandbox never saw more than 10 requests in any sliding one-second
window (its own peak, and every arrival's window over the whole run), every
permit is stored once per connector with the sandbox's expiry outcome, no
run is left running or ended on an unexpected error (a kill leaves a run
"interrupted", which is expected), the jobs are still scheduled, and the
gateway never got one reminder twice. It ends with one line of figures::

    deploy servers=2 connectors=2 peak_1s=10 limit=10 violations=0 ratio=0.96
    kills=12 lost=0 duplicates=0 double_sends=0 job_errors=0

(on one line), exit status 1 when a figure misses its target.
Options: ``--seed``, ``--kills``, ``--permits``, ``--load-seconds``, ``--keep``,
``--trace``.
"""

import argparse
import faulthandler
import json
import os
import random
import secrets
import signal
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    ArrivalLog,
    odoo_settings,
    over_limit,
    rate_ratio,
    window_figures,
)
from bench.deployment import (  # noqa: E402
    CACHE,
    JOB_CRONS,
    Database,
    JsonRpc,
    Odoo,
    Poker,
    RpcError,
    connector_values,
    drop,
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

PROG = "deploy-test"
LIMIT = 10  # requests per second, the server's tolerance
SERVERS = 2
LATENCY, JITTER = 0.3, 0.1
MIN_RATIO = 0.90
PRESS_EVERY = 2.0  # seconds between two button presses during the load
KILL_WINDOW = (0.5, 6.0)  # seconds after a restarted server answers
# Seconds: to start the load, and to finish after the last kill.
START_DEADLINE = 120
FINISH_DEADLINE = 15 * 60
# The 09:00 scan logs every run: made due every few seconds only.
RARE_POKES = {"ir_cron_check_expiring": 5.0}


def set_up_text(sandbox_url, gateway, password):
    """The ``odoo-bin shell`` set-up: two connectors on the sandbox, their
    reminders through the webhook of ``gateway``, and the SICANTIK manager
    who presses the buttons (with ``password``)."""
    return setup_script(
        "DEPLOYTEST",
        [
            connector_values(
                f"Deploy test {n}", sandbox_url, rate_limit=LIMIT, max_workers=8
            )
            for n in (1, 2)
        ],
        webhook_provider_values("Deploy test webhook", gateway),
        # A claim older than a few seconds belongs to a killed worker.
        params={"reminder_stale_seconds": "5"},
        manager={
            "name": "Deploy test manager",
            "login": "deploy_manager",
            "password": password,
        },
    )


# What --trace logs: the PostgreSQL limiter's every claim and slot (DEBUG),
# the addon's jobs, the crons and the retries of requests that lost a race.
TRACE_LOGS = (
    ("odoo.addons.sicantik_connector.tools.pg_rate_limiter", "DEBUG"),
    ("odoo.addons.sicantik_connector", "INFO"),
    ("odoo.addons.base.models.ir_cron", "INFO"),
    ("odoo.service.model", "INFO"),
)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kills", type=int, default=12)
    parser.add_argument("--permits", type=int, default=1500)
    parser.add_argument(
        "--load-seconds", type=float, default=60.0, help="length of the load phase"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument(
        "--trace",
        action="store_true",
        help="log every slot claimed and used (Odoo log) and every arrival "
        "(a JSON file beside it), to tell a late send from a late stamp",
    )
    return parser.parse_args()


class Deployment:
    """The database, the servers, the sandbox and what the test did to them."""

    def __init__(self, odoo, db, servers, sandbox, gateway, setup, log):
        self.odoo = odoo
        self.log = log
        self.marks = []  # (phase, its start on the sandbox's clock)
        self.db = db
        self.servers = servers
        self.sandbox = sandbox
        self.gateway = gateway
        self.configs = setup["configs"]
        self.crons = setup["crons"]
        self.login = setup["login"]
        self.poker = Poker(db.name, application_name=PROG)

    def mark(self, phase):
        self.marks.append((phase, self.log.clock()))

    # -- work --------------------------------------------------------------
    def request_permit_syncs(self):
        self.db.rows(
            "UPDATE sicantik_config SET sync_requested = true WHERE id = ANY(%s)",
            (self.configs,),
        )

    def make_expiry_due(self, db=None):
        (db or self.db).rows(
            "UPDATE sicantik_permit SET next_expiry_check = now() at time zone 'UTC' "
            "WHERE config_id = ANY(%s) AND next_expiry_check IS NOT NULL",
            (self.configs,),
        )

    def set_crons(self, *names):
        """Only these of the addon's jobs may run."""
        for name in JOB_CRONS:
            self.db.rows(
                "UPDATE ir_cron SET active = %s WHERE id = %s",
                (name in names, self.crons[name]),
            )
        self.poker.crons = {
            self.crons[name]: RARE_POKES.get(name, Poker.TICK) for name in names
        }

    # -- state -------------------------------------------------------------
    def permits_idle(self, db=None):
        return not (db or self.db).value(
            "SELECT count(*) FROM sicantik_config WHERE id = ANY(%s) AND "
            "(sync_pass_state != 'idle' OR sync_requested OR sync_log_id IS NOT NULL)",
            (self.configs,),
        )

    def expiry_left(self):
        return self.db.value(
            "SELECT count(*) FROM sicantik_permit WHERE config_id = ANY(%s) "
            "AND next_expiry_check <= now() at time zone 'UTC'",
            (self.configs,),
        )

    def expiry_idle(self):
        running = self.db.value(
            "SELECT count(*) FROM sicantik_config WHERE id = ANY(%s) "
            "AND expiry_log_id IS NOT NULL",
            (self.configs,),
        )
        return not running and not self.expiry_left()

    def reminders_idle(self):
        return not self.db.value(
            "SELECT count(*) FROM sicantik_notification WHERE config_id = ANY(%s) "
            "AND state IN ('queued', 'sending')",
            (self.configs,),
        )

    def finished(self):
        return self.permits_idle() and self.expiry_idle() and self.reminders_idle()

    def in_jobs(self, server):
        """Run locks (advisory) that the processes of ``server`` hold now."""
        names = [f"odoo-{pid}" for pid in server._pids()]
        return self.db.value(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted "
            "AND a.application_name = ANY(%s)",
            (names,),
        )

    def start_poker(self):
        self.poker.start()

    def stop_poker(self):
        self.poker.stop()


class Presser:
    """A SICANTIK manager pressing Test Connection and Test Expiry Sync, in
    turn on each connector and each server, while the load runs."""

    BUTTONS = ("action_test_connection", "action_test_expiry_sync")

    def __init__(self, deployment, password, rng):
        self.deployment = deployment
        self.sessions = [
            JsonRpc(server.port, deployment.db.name, deployment.login, password)
            for server in deployment.servers
        ]
        self.rng = rng
        self.outcomes = {button: {} for button in self.BUTTONS}
        self.errors = []
        self._stop = threading.Event()
        self._thread = None

    def press(self, n):
        button = self.BUTTONS[n % 2]
        config = self.deployment.configs[(n // 2) % len(self.deployment.configs)]
        session = self.sessions[(n // 4) % len(self.sessions)]
        try:
            session.call("sicantik.config", button, [config])
            outcome = "ran"
        except RpcError as err:
            # A refusal (the job runs) is a UserError; anything else is not.
            outcome = "refused" if err.user_error else "error"
            if not err.user_error:
                self.errors.append(str(err)[:300])
        except Exception as err:  # noqa: BLE001 (counted, reported)
            outcome = "error"
            self.errors.append(repr(err)[:300])
        counts = self.outcomes[button]
        counts[outcome] = counts.get(outcome, 0) + 1

    def start(self):
        def loop():
            n = 0
            while not self._stop.is_set():
                self.press(n)
                n += 1
                self._stop.wait(self.rng.uniform(0.5, 1.5) * PRESS_EVERY)

        self._thread = threading.Thread(target=loop, name="presser", daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(180)
        for session in self.sessions:
            session.close()

    def summary(self):
        parts = []
        for button, counts in self.outcomes.items():
            text = " ".join(f"{k}={v}" for k, v in sorted(counts.items()))
            parts.append(f"{button.removeprefix('action_')}: {text or 'none'}")
        return "; ".join(parts)

    def problems(self):
        bad = []
        if self.errors:
            bad.append(f"{len(self.errors)} presses failed ({self.errors[0]})")
        for button, counts in self.outcomes.items():
            if not counts.get("ran"):
                bad.append(f"{button} never ran")
        return bad


def listing(dep):
    """Phase 1: the permit syncs of both connectors, on both servers."""
    started = time.monotonic()
    dep.mark("listing")
    dep.set_crons("ir_cron_sync_permits")
    dep.request_permit_syncs()
    wait_for(dep.permits_idle, START_DEADLINE * 2, "the first permit syncs", prog=PROG)
    stored = dep.db.value(
        "SELECT count(*) FROM sicantik_permit WHERE config_id = ANY(%s)",
        (dep.configs,),
    )
    say(
        f"{PROG}: listing: {stored} permits stored by 2 connectors in "
        f"{time.monotonic() - started:.1f} s"
    )


def load(dep, presser, log, seconds):
    """Phase 2: both expiry syncs, a new permit pass of both connectors and
    button presses, all at once; once the permit passes have ended, the
    expiry phase (presses going on) is measured for ``seconds``.
    Returns (start, end) of the measured span on the sandbox's clock."""
    dep.mark("together")
    dep.make_expiry_due()
    dep.request_permit_syncs()
    dep.set_crons("ir_cron_sync_permits", "ir_cron_sync_expiry_dates")
    presser.start()
    started = time.monotonic()
    wait_for(
        lambda: log.first("cekperizinan") is not None,
        START_DEADLINE,
        "the expiry syncs to start",
        prog=PROG,
    )
    wait_for(dep.permits_idle, FINISH_DEADLINE, "the permit passes", prog=PROG)
    say(
        f"{PROG}: permit passes and expiry syncs together for "
        f"{time.monotonic() - started:.1f} s"
    )
    dep.mark("expiry")
    start = log.clock()
    time.sleep(seconds)
    end = log.clock()
    presser.stop()
    left = dep.expiry_left()
    say(
        f"{PROG}: expiry phase: {seconds:.0f} s measured with presses going on; "
        f"{left} permits still due at its end"
    )
    if not left:
        say(f"{PROG}: warning: the expiry syncs ended inside the measured span")
    return start, end


def kills(dep, rng, wanted):
    """Phase 3: SIGKILL a random server at random points, restart it.
    Returns (kills while work was left, of which inside a job's run lock)."""
    dep.mark("kills")
    dep.set_crons(*JOB_CRONS)
    done = in_job = 0
    while done < wanted:
        if dep.finished():
            dep.make_expiry_due()  # ended before enough kills: once more
            dep.request_permit_syncs()
        victim = rng.randrange(len(dep.servers))
        server = dep.servers[victim]
        delay = rng.uniform(*KILL_WINDOW)
        time.sleep(delay)  # the random kill point
        locks = dep.in_jobs(server)
        left = not dep.finished()
        server.kill(dep.db)
        done += left
        in_job += bool(locks and left)
        say(
            f"  kill {done}: server {victim + 1} at +{delay:.2f} s "
            f"({locks} run locks held{'' if left else ', work had ended'})"
        )
        server.start()
        server.wait_serving()
    return done, in_job


def finish(dep):
    """Phase 4: no new work; let every job end, then check the reminders
    of the last expiry dates too."""
    dep.mark("finish")
    wait_for(dep.finished, FINISH_DEADLINE, "the jobs to finish", every=0.5, prog=PROG)
    cron = dep.crons["ir_cron_check_expiring"]
    before = dep.db.value("SELECT lastcall FROM ir_cron WHERE id = %s", (cron,))
    wait_for(
        lambda: dep.db.value("SELECT lastcall FROM ir_cron WHERE id = %s", (cron,))
        != before,
        START_DEADLINE,
        "the reminder scan after the last expiry date",
        prog=PROG,
    )
    wait_for(dep.finished, FINISH_DEADLINE, "the last reminders", every=0.5, prog=PROG)
    dep.stop_poker()
    for server in dep.servers:
        server.stop(dep.db)


def write_trace(path, dep, log):
    """Every arrival (kernel and handler stamps) on the wall clock, and the
    phase marks, for comparison with the slots in the Odoo log."""
    to_wall = time.time() - log.clock()
    path.write_text(
        json.dumps(
            {
                "marks": [(name, t + to_wall) for name, t in dep.marks],
                "arrivals": [
                    (at + to_wall, endpoint, handled + to_wall)
                    for at, endpoint, handled in log.arrivals
                ],
            }
        )
    )
    say(f"{PROG}: trace in {path} and {dep.odoo.logfile}")


def by_phase(marks, times, over):
    """Requests and arrivals over the limit in each phase of the run."""
    starts = [t for _name, t in marks]
    parts = []
    for n, (name, start) in enumerate(marks):
        end = starts[n + 1] if n + 1 < len(starts) else float("inf")
        count = sum(1 for t in times if start <= t < end)
        bad = sum(1 for t in over if start <= t < end)
        parts.append(f"{name} {count} requests, {bad} over the limit")
    return "; ".join(parts)


def figures(dep, log, span, kill_counts, presser):
    """The checks; returns (line, problems)."""
    stats = dep.sandbox.stats()
    times = log.times()
    peak, violations = window_figures(times, LIMIT)
    ratio = rate_ratio(times, *span, LIMIT)
    lost = duplicates = extra = 0
    mismatches = []
    for config in dep.configs:
        got = permit_figures(dep.db, dep.sandbox.dataset, config)
        lost += got["lost"]
        duplicates += got["duplicates"]
        extra += got["extra"]
        mismatches += got["mismatches"]
    duplicates += holder_duplicates(dep.db)
    running = rows_left_running(dep.db)
    delivered, doubles = gateway_double_sends(dep.gateway)
    unknown = dep.db.value(
        "SELECT count(*) FROM sicantik_notification WHERE failure_type = 'unknown'"
    )
    deactivated = dep.db.value(
        "SELECT count(*) FROM ir_cron WHERE id = ANY(%s) AND NOT active",
        (list(dep.crons.values()),),
    )
    killed, in_job = kill_counts
    # Runs a job closed on an unexpected error (a kill leaves "interrupted").
    errors, conflicts = dep.db.rows(
        "SELECT count(*), count(*) FILTER (WHERE error_detail ~ "
        "'could not serialize|deadlock detected') FROM sicantik_sync_log "
        "WHERE failure_type = 'internal'"
    )[0]
    for pid, stored, expected in mismatches[:10]:
        say(f"  expiry mismatch {pid}: stored {stored}, sandbox {expected}")
    say(
        f"{PROG}: sandbox {stats['requests']} requests "
        f"({json.dumps(stats['by_endpoint'], sort_keys=True)}), its own sliding "
        f"peak {stats['peak_rate']}/s (calendar {stats['peak_rate_calendar']}/s); "
        f"presses: {presser.summary()}"
    )
    say(
        f"{PROG}: checks: {len(mismatches)} expiry mismatches, {extra} unknown "
        f"permits, {running} rows left running, {deactivated} jobs deactivated, "
        f"{delivered} reminders delivered ({unknown} outcome unknown), "
        f"{in_job} of {killed} kills inside a job's run lock; {errors} runs "
        f"ended on an unexpected error ({conflicts} of them PostgreSQL "
        "concurrent-update conflicts)"
    )
    say(f"{PROG}: by phase: {by_phase(dep.marks, times, over_limit(times, LIMIT))}")
    handled = log.handled()
    say(
        f"{PROG}: on the sandbox handlers' own stamps (its scheduling "
        f"included): peak {window_figures(handled, LIMIT)[0]}/s; by phase: "
        f"{by_phase(dep.marks, handled, over_limit(handled, LIMIT))}"
    )
    peak = max(peak, stats["peak_rate"])
    line = (
        f"deploy servers={len(dep.servers)} connectors={len(dep.configs)} "
        f"peak_1s={peak} limit={LIMIT} violations={violations} ratio={ratio:.2f} "
        f"kills={killed} lost={lost} duplicates={duplicates} "
        f"double_sends={doubles} job_errors={errors}"
    )
    problems = {
        "over the limit": peak > LIMIT or violations,
        f"ratio under {MIN_RATIO}": ratio < MIN_RATIO,
        "permits lost": lost,
        "duplicates": duplicates,
        "unknown permits": extra,
        "expiry mismatches": len(mismatches),
        "rows left running": running,
        "double sends": doubles,
        "no reminder delivered": not delivered,
        "jobs deactivated": deactivated,
        "runs ended on an unexpected error": errors,
    }
    return line, [what for what, bad in problems.items() if bad] + presser.problems()


def main():
    args = parse_args()
    faulthandler.register(signal.SIGUSR1)  # a stack dump on demand, if stuck
    started = time.monotonic()
    settings = odoo_settings()
    if settings is None:
        raise SystemExit(
            f"{PROG}: run it with `make deploy-test` (python3 dev/devtool.py "
            "deploy-test), which finds Odoo 18 and PostgreSQL first"
        )
    cmd, paths, data_dir = settings
    name = f"sicantik_deploy_{os.getpid()}"
    odoo = Odoo(cmd, name, paths, data_dir, CACHE / f"{name}.log", prog=PROG)
    sandbox = SandboxServer(permits=args.permits, seed=args.seed).start()
    sandbox.configure(latency=LATENCY, jitter=JITTER, seed=args.seed)
    log = ArrivalLog(sandbox)
    gateway = GatewayServer().start()
    db = Database(name, application_name=PROG)
    password = secrets.token_urlsafe(16)
    servers = []
    dep = None
    drop(name)
    try:
        odoo.install()
        setup = odoo.shell(set_up_text(sandbox.url, gateway, password), "DEPLOYTEST")
        db.open()
        extra = ()
        if args.trace:
            extra = tuple(f"--log-handler={name}:{level}" for name, level in TRACE_LOGS)
        servers = [odoo.prefork_server(extra=extra) for _n in range(SERVERS)]
        dep = Deployment(odoo, db, servers, sandbox, gateway, setup, log)
        dep.set_crons()
        for server in servers:
            server.start()
        for server in servers:
            server.wait_serving()
        say(
            f"{PROG}: {SERVERS} prefork servers (2 HTTP + 2 cron workers each) on "
            f"ports {', '.join(str(s.port) for s in servers)}; sandbox "
            f"{args.permits} permits at {LATENCY * 1000:.0f} ms +/- "
            f"{JITTER * 1000:.0f} ms; 2 connectors at {LIMIT} requests/s; "
            f"seed {args.seed}"
        )
        rng = random.Random(args.seed)
        dep.start_poker()
        listing(dep)
        presser = Presser(dep, password, rng)
        span = load(dep, presser, log, args.load_seconds)
        kill_counts = kills(dep, rng, args.kills)
        finish(dep)
        line, bad = figures(dep, log, span, kill_counts, presser)
        if args.trace:
            write_trace(odoo.logfile.with_suffix(".arrivals.json"), dep, log)
        if kill_counts[0] < args.kills:
            bad.append("too few kills")
        say(f"{PROG}: {time.monotonic() - started:.0f} s in all")
        say(line)
        if bad:
            say(f"{PROG}: failed: {', '.join(bad)}")
        elif not (args.keep or args.trace):
            odoo.logfile.unlink(missing_ok=True)
        return 1 if bad else 0
    finally:
        if dep is not None:
            dep.stop_poker()
        for server in servers:
            if server.running:
                server.kill(db)
        db.close()
        sandbox.stop()
        gateway.stop()
        if not args.keep:
            drop(name)


if __name__ == "__main__":
    sys.exit(main())
