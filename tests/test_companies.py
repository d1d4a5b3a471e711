from odoo.tests import HttpCase, new_test_user, tagged
from odoo.tests.common import JsonRpcException
from odoo.tools import mute_logger

from odoo.addons.sicantik_connector.sandbox import SandboxServer

from .common import ALLOWED_LOOPBACK, use_loopback_send
from .test_security import MANAGER_ACTIONS, NAVIGATION_ACTIONS

ADDON = "sicantik_connector"
WIZARDS = ("sicantik.config.expiry.sync", "sicantik.whatsapp.test.message")


@tagged("post_install", "-at_install", "sicantik")
class TestCompanyLines(HttpCase):
    """Two companies, a SICANTIK manager in each: over JSON-RPC, as the web
    client and any script would call, a manager of one company reaches no
    record of the other, and no button calls the other's server or gateway."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        use_loopback_send(cls)
        cls.sandbox = SandboxServer(permits=20, seed=5).start()
        cls.addClassCleanup(cls.sandbox.stop)
        env = cls.env
        env["ir.config_parameter"].sudo().set_param(
            "sicantik_connector.allowed_hosts", ALLOWED_LOOPBACK
        )
        env["sicantik.config"].search([]).write({"active": False})
        cls.company_a = env.company
        cls.company_b = env["res.company"].create({"name": "Kabupaten B"})
        cls.managers = {
            company: new_test_user(
                env,
                login=f"sicantik_manager_{tag}",
                password=f"sicantik_manager_{tag}",
                groups=f"{ADDON}.sicantik_connector_group_manager",
                company_id=company.id,
                company_ids=[(6, 0, company.ids)],
            )
            for tag, company in (("a", cls.company_a), ("b", cls.company_b))
        }
        cls.provider_b = env["sicantik.whatsapp.provider"].create(
            {
                "name": "B gateway",
                "provider_type": "log",
                "company_id": cls.company_b.id,
            }
        )
        cls.config_a, cls.config_b = env["sicantik.config"].create(
            [
                {
                    "name": name,
                    "api_url": cls.sandbox.url,
                    "company_id": company.id,
                    "whatsapp_provider_id": False,
                }
                for name, company in (("A", cls.company_a), ("B", cls.company_b))
            ]
        )
        cls.type_b = env["sicantik.permit.type"].create(
            {"name": "IZIN B", "config_id": cls.config_b.id}
        )
        cls.holder_b = env["res.partner"].create(
            {"name": "Holder B", "company_id": cls.company_b.id}
        )
        cls.permit_b = env["sicantik.permit"].create(
            {
                "config_id": cls.config_b.id,
                "pendaftaran_id": "0000000000000042",
                "no_surat": "503/42/B",
                "permit_type_id": cls.type_b.id,
                "partner_id": cls.holder_b.id,
            }
        )
        cls.log_b = env["sicantik.sync.log"].create(
            {"config_id": cls.config_b.id, "operation": "status"}
        )
        cls.notification_b = env["sicantik.notification"].create(
            {
                "permit_id": cls.permit_b.id,
                "config_id": cls.config_b.id,
                "stage": 30,
                "expiry_date": "2030-01-01",
                "state": "failed",
            }
        )
        cls.records_b = {
            "sicantik.config": cls.config_b,
            "sicantik.permit": cls.permit_b,
            "sicantik.permit.type": cls.type_b,
            "sicantik.sync.log": cls.log_b,
            "sicantik.notification": cls.notification_b,
            "sicantik.whatsapp.provider": cls.provider_b,
            "res.partner": cls.holder_b,
        }

    def call(self, model, method, *args, company=None):
        company = company or self.company_a
        return self.make_jsonrpc_request(
            f"/web/dataset/call_kw/{model}/{method}",
            {
                "model": model,
                "method": method,
                "args": list(args),
                "kwargs": {"context": {"allowed_company_ids": company.ids}},
            },
        )

    def refused(self, model, method, *args):
        with self.assertRaises(JsonRpcException) as caught:
            self.call(model, method, *args)
        return str(caught.exception)

    def wizard_for(self, model):
        """A wizard of manager A on company B's connector or provider (made
        as the web client makes it: a create call)."""
        values = {
            "sicantik.config.expiry.sync": {"config_id": self.config_b.id},
            "sicantik.whatsapp.test.message": {
                "provider_id": self.provider_b.id,
                "phone": "+6281234567890",
                "message": "Uji",
            },
        }[model]
        return self.call(model, "create", [values])

    @mute_logger("odoo.http", "odoo.addons.base.models.ir_rule")
    def test_no_button_reaches_another_companys_records(self):
        self.authenticate("sicantik_manager_a", "sicantik_manager_a")
        self.sandbox.reset_stats()
        for model, method in sorted(MANAGER_ACTIONS | NAVIGATION_ACTIONS):
            with self.subTest(button=f"{model}.{method}"):
                if model in WIZARDS:
                    ids = self.wizard_for(model)
                else:
                    ids = self.records_b[model].ids
                self.assertIn("AccessError", self.refused(model, method, ids))
        self.assertEqual(self.sandbox.stats()["requests"], 0, "B's server called")
        self.assertFalse(self.config_b.sync_requested)
        self.assertEqual(self.notification_b.state, "failed")

    @mute_logger("odoo.http", "odoo.addons.base.models.ir_rule")
    def test_no_crud_reaches_another_companys_records(self):
        self.authenticate("sicantik_manager_a", "sicantik_manager_a")
        for model, record in self.records_b.items():
            with self.subTest(model=model):
                self.assertIn(
                    "AccessError", self.refused(model, "read", record.ids, ["id"])
                )
                self.assertIn(
                    "AccessError",
                    self.refused(model, "write", record.ids, {"name": "Taken"})
                    if "name" in record._fields
                    else self.refused(model, "unlink", record.ids),
                )
        # And the dashboard of a company the user does not belong to.
        with self.assertRaises(JsonRpcException):
            self.call(
                "sicantik.dashboard", "get_dashboard_data", company=self.company_b
            )

    @mute_logger("odoo.http")
    def test_a_connector_cannot_use_another_companys_provider(self):
        self.authenticate("sicantik_manager_a", "sicantik_manager_a")
        message = self.refused(
            "sicantik.config",
            "write",
            self.config_a.ids,
            {"whatsapp_provider_id": self.provider_b.id},
        )
        self.assertIn("UserError", message)
        self.assertFalse(self.config_a.whatsapp_provider_id)

    def test_each_manager_still_works_on_their_own_company(self):
        """The control: the same calls pass for B's own manager."""
        self.authenticate("sicantik_manager_b", "sicantik_manager_b")
        action = self.call(
            "sicantik.config",
            "action_view_permits",
            self.config_b.ids,
            company=self.company_b,
        )
        self.assertEqual(action["res_model"], "sicantik.permit")
        self.call(
            "sicantik.permit",
            "action_check_expiry_now",
            self.permit_b.ids,
            company=self.company_b,
        )
        self.call(
            "sicantik.config",
            "write",
            self.config_b.ids,
            {"whatsapp_provider_id": self.provider_b.id},
            company=self.company_b,
        )
        self.assertEqual(self.config_b.whatsapp_provider_id, self.provider_b)
