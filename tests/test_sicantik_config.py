from psycopg2 import IntegrityError

from odoo.exceptions import AccessError, ValidationError
from odoo.tests import tagged
from odoo.tools import mute_logger

from .common import SicantikCommon


@tagged("post_install", "-at_install", "sicantik")
class TestSicantikConfig(SicantikCommon):
    def test_default_configuration_created_at_install(self):
        config = self.env.ref("sicantik_connector.sicantik_config_default")
        self.assertEqual(
            config.api_url, "https://perizinan.karokab.go.id/backoffice/api"
        )
        self.assertEqual(config.timeout, 30)
        self.assertEqual(config.sync_interval, 15)
        self.assertTrue(config.rate_limit_enabled)
        self.assertEqual(config.rate_limit, 10)
        self.assertFalse(config.insecure_url)

    def test_url_must_be_http_or_https_with_a_host(self):
        config = self.env["sicantik.config"].create(
            {"name": "Test", "api_url": "https://example.test/backoffice/api"}
        )
        for bad in (
            "ftp://example.test/api",
            "perizinan.karokab.go.id/backoffice/api",
            "file:///etc/passwd",
            "https://",
            "https://user:secret@example.test/api",
        ):
            with self.subTest(url=bad), self.assertRaises(ValidationError):
                config.api_url = bad
                config.flush_recordset()

    def test_plain_http_is_flagged(self):
        config = self.env["sicantik.config"].create(
            {"name": "LAN", "api_url": "http://sicantik.office.test/backoffice/api"}
        )
        self.assertTrue(config.insecure_url)
        config.api_url = "HTTPS://example.test/backoffice/api"
        self.assertFalse(config.insecure_url)

    @mute_logger("odoo.sql_db")
    def test_pacing_values_are_bounded(self):
        Config = self.env["sicantik.config"]
        for field, value in (
            ("timeout", 0),
            ("page_size", 0),
            ("page_size", 501),
            ("rate_limit", 0),
            ("max_workers", 0),
            ("sync_interval", 0),
        ):
            with (
                self.subTest(field=field, value=value),
                self.assertRaises(IntegrityError),
                self.cr.savepoint(),
            ):
                Config.create({"name": "Bad", field: value})

    @mute_logger("odoo.addons.base.models.ir_model", "odoo.addons.base.models.ir_rule")
    def test_access_levels(self):
        config = self.env.ref("sicantik_connector.sicantik_config_default")
        # A plain internal user does not see SICANTIK at all.
        with self.assertRaises(AccessError):
            config.with_user(self.user_internal).read(["name"])
        # A SICANTIK user reads the configuration but cannot change it.
        self.assertEqual(
            config.with_user(self.user_sicantik).read(["name"])[0]["name"],
            config.name,
        )
        with self.assertRaises(AccessError):
            config.with_user(self.user_sicantik).write({"timeout": 5})
        # A manager configures.
        config.with_user(self.user_manager).write({"timeout": 5})
        self.assertEqual(config.timeout, 5)

    def test_company_rule_hides_other_companies_servers(self):
        other = self.env["res.company"].create({"name": "Kabupaten Lain"})
        foreign = self.env["sicantik.config"].create(
            {"name": "Foreign", "company_id": other.id}
        )
        visible = (
            self.env["sicantik.config"]
            .with_user(self.user_manager)
            .search([("id", "=", foreign.id)])
        )
        self.assertFalse(visible)
        self.user_manager.company_ids |= other
        visible = (
            self.env["sicantik.config"]
            .with_user(self.user_manager)
            .with_context(allowed_company_ids=[other.id])
            .search([("id", "=", foreign.id)])
        )
        self.assertEqual(visible, foreign)
