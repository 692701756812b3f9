"""The RSS of this process: cheap reads, the kernel's high-water mark, and a peak probe.

The readers hold their /proc files open (one syscall a read); `RSSPeakProbe` gives a stretch of
code's start, end and exact peak RSS without a metric, a sampler or a timeline. This module
loads nothing else of the metrics, so profiling every test stays cheap.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from collections.abc import Callable, Hashable
from typing import Any

from pytest_hwbench.hardware.peak_counters import (
    join_shared_counter,
    release_shared_counter,
    reset_shared_counter,
)

__all__ = [
    "RESET_SLACK_BYTES",
    "HostRSSReader",
    "RSSPeakProbe",
    "allow_rss_resets",
    "heap_trimmer",
    "hold_malloc_thresholds",
    "process_peak_rss_bytes",
    "read_rss_bytes",
    "read_rss_high_water_bytes",
    "read_rss_raw",
    "read_vmhwm_bytes",
    "release_freed_memory",
    "reset_rss_high_water",
    "reset_vmhwm",
    "rss_from_raw",
    "rss_high_water",
    "vmhwm_counter",
]


_IS_LINUX = sys.platform.startswith("linux")
if sys.platform.startswith("linux"):  # the form type checkers understand
    import resource

    # RUSAGE_THREAD: its ru_maxrss is the process's (the kernel takes the mm's mark and the exec
    # floor for either), without RUSAGE_SELF's sum of every thread's CPU time, which locks the
    # runqueue of each CPU where one of torch's threads runs (~0.5 µs instead of 1-2 µs).
    _MAXRSS_WHO = resource.RUSAGE_THREAD
#: This process's pid, renewed in a forked child (os.getpid() on every read costs more).
_pid = os.getpid()
#: Forks this process has not yet noticed it came from: the fork handler appends, and the next
#: read that needs per-process state renews it. The handler is a bound `list.append`, not a
#: function of this module: the interpreter holds fork handlers until its very end, and one that
#: reached this module's globals would reach pytest's assertion rewriter (the module's loader)
#: and through it every object of the test session, keeping them all alive through the first
#: garbage collections of interpreter shutdown (a full extra pass over the session's objects).
_forks_unseen: list[None] = []
_AFTER_FORK_IN_CHILD = functools.partial(_forks_unseen.append, None)
#: This process's VmHWM among the shared high-water counters (one tuple, not one per probe).
_vmhwm_key = ("vmhwm", _pid)


class _ProcFile:
    """A /proc/<pid> file kept open per process (reopened after fork): one syscall a use.

    One ``os.pread`` of a held statm fd costs ~1.5 µs against ~11 µs for psutil.
    """

    def __init__(self, name: str, flags: int) -> None:
        self._name, self._flags = name, flags
        self._fd: int | None = None
        self._pid = -1
        self._lock = threading.Lock()

    def fd(self) -> int:
        """The open file descriptor of this process's file."""
        if _forks_unseen:
            _forget_process_state()
        fd = self._fd
        if fd is not None and self._pid == _pid:
            return fd
        with self._lock:
            if self._fd is None or self._pid != _pid:
                # /proc/self is resolved at open time: a forked child opens its own file, and
                # the parent's descriptor it inherited is left alone (the parent still uses it).
                self._fd = os.open(f"/proc/{_pid}/{self._name}", self._flags)
                self._pid = _pid
            return self._fd


_statm_file = _ProcFile("statm", os.O_RDONLY)
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class HostRSSReader:
    """Reads this process's resident set size: a held /proc/self/statm fd on Linux, else psutil."""

    def __init__(self) -> None:
        self._page = _PAGE_SIZE
        self._process: Any = None
        self._pid = -1

    def read(self) -> int:
        """Current RSS of this process in bytes."""
        if _IS_LINUX:  # `from_raw(read_raw())`, inlined: every profiled test reads it
            return int(os.pread(_statm_file.fd(), 128, 0).split()[1]) * self._page
        return self.from_raw(self.read_raw())

    def read_raw(self) -> bytes | int:
        """The RSS as read, undecoded: statm's text on Linux (one syscall), else bytes."""
        if _IS_LINUX:
            return os.pread(_statm_file.fd(), 128, 0)
        if _forks_unseen:
            _forget_process_state()
        if self._process is None or self._pid != _pid:
            import psutil

            self._process = psutil.Process(_pid)
            self._pid = _pid
        return int(self._process.memory_info().rss)

    def from_raw(self, raw: bytes | int) -> int:
        """The RSS in bytes from what `read_raw` returned."""
        if isinstance(raw, int):
            return raw
        return int(raw.split()[1]) * self._page  # statm counts pages: size resident shared ...


