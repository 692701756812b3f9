"""Every output format of a report, in one table: the ``hwbench`` CLI is built from it.

A format writes a validated report to a text stream. Formats with their own command (``hwbench
html``, ``hwbench trace``) take their options from the table; the others are the choices of
``hwbench export --format``. A new format is one entry here (and its module): the CLI's commands,
choices and help follow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from pytest_hwbench.report.export import EXPORTS
from pytest_hwbench.report.model import Report, finite_json

__all__ = ["FORMATS", "FormatOption", "OutputFormat", "export_formats"]


@dataclass(frozen=True)
class FormatOption:
    """A command-line switch of a format's command (``--no-charts``): on when given."""

    flag: str
    help: str

    @property
    def dest(self) -> str:
        """The option's key in the options a format's functions get ("no_charts")."""
        return self.flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class OutputFormat:
    """One way to write a report: its name, what it is, and how to write it."""

    name: str
    help: str
    #: Writes `report` to the stream with these options; returns what it wrote, for the user.
    write: Callable[[Report, TextIO, Mapping[str, Any]], str]
    #: A command of its own (``hwbench NAME``); otherwise a choice of ``hwbench export``.
    command: bool = False
    options: tuple[FormatOption, ...] = ()
    #: A problem found before the report is read (a missing extra), or None.
    check: Callable[[Mapping[str, Any]], str | None] | None = None
    #: Whether it reads the timelines (a report loads much faster without them).
    timelines: bool = True


def _plural(count: int, what: str) -> str:
    return f"{count:,} {what}{'s' if count != 1 else ''}"


def _check_html(options: Mapping[str, Any]) -> str | None:
    if options.get("no_charts"):
        return None
    from pytest_hwbench.report.html import MissingExtraError, plotly_js

    try:
        plotly_js()
    except MissingExtraError as exc:
        return f"{exc} (or pass --no-charts for a page without timelines)"
    return None


def _write_html(report: Report, out: TextIO, options: Mapping[str, Any]) -> str:
    from pytest_hwbench.report.html import write_page

    return _plural(write_page(report, out, charts=not options.get("no_charts")), "test")


def _write_trace(report: Report, out: TextIO, options: Mapping[str, Any]) -> str:
    from pytest_hwbench.report.trace import write_events

    events = write_events(report, out)
    return (
        f"{_plural(events, 'trace event')}; open it in https://ui.perfetto.dev or chrome://tracing"
    )


def _export_writer(
    export: Callable[..., Any],
) -> Callable[[Report, TextIO, Mapping[str, Any]], str]:
    def write(report: Report, out: TextIO, options: Mapping[str, Any]) -> str:
        data = export(report, **options)
        out.write(finite_json(data, indent=2) + "\n")
        return _plural(len(data), "figure") if isinstance(data, list) else "done"

    return write


def _first_line(text: str | None) -> str:
    return (text or "").strip().split("\n", 1)[0]


FORMATS: Mapping[str, OutputFormat] = {
    fmt.name: fmt
    for fmt in (
        OutputFormat(
            "html",
            "a self-contained, offline HTML page: machine, sortable tests, memory timelines "
            "(needs pytest-hwbench[html])",
            _write_html,
            command=True,
            options=(FormatOption("--no-charts", "write the page without plotly (no timelines)"),),
            check=_check_html,
        ),
        OutputFormat(
            "trace",
            "Chrome Trace Event JSON, for Perfetto or chrome://tracing",
            _write_trace,
            command=True,
        ),
        OutputFormat(
            "github-action-benchmark",
            _first_line(EXPORTS["github-action-benchmark"].__doc__),
            _export_writer(EXPORTS["github-action-benchmark"]),
            options=(
                FormatOption(
                    "--include-failed",
                    "also export failed, errored and crashed tests (left out by default)",
                ),
            ),
            timelines=False,
        ),
    )
}


def export_formats() -> list[OutputFormat]:
    """The formats ``hwbench export --format`` offers (those without a command of their own)."""
    return [fmt for fmt in FORMATS.values() if not fmt.command]
