"""The ``--hw-report`` JSON file: its typed model, the one loader, writing, and output formats.

Apart from the rest of the package: it depends only on units and the version, so the ``hwbench``
tools read reports without the hardware or metrics layers. Its names load on first use: a run
that writes a report needs the model and the writer, not the loader's validation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_hwbench._lazy import lazy_exports

if TYPE_CHECKING:
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

_EXPORTS = {
    "SCHEMA_VERSION": "model",
    "Report": "model",
    "ReportError": "model",
    "schema_path": "model",
    "load_report": "loader",
    "validate_report": "loader",
    "ReportWriter": "writer",
    "atomic_text_file": "writer",
    "recover_partial": "writer",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