_rss_reader = HostRSSReader()


#: Current RSS of this process in bytes: the reader's bound method itself, not a function that
#: calls it (a report reads it at every test's end, where each Python frame costs).
read_rss_bytes = _rss_reader.read


#: The undecoded reading and its decoder, for sampler ticks that decode later.
read_rss_raw = _rss_reader.read_raw
rss_from_raw = _rss_reader.from_raw


_status_file = _ProcFile("status", os.O_RDONLY)
_clear_refs_file = _ProcFile("clear_refs", os.O_WRONLY)


def read_vmhwm_bytes() -> int | None:
    """The kernel's RSS high-water mark of this process (Linux ``VmHWM``), or None elsewhere."""
    if not _IS_LINUX:
        return None
    try:
        status = os.pread(_status_file.fd(), 8192, 0)
    except OSError:
        return None
    start = status.find(b"VmHWM:")
    if start < 0:
        return None
    return int(status[start + 6 : status.index(b"kB", start)]) * 1024  # the kernel prints kB


# Reading VmHWM means formatting all of /proc/self/status (~7 µs); getrusage's ru_maxrss is the
# same kernel counter in one cheap syscall (~1 µs), with a catch: Linux reports
# max(high-water mark, a floor set at exec from the image that exec'd us). A pytest started by
# a big parent (vfork+exec from a Python process, an xdist controller) inherits the parent's
# peak as that floor, which clear_refs never lowers. So ru_maxrss is trusted once the mark is
# known to be at or above the floor, until the next reset lowers the mark: known when a reading
# exceeds the smallest one seen (every reading is >= the floor), or when VmHWM, read once, is at
# least the ru_maxrss read just before it. Between resets the mark only rises, so one check per
# reset suffices: a test suite whose peak came at collection would otherwise format
# /proc/self/status for every probe.
_maxrss_floor_bound: int | None = None
#: Counts resets; `_maxrss_trusted_in` is the count under which ru_maxrss was seen to be the mark.
_reset_count = 0
_maxrss_trusted_in = -1
#: The highest mark a reset lowered: with the mark of now, the process's lifetime peak, which a
#: reset hides from every outside observer (getrusage, a parent's wait4, GNU time).
_peak_before_resets = 0
#: Whether VmHWM may be reset at all (``--hw-rss-reset=off`` leaves it to outside observers).
_resets_allowed = True
RESETS_OFF = "resets are off (--hw-rss-reset=off)"


def _maxrss_bytes() -> int:
    return resource.getrusage(_MAXRSS_WHO).ru_maxrss * 1024  # Linux: kB


def _note_maxrss(value: int) -> None:
    global _maxrss_floor_bound
    if _maxrss_floor_bound is None or value < _maxrss_floor_bound:
        _maxrss_floor_bound = value


def read_rss_high_water_bytes() -> int | None:
    """The RSS high-water mark of this process (VmHWM) on Linux, or None elsewhere.

    Reads ``getrusage`` where it provably equals VmHWM, and /proc/self/status where not.
    """
    if not _IS_LINUX:
        return None
    if _forks_unseen:
        _forget_process_state()
    # Taken before the readings: a reset racing with them leaves the trust with the old count.
    resets = _reset_count
    maxrss = _maxrss_bytes()
    if _maxrss_trusted_in == resets:
        return maxrss
    return _settle_high_water(maxrss, resets)


def _settle_high_water(maxrss: int, resets: int) -> int | None:
    """The mark, given a ru_maxrss read under reset count `resets` and not yet trusted in it."""
    global _maxrss_trusted_in
    bound = _maxrss_floor_bound
    if bound is not None and maxrss > bound:
        _maxrss_trusted_in = resets
        return maxrss
    _note_maxrss(maxrss)
    vmhwm = read_vmhwm_bytes()
    if vmhwm is not None and vmhwm >= maxrss:
        _maxrss_trusted_in = resets  # the mark >= ru_maxrss >= the floor, and only rises
    return vmhwm


def _forget_process_state() -> None:
    """In a forked child: a new pid, and no exec floor known for it yet."""
    global _pid, _vmhwm_key, _maxrss_floor_bound, _maxrss_trusted_in, _peak_before_resets
    _forks_unseen.clear()
    _peak_before_resets = 0
    _pid = os.getpid()
    _vmhwm_key = ("vmhwm", _pid)
    _maxrss_floor_bound = None
    _maxrss_trusted_in = -1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_AFTER_FORK_IN_CHILD)


