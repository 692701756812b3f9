"""One self-contained HTML page of a report (``hwbench html``): inventory, tests, memory timelines.

The page works offline: plotly.js (the optional extra ``pytest-hwbench[html]``) is embedded once,
and each test's data sits in its own inert ``<script type="application/json">`` element, parsed
and charted only when its row is opened, so a report of thousands of tests opens at once.
"""

from __future__ import annotations

import html
import importlib
import os
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from pytest_hwbench.report.model import (
    benchmark_median_s,
    energy_joules,
    finite_json,
    primary_stats,
    throughput_text,
    torch_runtimes,
)
from pytest_hwbench.report.writer import atomic_text_file
from pytest_hwbench.units import format_bytes, format_duration, format_energy

__all__ = [
    "INSTALL_HINT",
    "MissingExtraError",
    "iter_html",
    "plotly_js",
    "render_html",
    "write_html",
    "write_page",
]

INSTALL_HINT = "pip install 'pytest-hwbench[html]'"
_KNOWN_OUTCOMES = frozenset(
    {"passed", "failed", "skipped", "error", "xfailed", "xpassed", "crashed"}
)


class MissingExtraError(ImportError):
    """plotly, which draws the memory timelines, is not installed."""


def plotly_js() -> str:
    """The plotly.js bundle to embed, from the installed plotly package."""
    try:
        # plotly is untyped: imported by name, so mypy sees Any rather than a missing stub.
        offline = importlib.import_module("plotly.offline")
    except ImportError as exc:
        raise MissingExtraError(
            f"the HTML report draws memory timelines with plotly, which is not installed "
            f"({exc}): {INSTALL_HINT}"
        ) from None
    js: str = offline.get_plotlyjs()
    # Inside a <script> element: a "</script" in the bundle would end it early.
    return js.replace("</script", "<\\/script").replace("<!--", "<\\!--")


def _asset(name: str) -> str:
    """The page's own stylesheet or script, shipped beside this module."""
    return (Path(__file__).parent / name).read_text(encoding="utf-8")


def _e(value: Any) -> str:
    """Escape any report value for HTML text or a quoted attribute."""
    return html.escape(str(value), quote=True)


def _script_json(obj: Any) -> str:
    """JSON safe inside a ``<script>`` element: no ``</script>``, ``<!--`` or ``-->`` can form."""
    text = finite_json(obj)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _ranks_memory(ranks: Sequence[Any]) -> dict[str, Any] | None:
    """A distributed test's ranks' memory as one entry ``memory``: a series per rank and series.

    The chart draws every rank ("rank 1 rss") on one time axis, from the ranks' common start
    (each rank's own zero is its ``start_s`` later): each rank's samples hold their value until
    its next one.
    """
    measured = [r for r in ranks if isinstance(r, Mapping) and isinstance(r.get("memory"), Mapping)]
    if not measured:
        return None
    offsets = [float(r.get("start_s") or 0.0) for r in measured]
    own_times = [
        [offset + t for t in (r["memory"].get("timeline") or {}).get("t", [])]
        for r, offset in zip(measured, offsets, strict=True)
    ]
    times = sorted({t for own in own_times for t in own})
    stats: dict[str, Any] = {}
    values: dict[str, list[Any]] = {}
    marks: list[dict[str, Any]] = []
    for rank, offset, own_t in zip(measured, offsets, own_times, strict=True):
        memory, prefix = rank["memory"], f"rank {rank.get('rank')} "
        timeline = memory.get("timeline") or {}
        for series, stat in (memory.get("series") or {}).items():
            stats[prefix + series] = stat
            samples = (timeline.get("series") or {}).get(series) or []
            held, position, last = [], 0, None
            for t in times:
                while position < len(own_t) and own_t[position] <= t:
                    last, position = samples[position], position + 1
                held.append(last if own_t and t <= own_t[-1] else None)
            values[prefix + series] = held
        marks += [
            {
                **mark,
                "t": offset + float(mark.get("t", 0.0)),
                "label": f"{prefix}{mark.get('label', '')}",
            }
            for mark in timeline.get("marks") or []
        ]
    first = measured[0]["memory"]
    return {
        "primary": f"rank {measured[0].get('rank')} {first.get('primary_series')}",
        "interval_s": first.get("interval_s"),
        "sampler": first.get("sampler"),
        "samples": len(times),
        "downsampled": any(
            (r["memory"].get("timeline") or {}).get("downsampled") for r in measured
        ),
        "warnings": [w for r in measured for w in r["memory"].get("warnings", [])],
        "stats": stats,
        "t": times,
        "values": values,
        "marks": marks,
    }


