"""The ``hwbench`` command: inspect this machine's hardware and work with reports."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from pytest_hwbench._version import __version__
from pytest_hwbench.units import format_bytes

__all__ = ["main"]


def _format_inventory(inventory: dict[str, Any], out: TextIO) -> None:
    torch_info = inventory["torch"]
    builds = ", ".join(
        f"{key.upper()} {torch_info[key]}" for key in ("cuda", "hip", "xpu") if torch_info.get(key)
    )
    out.write(
        f"pytest-hwbench {inventory['pytest_hwbench']} · torch {torch_info.get('version')}"
        f"{f' ({builds})' if builds else ' (no GPU runtime in this build)'}"
        f" · Python {inventory['python']} · {inventory['platform']}\n"
    )
    for backend in inventory["backends"]:
        name = backend["name"]
        if backend["available"]:
            count = backend["device_count"]
            out.write(f"\n{name:<6} available, {count} device{'s' if count != 1 else ''}\n")
        else:
            out.write(f"\n{name:<6} unavailable: {backend['reason']}\n")
        for device in backend["devices"]:
            if "error" in device:
                out.write(f"  [{device['index']}] error: {device['error']}\n")
                continue
            props = device["properties"]
            details = [props["vendor"], format_bytes(props["total_memory_bytes"])]
            for key, label in (
                ("compute_capability", "compute capability"),
                ("multiprocessor_count", "SMs/cores"),
                ("driver_version", "driver"),
                ("runtime_version", "runtime"),
                ("uuid", "uuid"),
            ):
                if props.get(key) is not None:
                    details.append(f"{label} {props[key]}")
            out.write(f"  [{props['index']}] {props['name']}\n")
            out.write(f"      {' · '.join(details)}\n")
            caps = ", ".join(device["capabilities"]) or "none"
            out.write(f"      capabilities: {caps}\n")


def _cmd_info(args: argparse.Namespace) -> int:
    from pytest_hwbench.hardware import hardware_inventory

    inventory = hardware_inventory()
    if args.json:
        json.dump(inventory, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        _format_inventory(inventory, sys.stdout)
    return 0


def _cmd_recover(args: argparse.Namespace) -> int:
    from pytest_hwbench.report.writer import ReportError, recover_partial

    try:
        report = recover_partial(args.journal)
    except (OSError, ReportError) as exc:
        sys.stderr.write(f"hwbench recover: {exc}\n")
        return 2
    with open(args.output, "w", encoding="utf-8") as fh:
        json.dump(report, fh)
    sys.stdout.write(
        f"recovered {len(report['tests'])} test{'s' if len(report['tests']) != 1 else ''} "
        f"into {args.output} (marked incomplete)\n"
    )
    return 0


def _fail(command: str, message: object) -> int:
    sys.stderr.write(f"hwbench {command}: {message}\n")
    return 2


def _threshold(text: str) -> Any:
    """Read a ``--fail-on`` value (argparse shows only an ArgumentTypeError's message)."""
    from pytest_hwbench.report.compare import ThresholdError, parse_threshold

    try:
        return parse_threshold(text)
    except ThresholdError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _cmd_compare(args: argparse.Namespace) -> int:
    from pytest_hwbench.report.compare import compare_reports, load_for_compare
    from pytest_hwbench.report.writer import ReportError

    try:
        base = load_for_compare(args.base)
        new = load_for_compare(args.new)
        comparison = compare_reports(
            base, new, args.fail_on or [], base_name=args.base, new_name=args.new
        )
    except ReportError as exc:
        return _fail("compare", exc)
    sys.stdout.write(comparison.format_table())
    return 1 if comparison.failed else 0


def _load(command: str, path: str) -> dict[str, Any] | int:
    from pytest_hwbench.report.writer import ReportError, load_report

    try:
        return load_report(path)
    except ReportError as exc:
        return _fail(command, exc)


def _cmd_html(args: argparse.Namespace) -> int:
    from pytest_hwbench.report.html import MissingExtraError, plotly_js, write_html

    if not args.no_charts:
        try:
            plotly_js()
        except MissingExtraError as exc:
            return _fail("html", f"{exc} (or pass --no-charts for a page without timelines)")
    report = _load("html", args.report)
    if isinstance(report, int):
        return report
    try:
        size = write_html(report, args.output, charts=not args.no_charts)
    except OSError as exc:
        return _fail("html", f"cannot write {args.output}: {exc.strerror or exc}")
    count = len(report.get("tests", []))
    sys.stdout.write(
        f"wrote {args.output} ({format_bytes(size)}, {count} test{'s' if count != 1 else ''})\n"
    )
    return 0


def _cmd_trace(args: argparse.Namespace) -> int:
    from pytest_hwbench.report.trace import write_trace

    report = _load("trace", args.report)
    if isinstance(report, int):
        return report
    try:
        events = write_trace(report, args.output)
    except OSError as exc:
        return _fail("trace", f"cannot write {args.output}: {exc.strerror or exc}")
    sys.stdout.write(
        f"wrote {events} trace events to {args.output}; open it in https://ui.perfetto.dev "
        "or chrome://tracing\n"
    )
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from pytest_hwbench.report.export import export_report

    report = _load("export", args.report)
    if isinstance(report, int):
        return report
    text = json.dumps(export_report(report, args.format), indent=2) + "\n"
    if args.output in (None, "-"):
        sys.stdout.write(text)
        return 0
    try:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        return _fail("export", f"cannot write {args.output}: {exc.strerror or exc}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``hwbench`` with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="hwbench", description="Hardware inventory and report tools of pytest-hwbench."
    )
    parser.add_argument("--version", action="version", version=f"pytest-hwbench {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    info = commands.add_parser(
        "info", help="list every hardware backend: available or why not, devices, capabilities"
    )
    info.add_argument("--json", action="store_true", help="print the inventory as JSON")
    info.set_defaults(handler=_cmd_info)

    recover = commands.add_parser(
        "recover",
        help="turn the journal a crashed run left (REPORT.partial.jsonl) into a report",
    )
    recover.add_argument("journal", help="the REPORT.partial.jsonl file")
    recover.add_argument("-o", "--output", required=True, help="where to write the report")
    recover.set_defaults(handler=_cmd_recover)

    compare = commands.add_parser(
        "compare",
        help="compare two reports test by test; exit 1 when a --fail-on threshold is crossed",
        description="Compare two --hw-report files test by test (matched by node id, platform "
        "and device). Exit status: 0 no threshold crossed, 1 some test crossed one, 2 bad input.",
    )
    compare.add_argument("base", help="the reference report (BASE.json)")
    compare.add_argument("new", help="the report to check (NEW.json)")
    compare.add_argument(
        "--fail-on",
        action="append",
        type=_threshold,
        metavar="METRIC:CHANGE",
        help="fail when a test's metric grows by more than CHANGE: peak:+10%%, peak:+256MiB, "
        "time:+5%%, time:+5ms (peak = peak memory growth, time = benchmark median or duration); "
        "repeatable",
    )
    compare.set_defaults(handler=_cmd_compare)

    html = commands.add_parser(
        "html",
        help="write a self-contained HTML page of a report (needs pytest-hwbench[html])",
    )
    html.add_argument("report", help="the report (REPORT.json)")
    html.add_argument("-o", "--output", required=True, help="where to write the page")
    html.add_argument(
        "--no-charts",
        action="store_true",
        help="write the page without plotly (no memory timelines)",
    )
    html.set_defaults(handler=_cmd_html)

    trace = commands.add_parser(
        "trace", help="write a report as Chrome Trace Event JSON, for Perfetto or chrome://tracing"
    )
    trace.add_argument("report", help="the report (REPORT.json)")
    trace.add_argument("-o", "--output", required=True, help="where to write the trace")
    trace.set_defaults(handler=_cmd_trace)

    export = commands.add_parser("export", help="write a report's figures in another tool's format")
    export.add_argument("report", help="the report (REPORT.json)")
    export.add_argument(
        "--format",
        required=True,
        choices=["github-action-benchmark"],
        help="github-action-benchmark: customSmallerIsBetter JSON (peak memory growth in "
        "bytes, benchmark medians in seconds)",
    )
    export.add_argument("-o", "--output", help="where to write it (default: standard output)")
    export.set_defaults(handler=_cmd_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``hwbench`` with `argv` (default: the process arguments) and return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Any = args.handler
    return int(handler(args))


if __name__ == "__main__":
    raise SystemExit(main())