def vmhwm_counter() -> Hashable:
    """The key of this process's VmHWM among the high-water counters metrics share."""
    if _forks_unseen:
        _forget_process_state()
    return _vmhwm_key


#: What it means for the figures where `heap_trimmer` finds no trim, for entries' warnings.
NO_TRIM_REASON = (
    "the C library cannot return freed heap to the OS (no glibc malloc_trim): memory an "
    "earlier test freed may still be resident, and this test's growth can read low"
)


@functools.cache
def heap_trimmer() -> Callable[[], object] | None:
    """A call that returns the heap's freed memory to the OS (glibc ``malloc_trim(0)``).

    glibc keeps freed memory resident and hands it out again, so without a trim a test that
    runs after a bigger one reads almost no RSS growth. None where the C library has no such
    call (macOS, musl): `NO_TRIM_REASON` says what that means for the figures.
    """
    import ctypes

    trim = _libc_function("malloc_trim", [ctypes.c_size_t])
    return None if trim is None else functools.partial(trim, 0)


#: Why a CPU metric cannot have the ``heap`` series here.
NO_HEAP_REASON = (
    "the heap series reads glibc's mallinfo2() (glibc 2.33 or later), which this C library "
    "does not have"
)


@functools.cache
def heap_in_use_reader() -> Callable[[], int] | None:
    """A call that returns the bytes malloc has handed out and not had back; None without one.

    glibc's ``mallinfo2()``: ``uordblks`` (in use in the arenas) plus ``hblkhd`` (blocks
    mapped on their own). What the program holds, where RSS is what the OS gave it: freed memory
    glibc keeps counts in RSS, not here. It walks the free lists under the arena locks: tens of
    µs on a torch-sized heap, so it is read when sampled, never per test by default.
    """
    if not _IS_LINUX:
        return None
    import ctypes

    class MallInfo2(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in (
                "arena",
                "ordblks",
                "smblks",
                "hblks",
                "hblkhd",
                "usmblks",
                "fsmblks",
                "uordblks",
                "fordblks",
                "keepcost",
            )
        ]

    try:
        mallinfo2 = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.argtypes, mallinfo2.restype = [], MallInfo2

    def read() -> int:
        info = mallinfo2()
        return int(info.uordblks + info.hblkhd)

    return read


def release_freed_memory(*, young_only: bool = False) -> None:
    """Collect garbage and give the heap's freed memory back to the OS (glibc; else nothing).

    Before a measured stretch: what the code before it freed would otherwise be handed out again
    inside it, and its growth would depend on how much that was. ``young_only`` collects the two
    young generations alone: enough after code that just ran (its cycles are young), where a
    full collection of a torch-sized heap takes ~100 ms.
    """
    import gc

    gc.collect(1 if young_only else 2)
    trim = heap_trimmer()
    if trim is not None:
        trim()


def _libc_function(name: str, argtypes: list[Any]) -> Any:
    """The C library's function `name` (returning int); None off Linux or where it has none.

    musl, for one, lacks glibc's malloc extensions.
    """
    if not _IS_LINUX:
        return None
    import ctypes

    try:
        function = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
    function.argtypes, function.restype = argtypes, ctypes.c_int
    return function


#: glibc's initial mmap and trim thresholds (M_MMAP_THRESHOLD, M_TRIM_THRESHOLD), both 128 KiB,
#: which it raises after freeing a mapped block.
GLIBC_MMAP_THRESHOLD = 128 * 1024
GLIBC_TRIM_THRESHOLD = 128 * 1024
_M_MMAP_THRESHOLD = -3  # mallopt's parameter numbers, from glibc's malloc.h
_M_TRIM_THRESHOLD = -1


