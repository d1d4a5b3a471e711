"""tools/ is plain Python: the pure tier runs it without Odoo."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_tools_imports_nothing_from_odoo():
    # Odoo may be importable here: only a fresh interpreter can tell that no
    # module of tools/ pulls it in.
    code = (
        "import pkgutil, importlib, sys, tools;"
        "[importlib.import_module('tools.' + m.name)"
        " for m in pkgutil.iter_modules(tools.__path__)];"
        "assert len(sys.modules) > 50;"
        "assert not [n for n in sys.modules if n.split('.')[0] == 'odoo'], 'odoo'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
