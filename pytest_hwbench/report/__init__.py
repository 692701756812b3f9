"""The ``--hw-report`` JSON file: its schema, writing it safely, and reading it back."""

from pytest_hwbench.report.writer import (
    SCHEMA_VERSION,
    ReportError,
    ReportWriter,
    load_report,
    recover_partial,
    schema_path,
)

__all__ = [
    "SCHEMA_VERSION",
    "ReportError",
    "ReportWriter",
    "load_report",
    "recover_partial",
    "schema_path",
]
