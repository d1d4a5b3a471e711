"""permit_sync: 20,000 sandbox permits into a fresh Odoo database.

The real sync code runs through Odoo's own cron machinery
(``ir.cron._process_jobs``, the loop a cron worker runs), with commits,
progress notifications and the connector's default pace (10 requests per
second). Measured for two page sizes, each with its own connector (so each
creates all 20,000 permits):

* the elapsed time of the whole pass (types, then every page), bound 60 s;
* the SQL queries of one page (the median between two page commits), which
  must not depend on the page size.

Needs Odoo (``make bench`` passes ``SICANTIK_ODOO_CMD``,
``SICANTIK_ADDONS_PATH`` and ``SICANTIK_DATA_DIR``): a database is created
with the addon by a subprocess, then opened in this process.
"""

import contextlib
import logging
import os
import shlex
import statistics
import subprocess
import sys
import time
from unittest.mock import patch

NEEDS_ODOO = True  # skipped where make bench finds no Odoo
NAME = "permit_sync"
# The list serves about 96 % of the generated permits: 20,016 with this seed.
DATASET_PERMITS = 20_850
PAGE_SIZES = (50, 200)
BOUND_SECONDS = 60.0
SEED = 1
ADDON = "sicantik_connector"


_CONFIG_PARSED = False


def odoo_settings():
    """(command prefix, addons path, data dir) from ``make bench``, or None."""
    cmd = os.environ.get("SICANTIK_ODOO_CMD")
    paths = os.environ.get("SICANTIK_ADDONS_PATH")
    if not cmd or not paths:
        return None
    return shlex.split(cmd), paths, os.environ.get("SICANTIK_DATA_DIR") or ""


class OdooDatabase:
    """A fresh database with the addon, opened in this process.

    ``with OdooDatabase("name") as odb: with odb.env() as env: ...``; the
    database is dropped at the end. Every other scheduled job is deactivated
    so that ``run_jobs()`` only runs the addon's.
    """

    def __init__(self, name):
        self.settings = odoo_settings()
        self.name = f"{name}_{os.getpid()}"
        self.registry = None

    def __enter__(self):
        cmd, paths, data_dir = self.settings
        args = ["--addons-path", paths, "--database", self.name]
        if data_dir:
            args += ["--data-dir", data_dir]
        install = subprocess.run(
            [
                *cmd,
                *args,
                "--init",
                ADDON,
                "--without-demo",
                "all",
                "--stop-after-init",
                "--http-port",
                "0",
                "--max-cron-threads",
                "0",
                "--log-level",
                "warn",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if install.returncode:
            sys.stderr.write(install.stdout[-3000:] + install.stderr[-3000:])
            raise RuntimeError(f"installing {ADDON} into {self.name} failed")
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
        with self.env() as env:
            env["ir.cron"].search([]).write({"active": False})
            env["sicantik.config"].search([]).write({"active": False})
        return self

    @contextlib.contextmanager
    def env(self):
        from odoo import SUPERUSER_ID, api

        with self.registry.cursor() as cr:
            yield api.Environment(cr, SUPERUSER_ID, {})

    def run_jobs(self):
        """One pass of a cron worker over this database's ready jobs."""
        from odoo.addons.base.models.ir_cron import ir_cron

        ir_cron._process_jobs(self.name)

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


class PageQueryProbe:
    """Records the cursor's query count at every page commit of the sync."""

    def __init__(self):
        self.marks = []

    def __enter__(self):
        from odoo.addons.sicantik_connector.models.sicantik_config import (
            SicantikConfig,
        )

        original = SicantikConfig._commit_progress
        marks = self.marks

        def probe(config, done, remaining):
            original(config, done, remaining)
            marks.append((id(config.env.cr), config.env.cr.sql_log_count))

        self._patch = patch.object(SicantikConfig, "_commit_progress", probe)
        self._patch.start()
        return self

    def __exit__(self, *exc_info):
        self._patch.stop()

    def per_page(self):
        """Median queries between two consecutive commits of one cursor."""
        deltas = [
            b[1] - a[1]
            for a, b in zip(self.marks, self.marks[1:], strict=False)
            if a[0] == b[0] and b[1] > a[1]
        ]
        return statistics.median(deltas) if deltas else 0


def sync_once(odb, sandbox_url, page_size):
    """Create a connector and run the permit job until its pass is complete.

    Returns (elapsed seconds, permits created, pages, queries per page).
    """
    with odb.env() as env:
        config = env["sicantik.config"].create(
            {
                "name": f"bench {page_size}",
                "api_url": sandbox_url,
                "page_size": page_size,
            }
        )
        config.action_sync_now()
        config_id = config.id
        env.ref("sicantik_connector.ir_cron_sync_permits").active = True
    started = time.monotonic()
    with PageQueryProbe() as probe:
        for _round in range(10_000):
            odb.run_jobs()
            with odb.env() as env:
                config = env["sicantik.config"].browse(config_id)
                if config.sync_pass_state == "idle" and config.last_sync_log_id:
                    log = config.last_sync_log_id
                    result = (log.created_count, log.request_count)
                    break
    elapsed = time.monotonic() - started
    with odb.env() as env:
        env.ref("sicantik_connector.ir_cron_sync_permits").active = False
        env["sicantik.config"].browse(config_id).active = False
    created, requests = result
    return elapsed, created, requests, probe.per_page()


def run():
    from sandbox import SandboxServer

    figures = {}
    with SandboxServer(permits=DATASET_PERMITS, seed=SEED) as server:
        with OdooDatabase("bench_permit_sync") as odb:
            listed = len(
                {row["pendaftaran_id"] for row in server.dataset.listed_rows()}
            )
            for page_size in PAGE_SIZES:
                figures[page_size] = sync_once(odb, server.url, page_size)
    parts = []
    ok = True
    for page_size, (elapsed, created, pages, per_page) in figures.items():
        parts.append(
            f"page{page_size}: {elapsed:.1f}s {pages} requests "
            f"{per_page:g} queries/page"
        )
        ok &= created == listed and elapsed <= BOUND_SECONDS
    per_pages = {fig[3] for fig in figures.values()}
    ok &= len(per_pages) == 1
    worst = max(fig[0] for fig in figures.values())
    line = (
        f"{NAME}: permits={listed} " + " | ".join(parts) + f" "
        f"queries_per_page_constant={'yes' if len(per_pages) == 1 else 'no'} "
        f"bound={BOUND_SECONDS:g}s ratio={BOUND_SECONDS / worst:.3f}"
    )
    return line, ok
