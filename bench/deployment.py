"""Real Odoo processes on a throwaway database, for the tests that kill them.

``dev/kill_test.py``, ``dev/deploy_test.py`` and the ``expiry_sync_deploy``
benchmark share this: install the addon into a fresh database, run a script
in ``odoo-bin shell`` (the two dev tests render theirs from one template,
:func:`setup_script`), start Odoo servers (threaded, or prefork with HTTP and
cron workers), SIGKILL them and wait until PostgreSQL has ended their
sessions, poke the cron workers, read the figures back with plain SQL.

Pure standard library plus psycopg2: it runs in the interpreter that ``make``
finds Odoo in, never imports Odoo itself.
"""

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import NamedTuple

import psycopg2
from psycopg2 import sql

from sandbox.data import ZERO_DATE

ADDON = "sicantik_connector"
CACHE = Path(
    os.environ.get("SICANTIK_CACHE") or Path.home() / ".cache" / "sicantik_connector"
)


def say(message):
    print(message, flush=True)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port):
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for(predicate, deadline, what, poke=None, every=0.25, prog="kill-test"):
    """Poll ``predicate`` until true (calling ``poke`` between polls)."""
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            raise SystemExit(f"{prog}: gave up waiting for {what}")
        if poke:
            poke()
        time.sleep(every)


class Database:
    """The test's own connection (autocommit): set-up, pokes and checks."""

    def __init__(self, name, application_name="kill-test"):
        self.name = name
        self.application_name = application_name
        self.conn = self.bell = None

    def open(self):
        self.conn = psycopg2.connect(
            dbname=self.name, application_name=self.application_name
        )
        self.conn.autocommit = True
        # Cron workers LISTEN on the "postgres" database, as Odoo notifies.
        self.bell = psycopg2.connect(
            dbname="postgres", application_name=self.application_name
        )
        self.bell.autocommit = True

    def wake_cron_workers(self):
        with self.bell.cursor() as cr:
            cr.execute("SELECT pg_notify('cron_trigger', %s)", (self.name,))

    def trigger(self, cron):
        """Make the cron ``cron`` (id) due now, unless a due trigger waits."""
        self.rows(
            """INSERT INTO ir_cron_trigger (cron_id, call_at, create_date, write_date)
               SELECT %(cron)s, now() at time zone 'UTC', now() at time zone 'UTC',
                      now() at time zone 'UTC'
                WHERE NOT EXISTS (SELECT 1 FROM ir_cron_trigger WHERE cron_id = %(cron)s
                                  AND call_at <= now() at time zone 'UTC')""",
            {"cron": cron},
        )

    def rows(self, query, params=()):
        with self.conn.cursor() as cr:
            cr.execute(query, params)
            return cr.fetchall() if cr.description else []

    def value(self, query, params=()):
        rows = self.rows(query, params)
        return rows[0][0] if rows else None

    def close(self):
        for conn in (self.conn, self.bell):
            if conn:
                conn.close()


def _group_pids(pgid):
    """The live processes of the process group ``pgid`` (Linux /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # ended meanwhile
        # pid (comm) state ppid pgrp ...: comm may hold spaces, split after it
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid:
            pids.append(int(entry.name))
    return pids


class OdooServer:
    """A real Odoo server process on the database, killed and restarted.

    With ``group`` (a prefork server: a master, its HTTP and cron workers and
    the gevent process) the server runs in a process group of its own and a
    kill ends the whole group at once, as a crash of its machine would: a
    worker that outlived its master would finish its callback first.
    """

    def __init__(self, cmd, logfile, *, group=False, prog="kill-test", port=None):
        self.cmd = cmd
        self.logfile = logfile
        self.group = group
        self.prog = prog
        self.port = port  # HTTP port, when the caller talks to it
        self.proc = None

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self):
        env = dict(os.environ, ODOO_NOTIFY_CRON_CHANGES="1")
        with open(self.logfile, "a") as log:
            self.proc = subprocess.Popen(
                self.cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=CACHE,
                start_new_session=self.group,
            )

    def wait_serving(self, deadline=120):
        """Wait until the HTTP port answers (a prefork server's workers run)."""
        wait_for(
            lambda: port_open(self.port) or not self.running,
            deadline,
            f"the Odoo server on port {self.port} to answer",
            prog=self.prog,
        )
        if not self.running:
            raise SystemExit(f"{self.prog}: the Odoo server died, see {self.logfile}")

    def _pids(self):
        return _group_pids(self.proc.pid) if self.group else [self.proc.pid]

    def kill(self, db):
        pids = self._pids()
        if self.group:
            os.killpg(self.proc.pid, signal.SIGKILL)
        else:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._gone(db, pids)

    def stop(self, db):
        pids = self._pids()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            if self.group:
                os.killpg(self.proc.pid, signal.SIGKILL)
            else:
                self.proc.kill()
            self.proc.wait()
        self._gone(db, pids)

    def _gone(self, db, pids):
        # PostgreSQL ends the dead processes' sessions (and drops their
        # locks) on its own; the next server starts once they are gone.
        names = [f"odoo-{pid}" for pid in pids]
        wait_for(
            lambda: not db.value(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE application_name = ANY(%s)",
                (names,),
            ),
            30,
            f"the sessions of the killed server {pids[0]} to end",
            prog=self.prog,
        )


def drop(name):
    conn = psycopg2.connect(dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cr:
        cr.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)
            )
        )
    conn.close()


