"""Writing files: the report, journaled test by test, and the one rule for every output file.

The report's journal keeps each finished test, so a crash loses nothing; every command that
writes a file writes a temporary file and renames it over the target (`atomic_text_file`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import mmap
import os
import secrets
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from pytest_hwbench._version import __version__
from pytest_hwbench.report.model import SCHEMA_VERSION, ReportError, finite_json

__all__ = [
    "ReportWriter",
    "atomic_text_file",
    "journal_path",
    "leftover_journals",
    "recover_partial",
]

_JOURNAL_SUFFIX = ".partial.jsonl"
#: The longest file name most file systems take (NAME_MAX); a journal name is kept under it.
_NAME_MAX = 255
#: Room left for a run id ("<pid>-<UTC time>-<4 hex>", under 30 characters).
_RUN_ID_ROOM = 40


def journal_path(report_path: Path, run_id: str | None = None) -> Path:
    """Where a run journals its tests while it is in progress, beside the report.

    With `run_id` the name is this run's own (``hw.json.<run>.partial.jsonl``), so runs that
    share a report path never share (or delete) a journal; without it, the common prefix every
    run's journal of this report has. A report name too long for a journal name beside it is
    shortened, with a digest of the whole name so two long names stay apart.
    """
    name = report_path.name
    # The same room whether or not a run id is given: the prefix must be every journal's.
    room = _NAME_MAX - len(_JOURNAL_SUFFIX) - 2 - _RUN_ID_ROOM
    if len(name.encode("utf-8", "surrogateescape")) > room:
        digest = hashlib.sha1(name.encode("utf-8", "surrogateescape")).hexdigest()[:12]
        name = f"{name[: max(room // 2, 8)]}~{digest}"
    if run_id is None:
        return report_path.with_name(f"{name}.")
    return report_path.with_name(f"{name}.{run_id}{_JOURNAL_SUFFIX}")


def leftover_journals(report_path: Path) -> list[Path]:
    """Journals of earlier runs of this report that did not finish (their process is gone).

    A journal whose process still runs here is another run's, in progress, and left alone.
    """
    prefix = journal_path(report_path).name
    found = []
    try:
        names = os.listdir(report_path.parent)
    except OSError:
        return []
    for name in sorted(names):
        legacy = name == report_path.name + _JOURNAL_SUFFIX
        if not (legacy or (name.startswith(prefix) and name.endswith(_JOURNAL_SUFFIX))):
            continue
        run = name[len(prefix) : -len(_JOURNAL_SUFFIX)]
        pid_text = run.split("-", 1)[0]
        if not legacy and pid_text.isdigit() and _process_alive(int(pid_text)):
            continue
        found.append(report_path.with_name(name))
    return found


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: someone else's process, alive
        return True
    return True


def _regular_or_absent(path: Path) -> None:
    """Refuse to replace what is not a regular file (a device, a FIFO, a socket, a directory)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        raise IsADirectoryError(
            errno.EISDIR if stat.S_ISDIR(mode) else errno.EEXIST,
            f"not a regular file ({_file_kind(mode)}); give the path of a file to write",
            str(path),
        )


def _file_kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a regular file"


@contextlib.contextmanager
def atomic_text_file(path: str | os.PathLike[str]) -> Iterator[TextIO]:
    """A text stream whose content replaces `path` atomically once the block ends without error.

    Written to a temporary file beside it, synced, then renamed over `path`: a reader never sees
    half a file, and a failure leaves whatever was there before. A symlink is followed: its
    target is replaced, the link stays. What exists there must be a regular file: a device, a
    FIFO, a socket or a directory raises `OSError` before anything is written. Text that is not
    valid Unicode (a node id from a non-UTF-8 file name) is written back as the bytes it was.
    """
    target = Path(os.path.realpath(path))
    _regular_or_absent(target)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name[:200]}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as fh:
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


