import ast
from pathlib import Path

from tools import const


def test_user_agent_names_the_manifest_version():
    """The client announces the addon's version: the manifest's, so the two
    cannot drift apart at a version bump."""
    manifest = Path(__file__).resolve().parents[2] / "__manifest__.py"
    version = ast.literal_eval(manifest.read_text())["version"]
    assert const.ADDON_VERSION == version
    assert version in const.USER_AGENT
