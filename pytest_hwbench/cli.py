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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``hwbench`` with `argv` (default: the process arguments) and return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Any = args.handler
    return int(handler(args))


if __name__ == "__main__":
    raise SystemExit(main())