class _Journal:
    """A run's journal file: one JSON object a line, each on disk as soon as it is written.

    Lines are written with one ``write`` system call each, through a raw descriptor checked
    first to be still this file: a test may close descriptors it did not open, and a reused
    number would send our lines into its file. A lost descriptor (closed, or its directory
    deleted) is replaced by reopening the path (rewriting it whole when it is gone), so the
    journal keeps every line. `_MappedJournal` does the same without a system call a line.
    """

    #: How the file is opened: appended to here, mapped (and written in place) in a subclass.
    _MODE = os.O_WRONLY | os.O_APPEND

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1
        self._identity: tuple[int, int] | None = None
        self._open(os.O_CREAT | os.O_EXCL)

    def _open(self, extra_flags: int) -> None:
        flags = self._MODE | getattr(os, "O_CLOEXEC", 0) | extra_flags
        fd = os.open(self.path, flags, 0o666)
        info = os.fstat(fd)
        self._fd, self._identity = fd, (info.st_dev, info.st_ino)

    def _same_file(self) -> os.stat_result | None:
        """The descriptor's file when it is still the journal's (a closed one has none)."""
        try:
            info = os.fstat(self._fd)
        except OSError:
            return None
        return info if (info.st_dev, info.st_ino) == self._identity else None

    def _still_ours(self) -> bool:
        info = self._same_file()
        return info is not None and info.st_nlink > 0  # unlinked: its directory was deleted

    def write(self, line: str, replay: Callable[[], Iterable[str]]) -> None:
        """Append `line`; if the file was lost, rewrite it from `replay()` (every line so far)."""
        data = (line + "\n").encode("utf-8", "surrogateescape")
        if not self._still_ours():
            self._reopen(replay)
        _write_all(self._fd, data)

    def _reopen(self, replay: Callable[[], Iterable[str]]) -> None:
        if self._fd >= 0 and self._same_file() is not None:
            os.close(self._fd)  # ours, but unlinked; a number now someone else's stays open
        self._fd = -1
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._open(os.O_CREAT | os.O_TRUNC)
        self._write_afresh(_encoded_lines(replay()))

    def _write_afresh(self, data: bytes) -> None:
        """Write `data` into the file `_reopen` just created empty."""
        _write_all(self._fd, data)

    def close(self, *, remove: bool) -> None:
        """Close the file, and delete it when the report it backs is safely written."""
        if self._fd >= 0 and self._same_file() is not None:
            os.close(self._fd)
        self._fd = -1
        if remove:
            self.path.unlink(missing_ok=True)


class _MappedJournal(_Journal):
    """The journal as a shared mapping of its file: a line costs a copy, not a system call.

    A test's entry is otherwise two system calls (the descriptor's check and the write), which
    in place, between a test suite's own code, cost ~14 µs a test: the largest part of what a
    report adds to a trivial test. Bytes copied into a shared mapping are in the kernel's page
    cache at once, as written bytes are, so a killed or crashed process keeps every line (a
    crashed machine loses the unsynced tail either way). The file's blocks are reserved
    (``posix_fallocate``) before they are mapped: a full disk fails a reservation, never a copy
    (which would be a SIGBUS). The file is zero-padded up to its reservation while the run is
    on; `recover_partial` ignores the padding, and a normal close cuts it off.

    Closing the descriptor (a test closing descriptors it did not open) does not touch the
    mapping; a deleted file (a test deleting the report's directory) is seen within
    `CHECK_EVERY_S` and rewritten whole, as in `_Journal`.
    """

    #: How much file space is reserved ahead of the lines (~10,000 short tests' entries).
    RESERVE_BYTES = 4 << 20
    #: How often the path is checked to be still this journal's file.
    CHECK_EVERY_S = 0.25
    _MODE = os.O_RDWR  # a shared writable mapping needs a descriptor open for reading too

    def __init__(self, path: Path) -> None:
        self._map: mmap.mmap | None = None
        self._reserved = 0
        self._end = 0  # where the next line goes
        self._next_check = 0.0
        super().__init__(path)
        try:
            self._reserve(0)  # now: a file system that cannot map or reserve says so at once
        except OSError:
            os.close(self._fd)
            raise

    def write(self, line: str, replay: Callable[[], Iterable[str]]) -> None:
        """Copy `line` in; reserve more room, or rewrite a lost file from `replay()`, first."""
        data = (line + "\n").encode("utf-8", "surrogateescape")
        if self._end + len(data) > self._reserved or time.monotonic() >= self._next_check:
            self._prepare(len(data), replay)
        start = self._end
        self._end = start + len(data)
        self._map[start : self._end] = data  # type: ignore[index]

    def _prepare(self, size: int, replay: Callable[[], Iterable[str]]) -> None:
        self._next_check = time.monotonic() + self.CHECK_EVERY_S
        try:
            info = os.stat(self.path)
            lost = (info.st_dev, info.st_ino) != self._identity
        except FileNotFoundError:
            lost = True
        if lost:
            self._reopen(replay)
        if self._end + size > self._reserved:
            self._reserve(self._end + size)

    def _reserve(self, end: int) -> None:
        """Reserve and map the file up to `end` bytes and `RESERVE_BYTES` beyond."""
        if self._same_file() is None:  # a test closed our descriptor: the path is still ours
            self._fd = os.open(self.path, self._MODE | getattr(os, "O_CLOEXEC", 0))
        size = end + self.RESERVE_BYTES
        size += -size % mmap.PAGESIZE
        os.posix_fallocate(self._fd, self._reserved, size - self._reserved)
        mapping = mmap.mmap(self._fd, size)
        if self._map is not None:
            self._map.close()
        self._map, self._reserved = mapping, size

    def _reopen(self, replay: Callable[[], Iterable[str]]) -> None:
        if self._map is not None:
            self._map.close()  # the deleted file's: nothing will read it
        self._map, self._reserved, self._end = None, 0, 0
        super()._reopen(replay)

    def _write_afresh(self, data: bytes) -> None:
        self._reserve(len(data))
        self._map[: len(data)] = data  # type: ignore[index]
        self._end = len(data)

    def close(self, *, remove: bool) -> None:
        """Unmap and close; cut the padding off a journal that stays (a report not written)."""
        if self._map is not None:
            self._map.close()
            self._map = None
        if not remove and self._fd >= 0 and self._same_file() is not None:
            os.ftruncate(self._fd, self._end)
        super().close(remove=remove)


