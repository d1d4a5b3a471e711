import importlib.util

import psycopg2
from lxml import etree

from odoo import fields
from odoo.modules.module import load_manifest
from odoo.tests import TransactionCase, tagged
from odoo.tools import mute_logger, sql
from odoo.tools.misc import file_path

OLD_CRONS = {
    "ir_cron_sync_permits": ("sicantik.config", "model._cron_sync_permits()"),
    "ir_cron_sync_expiry_dates": (
        "sicantik.config",
        "model._cron_sync_expiry_dates()",
    ),
    "ir_cron_check_expiring": ("sicantik.permit", "model._cron_check_expiring()"),
}


def _load_migration(version, name="post-migration.py"):
    path = file_path(f"sicantik_connector/migrations/{version}/{name}")
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
class TestMigrationLetters(TransactionCase):
    """18.0.1.2.0 on a database in the 18.0.1.1.0 shape: permits unique per
    registration, placeholders stored, no presence columns filled."""

    OLD = "sicantik_permit_pendaftaran_config_unique"
    NEW = "sicantik_permit_letter_unique"

    def _constraint_exists(self, name):
        self.env.cr.execute("SELECT 1 FROM pg_constraint WHERE conname = %s", [name])
        return bool(self.env.cr.rowcount)

    def _index_exists(self, name):
        self.env.cr.execute("SELECT 1 FROM pg_indexes WHERE indexname = %s", [name])
        return bool(self.env.cr.rowcount)

    def test_1_2_0_keys_permits_per_letter_and_keeps_their_history(self):
        started = fields.Datetime.now()
        config = self.env["sicantik.config"].create(
            {
                "name": "Old",
                "api_url": "https://sicantik.example.com/backoffice/api",
                "sync_pass_started_at": started,
            }
        )
        Permit = self.env["sicantik.permit"]
        lettered, junk = Permit.create(
            [
                {
                    "config_id": config.id,
                    "pendaftaran_id": "0004700301102025",
                    "no_surat": "503/0940/XI/TDP/DPM-PPTSP/2025",
                    "applicant_name": "Ukur Kaban",
                    "applicant_phone": "0",
                    "npwp": "00.000.000.0-000.000",
                },
                {
                    "config_id": config.id,
                    "pendaftaran_id": "0001200204052016",
                    "no_surat": "-",
                    "applicant_name": "0",
                    "company_name": "null",
                    "kelurahan": "GURUKINAYAN",
                },
            ]
        )
        lettered.message_post(body="Checked with the holder by phone.")
        reminder = self.env["sicantik.notification"].create(
            {
                "permit_id": lettered.id,
                "config_id": config.id,
                "stage": 30,
                "expiry_date": "2030-01-31",
            }
        )
        messages = lettered.message_ids
        # The 18.0.1.1.0 shape.
        self.env.flush_all()
        cr = self.env.cr
        cr.execute("DROP INDEX sicantik_permit_letter_unique")
        cr.execute(
            "ALTER TABLE sicantik_permit ADD CONSTRAINT "
            "sicantik_permit_pendaftaran_config_unique "
            "UNIQUE(config_id, pendaftaran_id)"
        )
        cr.execute(
            "UPDATE sicantik_permit SET listed_pass = NULL, missed_passes = NULL"
        )
        Permit.invalidate_model()

        _load_migration("18.0.1.2.0", "pre-permit_letters.py").migrate(cr, "18.0.1.1.0")
        self.assertFalse(self._constraint_exists(self.OLD))
        Permit.init()  # what the module update does between the two scripts
        _load_migration("18.0.1.2.0", "post-permit_letters.py").migrate(
            cr, "18.0.1.1.0"
        )
        Permit.invalidate_model()
        self.assertTrue(self._index_exists(self.NEW))
        # History kept: the same records, messages and reminders.
        self.assertEqual(lettered.message_ids, messages)
        self.assertEqual(reminder.permit_id, lettered)
        self.assertEqual(lettered.no_surat, "503/0940/XI/TDP/DPM-PPTSP/2025")
        self.assertEqual(lettered.applicant_name, "Ukur Kaban")
        # Placeholders emptied; real values kept.
        self.assertFalse(lettered.applicant_phone or lettered.npwp)
        self.assertFalse(junk.no_surat or junk.applicant_name or junk.company_name)
        self.assertEqual(junk.kelurahan, "GURUKINAYAN")
        # Counted as listed by the connector's current pass.
        self.assertEqual((lettered | junk).mapped("listed_pass"), [started] * 2)
        self.assertEqual((lettered | junk).mapped("missed_passes"), [0, 0])
        # A registration's second letter now fits; the same key still not.
        second = Permit.create(
            {
                "config_id": config.id,
                "pendaftaran_id": lettered.pendaftaran_id,
                "no_surat": "503/0941/XI/TDP/DPM-PPTSP/2025",
            }
        )
        self.assertTrue(second)
        self.env.flush_all()
        with mute_logger("odoo.sql_db"), self.assertRaises(psycopg2.IntegrityError):
            with self.env.cr.savepoint():
                Permit.create(
                    {"config_id": config.id, "pendaftaran_id": junk.pendaftaran_id}
                )
                self.env.flush_all()


