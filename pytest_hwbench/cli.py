"""The ``hwbench`` command: inspect this machine's hardware and work with reports.

Every report is read through the report layer's one loader; the output commands and the export
choices are built from its table of formats (`pytest_hwbench.report.formats.FORMATS`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from pytest_hwbench._version import __version__
from pytest_hwbench.units import format_bytes

if TYPE_CHECKING:
    from pytest_hwbench.report.formats import OutputFormat

__all__ = ["main"]


def _format_inventory(inventory: dict[str, Any], out: TextIO) -> None:
    from pytest_hwbench.report.model import torch_runtimes

    torch_info = inventory["torch"]
    builds = ", ".join(torch_runtimes(torch_info))
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
        if backend.get("description"):
            out.write(f"       {backend['description']}\n")
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
        _format_mig(backend.get("mig_instances") or [], out)


def _format_mig(instances: list[dict[str, Any]], out: TextIO) -> None:
    """The MIG instances of a platform, and how to use more than the one CUDA shows a process."""
    if not instances:
        return
    n = len(instances)
    out.write(
        f"  MIG: {n} instance{'s' if n != 1 else ''}; CUDA shows a process one "
        f"(-n {n} --hw-gpus-per-worker=1 gives each worker its own)\n"
    )
    for instance in instances:
        memory = instance.get("total_memory_bytes")
        size = format_bytes(memory) if isinstance(memory, int) else "?"
        kind = instance.get("profile") or instance["name"]
        out.write(f"    {instance['uuid']}  {kind}  {size}\n")


def _cmd_info(args: argparse.Namespace) -> int:
    from pytest_hwbench.hardware import hardware_inventory

    inventory = hardware_inventory()
    if args.json:
        json.dump(inventory, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        _format_inventory(inventory, sys.stdout)
        sys.stdout.write(
            "\nBackends installed as packages (entry points) are listed above; one a project's "
            "conftest registers (the pytest_hwbench_register_backends hook) is seen only inside "
            "its pytest run: print the hw_info fixture there.\n"
        )
    return 0


def _cmd_recover(args: argparse.Namespace) -> int:
    from pytest_hwbench.report import ReportError, atomic_text_file, recover_partial

    try:
        report = recover_partial(args.journal)
    except (OSError, ReportError) as exc:
        return _fail("recover", exc)
    try:
        with atomic_text_file(args.output) as fh:
            fh.write(json.dumps(report))
    except OSError as exc:
        return _fail("recover", f"cannot write {args.output}: {exc.strerror or exc}")
    count = len(report["tests"])
    sys.stdout.write(
        f"recovered {count} test{'s' if count != 1 else ''} into {args.output} (marked "
        "incomplete)\n"
    )
    for error in report.get("errors") or ():
        sys.stdout.write(f"  {error}\n")
    return 0


def _fail(command: str, message: object) -> int:
    sys.stderr.write(f"hwbench {command}: {message}\n")
    return 2


def _threshold(text: str) -> Any:
    """Read a ``--fail-on`` value (argparse shows only an ArgumentTypeError's message)."""
    from pytest_hwbench.report.thresholds import ThresholdError, parse_threshold

    try:
        return parse_threshold(text)
    except ThresholdError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _cmd_compare(args: argparse.Namespace) -> int:
    from pytest_hwbench.report import ReportError
    from pytest_hwbench.report.compare import compare_reports, load_for_compare

    try:
        base = load_for_compare(args.base)
        new = load_for_compare(args.new)
        comparison = compare_reports(
            base, new, args.fail_on or [], base_name=args.base, new_name=args.new
        )
    except ReportError as exc:
        return _fail("compare", exc)
    # As wide as the terminal; 100 columns where the output is a file or a CI log.
    width = shutil.get_terminal_size((100, 24)).columns if sys.stdout.isatty() else 100
    sys.stdout.write(comparison.format_table(max(width, 60)))
    return 1 if comparison.failed else 0


def _write_format(command: str, fmt: OutputFormat, args: argparse.Namespace) -> int:
    """Check, read the report through the loader, write it in `fmt`; exit 2 on bad input."""
    from pytest_hwbench.report import ReportError, atomic_text_file, load_report

    options = {option.dest: getattr(args, option.dest) for option in fmt.options}
    problem = fmt.check(options) if fmt.check is not None else None
    if problem is not None:
        return _fail(command, problem)
    try:
        report = load_report(args.report, timelines=fmt.timelines)
    except ReportError as exc:
        return _fail(command, exc)
    if args.output in (None, "-"):
        fmt.write(report, sys.stdout, options)
        return 0
    try:
        with atomic_text_file(args.output) as fh:
            said = fmt.write(report, fh, options)
    except OSError as exc:
        return _fail(command, f"cannot write {args.output}: {exc.strerror or exc}")
    size = os.path.getsize(args.output)
    sys.stdout.write(f"wrote {args.output} ({format_bytes(size)}, {said})\n")
    return 0


def _cmd_format(args: argparse.Namespace) -> int:
    from pytest_hwbench.report.formats import FORMATS

    return _write_format(args.command, FORMATS[args.command], args)


def _cmd_export(args: argparse.Namespace) -> int:
    from pytest_hwbench.report.formats import FORMATS

    return _write_format("export", FORMATS[args.format], args)


def _matrix_sources(paths: Sequence[str]) -> list[str]:
    """The report files `paths` name: each file, and each folder's ``*.json`` files, sorted."""
    found: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            names = sorted(n for n in os.listdir(path) if n.endswith(".json"))
            found += [os.path.join(path, name) for name in names]
        else:
            found.append(path)
    return found


def _cmd_matrix(args: argparse.Namespace) -> int:
    from pytest_hwbench.report import ReportError, atomic_text_file
    from pytest_hwbench.report.compare import load_for_compare
    from pytest_hwbench.report.matrix import MatrixError, build_matrix

    sources = _matrix_sources(args.reports)
    if not sources:
        return _fail("matrix", "no report: the folders given hold no *.json file")
    try:
        reports = [(source, load_for_compare(source)) for source in sources]
        matrix = build_matrix(reports, args.baseline, history=args.history)
    except (ReportError, MatrixError) as exc:
        return _fail("matrix", exc)
    width = min(shutil.get_terminal_size((100, 24)).columns, 100)
    text = matrix.render(args.format, width)
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        with atomic_text_file(args.output) as fh:
            fh.write(text)
    except OSError as exc:
        return _fail("matrix", f"cannot write {args.output}: {exc.strerror or exc}")
    sys.stdout.write(
        f"wrote {args.output} ({len(matrix.rows)} tests, {len(matrix.columns)} columns)\n"
    )
    return 0


def _add_format_commands(commands: Any) -> None:
    """A command per format that has one, and ``export`` over the rest (from the table)."""
    from pytest_hwbench.report.formats import FORMATS, export_formats

    for fmt in FORMATS.values():
        if not fmt.command:
            continue
        command = commands.add_parser(fmt.name, help=f"write a report as {fmt.help}")
        command.add_argument("report", help="the report (REPORT.json)")
        command.add_argument("-o", "--output", required=True, help="where to write it")
        for option in fmt.options:
            command.add_argument(option.flag, action="store_true", help=option.help)
        command.set_defaults(handler=_cmd_format)
    exports = export_formats()
    export = commands.add_parser("export", help="write a report's figures in another tool's format")
    export.add_argument("report", help="the report (REPORT.json)")
    export.add_argument(
        "--format",
        required=True,
        choices=[fmt.name for fmt in exports],
        help="; ".join(f"{fmt.name}: {fmt.help}" for fmt in exports),
    )
    export.add_argument("-o", "--output", help="where to write it (default: standard output)")
    flags = {option.flag: option for fmt in exports for option in fmt.options}
    for option in flags.values():
        export.add_argument(option.flag, action="store_true", help=option.help)
    export.set_defaults(handler=_cmd_export)


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
        "time:+5%%, time:+5ms, duration:+25%%, energy:+10%%, energy:+5J (peak = peak memory "
        "growth, time = benchmark median, duration = setup + call + teardown, energy = the "
        "joules its device used); peak:+10%%,+1MiB fails only when both are crossed; repeatable",
    )
    compare.set_defaults(handler=_cmd_compare)

    matrix = commands.add_parser(
        "matrix",
        help="one table of tests across reports (machines) and their platforms, side by side",
        description="Set reports side by side: a column per report and platform, a row per "
        "test (one row for a test run once per platform), each cell its median and speedup "
        "against the baseline column, else its peak memory growth, else its energy; or why "
        "it has none (skipped, failed). A machine's reports at several commits are one column "
        "(the newest) with a history: each test's trend over the commits, its step changes "
        "beyond its own run-to-run spread listed.",
    )
    matrix.add_argument("reports", nargs="+", help="reports, or folders of *.json reports")
    matrix.add_argument(
        "--baseline", help="the column speedups are against: a machine label (default: the first)"
    )
    matrix.add_argument(
        "--format",
        default="table",
        choices=("table", "markdown", "csv", "json", "html"),
        help="table (fits the terminal), markdown (a pull request comment), csv, json, or html "
        "(one offline page: sortable, filterable, a row's bars across the columns and its "
        "history)",
    )
    matrix.add_argument("-o", "--output", help="where to write it (default: standard output)")
    matrix.add_argument(
        "--no-history",
        dest="history",
        action="store_false",
        help="every report its own column (a machine's told apart by commit), no history",
    )
    matrix.set_defaults(handler=_cmd_matrix)

    _add_format_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``hwbench`` with `argv` (default: the process arguments) and return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Any = args.handler
    return int(handler(args))


if __name__ == "__main__":
    raise SystemExit(main())