def _test_data(entry: Mapping[str, Any]) -> dict[str, Any]:
    """What the page needs of one test when its row is opened (a distributed one: its ranks)."""
    memory = entry.get("memory")
    data: dict[str, Any] = {
        "nodeid": entry.get("nodeid"),
        "outcome": entry.get("outcome"),
        "device": entry.get("device"),
        "platform": entry.get("platform"),
        "skip_reason": entry.get("skip_reason"),
        "failure": entry.get("failure"),
        "worker": entry.get("worker"),
        "host": entry.get("host"),
        "duration_s": entry.get("duration_s"),
        "median_s": benchmark_median_s(entry),
        "throughput": throughput_text(entry),
        "memory": None,
        "energy": entry.get("energy"),
    }
    if isinstance(memory, Mapping):
        timeline = memory.get("timeline") or {}
        data["memory"] = {
            "primary": memory.get("primary_series"),
            "interval_s": memory.get("interval_s"),
            "sampler": memory.get("sampler"),
            "samples": memory.get("samples"),
            "downsampled": timeline.get("downsampled", False),
            "warnings": memory.get("warnings", []),
            "stats": memory.get("series", {}),
            "t": timeline.get("t", []),
            "values": timeline.get("series", {}),
            "marks": timeline.get("marks", []),
        }
    ranks = entry.get("ranks")
    if isinstance(ranks, list):
        data["memory"] = _ranks_memory(ranks) or data["memory"]
        data["ranks"] = [
            {k: r.get(k) for k in ("rank", "device", "status")}
            for r in ranks
            if isinstance(r, Mapping)
        ]
    return data


def _test_row(index: int, entry: Mapping[str, Any]) -> str:
    outcome = str(entry.get("outcome", ""))
    stats = primary_stats(entry)
    duration = entry.get("duration_s")
    if stats is not None and isinstance(stats.get("peak_delta_bytes"), int):
        growth = stats["peak_delta_bytes"]
        peak_cells = (
            f'<td class="num" data-v="{growth}">{_e(format_bytes(growth))}</td>'
            f"<td>{'exact' if stats.get('exact_peak') else 'sampled'}</td>"
        )
    else:
        peak_cells = '<td class="num" data-v="">-</td><td>-</td>'
    if isinstance(duration, (int, float)):
        duration_cell = (
            f'<td class="num" data-v="{duration!r}">{_e(format_duration(duration))}</td>'
        )
    else:
        duration_cell = '<td class="num" data-v="">-</td>'
    joules = energy_joules(entry)
    if joules is not None:
        exact = bool((entry.get("energy") or {}).get("exact"))
        energy_cell = (
            f'<td class="num" data-v="{joules!r}">{_e(format_energy(joules))}'
            f"{'' if exact else '~'}</td>"
        )
    else:
        energy_cell = '<td class="num" data-v="">-</td>'
    failure = entry.get("failure")
    hover = entry.get("skip_reason") or (failure.get("message") if failure else None)
    title = f' title="{_e(hover)}"' if hover else ""
    css = outcome if outcome in _KNOWN_OUTCOMES else "other"
    if failure and failure.get("kind") in ("memory_limit", "energy_limit", "leak"):
        outcome = f"{outcome} ({str(failure['kind']).replace('_', ' ')})"
    return (
        f'<tr class="test" data-i="{index}" tabindex="0">'
        f'<td class="id">{_e(entry.get("nodeid", ""))}</td>'
        f"<td>{_e(entry.get('device') or '')}</td>"
        f'<td class="o o-{css}"{title}>{_e(outcome)}</td>'
        f"{peak_cells}{duration_cell}{energy_cell}</tr>\n"
    )