def _open_journal(path: Path) -> _Journal:
    """A run's journal: mapped where files can be reserved ahead (Linux), else written.

    A file system that cannot reserve or map the file (some FUSE and network mounts) gets the
    written journal; a full disk is an error either way.
    """
    if hasattr(os, "posix_fallocate"):
        try:
            return _MappedJournal(path)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise
            path.unlink(missing_ok=True)
    return _Journal(path)


def _encoded_lines(lines: Iterable[str]) -> bytes:
    return "".join(line + "\n" for line in lines).encode("utf-8", "surrogateescape")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:  # short writes are rare for a regular file: a signal, a nearly full disk
        written = os.write(fd, view)
        view = view[written:]


class ReportWriter:
    """Collects test entries; journals each one as it arrives; writes the report at the end.

    Nothing here raises into the test run: a journal that cannot be written (a full disk, a
    directory a test deleted) is recorded in `errors`, the entries stay in memory, and the
    report says it is incomplete. The journal (``REPORT.<run>.partial.jsonl``) is this run's
    own: if the process dies mid-run, `recover_partial` turns it into a report. Each entry is
    encoded once: its journal line is kept, and the report is those lines spliced together
    (text, which the garbage collector never walks, rather than thousands of dicts).
    """

    def __init__(
        self, path: Path, machine: Mapping[str, Any], run: Mapping[str, Any] | None = None
    ) -> None:
        self.path = path
        now = datetime.now(timezone.utc)
        self.created = now.isoformat(timespec="seconds")
        self.machine = dict(machine)
        #: What the run was of: its git commit, its CI job, the machine's label.
        self.run: dict[str, Any] = dict(run or {})
        #: How the run measured: warm-ups, the process's peak RSS (filled in at the end).
        self.session: dict[str, Any] = {}
        #: How many tests were added.
        self.test_count = 0
        #: What went wrong while journaling or writing, one sentence each (also in the report).
        self.errors: list[str] = []
        self._lines: list[str] = []  # every journal line, to rewrite a lost journal
        self._lock = threading.Lock()
        run_id = f"{os.getpid()}-{now.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(2)}"
        self._journal: _Journal | None = None
        self._journaling = False  # whether lines still go to the journal
        try:
            self._journal = _open_journal(journal_path(path, run_id))
            self._journaling = True
        except OSError as exc:
            self._fail("cannot open the journal", exc)
        self._append({"header": self._header(complete=False)})

    @property
    def journal(self) -> Path | None:
        """The run's journal, or None when it could not be written."""
        return None if self._journal is None else self._journal.path

    def _header(self, *, complete: bool) -> dict[str, Any]:
        header = {
            "schema": SCHEMA_VERSION,
            "created": self.created,
            "pytest_hwbench": __version__,
            "complete": complete,
            "machine": self.machine,
        }
        if self.run:
            header["run"] = self.run
        if self.session:
            header["session"] = self.session
        if self.errors:
            header["errors"] = list(self.errors)
        return header

    def _fail(self, what: str, exc: BaseException) -> None:
        detail = str(exc)
        if isinstance(exc, OSError) and exc.strerror:
            detail = exc.strerror + (f" ({exc.filename})" if exc.filename else "")
        self.errors.append(f"{what}: {type(exc).__name__}: {detail}")

    def _append(self, obj: Mapping[str, Any]) -> None:
        try:
            line = finite_json(obj)
        except (TypeError, ValueError) as exc:  # an object JSON cannot hold
            self._fail("an entry could not be journaled", exc)
            return
        self._append_line(line)

    def _append_line(self, line: str) -> None:
        self._lines.append(line)
        if self._journal is None or not self._journaling:
            return
        try:
            self._journal.write(line, self._lines_before_last)
        except OSError as exc:
            self._fail("journaling stopped (the entries are kept in memory)", exc)
            self._journaling = False

    def _lines_before_last(self) -> list[str]:
        """What a lost journal is rewritten with before the line being written."""
        return self._lines[:-1]

    def add_machine(self, key: str, inventory: Mapping[str, Any]) -> None:
        """Record another host's inventory (xdist workers on other machines)."""
        with self._lock:
            hosts = self.machine.setdefault("hosts", {})
            if key not in hosts:
                hosts[key] = dict(inventory)
                self._append({"host": {key: dict(inventory)}})

    def add_test(self, entry: Mapping[str, Any]) -> None:
        """Add one finished test's entry (and journal it at once); never raises."""
        with self._lock:
            self.test_count += 1
            self._append({"test": entry})

    def add_encoded_test(self, entry_json: str) -> None:
        """Add one finished test's entry, given as its compact JSON text (an object).

        For callers that encode the common entry themselves, faster than building its dicts;
        the text must be what `finite_json` makes of the entry. Never raises.
        """
        with self._lock:
            self.test_count += 1
            self._append_line(f'{{"test":{entry_json}}}')

    def report_text(self, *, complete: bool) -> str:
        """The whole report as JSON text (incomplete whenever something went wrong)."""
        with self._lock:
            header = finite_json(self._header(complete=complete and not self.errors))
            # Each test's line is '{"test":ENTRY}': its entry is the text between.
            tests = ",".join(line[8:-1] for line in self._lines if line.startswith('{"test":'))
            return f'{header[:-1]},"tests":[{tests}]}}'

    def finish(self, *, complete: bool) -> Path | None:
        """Write the report atomically and drop the journal; None when no test ran.

        A run that ran no test (``--collect-only``, everything deselected) replaces no report.
        Raises `OSError` when the report cannot be written: the journal then stays, for
        ``hwbench recover``.
        """
        if not self.test_count:
            if self._journal is not None:
                self._journal.close(remove=True)
            return None
        text = self.report_text(complete=complete)
        self.path.parent.mkdir(parents=True, exist_ok=True)  # a test may have deleted it
        with atomic_text_file(self.path) as fh:
            fh.write(text)
        if self._journal is not None:
            self._journal.close(remove=True)
        return self.path


