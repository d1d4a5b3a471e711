import logging
from contextlib import contextmanager
from unittest.mock import patch
from urllib.parse import urlsplit

import requests

from odoo.tests import TransactionCase, new_test_user
from odoo.tests.common import _super_send

from odoo.addons.sicantik_connector.sandbox import SandboxServer

LOOPBACK = ("127.0.0.1", "localhost", "::1")
ALLOWED_LOOPBACK = "127.0.0.1 localhost ::1"


class SicantikCommon(TransactionCase):
    """Users for each access level; no demo data is relied on."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env = cls.env(context=dict(cls.env.context, tracking_disable=True))
        cls.user_internal = new_test_user(
            cls.env, login="sicantik_internal", groups="base.group_user"
        )
        cls.user_sicantik = new_test_user(
            cls.env,
            login="sicantik_user",
            groups="sicantik_connector.sicantik_connector_group_user",
        )
        # The sandbox and the loopback gateways listen on this machine: allowed
        # as an administrator would allow a server of the office network.
        cls.env["ir.config_parameter"].sudo().set_param(
            "sicantik_connector.allowed_hosts", ALLOWED_LOOPBACK
        )
        cls.user_manager = new_test_user(
            cls.env,
            login="sicantik_manager",
            groups="sicantik_connector.sicantik_connector_group_manager",
        )

    @contextmanager
    def assert_no_secret_in_logs(self, *secrets):
        """Capture every log line of the block (debug included, the SQL log
        aside: it echoes what any write stores) and fail when one of them
        holds one of ``secrets``. Yields the list of captured lines.

        The loggers are captured instead of printed, as ``mute_logger`` does;
        do not nest it inside ``mute_logger``: a muted logger never reaches
        the capture.
        """
        capture = _LogCapture()
        saved = {}
        levels = {"odoo": logging.DEBUG, "urllib3": logging.DEBUG}
        levels["odoo.sql_db"] = logging.INFO
        for name, level in levels.items():
            logger = logging.getLogger(name)
            saved[name] = (logger.handlers, logger.propagate, logger.level)
            logger.handlers, logger.propagate = [capture], False
            logger.setLevel(level)
        try:
            yield capture.lines
        finally:
            for name, (handlers, propagate, level) in saved.items():
                logger = logging.getLogger(name)
                logger.handlers, logger.propagate = handlers, propagate
                logger.setLevel(level)
        for secret in secrets:
            leaks = [line for line in capture.lines if secret in line]
            self.assertFalse(leaks, f"a secret reached the logs: {leaks[:3]}")


class _LogCapture(logging.Handler):
    """Every record formatted as the server log would write it, traceback
    included."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.lines = []

    def emit(self, record):
        self.lines.append(self.format(record))


def _loopback_send(session, request, **kwargs):
    """Odoo's test harness raises timeouts below 10 s to 10 s, and fails on
    the ``(connect, read)`` tuples the client uses. Loopback requests (the
    sandbox) go out unchanged; anything else is refused, as the harness does."""
    if urlsplit(request.url).hostname in LOOPBACK:
        return _super_send(session, request, **kwargs)
    raise requests.exceptions.ConnectionError(
        f"External requests verboten in tests (was {request.method} {request.url})"
    )


def use_loopback_send(cls):
    """Route the test class's HTTP through ``_loopback_send`` until it ends."""
    patcher = patch.object(requests.sessions.Session, "send", _loopback_send)
    patcher.start()
    cls.addClassCleanup(patcher.stop)


class SicantikSandboxCase(SicantikCommon):
    """A real SICANTIK sandbox on loopback and a connector pointing at it.

    The production configuration installed by default is archived, so that
    the jobs only talk to the sandbox.
    """

    PERMITS = 150
    SEED = 7
    TODAY = None  # the dataset's reference day (None: today, dates move daily)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        use_loopback_send(cls)
        # Failed actions log in their own transaction: in tests it must be
        # the test's (test mode shares the test cursor).
        cls.registry.enter_test_mode(cls.cr)
        cls.addClassCleanup(cls.registry.leave_test_mode)
        cls.sandbox = SandboxServer(
            permits=cls.PERMITS, seed=cls.SEED, today=cls.TODAY
        ).start()
        cls.addClassCleanup(cls.sandbox.stop)
        cls.env["sicantik.config"].search([]).write({"active": False})
        cls.env["ir.config_parameter"].sudo().set_param(
            "sicantik_connector.cron_time_budget", 60
        )
        cls.config = cls.env["sicantik.config"].create(
            {
                "name": "Sandbox",
                "api_url": cls.sandbox.url,
                "timeout": 5,
                "page_size": 50,
                "rate_limit": 200,
                "max_workers": 4,
                # Job texts in the language the assertions are written in
                # (the default is Indonesian: see test_job_language).
                "lang": "en_US",
            }
        )
        # The schedule only uses an address that passed Test Connection.
        cls.config.action_test_connection()

    def setUp(self):
        super().setUp()
        self.sandbox.clear_faults()
        self.sandbox.configure(
            latency=0.0, jitter=0.0, error_rate=0.0, future_api=False
        )
        self.sandbox.reset_stats()

    # --- helpers

    def requests_to(self, endpoint=None):
        """Requests the sandbox received (to ``endpoint``) since setUp."""
        stats = self.sandbox.stats()
        if endpoint is None:
            return stats["requests"]
        return stats["by_endpoint"].get(endpoint.lower(), 0)

    def listed_ids(self):
        """The distinct registration ids the permit list serves."""
        return {row["pendaftaran_id"] for row in self.sandbox.dataset.listed_rows()}

    def run_cron(self, xmlid, max_calls=50):
        """Run a scheduled job through the cron machinery until it reports
        nothing remaining (as Odoo's worker does, callback after callback).
        Returns the number of callbacks."""
        cron = self.env.ref(xmlid)
        Progress = self.env["ir.cron.progress"].sudo()
        for calls in range(1, max_calls + 1):
            cron.method_direct_trigger()
            progress = Progress.search(
                [("cron_id", "=", cron.id)], order="id desc", limit=1
            )
            if not progress.remaining:
                return calls
        raise AssertionError(f"{xmlid} still had work after {max_calls} callbacks")

    def sync_permits(self, config=None):
        (config or self.config).action_sync_now()
        return self.run_cron("sicantik_connector.ir_cron_sync_permits")

    def sync_expiry(self):
        return self.run_cron("sicantik_connector.ir_cron_sync_expiry_dates")

    def logs(self, operation, config=None):
        return self.env["sicantik.sync.log"].search(
            [
                ("config_id", "=", (config or self.config).id),
                ("operation", "=", operation),
            ]
        )

    @contextmanager
    def param(self, key, value):
        ICP = self.env["ir.config_parameter"].sudo()
        old = ICP.get_param(key)
        ICP.set_param(key, value)
        try:
            yield
        finally:
            ICP.set_param(key, old)