class Odoo(NamedTuple):
    """How to start Odoo on the test's database, and where it logs."""

    cmd: list  # odoo-bin and the interpreter before it
    name: str  # the database
    paths: str  # addons path
    data_dir: str
    logfile: Path
    prog: str = "kill-test"  # the command, in its messages

    def options(self):
        extra = ["--data-dir", self.data_dir] if self.data_dir else []
        return ["--database", self.name, "--addons-path", self.paths, *extra]

    def install(self, announce=True):
        if announce:  # a benchmark prints its one line only
            say(
                f"{self.prog}: installing {ADDON} into {self.name} "
                f"(log: {self.logfile})"
            )
        with open(self.logfile, "a") as log:
            install = subprocess.run(
                [*self.cmd, *self.options(), "--init", ADDON, "--without-demo",
                 "all", "--stop-after-init", "--no-http", "--max-cron-threads",
                 "0", "--log-level", "warn", "--logfile", str(self.logfile)],
                stdout=log, stderr=subprocess.STDOUT, cwd=CACHE, check=False,
            )  # fmt: skip
        if install.returncode:
            raise SystemExit(
                f"{self.prog}: installing {ADDON} failed, see {self.logfile}"
            )

    def shell(self, script, marker):
        """Run ``script`` in ``odoo-bin shell``; it prints ``marker`` then a
        JSON value on one line, which is returned."""
        shell = subprocess.run(
            [*self.cmd, "shell", *self.options(), "--no-http", "--log-level",
             "warn", "--logfile", str(self.logfile)],
            input=script, capture_output=True, text=True, cwd=CACHE, check=False,
        )  # fmt: skip
        line = next(
            (x for x in shell.stdout.splitlines() if x.startswith(marker + " ")), None
        )
        if not line:
            raise SystemExit(f"{self.prog}: set-up failed:\n{shell.stderr[-2000:]}")
        return json.loads(line.split(" ", 1)[1])

    def server(self, port=None):
        """The server that is killed: two cron workers, only this database.
        A fixed ``port`` keeps its address across restarts (receipts go to it)."""
        return OdooServer(
            [*self.cmd, *self.options(), "--http-interface", "127.0.0.1",
             "--http-port", str(port or free_port()), "--max-cron-threads", "2",
             "--limit-time-real-cron", "120", "--db-filter", f"^{self.name}$",
             "--log-level", "warn", "--logfile", str(self.logfile)],
            self.logfile,
            prog=self.prog,
        )  # fmt: skip

    def prefork_server(self, workers=2, cron_workers=2, extra=()):
        """A server in prefork mode (HTTP workers, cron workers, the gevent
        process) on its own ports, as a production deployment runs it, with
        ``extra`` command-line options.

        It runs at the sandbox's priority: the sandbox counts arrivals at
        the kernel's receive time (``sandbox/wire.py``), so its own
        scheduling does not bend the count, and the Odoo processes get no
        help against the machine's contention."""
        port = free_port()
        return OdooServer(
            [*self.cmd, *self.options(), "--http-interface", "127.0.0.1",
             "--http-port", str(port), "--gevent-port", str(free_port()),
             "--workers", str(workers), "--max-cron-threads", str(cron_workers),
             "--limit-time-real-cron", "120", "--db-filter", f"^{self.name}$",
             "--log-level", "warn", "--logfile", str(self.logfile), *extra],
            self.logfile,
            group=True,
            prog=self.prog,
            port=port,
        )  # fmt: skip


