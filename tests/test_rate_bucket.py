"""The deployment-wide rate buckets as the models use them.

The multi-process properties (several processes, a killed holder, a broken
connection) are proven in the pure tier against a real PostgreSQL; here the
wiring: which bucket a connector or a provider draws from, that the claims go
through the database, and that the sync log shows the adaptive pace.
"""

from odoo import sql_db
from odoo.tests import tagged

from ..tools.const import RATE_SAFETY_MARGIN
from ..tools.pg_rate_limiter import PgRateLimiter
from .common import SicantikSandboxCase

PERMIT_CRON = "sicantik_connector.ir_cron_sync_permits"
# Slot times are exact up to the float rounding of epoch seconds (~1 µs).
EXACT = 1e-5


def committed_bucket(dbname, key):
    """The bucket row as every process sees it (committed), or None."""
    cr = sql_db.db_connect(dbname).cursor()
    try:
        cr.execute(
            "SELECT next_at, pace, slowdowns FROM sicantik_rate_bucket WHERE key = %s",
            (key,),
        )
        return cr.fetchone()
    finally:
        cr.close()


@tagged("post_install", "-at_install", "sicantik")
class TestRateBucket(SicantikSandboxCase):
    PERMITS = 60

    def connectors(self, *rates, url=None):
        self.config.active = False
        return self.env["sicantik.config"].create(
            [
                {
                    "name": f"Office {i}",
                    "api_url": url or self.sandbox.url,
                    "rate_limit": rate,
                    "page_size": 20,
                    "timeout": 5,
                }
                for i, rate in enumerate(rates)
            ]
        )

    def reset_pace(self, key):
        """Other tests on this sandbox start from the full pace again."""
        # A cursor of its own, committed when the block ends (as the
        # limiter's statements are); the test's transaction is not touched.
        with sql_db.db_connect(self.env.cr.dbname).cursor() as cr:
            cr.execute(
                "UPDATE sicantik_rate_bucket SET pace = 1.0, pace_at = NULL "
                "WHERE key = %s",
                (key,),
            )

    def test_two_connectors_on_one_server_draw_from_one_database_bucket(self):
        first, second = self.connectors(20, 8)
        limiter = first._shared_limiter()
        self.assertIsInstance(limiter, PgRateLimiter)
        self.assertIs(limiter, second._shared_limiter())
        key = f"sicantik:{first._server()}"
        self.assertEqual(limiter.key, key)
        # The lowest rate of the two, with the jitter margin.
        self.assertAlmostEqual(limiter.rate, 8 * (1 - RATE_SAFETY_MARGIN))
        claims = limiter.claims
        first.action_sync_now()
        second.action_sync_now()
        self.run_cron(PERMIT_CRON)
        stats = self.sandbox.stats()
        self.assertGreater(stats["requests"], 4)
        # Every request took its send time from the database row.
        self.assertGreaterEqual(limiter.claims - claims, stats["requests"])
        self.assertIsNotNone(committed_bucket(self.env.cr.dbname, key))
        self.assertLessEqual(stats["peak_rate"], 8, "the server's limit held")
        for config in (first, second):
            self.assertEqual(self.logs("permits", config).state, "done")
            self.assertEqual(self.logs("permits", config).slowdown_count, 0)

    def test_another_port_is_another_bucket(self):
        here, there = self.connectors(10, 10)
        there.api_url = self.sandbox.url.replace("127.0.0.1", "localhost")
        self.assertNotEqual(here._server(), there._server())
        self.assertIsNot(here._shared_limiter(), there._shared_limiter())
        there.rate_limit_enabled = False
        self.assertIsNone(there._shared_limiter())

    def test_a_429_lowers_the_shared_pace_and_the_log_shows_it(self):
        (config,) = self.connectors(50)
        key = f"sicantik:{config._server()}"
        self.addCleanup(self.reset_pace, key)
        self.sandbox.configure(retry_after=1)
        self.sandbox.queue_faults(429)
        config.action_sync_now()
        self.run_cron(PERMIT_CRON)
        self.assertEqual(self.logs("permits", config).state, "done")
        # The 429 answered the first request, the permit types' (own row).
        log = self.logs("permit_types", config)
        self.assertEqual(log.state, "done")
        self.assertEqual(log.slowdown_count, 1)
        self.assertAlmostEqual(log.pace_lowest, 50.0, delta=1.0)
        _next_at, pace, slowdowns = committed_bucket(self.env.cr.dbname, key)
        self.assertAlmostEqual(pace, 0.5)
        self.assertGreaterEqual(slowdowns, 1)

    def test_a_provider_has_its_own_bucket_at_its_messages_per_second(self):
        Provider = self.env["sicantik.whatsapp.provider"]
        one, two = Provider.create(
            [
                {"name": "Log A", "provider_type": "log", "rate_limit": 40},
                {"name": "Log B", "provider_type": "log", "rate_limit": 40},
            ]
        )
        limiter = one._limiter()
        self.assertIsInstance(limiter, PgRateLimiter)
        self.assertIs(limiter, one._limiter())
        self.assertIsNot(limiter, two._limiter())
        self.assertEqual(limiter.key, f"whatsapp:{one.id}")
        self.assertEqual(limiter.rate, 40)  # messages per second, no margin
        limiter.acquire()
        before = limiter.last_slot
        limiter.acquire()
        self.assertGreaterEqual(limiter.last_slot - before, 1 / 40 - EXACT)
        self.assertIsNotNone(committed_bucket(self.env.cr.dbname, limiter.key))
