"""permit_sync: 20,000 sandbox permits into a fresh Odoo database.

The real sync code runs through Odoo's own cron machinery
(``ir.cron._process_jobs``, the loop a cron worker runs), with commits,
progress notifications and the connector's default pace (10 requests per
second). Measured for two page sizes, each with its own connector (so each
creates all 20,000 permits):

* the elapsed time of the whole pass (types, then every page), bound 60 s;
* the SQL queries of one page (the median between two page commits), which
  must not depend on the page size.

Needs Odoo (``make bench``): see ``bench.common.OdooDatabase``.
"""

import statistics
from unittest.mock import patch

from bench.common import OdooDatabase, new_connector

NEEDS_ODOO = True  # skipped where make bench finds no Odoo
NAME = "permit_sync"
# The list serves about 96 % of the generated permits: 20,016 with this seed.
DATASET_PERMITS = 20_850
PAGE_SIZES = (50, 200)
BOUND_SECONDS = 60.0
SEED = 1


class PageQueryProbe:
    """Records the cursor's query count at every page commit of the sync."""

    def __init__(self):
        self.marks = []

    def __enter__(self):
        from odoo.addons.sicantik_connector.models.sicantik_job_mixin import (
            SicantikJobMixin,
        )

        original = SicantikJobMixin._job_commit
        marks = self.marks

        def probe(job, done=None, remaining=None):
            original(job, done, remaining)
            marks.append((id(job.env.cr), job.env.cr.sql_log_count))

        self._patch = patch.object(SicantikJobMixin, "_job_commit", probe)
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
        config = new_connector(
            env, f"bench {page_size}", sandbox_url, page_size=page_size
        )
        config.action_sync_now()
        config_id = config.id
        env.ref("sicantik_connector.ir_cron_sync_permits").active = True
    with PageQueryProbe() as probe:
        elapsed = odb.run_jobs_until(
            config_id, lambda c: c.sync_pass_state == "idle" and c.last_sync_log_id
        )
    with odb.env() as env:
        env.ref("sicantik_connector.ir_cron_sync_permits").active = False
        config = env["sicantik.config"].browse(config_id)
        config.active = False
        created = config.last_sync_log_id.created_count
        requests = config.last_sync_log_id.request_count
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
