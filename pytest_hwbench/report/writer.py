"""Writing files: the report, journaled test by test, and the one rule for every output file.

The report's journal keeps each finished test, so a crash loses nothing; every command that
writes a file writes a temporary file and renames it over the target (`atomic_text_file`).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from pytest_hwbench._version import __version__
from pytest_hwbench.report.model import SCHEMA_VERSION, ReportError

__all__ = [
    "ReportWriter",
    "atomic_text_file",
    "journal_path",
    "recover_partial",
]

_JOURNAL_SUFFIX = ".partial.jsonl"


def journal_path(report_path: Path) -> Path:
    """Where tests are journaled while a run is in progress (next to the report)."""
    return report_path.with_name(report_path.name + _JOURNAL_SUFFIX)


@contextlib.contextmanager
def atomic_text_file(path: str | os.PathLike[str]) -> Iterator[TextIO]:
    """A text stream whose content replaces `path` atomically once the block ends without error.

    Written to a temporary file beside it, synced, then renamed over `path`: a reader never sees
    half a file, and a failure leaves whatever was there before. A symlink is followed: its
    target is replaced, the link stays.
    """
    target = Path(os.path.realpath(path))
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates the file 0600; an output is an artifact others read, like any new file.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ReportWriter:
    """Collects test entries; journals each one as it arrives; writes the report at the end.

    The journal (``REPORT.partial.jsonl``) is one JSON object a line, flushed per test: if the
    process dies mid-run, `recover_partial` turns it into a report marked incomplete.
    """

    def __init__(self, path: Path, machine: Mapping[str, Any]) -> None:
        self.path = path
        self.created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.machine = dict(machine)
        self.tests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._journal = open(journal_path(path), "w", encoding="utf-8")  # noqa: SIM115
        self._write_journal_line({"header": self._header(complete=False)})

    def _header(self, *, complete: bool) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "created": self.created,
            "pytest_hwbench": __version__,
            "complete": complete,
            "machine": self.machine,
        }

    def _write_journal_line(self, obj: Mapping[str, Any]) -> None:
        if self._journal.closed:
            return
        self._journal.write(json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n")
        self._journal.flush()

    def add_machine(self, key: str, inventory: Mapping[str, Any]) -> None:
        """Record another host's inventory (xdist workers on other machines)."""
        with self._lock:
            hosts = self.machine.setdefault("hosts", {})
            if key not in hosts:
                hosts[key] = dict(inventory)
                self._write_journal_line({"host": {key: dict(inventory)}})

    def add_test(self, entry: Mapping[str, Any]) -> None:
        """Add one finished test's entry (and journal it at once)."""
        with self._lock:
            self.tests.append(dict(entry))
            self._write_journal_line({"test": entry})

    def document(self, *, complete: bool) -> dict[str, Any]:
        """The whole report as a JSON-able dict."""
        with self._lock:
            return {**self._header(complete=complete), "tests": list(self.tests)}

    def finish(self, *, complete: bool) -> Path:
        """Write the report atomically and drop the journal."""
        # json.dumps, not json.dump: only the one-shot form runs the C encoder (~20x faster).
        text = json.dumps(self.document(complete=complete), separators=(",", ":"), allow_nan=False)
        with atomic_text_file(self.path) as fh:
            fh.write(text)
        self._journal.close()
        journal_path(self.path).unlink(missing_ok=True)
        return self.path


def recover_partial(journal: Path) -> dict[str, Any]:
    """Rebuild a report (``complete: false``) from the journal a crashed run left behind."""
    header: dict[str, Any] | None = None
    tests: list[dict[str, Any]] = []
    hosts: dict[str, Any] = {}
    with open(journal, encoding="utf-8") as fh:
        for line in fh:
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                break  # the line being written when the process died
            if "header" in obj:
                header = obj["header"]
            elif "test" in obj:
                tests.append(obj["test"])
            elif "host" in obj:
                hosts.update(obj["host"])
    if header is None:
        raise ReportError(f"{journal}: not a pytest-hwbench journal (no header line)")
    if hosts:
        header["machine"].setdefault("hosts", {}).update(hosts)
    return {**header, "complete": False, "tests": tests}
