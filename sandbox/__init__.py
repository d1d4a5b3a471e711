"""SICANTIK sandbox: a loopback stand-in for the Karo backoffice REST API.

Pure standard library and no Odoo, so tests, benchmarks and the demo can all
use it; ``python -m sandbox --help`` runs it on its own.
"""

from .data import Applicant, Company, Dataset, Permit, generate_dataset
from .faults import KNOB_DEFAULTS, QUEUEABLE_FAULTS
from .server import SandboxServer

__all__ = [
    "KNOB_DEFAULTS",
    "QUEUEABLE_FAULTS",
    "Applicant",
    "Company",
    "Dataset",
    "Permit",
    "SandboxServer",
    "generate_dataset",
]
