from odoo.tests import BaseCase, tagged

from ..sandbox import SandboxServer
from ..tools.sicantik_api import SicantikApi
from .common import use_loopback_send


@tagged("post_install", "-at_install", "sicantik")
class TestClientInOdoo(BaseCase):
    """The client inside Odoo's own process: the same code the pure tier
    proves, here under Odoo's requests/urllib3/lxml versions."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        use_loopback_send(cls)
        cls.sandbox = SandboxServer(permits=300, seed=7).start()
        cls.addClassCleanup(cls.sandbox.stop)

    def test_reads_types_pages_and_details(self):
        dataset = self.sandbox.dataset
        with SicantikApi(self.sandbox.url, timeout=(10, 10)) as api:
            self.assertEqual(api.count_permit_types(), len(dataset.permit_types))
            self.assertEqual(len(api.list_permit_types()), len(dataset.permit_types))
            listed = {
                permit.pendaftaran_id
                for page in api.iter_issued_permits(page_size=100)
                for permit in page.permits
            }
            expected = {row["pendaftaran_id"] for row in dataset.listed_rows()}
            self.assertEqual(listed, expected)
            permit = next(
                p
                for p in dataset.permits
                if p.listed and p.answers_cekperizinan and p.no_surat.strip()
            )
            details = api.get_permit_details(permit.no_surat, permit.pendaftaran_id)
        self.assertEqual(details.pendaftaran_id, permit.pendaftaran_id)
        self.assertGreater(api.stats.as_dict()["requests"], 3)