@functools.cache
def hold_malloc_thresholds() -> bool:
    """Hold glibc's mmap and trim thresholds at their initial 128 KiB for the rest of the process.

    Freeing a mapped block raises the mmap threshold to its size (up to 32 MiB) and the trim
    threshold to twice that, so after a test (or a warm-up) frees a big tensor a later test's
    blocks below that size come from the heap instead of fresh mappings, and freed memory at the
    heap's top stays resident: its RSS growth depends on what ran before. Holding the mmap
    threshold alone is not enough: set after such a free, it leaves the raised trim threshold,
    and a conv net's forward then read 12-18 MiB from one process to the next instead of the
    7.8 MiB of a fresh process. Once both are held, blocks of 128 KiB and more are mapped and
    unmapped each time, and the heap is trimmed, as at the start of every process.
    False where the C library has no mallopt (macOS, musl).
    """
    import ctypes

    mallopt = _libc_function("mallopt", [ctypes.c_int, ctypes.c_int])
    if mallopt is None:
        return False
    held_mmap = bool(mallopt(_M_MMAP_THRESHOLD, GLIBC_MMAP_THRESHOLD))
    return bool(mallopt(_M_TRIM_THRESHOLD, GLIBC_TRIM_THRESHOLD)) and held_mmap


def allow_rss_resets(allowed: bool) -> None:
    """Whether measuring may reset VmHWM (``--hw-rss-reset``), process-wide.

    Without resets, what outside tools read of the process's peak stays true, and a stretch's
    peak is exact only where it rises above every earlier one (`RSSPeakProbe.exact`).
    """
    global _resets_allowed
    _resets_allowed = allowed


def rss_resets_allowed() -> bool:
    """Whether measuring may reset VmHWM (see `allow_rss_resets`)."""
    return _resets_allowed


def process_peak_rss_bytes() -> int | None:
    """The peak RSS of this process's whole life, resets or not; None where unknown.

    On Linux, the highest mark a reset lowered or the mark of now. Elsewhere nothing resets the
    mark: ``ru_maxrss`` is it (bytes on macOS); None without the resource module (Windows).
    """
    if _IS_LINUX:
        if _forks_unseen:
            _forget_process_state()
        return max(_peak_before_resets, read_rss_high_water_bytes() or 0)
    try:
        import resource as host_resource
    except ImportError:
        return None
    return int(host_resource.getrusage(host_resource.RUSAGE_SELF).ru_maxrss)


def reset_vmhwm() -> str | None:
    """Reset VmHWM to the current RSS (write "5" to clear_refs); returns why not, or None.

    The mark it lowers is kept first (`process_peak_rss_bytes`).
    """
    global _reset_count, _peak_before_resets
    if not _IS_LINUX:
        return f"no clear_refs on {sys.platform}"
    if not _resets_allowed:
        return RESETS_OFF
    mark = read_rss_high_water_bytes() or 0
    if mark > _peak_before_resets:
        _peak_before_resets = mark
    try:
        os.write(_clear_refs_file.fd(), b"5")
    except OSError as exc:
        return f"{type(exc).__name__}: {exc.strerror or exc}"
    # Counted after the write: a reading that saw the old count may have seen the old mark.
    _reset_count += 1
    if _maxrss_floor_bound is None:
        # Right after a reset ru_maxrss is the floor or the current RSS: a first bound. Later
        # ambiguous reads tighten it (a syscall each time here would cost every test).
        _note_maxrss(_maxrss_bytes())
    return None


def reset_rss_high_water(warnings: list[str], what: str = "host rss peak") -> frozenset[str]:
    """Reset VmHWM for a metric's ``rss`` series; returns {"rss"} or records why it is sampled."""
    refused = reset_vmhwm()
    if refused == RESETS_OFF:
        warnings.append(f"VmHWM not reset ({refused}): {what} is sampled")
        return frozenset()
    if refused is not None:
        warnings.append(f"clear_refs refused ({refused}): {what} is sampled")
        return frozenset()
    return _RSS_EXACT


_RSS_EXACT = frozenset({"rss"})


def rss_high_water(exact_series: frozenset[str]) -> dict[str, int]:
    """VmHWM as the ``rss`` high-water mark, when `reset_rss_high_water` made it exact."""
    hwm = read_rss_high_water_bytes() if "rss" in exact_series else None
    return {} if hwm is None else {"rss": hwm}


#: A probe leaves VmHWM alone when it is within this of the RSS already: then any peak the code
#: reaches above it shows in the mark, and a lower one is overstated by at most this much (the
#: kernel's per-CPU RSS counters are themselves this approximate on 2 cores, more on more).
RESET_SLACK_BYTES = 256 * 1024


