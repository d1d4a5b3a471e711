"""Security review, as tests: who may do what, what never leaks, what a
copied database may no longer do, and that API values never become SQL."""

from datetime import timedelta

from odoo import fields
from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.modules import neutralize
from odoo.tests import new_test_user, tagged
from odoo.tools import mute_logger

from ..sandbox.data import b64
from .common import SicantikSandboxCase

ADDON = "sicantik_connector"
PERMIT_CRON = f"{ADDON}.ir_cron_sync_permits"
EXPIRY_CRON = f"{ADDON}.ir_cron_sync_expiry_dates"
ROLES = ("public", "portal", "internal", "user", "manager", "admin")
OPERATIONS = {"r": "read", "w": "write", "c": "create", "u": "unlink"}

# Model rights per role: r(ead) w(rite) c(reate) u(nlink); absent role: none.
# SICANTIK users read; managers configure and run syncs; the jobs (superuser)
# write the logs and reminders, which staff may only delete or retry.
ACCESS = {
    "sicantik.config": {"user": "r", "manager": "rwcu", "admin": "rwcu"},
    "sicantik.permit.type": {"user": "r", "manager": "rwcu", "admin": "rwcu"},
    "sicantik.permit": {"user": "r", "manager": "rwcu", "admin": "rwcu"},
    "sicantik.sync.log": {"user": "r", "manager": "ru", "admin": "ru"},
    "sicantik.config.expiry.sync": {"manager": "rwcu", "admin": "rwcu"},
    "sicantik.whatsapp.provider": {"user": "r", "manager": "rwcu", "admin": "rwcu"},
    "sicantik.notification": {"user": "r", "manager": "rwu", "admin": "rwu"},
    # Recorded by the webhook (superuser); staff read, managers may delete.
    "sicantik.whatsapp.event": {"user": "r", "manager": "ru", "admin": "ru"},
    "sicantik.whatsapp.test.message": {"manager": "rwcu", "admin": "rwcu"},
    # Written by the rate limiter's own connection only; managers may look.
    "sicantik.rate.bucket": {"manager": "r", "admin": "r"},
    # The permit sync's cursor, written by the job only; read as the connector.
    "sicantik.permit.pass": {"user": "r", "manager": "r", "admin": "r"},
}
# Buttons that call SICANTIK, queue work or change data: managers only, and
# refused before any request. Navigation buttons only open a list whose
# records the access rights above still guard.
MANAGER_ACTIONS = {
    ("sicantik.config", "action_test_connection"),
    ("sicantik.config", "action_sync_now"),
    ("sicantik.config", "action_test_expiry_sync"),
    ("sicantik.config", "action_open_expiry_sync_wizard"),
    ("sicantik.config.expiry.sync", "action_start"),
    ("sicantik.permit", "action_revoke"),
    ("sicantik.permit", "action_restore"),
    ("sicantik.permit", "action_check_expiry_now"),
    ("sicantik.notification", "action_retry"),
    ("sicantik.notification", "action_cancel"),
    ("sicantik.whatsapp.provider", "action_open_test_message"),
    ("sicantik.whatsapp.provider", "action_regenerate_webhook_token"),
    ("sicantik.whatsapp.test.message", "action_send"),
}
NAVIGATION_ACTIONS = {
    ("sicantik.config", "action_view_permits"),
    ("sicantik.config", "action_view_permit_types"),
    ("sicantik.config", "action_view_sync_logs"),
    ("sicantik.config", "action_view_notifications"),
    ("sicantik.permit.type", "action_view_permits"),
    ("res.partner", "action_view_sicantik_permits"),
    ("sicantik.sync.log", "action_open_numbers_to_fix"),
}
# SQL metacharacters (and psycopg2/Python placeholders) in values the API sends.
HOSTILE = "O'Brien\"; DROP TABLE sicantik_permit; -- %s %(x)s \\ ' ;"


def addon_models(env):
    """Models this addon defines (not the ones it extends)."""
    return {
        name
        for name, model in env.registry.items()
        if model._original_module == ADDON and not model._abstract
    }


