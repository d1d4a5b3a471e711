"""What the Odoo benchmarks share: a fresh database with the addon, opened here.

``make bench`` passes ``SICANTIK_ODOO_CMD``, ``SICANTIK_ADDONS_PATH`` and
``SICANTIK_DATA_DIR``; :class:`OdooDatabase` installs the addon into a new
database with a subprocess, opens it in this process and drops it at the end.
"""

import contextlib
import logging
import os
import shlex
import subprocess
import sys
import time

ADDON = "sicantik_connector"
# A connector whose server is never asked (port 9 is "discard").
UNREACHABLE_URL = "http://127.0.0.1:9/backoffice/api"

_CONFIG_PARSED = False


def odoo_settings():
    """(command prefix, addons path, data dir) from ``make bench``, or None."""
    cmd = os.environ.get("SICANTIK_ODOO_CMD")
    paths = os.environ.get("SICANTIK_ADDONS_PATH")
    if not cmd or not paths:
        return None
    return shlex.split(cmd), paths, os.environ.get("SICANTIK_DATA_DIR") or ""


def new_connector(env, name, api_url=UNREACHABLE_URL, **values):
    """A SICANTIK connector for a benchmark (by default one never asked)."""
    # The sandbox listens on loopback, which connectors may not call unless
    # an administrator allows it.
    env["ir.config_parameter"].sudo().set_param(
        "sicantik_connector.allowed_hosts", "127.0.0.1 localhost ::1"
    )
    return env["sicantik.config"].create({"name": name, "api_url": api_url, **values})


class OdooDatabase:
    """A fresh database with the addon, opened in this process.

    ``with OdooDatabase("name") as odb: with odb.env() as env: ...``; the
    database is dropped at the end. Every other scheduled job and connector
    is deactivated so that ``run_jobs()`` only runs what the benchmark sets up.
    """

    def __init__(self, name):
        self.settings = odoo_settings()
        self.name = f"{name}_{os.getpid()}"
        self.registry = None

    def __enter__(self):
        args = self._options()
        self._install(args)
        self._open(args)
        with self.env() as env:
            env["ir.cron"].search([]).write({"active": False})
            env["sicantik.config"].search([]).write({"active": False})
        return self

    def _options(self):
        _cmd, paths, data_dir = self.settings
        args = ["--addons-path", paths, "--database", self.name]
        if data_dir:
            args += ["--data-dir", data_dir]
        return args

    def _install(self, args):
        install = subprocess.run(
            [*self.settings[0], *args, "--init", ADDON, "--without-demo", "all",
             "--stop-after-init", "--http-port", "0", "--max-cron-threads", "0",
             "--log-level", "warn"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if install.returncode:
            sys.stderr.write(install.stdout[-3000:] + install.stderr[-3000:])
            raise RuntimeError(f"installing {ADDON} into {self.name} failed")

    def _open(self, args):
        import odoo
        from odoo.modules.registry import Registry

        global _CONFIG_PARSED  # noqa: PLW0603
        if not _CONFIG_PARSED:
            # Odoo's option parser cannot run twice in one process; every
            # benchmark uses the same paths, only the database differs.
            odoo.tools.config.parse_config(args)
            _CONFIG_PARSED = True
        logging.getLogger().setLevel(logging.WARNING)
        for noisy in ("odoo", "werkzeug"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        self.registry = Registry(self.name)

    @contextlib.contextmanager
    def env(self):
        """A superuser environment on a new cursor, committed at the end."""
        from odoo import SUPERUSER_ID, api

        with self.registry.cursor() as cr:
            yield api.Environment(cr, SUPERUSER_ID, {})

    def run_jobs(self):
        """One pass of a cron worker over this database's ready jobs."""
        from odoo.addons.base.models.ir_cron import ir_cron

        ir_cron._process_jobs(self.name)

    def run_jobs_until(self, config_id, done, rounds=100_000):
        """Run the ready jobs until ``done(config)`` holds; return the seconds."""
        started = time.monotonic()
        for _round in range(rounds):
            self.run_jobs()
            with self.env() as env:
                if done(env["sicantik.config"].browse(config_id)):
                    return time.monotonic() - started
        raise RuntimeError("the job never finished")

    def __exit__(self, *exc_info):
        import odoo

        self.registry = None
        odoo.modules.registry.Registry.delete(self.name)
        odoo.sql_db.close_db(self.name)
        with contextlib.closing(odoo.sql_db.db_connect("postgres").cursor()) as cr:
            cr._cnx.autocommit = True
            cr.execute(
                odoo.tools.SQL(
                    "DROP DATABASE IF EXISTS %s WITH (FORCE)",
                    odoo.tools.SQL.identifier(self.name),
                )
            )


class ArrivalLog:
    """The arrival time of every API request a sandbox counts, on its clock.

    The sandbox reports its peak over sliding one-second windows; a benchmark
    also needs the rate over a chosen span (a phase of the run) and how many
    requests broke the limit, so this wraps the sandbox's own counter: the
    same times, taken under its lock, that its peak is computed from.
    """

    def __init__(self, sandbox):
        # (arrival, endpoint, handled): the kernel's receive time where the
        # sandbox has it, and when its handler counted it; appends are atomic
        self.arrivals = []
        stats = sandbox._stats  # the sandbox's own counter, wrapped
        counted = stats.arrive

        def arrive(endpoint, at=None):
            arrival = counted(endpoint, at)
            self.arrivals.append((arrival.at, endpoint, arrival.handled))
            return arrival

        stats.arrive = arrive
        self.clock = stats._clock

    def times(self, endpoint=None):
        return sorted(t for t, name, _h in self.arrivals if endpoint in (None, name))

    def handled(self):
        """The handlers' stamps, sorted (the sandbox's scheduling included)."""
        return sorted(h for _t, _name, h in self.arrivals)

    def first(self, endpoint=None):
        times = self.times(endpoint)
        return times[0] if times else None


def window_figures(times, limit, width=1.0):
    """(peak, violations) of sorted arrival ``times``: the most arrivals in
    any window of ``width`` seconds, and how many arrivals found more than
    ``limit`` arrivals (themselves included) in the window ending at them."""
    peak, over = _windows(times, limit, width)
    return peak, len(over)


def over_limit(times, limit, width=1.0):
    """The arrivals of sorted ``times`` that found more than ``limit``
    arrivals in the window of ``width`` seconds ending at them."""
    return _windows(times, limit, width)[1]


def _windows(times, limit, width):
    from sandbox.stats import RateWindow

    window = RateWindow(width)
    over = [t for t in times if window.add(t) > limit]
    return window.peak, over


def rate_ratio(times, start, end, limit):
    """Arrivals per second in [start, end) as a share of ``limit``."""
    if end <= start:
        return 0.0
    count = sum(1 for t in times if start <= t < end)
    return count / (end - start) / limit
