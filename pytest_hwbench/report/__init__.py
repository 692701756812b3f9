"""The ``--hw-report`` JSON file: its typed model, the one loader, writing, and output formats.

Apart from the rest of the package: it depends only on units and the version, so the ``hwbench``
tools read reports without the hardware or metrics layers.
"""

from pytest_hwbench.report.loader import load_report, validate_report
from pytest_hwbench.report.model import SCHEMA_VERSION, Report, ReportError, schema_path
from pytest_hwbench.report.writer import ReportWriter, atomic_text_file, recover_partial

__all__ = [
    "SCHEMA_VERSION",
    "Report",
    "ReportError",
    "ReportWriter",
    "atomic_text_file",
    "load_report",
    "recover_partial",
    "schema_path",
    "validate_report",
]