def recover_partial(journal: str | os.PathLike[str]) -> dict[str, Any]:
    """Rebuild a report (``complete: false``) from the journal a crashed run left behind.

    Every readable line is kept: a line cut short or damaged (the one being written when the
    process died, a disk that filled) is skipped, and the report's ``errors`` say how many were.
    A test entry the schema refuses is skipped the same way.
    """
    from pytest_hwbench.report.loader import validate_report

    header: dict[str, Any] | None = None
    tests: list[dict[str, Any]] = []
    hosts: dict[str, Any] = {}
    skipped = 0
    # A mapped journal is zero-padded up to its reservation while its run is on.
    journal = Path(journal)
    text = journal.read_bytes().rstrip(b"\0").decode("utf-8", "surrogateescape")
    for line in text.split("\n"):
        if not line:
            continue  # the end of the last line
        try:
            obj = json.loads(line)
        except ValueError:
            skipped += 1
            continue
        if not isinstance(obj, dict):
            skipped += 1
        elif isinstance(obj.get("header"), dict) and header is None:
            header = obj["header"]
        elif "test" in obj:
            tests.append(obj["test"])
        elif isinstance(obj.get("host"), dict):
            hosts.update(obj["host"])
        else:
            skipped += 1
    if header is None:
        raise ReportError(f"{journal}: not a pytest-hwbench journal (no header line)")
    machine = header.get("machine")
    header["machine"] = machine = dict(machine) if isinstance(machine, dict) else {}
    if hosts:
        machine.setdefault("hosts", {}).update(hosts)
    errors = [str(e) for e in header.get("errors") or () if isinstance(e, str)]
    report = {**header, "complete": False, "errors": errors, "tests": []}
    for entry in tests:
        try:
            validate_report({**report, "tests": [entry]}, str(journal))
        except ReportError:
            skipped += 1
            continue
        report["tests"].append(entry)
    if skipped:
        errors.append(f"recovered from {journal.name}: {skipped} unreadable line(s) skipped")
    if not errors:
        del report["errors"]
    validate_report(report, str(journal))
    return report
