import psycopg2

from odoo import api, fields, models, sql_db

from ..tools.pg_rate_limiter import PgRateLimiter
from ..tools.rate_limiter import shared_limiter
from ..tools.sicantik_exceptions import SicantikLimiterUnavailable


def _connect(dbname):
    """A new connection of the limiter's own (never the job's): its claims
    commit on their own, whatever the job's transaction does."""
    _name, info = sql_db.connection_info_for(dbname)
    return psycopg2.connect(**info)


class SicantikRateBucket(models.Model):
    """The send pace of one remote server or gateway, shared by every process.

    Every Odoo worker and server of a deployment claims its send times from
    this row (``tools/pg_rate_limiter.py``), so together they never go faster
    than the remote side allows. Rows are created and updated by the limiter
    only, each claim in its own autocommit statement; nobody edits them.
    """

    _name = "sicantik.rate.bucket"
    _description = "SICANTIK Rate Bucket"
    _order = "key"
    _rec_name = "key"

    key = fields.Char(
        string="Bucket",
        required=True,
        readonly=True,
        help="What the bucket paces: a SICANTIK server (its host and port) or a "
        "WhatsApp provider (its id).",
    )
    next_at = fields.Datetime(
        string="Next Free Slot",
        readonly=True,
        help="The next send time not yet claimed.",
    )
    pace = fields.Float(
        readonly=True,
        digits=(16, 3),
        help="Fraction of the rate set by the last slow-down (adaptive pace).",
    )
    pace_at = fields.Datetime(string="Last Slow-down", readonly=True)
    slowdowns = fields.Integer(
        string="Slow-downs",
        readonly=True,
        help="Slow-downs since the bucket was created.",
    )

    _sql_constraints = [
        ("key_unique", "UNIQUE(key)", "There is one rate bucket per server."),
    ]

    # ------------------------------------------------------------
    # BUSINESS METHODS
    # ------------------------------------------------------------

    @api.model
    def _limiter(self, key, rate, *, server_limit=True):
        """This process's limiter of the bucket ``key`` at ``rate`` per second.

        ``server_limit`` keeps ``rate`` in every 1 s window with the jitter
        margin and an adaptive pace (a SICANTIK server, whose callers catch an
        unreachable database as a ``SicantikError``); otherwise the slots are
        ``1 / rate`` apart (a gateway's messages per second).
        """
        dbname = self.env.cr.dbname

        def make():
            def connect():
                return _connect(dbname)

            if server_limit:
                return PgRateLimiter.for_server_limit(
                    key, rate, connect, unavailable=SicantikLimiterUnavailable
                )
            return PgRateLimiter(key, rate, connect)

        return shared_limiter(("pg", dbname, key, rate, server_limit), make)