class RSSPeakProbe:
    """The start and exact peak of this process's RSS over stretches of code; nothing more.

    `CPUMemoryMetric`'s ``rss`` start and peak without its timeline, sampler or device
    description: what profiling every test costs when no report shows a timeline. One stretch:
    `start`, `stop`. Many in a row (a test session): `open` once, `begin` and `end` around each,
    `close`; the probe is registered for other metrics' resets once, not per stretch. Resetting
    VmHWM (a clear_refs write takes the process's mmap write lock) costs the code around it far
    more than its own microseconds, so the probe resets only when the mark is above the RSS by
    more than `RESET_SLACK_BYTES`. Linux only.
    """

    __slots__ = (
        "_counter",
        "_folded_peak",
        "_mark_at_begin",
        "exact",
        "peak_bytes",
        "reset",
        "start_bytes",
    )

    def __init__(self, counter: Hashable) -> None:
        self._counter = counter
        self._folded_peak = 0
        self._mark_at_begin = 0
        self.start_bytes = self.peak_bytes = 0
        #: Whether the last `begin` reset VmHWM (False: the mark was already at the RSS).
        self.reset = False
        #: Whether the last stretch's peak is exact: always, unless resets are off and the
        #: stretch stayed below an earlier peak (then its peak is the larger of start and end).
        self.exact = True

    @classmethod
    def open(cls) -> RSSPeakProbe | None:
        """A probe registered for resets, between stretches; None off Linux."""
        if not _IS_LINUX:
            return None
        probe = cls(vmhwm_counter())
        join_shared_counter(probe, probe._counter)
        return probe

    def close(self) -> None:
        """Unregister: no stretch follows."""
        release_shared_counter(self, self._counter)

    @classmethod
    def start(cls) -> RSSPeakProbe | None:
        """An opened probe with its stretch begun; None off Linux or where `begin` is refused."""
        probe = cls.open()
        if probe is not None and not probe.begin():
            probe.close()
            return None
        return probe

    def stop(self) -> RSSPeakProbe:
        """`end` and `close`; returns self."""
        self.end()
        self.close()
        return self

    # begin and end run around every test under --hw-profile-all: the readers are inlined (one
    # Python frame each way), since a call touches cold code and data in every test, which
    # costs far more between tests than a loop of calls shows.
    def begin(self) -> bool:
        """Start a stretch: read the RSS, resetting VmHWM if needed; False where it was refused."""
        if _forks_unseen:
            _forget_process_state()
        counter, resets = _vmhwm_key, _reset_count
        if counter is not self._counter:  # forked since open(): the child's own counter
            release_shared_counter(self, self._counter)
            join_shared_counter(self, counter)
            self._counter = counter
        maxrss = resource.getrusage(_MAXRSS_WHO).ru_maxrss * 1024  # Linux: kB
        high_water = maxrss if _maxrss_trusted_in == resets else _settle_high_water(maxrss, resets)
        rss = int(os.pread(_statm_file.fd(), 128, 0).split()[1]) * _PAGE_SIZE
        self._mark_at_begin = 0
        if high_water is not None and high_water - rss <= RESET_SLACK_BYTES:
            self.reset = False
            self.start_bytes = rss
        elif not _resets_allowed:
            self.reset = False
            self.start_bytes = rss
            self._mark_at_begin = high_water or 0
        else:
            if reset_shared_counter(self, counter, reset_vmhwm) is not None:
                return False
            self.reset = True
            self.start_bytes = read_rss_bytes()
        # Last: what resets folded in before now (between stretches, or this reset's own fold of
        # the old mark) is not this stretch's.
        self._folded_peak = 0
        return True

    def end(self) -> int:
        """End the stretch: its exact peak (VmHWM includes the RSS of now), also `peak_bytes`."""
        if _forks_unseen:
            _forget_process_state()
        resets = _reset_count
        maxrss = resource.getrusage(_MAXRSS_WHO).ru_maxrss * 1024
        high_water = (
            maxrss if _maxrss_trusted_in == resets else _settle_high_water(maxrss, resets) or 0
        )
        mark_at_begin = self._mark_at_begin
        if mark_at_begin:  # resets are off, and the mark stood above the RSS at `begin`
            self._mark_at_begin = 0
            if high_water <= mark_at_begin:  # the stretch never reached an earlier peak
                self.exact = False
                rss = int(os.pread(_statm_file.fd(), 128, 0).split()[1]) * _PAGE_SIZE
                peak = self.peak_bytes = max(rss, self.start_bytes)
                return peak
        self.exact = True
        peak = self.peak_bytes = max(high_water, self._folded_peak, self.start_bytes)
        return peak

    def _fold_high_water(self) -> None:
        self._folded_peak = max(self._folded_peak, read_rss_high_water_bytes() or 0)
