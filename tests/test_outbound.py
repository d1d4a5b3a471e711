import socket
from unittest.mock import patch

import requests

from odoo.exceptions import UserError, ValidationError
from odoo.tests import tagged
from odoo.tests.common import _super_send
from odoo.tools import mute_logger

from odoo.addons.sicantik_connector.sandbox import SandboxServer

from .common import SicantikCommon

PARAM = "sicantik_connector.allowed_hosts"
PUBLIC = "93.184.216.34"  # an address on the internet (never connected to)


@tagged("post_install", "-at_install", "sicantik")
class TestOutboundAddresses(SicantikCommon):
    """Connectors and gateways may not make Odoo call inside addresses,
    neither when the URL is saved nor, after a DNS trick, when connecting."""

    def setUp(self):
        super().setUp()
        self.ICP = self.env["ir.config_parameter"].sudo()
        self.ICP.set_param(PARAM, "")  # the default: public addresses only

    def new_config(self, url):
        return self.env["sicantik.config"].create({"name": "Inside", "api_url": url})

    def test_inside_addresses_are_refused_when_saved(self):
        for url in (
            "http://127.0.0.1:8069/backoffice/api",
            "http://10.1.2.3/backoffice/api",
            "http://192.168.1.10/backoffice/api",
            "http://169.254.169.254/latest/meta-data",
            "http://[::ffff:127.0.0.1]:8080/backoffice/api",
            "http://2130706433/backoffice/api",  # 127.0.0.1 spelt as a number
            "http://localhost/backoffice/api",
        ):
            with self.subTest(url=url), self.assertRaises(ValidationError) as caught:
                self.new_config(url)
            self.assertIn(PARAM, str(caught.exception))
        provider = self.env["sicantik.whatsapp.provider"]
        with self.assertRaises(ValidationError):
            provider.create(
                {
                    "name": "Inside hook",
                    "provider_type": "webhook",
                    "api_url": "http://127.0.0.1:9/hook",
                }
            )

    def test_an_administrator_allows_a_host_or_a_network(self):
        self.ICP.set_param(PARAM, "sicantik.office.lan, 10.0.0.0/8")
        self.assertTrue(self.new_config("http://10.1.2.3/backoffice/api"))
        # A network never lets the metadata service through.
        self.ICP.set_param(PARAM, "169.254.0.0/16")
        with self.assertRaises(ValidationError):
            self.new_config("http://169.254.169.254/backoffice/api")
        # A bad entry opens nothing.
        self.ICP.set_param(PARAM, "http://10.1.2.3/ 10.0.0.0/8")
        with self.assertRaises(ValidationError):
            self.new_config("http://10.1.2.3/backoffice/api")

    @mute_logger("odoo.addons.sicantik_connector.tools.sicantik_api")
    def test_a_name_that_turns_inside_after_saving_is_refused_at_connect(self):
        sandbox = SandboxServer(permits=5, seed=1).start()
        self.addCleanup(sandbox.stop)
        # The failed test is logged in its own transaction: the test's here.
        self.registry.enter_test_mode(self.cr)
        self.addCleanup(self.registry.leave_test_mode)
        url = f"http://sicantik.example.test:{sandbox.port}/backoffice/api"
        answers = {"address": PUBLIC}
        real = socket.getaddrinfo

        def rebinding(host, port, *args, **kwargs):
            if str(host).startswith("sicantik.example.test"):
                return real(answers["address"], port, *args, **kwargs)
            return real(host, port, *args, **kwargs)

        with patch("socket.getaddrinfo", rebinding):
            config = self.new_config(url)  # public when saved
            answers["address"] = "127.0.0.1"  # inside when connecting
            # The harness refuses every host but localhost before any
            # connection; here the name is only ever resolved to loopback.
            with patch.object(requests.sessions.Session, "send", _super_send):
                with self.assertRaises(UserError) as caught:
                    config.action_test_connection()
        self.assertIn(PARAM, str(caught.exception))
        self.assertEqual(sandbox.stats()["requests"], 0, "nothing reached it")