def _inventory_html(name: str | None, inventory: Mapping[str, Any]) -> str:
    torch_info = inventory.get("torch") or {}
    builds = ", ".join(torch_runtimes(torch_info))
    facts = [
        f"host {inventory.get('host', '?')}",
        str(inventory.get("platform", "")),
        f"Python {inventory.get('python', '?')}",
        f"torch {torch_info.get('version') or 'not probed'}" + (f" ({builds})" if builds else ""),
        f"pytest-hwbench {inventory.get('pytest_hwbench', '?')}",
    ]
    out = ['<section class="host">']
    if name is not None:
        out.append(f"<h3>{_e(name)}</h3>")
    out.append(f"<p>{' · '.join(_e(f) for f in facts if f)}</p>")
    unprobed = inventory.get("not_probed")
    if isinstance(unprobed, Mapping):
        names = ", ".join(map(str, unprobed.get("backends") or ())) or "-"
        out.append(f'<p class="muted">Not probed: {_e(names)} ({_e(unprobed.get("reason"))}).</p>')
    out.append(
        '<table class="inv"><thead><tr><th>backend</th><th>status</th><th>devices</th>'
        "</tr></thead><tbody>"
    )
    for backend in inventory.get("backends") or []:
        if not isinstance(backend, Mapping):
            continue
        if backend.get("available"):
            count = backend.get("device_count", 0)
            status = f"available, {count} device{'s' if count != 1 else ''}"
        else:
            status = f"unavailable: {backend.get('reason')}"
        devices = []
        for device in backend.get("devices") or []:
            if not isinstance(device, Mapping):
                continue
            if "error" in device:
                devices.append(f"[{_e(device.get('index'))}] error: {_e(device['error'])}")
                continue
            props = device.get("properties") or {}
            details = [str(props.get("vendor", ""))]
            if isinstance(props.get("total_memory_bytes"), int):
                details.append(format_bytes(props["total_memory_bytes"]))
            if props.get("compute_capability") is not None:
                details.append(f"compute capability {props['compute_capability']}")
            listed = device.get("capabilities")
            caps = "not probed" if listed is None else ", ".join(map(str, listed)) or "none"
            devices.append(
                f"[{_e(props.get('index', '?'))}] <b>{_e(props.get('name', '?'))}</b> "
                f"{_e(' · '.join(d for d in details if d))}"
                f'<br><span class="caps">capabilities: {_e(caps)}</span>'
            )
        css = "ok" if backend.get("available") else "off"
        out.append(
            f'<tr><td>{_e(backend.get("name", "?"))}</td><td class="{css}">{_e(status)}</td>'
            f"<td>{'<br>'.join(devices) or '-'}</td></tr>"
        )
    out.append("</tbody></table></section>")
    return "\n".join(out)


def _machine_html(machine: Any) -> str:
    if not isinstance(machine, Mapping) or not machine:
        return (
            "<p>No hardware inventory in this report (a report recovered from a crashed run).</p>"
        )
    parts: list[str] = []
    if isinstance(machine.get("hosts"), Mapping):
        parts.extend(
            _inventory_html(key, inv)
            for key, inv in machine["hosts"].items()
            if isinstance(inv, Mapping)
        )
    if "backends" in machine:
        parts.insert(0, _inventory_html(None, machine))
    return "\n".join(parts) or "<p>No hardware inventory in this report.</p>"


