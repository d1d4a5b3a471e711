import re
from collections import Counter

from odoo.exceptions import ValidationError
from odoo.tests import TransactionCase, tagged
from odoo.tools.misc import file_path
from odoo.tools.translate import (
    PoFileReader,
    TranslationModuleReader,
    code_translations,
)

ADDON = "sicantik_connector"
LANG = "id_ID"
PO_FILE = f"{ADDON}/i18n/id.po"

# What must survive translation untouched: printf placeholders, str.format
# fields (the reminder templates), HTML/XML tags and entities.
PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*\d*(?:\.\d+)?[sdifrx%]")
BRACES = re.compile(r"\{\{|\}\}|\{[^{}\s]*\}")
TAGS = re.compile(r"</?[A-Za-z][\w.:-]*")
ENTITIES = re.compile(r"&#?\w+;")


def placeholders(text):
    return Counter(
        PRINTF.findall(text)
        + BRACES.findall(text)
        + TAGS.findall(text)
        + ENTITIES.findall(text)
    )


def positional(text):
    return [p for p in PRINTF.findall(text) if not p.startswith("%(")]


@tagged("post_install", "-at_install", "sicantik")
class TestI18n(TransactionCase):
    """The Indonesian catalogue covers every string of the addon, keeps every
    placeholder, and a user working in Indonesian sees it."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # The connector below points at loopback (nothing listens there).
        cls.env["ir.config_parameter"].sudo().set_param(
            "sicantik_connector.allowed_hosts", "127.0.0.1"
        )
        cls.catalogue = {}
        for row in PoFileReader(file_path(PO_FILE)):
            if row["module"] == ADDON and row["value"]:
                cls.catalogue.setdefault(row["src"], row["value"])

    def test_catalogue_covers_every_source_string(self):
        sources = {
            source
            for module, _type, _name, _res_id, source, _value, _comments in (
                TranslationModuleReader(self.env.cr, modules=[ADDON])
            )
            if module == ADDON
        }
        self.assertGreater(len(sources), 100, "the module reader found no terms")
        missing = sorted(sources - set(self.catalogue))
        self.assertFalse(
            missing,
            f"{len(missing)} string(s) of the addon have no Indonesian "
            "translation in i18n/id.po (run `make i18n`, then translate):\n"
            + "\n".join(repr(m) for m in missing),
        )

    def test_placeholders_are_kept(self):
        broken = [
            f"{source!r}\n    -> {value!r}"
            for source, value in self.catalogue.items()
            if placeholders(source) != placeholders(value)
        ]
        self.assertFalse(
            broken,
            "these translations lose or add placeholders, tags or entities:\n"
            + "\n".join(broken),
        )
        # Positional %s cannot be reordered: they must come in the same order.
        for source, value in self.catalogue.items():
            self.assertEqual(positional(source), positional(value), source)

    def test_indonesian_user_sees_indonesian(self):
        self.env["res.lang"]._activate_lang(LANG)
        module = self.env["ir.module.module"].search([("name", "=", ADDON)])
        module._update_translations([LANG])
        user = self.env["res.users"].create(
            {
                "name": "Petugas Perizinan",
                "login": "petugas_id",
                "lang": LANG,
                "groups_id": [
                    (4, self.env.ref(f"{ADDON}.sicantik_connector_group_manager").id)
                ],
            }
        )
        env = self.env(
            user=user, context=self.env["res.users"].with_user(user).context_get()
        )
        self.assertEqual(env.lang, LANG)

        # a menu
        menu = self.env.ref(f"{ADDON}.sicantik_permit_menu")
        self.assertEqual(menu.with_env(env).name, "Izin")
        self.assertEqual(menu.with_context(lang="en_US").name, "Permits")

        # a field label, its help and a selection label
        Permit = env["sicantik.permit"]
        fields = Permit.fields_get(["expiry_date", "status", "expiry_state"])
        self.assertEqual(fields["expiry_date"]["string"], "Tanggal Kedaluwarsa")
        self.assertEqual(dict(fields["status"]["selection"])["revoked"], "Dicabut")
        self.assertEqual(
            dict(fields["expiry_state"]["selection"])["expired"], "Kedaluwarsa"
        )
        self.assertIn("Dihitung ulang", fields["expiry_state"]["help"])

        # an error message raised by the code, with its placeholder filled in
        config = self.env["sicantik.config"].create(
            {"name": "Karo", "api_url": "http://127.0.0.1:9/backoffice/api"}
        )
        with self.assertRaises(ValidationError) as caught:
            config.with_env(env).write({"api_url": "ftp://"})
        message = str(caught.exception)
        self.assertIn("URL API", message)
        self.assertIn("Karo", message)
        self.assertNotIn("must start with", message)

        # the model name shown in breadcrumbs
        self.assertEqual(
            env["ir.model"]._get("sicantik.permit").name,
            self.catalogue[Permit._description],
        )

        # the dashboard's JS/OWL strings, as the web client downloads them
        web = {
            message["id"]: message["string"]
            for message in code_translations.get_web_translations(ADDON, LANG)[
                "messages"
            ]
        }
        self.assertTrue(web, "no translated string for the dashboard")
        for source, value in web.items():
            self.assertEqual(value, self.catalogue.get(source), source)
        self.assertTrue(any(source != value for source, value in web.items()))