# The addon's jobs, by the xml id (without the module) of their cron.
JOB_CRONS = (
    "ir_cron_sync_permits",
    "ir_cron_sync_expiry_dates",
    "ir_cron_check_expiring",
    "ir_cron_send_reminders",
)

# Run inside ``odoo-bin shell`` once the addon is installed, after the line
# ``spec = {...}`` that :func:`setup_script` puts first: plain Python, no
# format braces to double, whatever the test's values hold.
SETUP_SCRIPT = """
import json

env["sicantik.config"].search([]).write({"active": False})
ICP = env["ir.config_parameter"].sudo()
# The sandbox and the gateway listen on loopback: allowed, as an
# administrator allows a server of the office network.
ICP.set_param("sicantik_connector.allowed_hosts", "127.0.0.1 localhost ::1")
for key, value in spec["params"].items():
    ICP.set_param("sicantik_connector." + key, value)
provider = env["sicantik.whatsapp.provider"]
if spec["provider"]:
    provider = provider.create(spec["provider"])
configs = env["sicantik.config"].create(
    [{**values, "whatsapp_provider_id": provider.id} for values in spec["connectors"]]
)
manager = env["res.users"]
if spec["manager"]:
    manager = manager.create({
        **spec["manager"],
        "groups_id": [(6, 0, [
            env.ref("base.group_user").id,
            env.ref("sicantik_connector.sicantik_connector_group_manager").id,
        ])],
    })
crons = {name: env.ref("sicantik_connector." + name).id for name in spec["crons"]}
# Only the addon's jobs run: nothing else competes for the workers.
env["ir.cron"].search([("id", "not in", list(crons.values()))]).write({"active": False})
env.cr.commit()
print(spec["marker"] + " " + json.dumps({
    "configs": configs.ids,
    "crons": crons,
    "webhook_token": provider.webhook_token or None,
    "login": manager.login or None,
}))
"""


def connector_values(name, url, **values):
    """A test connector on the sandbox at ``url``: pages of 20, reminders at
    any hour (no quiet hours), its own schedule slow (the test pokes it)."""
    return {
        "name": name,
        "api_url": url,
        "page_size": 20,
        "timeout": 10,
        "sync_interval": 600,
        "quiet_hours_start": 0,
        "quiet_hours_end": 0,
        **values,
    }


def webhook_provider_values(name, gateway, **values):
    """A WhatsApp provider sending to the webhook of ``gateway`` (a
    ``sandbox.gateways.GatewayServer``)."""
    return {
        "name": name,
        "provider_type": "webhook",
        "api_url": gateway.webhook_url,
        "webhook_headers": json.dumps(gateway.webhook_headers),
        "rate_limit": 20,
        "timeout": 5,
        **values,
    }


def setup_script(
    marker, connectors, provider, params=None, manager=None, crons=JOB_CRONS
):
    """The ``odoo-bin shell`` text that sets a test database up: every other
    connector archived, loopback allowed, the ``sicantik_connector.*``
    system parameters ``params``, the provider (None: none), the
    ``connectors`` (each sending reminders through it), given its values a
    SICANTIK manager, and every scheduled action but ``crons`` (xml ids of
    the addon's jobs) deactivated.

    :meth:`Odoo.shell` of it returns ``{"configs": [ids], "crons": {xml id:
    id}, "webhook_token": ... or None, "login": ... or None}``. Compiled
    here, so that a broken text fails before anything runs it.
    """
    spec = {
        "marker": marker,
        "params": dict(params or {}),
        "provider": provider,
        "connectors": list(connectors),
        "manager": manager,
        "crons": list(crons),
    }
    text = f"spec = {spec!r}\n{SETUP_SCRIPT}"
    compile(text, f"<{marker} set-up>", "exec")
    return text


