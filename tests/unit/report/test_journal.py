"""The report's journal: every line on disk at once, through whatever a test does to its file."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_hwbench.report import recover_partial
from pytest_hwbench.report.writer import ReportWriter, _Journal, _MappedJournal

mapped_only = pytest.mark.skipif(
    not hasattr(os, "posix_fallocate"), reason="the journal is mapped only where room is reserved"
)


def _entry(i: int) -> dict[str, object]:
    return {
        "nodeid": f"test_x.py::test_{i}",
        "outcome": "passed",
        "platform": None,
        "device": None,
        "duration_s": 0.001,
        "host": None,
        "memory": None,
    }


def _journal_lines(journal: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in journal.read_bytes().rstrip(b"\0").splitlines()]


@pytest.fixture
def small_reserve(monkeypatch: pytest.MonkeyPatch) -> None:
    """Room reserved a page at a time: a few entries outgrow it."""
    monkeypatch.setattr(_MappedJournal, "RESERVE_BYTES", 4096)


@mapped_only
def test_lines_past_many_reservations_are_all_in_the_journal(
    tmp_path: Path, small_reserve: None
) -> None:
    writer = ReportWriter(tmp_path / "hw.json", {})
    for i in range(200):  # ~30 KB of entries: several reservations and remappings
        writer.add_test(_entry(i))
    journal = writer.journal
    assert journal is not None
    lines = _journal_lines(journal)
    assert "header" in lines[0]
    assert [line["test"]["nodeid"] for line in lines[1:]] == [  # type: ignore[index]
        f"test_x.py::test_{i}" for i in range(200)
    ]
    # Zero-padded up to its reservation while the run is on, at most one reservation ahead.
    size = journal.stat().st_size
    assert size % 4096 == 0
    assert 0 < size - len(journal.read_bytes().rstrip(b"\0")) <= 4096 + os.sysconf("SC_PAGE_SIZE")


@mapped_only
def test_a_deleted_journal_is_rewritten_whole_within_its_check_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_MappedJournal, "CHECK_EVERY_S", 0.0)
    (tmp_path / "out").mkdir()
    writer = ReportWriter(tmp_path / "out" / "hw.json", {})
    writer.add_test(_entry(0))
    journal = writer.journal
    assert journal is not None
    journal.unlink()
    journal.parent.rmdir()
    writer.add_test(_entry(1))
    assert [line.get("test", {}).get("nodeid") for line in _journal_lines(journal)] == [
        None,
        "test_x.py::test_0",
        "test_x.py::test_1",
    ]


@mapped_only
def test_a_closed_descriptor_neither_stops_the_journal_nor_receives_its_lines(
    tmp_path: Path, small_reserve: None
) -> None:
    writer = ReportWriter(tmp_path / "hw.json", {})
    journal = writer.journal
    assert journal is not None
    fd = writer._journal._fd  # type: ignore[union-attr]
    os.close(fd)
    other = os.open(tmp_path / "mine.txt", os.O_WRONLY | os.O_CREAT)  # takes the number
    try:
        assert other == fd
        for i in range(100):  # past the reservation: new room needs a descriptor of its own
            writer.add_test(_entry(i))
    finally:
        os.close(other)
    assert (tmp_path / "mine.txt").read_bytes() == b""
    assert len(_journal_lines(journal)) == 101


@mapped_only
def test_a_journal_left_behind_is_cut_to_its_lines(tmp_path: Path) -> None:
    writer = ReportWriter(tmp_path / "hw.json", {})
    writer.add_test(_entry(0))
    journal = writer.journal
    assert journal is not None
    writer._journal.close(remove=False)  # type: ignore[union-attr]  # as when the report fails
    data = journal.read_bytes()
    assert data.endswith(b"}\n")
    assert b"\0" not in data


def test_a_killed_process_leaves_every_line_it_wrote(tmp_path: Path) -> None:
    code = f"""
import os, signal
from pathlib import Path
from pytest_hwbench.report.writer import ReportWriter
writer = ReportWriter(Path({str(tmp_path / "hw.json")!r}), {{}})
for i in range(3):
    writer.add_test({{"nodeid": f"t.py::test_{{i}}", "outcome": "passed", "platform": None,
                     "device": None, "duration_s": 0.1, "host": None, "memory": None}})
print(writer.journal, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    report = recover_partial(Path(proc.stdout.strip()))
    assert [t["nodeid"] for t in report["tests"]] == [f"t.py::test_{i}" for i in range(3)]
    assert "errors" not in report  # the padding is not an unreadable line


@mapped_only
def test_a_file_system_that_cannot_reserve_gets_a_written_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unsupported(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(os, "posix_fallocate", unsupported)
    writer = ReportWriter(tmp_path / "hw.json", {})
    assert type(writer._journal) is _Journal
    writer.add_test(_entry(0))
    journal = writer.journal
    assert journal is not None
    assert [sorted(line) for line in _journal_lines(journal)] == [["header"], ["test"]]
    assert not journal.read_bytes().endswith(b"\0")
    assert not writer.errors
