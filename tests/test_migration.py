import importlib.util

from lxml import etree

from odoo.modules.module import load_manifest
from odoo.tests import TransactionCase, tagged
from odoo.tools.misc import file_path

OLD_CRONS = {
    "ir_cron_sync_permits": ("sicantik.config", "model._cron_sync_permits()"),
    "ir_cron_sync_expiry_dates": (
        "sicantik.config",
        "model._cron_sync_expiry_dates()",
    ),
    "ir_cron_check_expiring": ("sicantik.permit", "model._cron_check_expiring()"),
}


def _load_migration(version):
    path = file_path(f"sicantik_connector/migrations/{version}/post-migration.py")
    spec = importlib.util.spec_from_file_location("sicantik_migration", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@tagged("post_install", "-at_install", "sicantik")
class TestMigration(TransactionCase):
    def test_1_1_0_points_the_moved_jobs_at_their_new_models(self):
        """A database installed before the jobs moved keeps its scheduled
        actions (noupdate data); the upgrade script rewrites them."""
        crons = {name: self.env.ref(f"sicantik_connector.{name}") for name in OLD_CRONS}
        for name, (model, code) in OLD_CRONS.items():
            crons[name].write(
                {"model_id": self.env["ir.model"]._get_id(model), "code": code}
            )
        _load_migration("18.0.1.1.0").migrate(self.env.cr, "18.0.1.0.0")
        for name, cron in crons.items():
            model = self.env[cron.model_id.model]
            method = cron.code.removeprefix("model.").removesuffix("()")
            self.assertNotEqual(cron.model_id.model, OLD_CRONS[name][0])
            self.assertTrue(callable(getattr(model, method, None)), cron.code)


@tagged("post_install", "-at_install", "sicantik")
class TestDataFiles(TransactionCase):
    def test_every_function_the_data_files_call_exists(self):
        """Demo data is not installed by the test tier: a renamed method
        called by a data file would only fail in `make run`."""
        manifest = load_manifest("sicantik_connector")
        calls = []
        for rel in manifest["data"] + manifest["demo"]:
            if rel.endswith(".xml"):
                tree = etree.parse(file_path(f"sicantik_connector/{rel}"))
                calls += [
                    (rel, n.get("model"), n.get("name")) for n in tree.iter("function")
                ]
        self.assertTrue(calls)
        for rel, model, name in calls:
            with self.subTest(file=rel, call=f"{model}.{name}"):
                self.assertTrue(callable(getattr(self.env[model], name, None)))
