import logging
from urllib.parse import urlsplit

import psycopg2

from odoo import _, api, fields, models
from odoo.exceptions import UserError

from ..tools import const, url_shape
from ..tools.api_errors import AddressNotAllowed
from ..tools.sicantik_exceptions import SicantikError
from .access import address_refused_message, ensure_manager

# The regency whose server the addon was first written for.
DEFAULT_API_URL = "https://perizinan.karokab.go.id/backoffice/api"

_logger = logging.getLogger(__name__)


class SicantikAddressGate(models.AbstractModel):
    """Test Connection and the gate it keeps: the scheduled jobs only call
    an API URL that passed the test (or a complete permit sync).

    Kept apart from the connector's other jobs so each file has one; the
    connector (``sicantik.config``) inherits it, so the fields live in its
    table. Uses the connector's ``api_url``, ``name``, ``_make_api()`` and
    ``_job_lang()``.
    """

    _name = "sicantik.address.gate"
    _description = "SICANTIK API Address Gate"

    # The schedule only calls an address that passed Test Connection (or
    # synced completely): a typed URL that failed never runs every 15 min.
    tested_url = fields.Char(
        string="Tested API URL",
        readonly=True,
        copy=False,
        help="The last API URL that passed Test Connection or a complete "
        "permit sync: the only one the scheduled jobs use.",
    )
    tested_ok_at = fields.Datetime(string="Tested On", readonly=True, copy=False)
    test_failed_url = fields.Char(string="Failed API URL", readonly=True, copy=False)
    test_failed_at = fields.Datetime(string="Test Failed On", readonly=True, copy=False)
    test_failed_reason = fields.Text(
        string="Why the Test Failed", readonly=True, copy=False
    )
    address_state = fields.Selection(
        [
            ("tested", "Tested"),
            ("untested", "Not tested"),
            ("failed", "Test failed"),
        ],
        string="API URL Check",
        compute="_compute_address_state",
        help="Only a tested API URL is used by the scheduled jobs.",
    )

    # ------------------------------------------------------------
    # COMPUTE METHODS
    # ------------------------------------------------------------

    @api.depends("api_url", "tested_url", "test_failed_url")
    def _compute_address_state(self):
        for config in self:
            url = (config.api_url or "").strip()
            if url and url == config.tested_url:
                config.address_state = "tested"
            elif url and url == config.test_failed_url:
                config.address_state = "failed"
            else:
                config.address_state = "untested"

    # ------------------------------------------------------------
    # ACTIONS
    # ------------------------------------------------------------

    def action_test_connection(self):
        """Check the URL's shape, then ask ``jumlahPerizinan`` and one row of
        ``listpermohonanterbit``: approve only an address the sync can read.

        A passed test makes the address the one the schedule uses; a failed
        one is recorded (in its own transaction, the error rolls back this
        one) and the schedule keeps away from it.
        """
        self.ensure_one()
        ensure_manager(self.env, self)
        config = self.sudo().with_context(tracking_disable=True)
        Log = self.env["sicantik.sync.log"].with_context(lang=config._job_lang())
        url = (config.api_url or "").strip()
        problem = config._url_problem()
        if problem:
            config._note_test_failed(url, problem)
            raise UserError(problem)
        started = fields.Datetime.now()
        stats = {}
        step = const.EP_COUNT_PERMIT_TYPES
        try:
            with config._make_api(max_retries=1) as api:
                try:
                    count = api.count_permit_types()
                    step = const.EP_ISSUED_PERMITS
                    page = api.list_issued_permits(limit=1, offset=0)
                finally:
                    stats = api.stats.as_dict()
        except SicantikError as err:
            Log._log_failure_separately(config, "test_connection", "button", err, stats)
            message = config._connection_error_message(err)
            if step == const.EP_ISSUED_PERMITS:
                message = _(
                    "The server answers the connection test, but its permit "
                    "list cannot be read, so the sync could not work. %(error)s",
                    error=message,
                )
            config._note_test_failed(url, message)
            raise UserError(message) from err
        log = Log._start(config, "test_connection", "button", start_date=started)
        log._add_client_stats(stats)
        log.write({"fetched_count": count, "progress_done": 1})
        log._finish("done", log._test_ok_message(url, count, page.raw_count))
        # Only a newly approved address is written: pressing the button again
        # during a sync must not race the sync's writes to this row.
        config._mark_address_tested()
        log = log.with_env(self.env)
        return log._notification_action(
            log._test_ok_message(url, count, page.raw_count),
            "success",
            _("Connection successful"),
        )

    # ------------------------------------------------------------
    # BUSINESS METHODS
    # ------------------------------------------------------------

    def _url_problem(self):
        """What is wrong with the API URL's shape, in staff words (False:
        nothing): a base address, not a method URL, without blanks."""
        self.ensure_one()
        shape = url_shape.check_base_url(self.api_url)
        if shape.ok:
            return False
        name = self.name or ""
        if shape.problem == url_shape.METHOD:
            return _(
                "The API URL of %(name)s ends in a method of the API. Remove "
                "%(part)s: enter the base address %(base)s (the connector adds "
                "the method names itself).",
                name=name,
                part=shape.part,
                base=shape.base,
            )
        if shape.problem == url_shape.SPACE:
            return _(
                "The API URL of %(name)s contains a blank. Remove the spaces "
                "from the address, e.g. %(example)s.",
                name=name,
                example=DEFAULT_API_URL,
            )
        if shape.problem == url_shape.QUERY:
            # The query itself is never repeated: it may hold a secret.
            return _(
                "The API URL of %(name)s must not contain a query string (?...) "
                "or a fragment (#...). Remove them: enter %(base)s.",
                name=name,
                base=shape.base,
            )
        if shape.problem == url_shape.CREDENTIALS:
            return _(
                "The API URL of %(name)s must not contain a user name or " "password.",
                name=name,
            )
        if shape.problem == url_shape.PORT:
            return _("The API URL of %(name)s has an invalid port.", name=name)
        return _(
            "The API URL of %(name)s must start with https:// (or "
            "http://) and name a server, e.g. %(example)s.",
            name=name,
            example=DEFAULT_API_URL,
        )

    def _mark_address_tested(self, when=None):
        """The current API URL works (a test passed or a pass completed)."""
        for config in self.sudo().with_context(tracking_disable=True):
            url = (config.api_url or "").strip()
            if url and config.tested_url != url:
                config.write(
                    {
                        "tested_url": url,
                        "tested_ok_at": when or fields.Datetime.now(),
                        "test_failed_url": False,
                        "test_failed_at": False,
                        "test_failed_reason": False,
                    }
                )

    def _note_test_failed(self, url, reason):
        """Record a failed test in its own transaction (the action raises
        and rolls back its own); a failed address is never the tested one."""
        self.ensure_one()
        try:
            with self.env.registry.cursor() as cr:
                # Never wait long on a row lock: the failure is shown to the
                # user anyway, recording it is a convenience.
                cr.execute("SET LOCAL lock_timeout = '2s'")
                env = api.Environment(cr, self.env.uid, {"tracking_disable": True})
                config = env["sicantik.config"].sudo().browse(self.id).exists()
                if not config:
                    return  # created in the very transaction that rolls back
                values = {
                    "test_failed_url": url,
                    "test_failed_at": fields.Datetime.now(),
                    "test_failed_reason": reason,
                }
                if config.tested_url == url:
                    values.update(tested_url=False, tested_ok_at=False)
                config.write(values)
        except psycopg2.errors.LockNotAvailable:
            _logger.warning(
                "SICANTIK %s (id %s): failed connection test not recorded "
                "(connector locked)",
                self.name,
                self.id,
            )
        self.invalidate_recordset()

    def _connection_error_message(self, err):
        """What a failed connection test tells the manager: the staff sentence
        of the failure's family (the sync log's table), then the detail."""
        host = urlsplit(self.api_url or "").hostname or self.api_url
        if isinstance(err, AddressNotAllowed):
            return address_refused_message(self.env, host)
        reason = self.env["sicantik.sync.log"]._failure_reason(err.failure_type)
        if err.status:
            return _(
                "The connection test of %(host)s failed with the HTTP error "
                "%(status)s. %(reason)s\n\nDetail: %(detail)s",
                host=host,
                status=err.status,
                reason=reason,
                detail=err.message,
            )
        return _(
            "The connection test of %(host)s failed. %(reason)s\n\nDetail: "
            "%(detail)s",
            host=host,
            reason=reason,
            detail=err.message,
        )