def permit_figures(db, dataset, config):
    """What the connector ``config`` stored against what ``dataset`` serves:
    permits lost, unknown, stored twice, and expiry outcomes that differ."""
    served = {p.pendaftaran_id: p for p, _who in dataset.rows}
    stored = db.rows(
        """SELECT pendaftaran_id, count(*), min(expiry_date)::text,
                  bool_or(expiry_unlimited), min(expiry_check_state)
             FROM sicantik_permit WHERE config_id = %s GROUP BY 1""",
        (config,),
    )
    present = {row[0]: row for row in stored}
    mismatches = []
    for pid, permit in served.items():
        if pid not in present:
            continue
        _pid, _count, date, unlimited, state = present[pid]
        if not permit.no_surat.strip() or not permit.answers_cekperizinan:
            expected = ("unavailable", None, False)
        elif permit.d_berlaku_izin == ZERO_DATE:
            expected = ("found", None, True)
        elif permit.d_berlaku_izin is None:
            expected = ("no_date", None, False)
        else:
            expected = ("found", permit.d_berlaku_izin, False)
        if (state, date, bool(unlimited)) != expected:
            mismatches.append((pid, (state, date, unlimited), expected))
    return {
        "served": len(served),
        "lost": len(set(served) - set(present)),
        "extra": len(set(present) - set(served)),
        "duplicates": sum(count - 1 for _pid, count, *_rest in stored),
        "mismatches": mismatches,
    }


def holder_duplicates(db):
    """Holder contacts created twice for one stable key."""
    return db.value(
        "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM res_partner "
        "WHERE sicantik_key IS NOT NULL GROUP BY sicantik_key) holders"
    )


def rows_left_running(db):
    """Sync runs still "running" and reminders still "sending"."""
    running = db.value("SELECT count(*) FROM sicantik_sync_log WHERE state = 'running'")
    if db.value("SELECT to_regclass('sicantik_notification') IS NOT NULL"):
        running += db.value(
            "SELECT count(*) FROM sicantik_notification WHERE state = 'sending'"
        )
    return running


def gateway_double_sends(gateway):
    """(reminders the webhook gateway received, received more than once)."""
    counts = {}
    for message in gateway.messages("webhook"):
        counts[message.reference] = counts.get(message.reference, 0) + 1
    return len(counts), sum(1 for n in counts.values() if n > 1)


class RpcError(Exception):
    """An error answer of Odoo's JSON-RPC: ``name`` is the exception class."""

    def __init__(self, name, message):
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message

    @property
    def user_error(self):
        return self.name == "odoo.exceptions.UserError"


class JsonRpc:
    """A user's session on an Odoo server over JSON-RPC, as the web client
    talks to it: ``/web/session/authenticate``, then ``/web/dataset/call_kw``."""

    def __init__(self, port, db, login, password, timeout=120):
        import requests  # Odoo's interpreter has it; the rest needs none

        self.url = f"http://127.0.0.1:{port}"
        self.db, self.login, self.password = db, login, password
        self.timeout = timeout
        self.http = requests.Session()
        self.logged_in = False

    def _post(self, path, params):
        answer = self.http.post(
            self.url + path,
            json={"jsonrpc": "2.0", "method": "call", "params": params},
            timeout=self.timeout,
        )
        answer.raise_for_status()
        body = answer.json()
        if "error" in body:
            data = body["error"].get("data") or {}
            raise RpcError(
                data.get("name", "error"), data.get("message", body["error"])
            )
        return body["result"]

    def authenticate(self):
        self._post(
            "/web/session/authenticate",
            {"db": self.db, "login": self.login, "password": self.password},
        )
        self.logged_in = True

    def call(self, model, method, *args, **kwargs):
        if not self.logged_in:
            self.authenticate()
        return self._post(
            f"/web/dataset/call_kw/{model}/{method}",
            {"model": model, "method": method, "args": list(args), "kwargs": kwargs},
        )

    def close(self):
        self.http.close()


class Poker:
    """Makes the given crons due and wakes the cron workers, from a thread
    with its own connection: what schedules, triggers and buttons do in a
    live deployment, without the workers' minute of polling in between.

    ``crons`` maps a cron id to how often (seconds) it is made due; a job
    that logs every run (the 09:00 scan) is better poked rarely.
    """

    TICK = 0.25

    def __init__(self, dbname, application_name="kill-test"):
        self.db = Database(dbname, application_name)
        self.crons = {}  # id: seconds between two triggers
        self._stop = None
        self._thread = None

    def start(self):
        import threading

        self.db.open()
        self._stop = threading.Event()

        def loop():
            last = {}
            while not self._stop.wait(self.TICK):
                now = time.monotonic()
                for cron, every in list(self.crons.items()):
                    if now - last.get(cron, 0.0) >= every:
                        self.db.trigger(cron)
                        last[cron] = now
                self.db.wake_cron_workers()

        self._thread = threading.Thread(target=loop, name="poker", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._thread is not None:
            self._stop.set()
            self._thread.join(10)
            self._thread = None
            self.db.close()
