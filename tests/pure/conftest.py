"""The pure-Python tier: no Odoo here.

The addon root's ``__init__`` imports Odoo, so ``tools`` and ``sandbox`` are
imported as top-level packages from the addon root instead.
"""

import sys
from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


@pytest.fixture
def sandbox(server, request):
    """The module's ``server`` (a ``SandboxServer`` fixture of the test
    module) with default knobs, no faults and fresh statistics; a module
    sets other knobs with ``SANDBOX_KNOBS``."""
    from sandbox import KNOB_DEFAULTS

    knobs = getattr(request.module, "SANDBOX_KNOBS", {})
    server.configure(**{**KNOB_DEFAULTS, **knobs})
    server.clear_faults()
    server.reset_stats()
    yield server
    server.clear_faults()
