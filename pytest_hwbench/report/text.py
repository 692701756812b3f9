"""Plain-text tables of tests that fit a terminal: shared by ``hwbench compare`` and ``matrix``."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Sequence

__all__ = ["MIN_TEST_WIDTH", "common_folder", "fit", "text_table"]

#: The narrowest the test column gets before each test's name goes on a line of its own.
MIN_TEST_WIDTH = 24


def common_folder(labels: Sequence[str]) -> str:
    """The folder every node id in `labels` lies under ("tests/unit/"), or ""."""
    folders = [label.split("::", 1)[0].rpartition("/")[0] for label in labels]
    if not folders or not all(folders):
        return ""
    common = posixpath.commonpath(folders)  # node ids use "/" on every OS
    return f"{common}/" if common else ""


def fit(text: str, width: int, keep: int = 0) -> str:
    """`text` cut to `width` characters in its middle, after its first `keep` (an indent).

    A node id keeps its start (the file) and, longer, its end (the test's name and parameters).
    """
    if len(text) <= width:
        return text
    room = width - keep - 1
    head = room // 3
    return text[: keep + head] + "…" + text[len(text) - (room - head) :]


def text_table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    numeric: Iterable[int],
    width: int = 100,
) -> list[str]:
    """Aligned columns that fit `width`.

    The first (the test) is cut from the left, or, where the figures leave it too little room,
    each test's name goes on a line of its own.
    """
    right = set(numeric)
    if not header[-1] and not any(r[-1] for r in rows):  # no status to show: no room for it
        header, rows = header[:-1], [r[:-1] for r in rows]
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))]
    others = sum(widths[1:]) + 2 * (len(widths) - 1)
    stacked = width - others < MIN_TEST_WIDTH and widths[0] > width - others
    if stacked:
        widths[0] = 0
    else:
        widths[0] = max(min(widths[0], width - others), len(header[0]))

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(widths[i]) if i in right else fit(cell, widths[i]).ljust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return "  ".join(parts).rstrip()

    if not stacked:
        return [line(header), "-" * len(line(header)), *(line(r) for r in rows)]
    lines = [header[0], line(["", *header[1:]]), "-" * min(width, len(line(["", *header[1:]])))]
    for row in rows:
        lines += [fit(row[0], width), line(["", *row[1:]])]
    return lines