@tagged("post_install", "-at_install", "sicantik")
class TestMigrationPermitPass(TransactionCase):
    """18.0.1.3.0 on a database in the 18.0.1.2.0 shape: the permit sync's
    cursor in three columns of the connector, no pass rows."""

    def test_1_3_0_moves_the_cursor_of_a_pass_under_way(self):
        Config = self.env["sicantik.config"]
        running, idle = Config.create(
            [
                {
                    "name": "Mid-pass",
                    "api_url": "https://sicantik.example.com/backoffice/api",
                    "sync_pass_state": "in_progress",
                },
                {"name": "Idle", "api_url": "https://idle.example.com/backoffice/api"},
            ]
        )
        # The 18.0.1.2.0 shape.
        self.env.flush_all()
        cr = self.env.cr
        cr.execute("DELETE FROM sicantik_permit_pass")
        cr.execute(
            "ALTER TABLE sicantik_config ADD COLUMN sync_offset int4, "
            "ADD COLUMN sync_page_digest varchar, ADD COLUMN sync_pass_rows int4"
        )
        cr.execute(
            "UPDATE sicantik_config SET sync_offset = 150, "
            "sync_page_digest = 'd1g3st', sync_pass_rows = 153 WHERE id = %s",
            [running.id],
        )
        self.env.invalidate_all()

        _load_migration("18.0.1.3.0", "pre-permit_pass.py").migrate(cr, "18.0.1.2.0")
        for column in ("sync_offset", "sync_page_digest", "sync_pass_rows"):
            self.assertFalse(sql.column_exists(cr, "sicantik_config", column))
        _load_migration("18.0.1.3.0", "post-permit_pass.py").migrate(cr, "18.0.1.2.0")
        self.assertFalse(sql.table_exists(cr, "sicantik_permit_pass_moving"))
        self.env.invalidate_all()
        # The pass under way resumes where it was; the idle one at row 0.
        self.assertEqual(
            (running.sync_offset, running.sync_page_digest, running.sync_pass_rows),
            (150, "d1g3st", 153),
        )
        self.assertEqual(len(running.sync_pass_ids), 1)
        self.assertEqual((idle.sync_offset, idle.sync_pass_rows), (0, 0))
        self.assertFalse(idle.sync_page_digest)
        self.assertEqual(len(idle.sync_pass_ids), 1)
        # The job finds the row the migration made instead of adding one.
        Pass = self.env["sicantik.permit.pass"]
        self.assertEqual(Pass._for_config(running), running.sync_pass_ids)


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