def _summary_html(report: Mapping[str, Any], tests: list[Mapping[str, Any]]) -> str:
    outcomes = Counter(str(t.get("outcome")) for t in tests)
    measured = sum(1 for t in tests if isinstance(t.get("memory"), Mapping))
    counts = ", ".join(f"{n} {_e(o)}" for o, n in sorted(outcomes.items()))
    text = (
        f"<p>{len(tests)} test{'s' if len(tests) != 1 else ''} ({counts or 'none'}); "
        f"{measured} with memory measured. Written {_e(report.get('created', '?'))} by "
        f"pytest-hwbench {_e(report.get('pytest_hwbench', '?'))} "
        f"(schema {_e(report.get('schema'))}).</p>"
    )
    if report.get("complete") is False:
        text += (
            '<p class="warn">This report is incomplete: the run was interrupted, crashed or '
            "stopped early.</p>"
        )
    return text


_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data: blob:; font-src data:"
)


def iter_html(report: Mapping[str, Any], *, charts: bool = True) -> Iterator[str]:
    """The page in chunks, for writing a large report without holding it twice in memory.

    With `charts`, plotly must be installed (`MissingExtraError` otherwise); without, the page
    says the timelines need the extra.
    """
    js = plotly_js() if charts else None
    tests = [t for t in report.get("tests") or [] if isinstance(t, Mapping)]
    title = f"pytest-hwbench report {report.get('created', '')}".strip()
    yield (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<link rel="icon" href="data:,">\n'
        f"<title>{_e(title)}</title>\n<style>{_asset('page.css')}</style>\n</head><body>\n"
        f"<h1>{_e(title)}</h1>\n"
    )
    yield _summary_html(report, tests)
    yield (
        f'<p class="warn" id="no-plotly" hidden>Memory timelines are not drawn: this page was '
        f"written without plotly. Install the extra, <code>{_e(INSTALL_HINT)}</code>, and run "
        "<code>hwbench html</code> again.</p>\n"
    )
    yield "<h2>Machine</h2>\n" + _machine_html(report.get("machine")) + "\n"
    yield (
        '<h2>Tests</h2>\n<p class="muted">Click a column to sort, a test to open its memory '
        "timeline (drag to zoom, double-click to reset). Peak growth is the peak minus the start "
        "of the test's primary memory series; <i>sampled</i> peaks may miss spikes shorter than "
        "the sampling interval.</p>\n"
        '<input id="filter" type="search" placeholder="filter tests by id" '
        'aria-label="filter tests by id">\n'
        '<table id="tests"><thead><tr><th data-type="text">test</th>'
        '<th data-type="text">device</th><th data-type="text">outcome</th>'
        '<th data-type="num">peak growth</th><th data-type="text">peak is</th>'
        '<th data-type="num">duration</th><th data-type="num">energy</th></tr></thead><tbody>\n'
    )
    chunk: list[str] = []
    for index, entry in enumerate(tests):
        chunk.append(_test_row(index, entry))
        if len(chunk) >= 1000:
            yield "".join(chunk)
            chunk.clear()
    yield "".join(chunk) + "</tbody></table>\n"
    for index, entry in enumerate(tests):
        yield (
            f'<script type="application/json" id="d-{index}">'
            f"{_script_json(_test_data(entry))}</script>\n"
        )
    if js is not None:
        yield f"<script>{js}</script>\n"
    yield f"<script>{_asset('page.js')}</script>\n</body></html>\n"


def render_html(report: Mapping[str, Any], *, charts: bool = True) -> str:
    """The whole page as a string (see `iter_html`)."""
    return "".join(iter_html(report, charts=charts))


def write_page(report: Mapping[str, Any], out: TextIO, *, charts: bool = True) -> int:
    """Write the page to the text stream `out`, chunk by chunk; return how many tests it shows."""
    for part in iter_html(report, charts=charts):
        out.write(part)
    return sum(1 for t in report.get("tests") or [] if isinstance(t, Mapping))


def write_html(
    report: Mapping[str, Any], path: str | os.PathLike[str], *, charts: bool = True
) -> int:
    """Write the page to `path` (atomically, as every output); return its size in bytes."""
    with atomic_text_file(path) as fh:
        write_page(report, fh, charts=charts)
        size = fh.tell()
    return size