def addon_actions(env):
    """(model, method) of every ``action_*`` this addon defines on a model
    with records (a mixin's buttons count on the models that inherit it)."""
    found = set()
    for name, model in env.registry.items():
        if model._abstract:
            continue
        for cls in model.__mro__:
            if not cls.__module__.startswith(f"odoo.addons.{ADDON}."):
                continue
            for attr, value in vars(cls).items():
                if attr.startswith("action_") and callable(value):
                    found.add((name, attr))
    return found


@tagged("post_install", "-at_install", "sicantik")
class TestSecurity(SicantikSandboxCase):
    PERMITS = 60

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.user_portal = new_test_user(
            cls.env, login="sicantik_portal", groups="base.group_portal"
        )
        cls.users = {
            "public": cls.env.ref("base.public_user"),
            "portal": cls.user_portal,
            "internal": cls.user_internal,
            "user": cls.user_sicantik,
            "manager": cls.user_manager,
            "admin": cls.env.ref("base.user_admin"),
        }
        cls.config.action_sync_now()
        cls.env.ref(PERMIT_CRON).method_direct_trigger()
        cls.permit = cls.env["sicantik.permit"].search(
            [("config_id", "=", cls.config.id)], limit=1
        )
        cls.provider = cls.env.ref(f"{ADDON}.sicantik_whatsapp_provider_log")

    def setUp(self):
        super().setUp()
        self.maxDiff = None
        self._records = {}
        self._denials = []  # why each refused attempt was refused

    # ------------------------------------------------------------------
    # helpers
    # ------------------------------------------------------------------

    def _attempt(self, operation):
        """True when ``operation`` passes the access checks (rolled back)."""
        savepoint = self.cr.savepoint()
        try:
            operation()
            self.env.flush_all()
            return True
        except AccessError as err:
            self._denials.append(str(err).splitlines()[0])
            return False
        finally:
            savepoint.close(rollback=True)
            self.env.invalidate_all()

    def _values(self, model):
        """(values to create one, values to write on one)."""
        config, permit = self.config.id, self.permit.id
        return {
            "sicantik.config": (
                {"name": "Another", "api_url": "https://example.test/backoffice/api"},
                {"name": "Renamed"},
            ),
            "sicantik.permit.type": (
                {"name": "IZIN BARU", "config_id": config},
                {"group_name": "LAIN"},
            ),
            "sicantik.permit": (
                {"config_id": config, "pendaftaran_id": "0099900101012025"},
                {"applicant_name": "Edited"},
            ),
            "sicantik.sync.log": (
                {"config_id": config, "operation": "status"},
                {"message": "Edited"},
            ),
            "sicantik.config.expiry.sync": ({"config_id": config}, {"mode": "test"}),
            "sicantik.whatsapp.provider": (
                {"name": "Another", "provider_type": "log"},
                {"name": "Renamed"},
            ),
            "sicantik.notification": (
                {
                    "permit_id": permit,
                    "config_id": config,
                    "stage": 30,
                    "expiry_date": fields.Date.today() + timedelta(days=30),
                },
                {"failure_reason": "Edited"},
            ),
            "sicantik.whatsapp.test.message": (
                {
                    "provider_id": self.provider.id,
                    "phone": "+6281234567890",
                    "message": "Uji",
                },
                {"message": "Edited"},
            ),
            "sicantik.rate.bucket": ({"key": "sicantik:example.test"}, {"pace": 0.5}),
            # One per connector: the synced one has its own already.
            "sicantik.permit.pass": (
                {"config_id": self.config.copy({"name": "Spare"}).id},
                {"next_offset": 50},
            ),
            "sicantik.whatsapp.event": (
                {"provider_id": self.provider.id, "body_digest": "d", "kind": "other"},
                {"outcome": "ignored"},
            ),
        }[model]

    def _rights(self, model, user):
        """The rights ``user`` has on ``model``, found by trying each one."""
        create_values, write_values = self._values(model)
        Model = self.env[model]

        def record():
            return Model.create(create_values).with_user(user)

        checks = {
            "r": lambda: record().read(list(write_values)),
            "w": lambda: record().write(write_values),
            "c": lambda: Model.with_user(user).create(create_values),
            "u": lambda: record().unlink(),
        }
        return "".join(op for op, check in checks.items() if self._attempt(check))

    def _record_for(self, model):
        """A record of ``model`` to press a button on (as superuser)."""
        if model not in self._records:
            self._records[model] = self._new_record_for(model)
        return self._records[model]

    def _new_record_for(self, model):
        if model == "sicantik.config":
            return self.config
        if model == "sicantik.permit":
            return self.permit
        if model == "sicantik.permit.type":
            return self.permit.permit_type_id
        if model == "sicantik.whatsapp.provider":
            return self.provider
        if model == "res.partner":
            return self.env.ref("base.partner_admin")
        create_values, _write_values = self._values(model)
        return self.env[model].create(create_values)

    # ------------------------------------------------------------------
    # access matrix
    # ------------------------------------------------------------------

    def test_every_model_of_the_addon_is_in_the_matrix(self):
        self.assertEqual(addon_models(self.env), set(ACCESS))
        self.assertEqual(addon_actions(self.env), MANAGER_ACTIONS | NAVIGATION_ACTIONS)

    @mute_logger("odoo.addons.base.models.ir_model", "odoo.addons.base.models.ir_rule")
    def test_model_access_matrix(self):
        observed = {
            model: {
                role: rights
                for role in ROLES
                if (rights := self._rights(model, self.users[role]))
            }
            for model in sorted(ACCESS)
        }
        self.assertEqual(observed, ACCESS, "\n".join(sorted(set(self._denials))))

    def test_a_manager_who_is_no_administrator_runs_connectors(self):
        """Creating, archiving or rescheduling a connector realigns the jobs,
        which the manager may not read: it must still work for them."""
        Config = self.env["sicantik.config"].with_user(self.user_manager)
        self.assertFalse(self.user_manager.has_group("base.group_system"))
        config = Config.create(
            {"name": "Berastagi", "api_url": "https://example.test/backoffice/api"}
        )
        config.write({"sync_interval": 5, "tz": "Asia/Makassar"})
        cron = self.env.ref(PERMIT_CRON)
        self.assertEqual((cron.interval_number, cron.interval_type), (5, "minutes"))
        config.active = False
        config.active = True
        config.unlink()
        self.assertTrue(cron.active, "the sandbox connector is still active")

    @mute_logger("odoo.addons.base.models.ir_model", "odoo.addons.base.models.ir_rule")
    def test_technical_detail_is_for_managers(self):
        log = self.env["sicantik.sync.log"]._start(self.config, "status")
        log._set_failure("server", "HTTP 500 from the server")
        readers = set()
        for role, user in self.users.items():
            if self._attempt(lambda u=user: log.with_user(u).read(["error_detail"])):
                readers.add(role)
        self.assertEqual(readers, {"manager", "admin"})

    @mute_logger(
        "odoo.addons.base.models.ir_model",
        "odoo.addons.base.models.ir_rule",
        "odoo.addons.sicantik_connector.models",
        "odoo.addons.sicantik_connector.tools",
    )
    def test_buttons_refused_before_any_request(self):
        self.sandbox.reset_stats()
        refused, pressed = {}, set()
        for model, method in sorted(MANAGER_ACTIONS | NAVIGATION_ACTIONS):
            record = self._record_for(model)
            for role, user in self.users.items():
                savepoint = self.cr.savepoint()
                before = self.requests_to()
                try:
                    result = getattr(record.with_user(user), method)()
                except (AccessError, UserError) as err:
                    refused[(model, method, role)] = err
                else:
                    pressed.add((model, method, role))
                    if (model, method) in NAVIGATION_ACTIONS:
                        self.assertEqual(result["type"], "ir.actions.act_window")
                finally:
                    savepoint.close(rollback=True)
                    self.env.invalidate_all()
                if role not in ("manager", "admin"):
                    with self.subTest(button=f"{model}.{method}", role=role):
                        self.assertEqual(
                            self.requests_to(), before, "a request before the refusal"
                        )
        for model, method in MANAGER_ACTIONS:
            for role in ROLES:
                allowed = role in ("manager", "admin")
                with self.subTest(button=f"{model}.{method}", role=role):
                    if allowed:
                        # Pressed, or refused for a reason other than rights.
                        error = refused.get((model, method, role))
                        self.assertNotIsInstance(error, AccessError)
                    else:
                        self.assertIn((model, method, role), refused)
        for model, method in NAVIGATION_ACTIONS:
            for role in ("user", "manager", "admin"):
                self.assertIn((model, method, role), pressed)

    @mute_logger("odoo.addons.base.models.ir_model", "odoo.addons.base.models.ir_rule")
    def test_dashboard_data_needs_sicantik_access(self):
        Dashboard = self.env["sicantik.dashboard"]
        for role, user in self.users.items():
            with self.subTest(role=role):
                allowed = self._attempt(Dashboard.with_user(user).get_dashboard_data)
                self.assertEqual(allowed, role in ("user", "manager", "admin"))

    # ------------------------------------------------------------------
    # URLs and secrets
    # ------------------------------------------------------------------

    def test_only_plain_http_urls_are_accepted(self):
        secret = "S3cretT0ken"
        for bad in (
            "ftp://example.test/backoffice/api",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "gopher://example.test/",
            "//example.test/backoffice/api",
            f"https://admin:{secret}@example.test/backoffice/api",
            f"https://example.test/backoffice/api?apikey={secret}",
            "https://example.test/backoffice/api#fragment",
            "https://example.test:99999/backoffice/api",
        ):
            with self.subTest(url=bad):
                with self.assertRaises(ValidationError) as caught:
                    self.config.api_url = bad
                    self.config.flush_recordset()
                self.assertNotIn(secret, str(caught.exception))
        self.config.api_url = "HTTPS://Example.test:8443/backoffice/api"
        self.config.flush_recordset()

    def test_a_url_with_secrets_stored_earlier_fails_cleanly_and_never_leaks(self):
        secret = "S3cretT0ken"
        for url in (
            f"http://admin:{secret}@127.0.0.1:{self.sandbox.port}/backoffice/api",
            f"{self.sandbox.url}?apikey={secret}",
        ):
            with self.subTest(url=url):
                # Stored before the constraint existed (or by hand in SQL).
                self.env.flush_all()
                self.cr.execute(
                    "UPDATE sicantik_config SET api_url = %s WHERE id = %s",
                    (url, self.config.id),
                )
                self.env.invalidate_all()
                self.sandbox.reset_stats()
                with self.assert_no_secret_in_logs(secret):
                    self.sync_permits()
                    with self.assertRaises(UserError) as caught:
                        self.config.action_test_connection()
                self.assertNotIn(secret, str(caught.exception))
                self.assertEqual(self.requests_to(), 0)
                log = self.logs("permits")[0]
                self.assertEqual((log.state, log.failure_type), ("failed", "config"))
                for text in (log.failure_reason, log.error_detail, log.message):
                    self.assertNotIn(secret, text or "")
                expected = "user name or password" if "@" in url else "query string"
                self.assertIn(expected, log.error_detail)

    def test_a_failing_sync_logs_no_secret(self):
        """The helper other parts use for their secrets (gateway tokens)."""
        self.sandbox.queue_faults(500, 500, 500, 500)
        with self.assert_no_secret_in_logs("S3cretT0ken") as lines:
            self.sync_permits()
        self.assertTrue(any("permit sync stopped" in line for line in lines))
        self.assertEqual(self.logs("permit_types")[0].failure_type, "server")

    # ------------------------------------------------------------------
    # neutralized copies
    # ------------------------------------------------------------------

    def _addon_crons(self):
        ids = (
            self.env["ir.model.data"]
            .search([("module", "=", ADDON), ("model", "=", "ir.cron")])
            .mapped("res_id")
        )
        return self.env["ir.cron"].with_context(active_test=False).browse(ids)

    @mute_logger(
        "odoo.addons.sicantik_connector.models",
        "odoo.addons.sicantik_connector.tools",
        "odoo.addons.base.models.ir_cron",
    )
    def test_neutralize_stops_every_outbound_job_and_call(self):
        crons = self._addon_crons()
        self.assertTrue(crons.filtered("active"), "active before")
        configs = self.env["sicantik.config"].with_context(active_test=False)
        # The addon's own file, run as `odoo-bin neutralize` runs it.
        (query,) = neutralize.get_neutralization_queries([ADDON])
        self.env.flush_all()
        self.cr.execute(query)
        self.env.invalidate_all()
        self.assertFalse(crons.filtered("active"))
        self.assertFalse(configs.search([("active", "=", True)]))
        for config in configs.search([]):
            self.assertTrue(config._server().endswith(".invalid"), config.api_url)
        providers = self.env["sicantik.whatsapp.provider"].search([])
        self.assertEqual(set(providers.mapped("provider_type")), {"log"})
        self.assertFalse(providers.filtered(lambda p: p.api_token or p.api_url))
        # Then the whole database, every module, as Odoo does it.
        neutralize.neutralize_database(self.cr)
        self.env.invalidate_all()
        self.assertTrue(
            self.env["ir.config_parameter"].sudo().get_param("database.is_neutralized")
        )
        # Staff reactivate the connector: the jobs stay off, and neither a
        # job run by hand nor a button reaches the server it pointed at.
        self.sandbox.reset_stats()
        self.config.active = True
        self.assertFalse(crons.filtered("active"))
        self.config.action_sync_now()
        self.env.ref(PERMIT_CRON).method_direct_trigger()
        with self.assertRaises(UserError):
            self.config.action_test_connection()
        self.assertEqual(self.requests_to(), 0)
        self.assertEqual(self.logs("permit_types")[0].failure_type, "connection")

    # ------------------------------------------------------------------
    # SQL
    # ------------------------------------------------------------------

    def test_sql_metacharacters_in_api_values_are_stored_verbatim(self):
        dataset = self.sandbox.dataset
        rows = dataset.rows
        chosen = []
        for permit, _who in rows:
            if permit.answers_cekperizinan and len(permit.applicants) == 1:
                if permit not in chosen:
                    chosen.append(permit)
        named, numbered, typed = chosen[:3]
        # The list serves the applicant of its row; cekperizinan the permit's.
        at = next(i for i, (p, _who) in enumerate(rows) if p is named)
        hostile_who = named.applicants[0]._replace(n_pemohon=HOSTILE)
        saved = [
            (named, "applicants", named.applicants),
            (named, "company", named.company),
            (numbered, "no_surat", numbered.no_surat),
            (typed, "n_perizinan", typed.n_perizinan),
        ]
        for permit, attr, value in saved:
            self.addCleanup(setattr, permit, attr, value)
        self.addCleanup(rows.__setitem__, at, rows[at])
        rows[at] = (named, hostile_who)
        named.applicants = (hostile_who,)
        # A connector of its own: the list never renames a stored permit.
        config = self.config.copy({"name": "Fresh"})
        named.company = named.company._replace(n_perusahaan=HOSTILE, npwp=HOSTILE)
        number = f"503/{HOSTILE}/2025"
        # The server's stored base64 column follows the number.
        index = dataset._by_no_izin
        self.addCleanup(index.pop, b64(number), None)
        index[b64(number)] = numbered
        numbered.no_surat = number
        typed.n_perizinan = HOSTILE
        self.sync_permits(config)
        self.sync_expiry()  # every permit is due once synced
        self.env.invalidate_all()
        Permit = self.env["sicantik.permit"]

        def stored(source):
            return Permit.search(
                [
                    ("config_id", "=", config.id),
                    ("pendaftaran_id", "=", source.pendaftaran_id),
                ]
            )

        self.assertEqual(HOSTILE, " ".join(HOSTILE.split()), "nothing to collapse")
        self.assertEqual(stored(named).applicant_name, HOSTILE)
        self.assertEqual(stored(named).company_name, HOSTILE)
        self.assertEqual(stored(named).npwp, HOSTILE)
        self.assertEqual(stored(numbered).no_surat, number)
        self.assertEqual(stored(numbered).expiry_check_state, "found")
        self.assertEqual(stored(typed).permit_type_id.name, HOSTILE)
        for each in (config, self.config):
            self.assertEqual(
                Permit.search_count([("config_id", "=", each.id)]),
                len(self.listed_ids()),
                "the table is intact",
            )
