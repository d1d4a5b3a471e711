"""The pure-Python tier: no Odoo here.

The addon root's ``__init__`` imports Odoo, so ``tools`` and ``sandbox`` are
imported as top-level packages from the addon root instead.
"""

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
