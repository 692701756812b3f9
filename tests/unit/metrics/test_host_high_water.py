"""The RSS high-water mark: getrusage where it provably equals VmHWM, /proc/self/status where not,
and the peak probe that profile-all uses when no report shows a timeline."""

from __future__ import annotations

import gc
import json
import mmap
import os
import subprocess
import sys
import textwrap
import types
import warnings

import pytest
import torch

from pytest_hwbench.hardware.cpu import clear_refs_writable
from pytest_hwbench.metrics.memory import MemoryMetricFactory
from pytest_hwbench.metrics.memory import _host as host_module
from pytest_hwbench.metrics.memory.cpu import (
    RSSPeakProbe,
    read_rss_high_water_bytes,
    read_vmhwm_bytes,
    reset_vmhwm,
)

MiB = 2**20


def _rss_counter_slack() -> int:
    """How far two readings of one RSS mark may differ: the kernel keeps RSS in per-CPU counters
    (anon, file, shmem), each CPU holding back up to a batch of max(32, 2 x CPUs) pages, and
    getrusage reads them unsummed while newer kernels sum them for /proc/self/status."""
    cpus = os.cpu_count() or 1
    return max(MiB, 3 * cpus * max(32, 2 * cpus) * mmap.PAGESIZE)


#: 1 MiB on 2 CPUs, 6 MiB on 16.
COUNTER_SLACK = _rss_counter_slack()
linux_with_clear_refs = pytest.mark.skipif(
    not clear_refs_writable(),
    reason="exact CPU peaks need Linux with a writable /proc/self/clear_refs",
)


@pytest.fixture
def unknown_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start each test as a fresh process would: no bound on the exec floor known yet."""
    monkeypatch.setattr(host_module, "_maxrss_floor_bound", None)
    monkeypatch.setattr(host_module, "_maxrss_trusted_in", -1)


@linux_with_clear_refs
@pytest.mark.usefixtures("unknown_floor")
def test_high_water_equals_vmhwm_after_reset_and_growth() -> None:
    def bracketed() -> int:
        # VmHWM grows between reads: ours lies between a read before and one after (give or
        # take the per-CPU counter slack).
        before, ours, after = read_vmhwm_bytes(), read_rss_high_water_bytes(), read_vmhwm_bytes()
        assert before is not None
        assert ours is not None
        assert after is not None
        assert before - COUNTER_SLACK <= ours <= after + COUNTER_SLACK
        return ours

    assert reset_vmhwm() is None
    start = bracketed()
    keep = torch.ones(40 * MiB // 4)
    grown = bracketed()
    del keep
    assert grown - start >= 40 * MiB - 2 * COUNTER_SLACK
    assert bracketed() >= grown - COUNTER_SLACK  # the mark stays after the memory is freed


@pytest.mark.usefixtures("unknown_floor")
def test_getrusage_is_trusted_only_above_the_floor_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """ru_maxrss is max(exec floor, VmHWM): above the smallest reading it is VmHWM itself."""
    monkeypatch.setattr(host_module, "_IS_LINUX", True)
    floor = 400 * MiB
    vmhwm = {"value": 50 * MiB}
    status_reads = []

    def fake_vmhwm() -> int:
        status_reads.append(vmhwm["value"])
        return vmhwm["value"]

    monkeypatch.setattr(host_module, "read_vmhwm_bytes", fake_vmhwm)
    monkeypatch.setattr(host_module, "_maxrss_bytes", lambda: max(floor, vmhwm["value"]))
    # Below the floor every answer comes from /proc/self/status, and is VmHWM, not the floor.
    assert read_rss_high_water_bytes() == 50 * MiB
    vmhwm["value"] = 300 * MiB
    assert read_rss_high_water_bytes() == 300 * MiB
    assert len(status_reads) == 2
    # Past the bound (the smallest ru_maxrss seen: 400 MiB) getrusage alone answers.
    vmhwm["value"] = 500 * MiB
    assert read_rss_high_water_bytes() == 500 * MiB
    assert len(status_reads) == 2


class _FakeClearRefs:
    """/proc/self/clear_refs whose write lowers a fake mark to the RSS, as writing "5" does."""

    def __init__(self, kernel: dict[str, int], devnull: int) -> None:
        self.kernel, self.devnull = kernel, devnull

    def fd(self) -> int:
        self.kernel["mark"] = self.kernel["rss"]  # the write that follows is the reset
        return self.devnull


@pytest.mark.usefixtures("unknown_floor")
def test_getrusage_answers_alone_until_a_reset_once_the_mark_is_seen_above_the_floor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A suite whose peak came at collection must not format /proc/self/status for every test."""
    monkeypatch.setattr(host_module, "_IS_LINUX", True)
    floor = 100 * MiB
    kernel = {"mark": 300 * MiB, "rss": 250 * MiB}
    status_reads = []

    def fake_vmhwm() -> int:
        status_reads.append(kernel["mark"])
        return kernel["mark"]

    monkeypatch.setattr(host_module, "read_vmhwm_bytes", fake_vmhwm)
    monkeypatch.setattr(host_module, "_maxrss_bytes", lambda: max(floor, kernel["mark"]))
    # The first reading is ambiguous (nothing to compare with): VmHWM settles it.
    assert read_rss_high_water_bytes() == 300 * MiB
    assert len(status_reads) == 1
    for rise in range(5):
        kernel["mark"] += rise * MiB
        assert read_rss_high_water_bytes() == kernel["mark"]
    assert len(status_reads) == 1
    # A reset may lower the mark below the floor: ru_maxrss says 100 MiB, the mark is 60 MiB.
    kernel["rss"] = 60 * MiB
    with open(os.devnull, "wb") as devnull:
        monkeypatch.setattr(
            host_module, "_clear_refs_file", _FakeClearRefs(kernel, devnull.fileno())
        )
        assert reset_vmhwm() is None
    assert read_rss_high_water_bytes() == 60 * MiB
    assert read_rss_high_water_bytes() == 60 * MiB
    assert len(status_reads) == 3
    kernel["mark"] = 150 * MiB  # above every ru_maxrss seen: the mark itself
    assert read_rss_high_water_bytes() == 150 * MiB
    assert read_rss_high_water_bytes() == 150 * MiB
    assert len(status_reads) == 3


@linux_with_clear_refs
def test_child_of_a_big_parent_reads_vmhwm_not_the_inherited_floor() -> None:
    """A process exec'd by a big one inherits its peak in ru_maxrss; we must not report it."""
    child = textwrap.dedent(
        """
        import json, resource
        from pytest_hwbench.metrics.memory.cpu import (
            read_rss_high_water_bytes, read_vmhwm_bytes, reset_vmhwm,
        )
        assert reset_vmhwm() is None
        before = read_vmhwm_bytes()
        ours = read_rss_high_water_bytes()
        after = read_vmhwm_bytes()
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(json.dumps({"maxrss": maxrss, "before": before, "ours": ours, "after": after}))
        """
    )
    ballast = bytearray(300 * MiB)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True)
    del ballast
    seen = json.loads(proc.stdout)
    assert seen["maxrss"] >= 300 * MiB  # the floor this test exists for is really there
    assert seen["after"] < 200 * MiB
    assert seen["before"] - COUNTER_SLACK <= seen["ours"] <= seen["after"] + COUNTER_SLACK


@linux_with_clear_refs
def test_probe_sees_a_short_transient_every_time() -> None:
    hits = 0
    for _ in range(20):
        probe = RSSPeakProbe.start()
        assert probe is not None
        tensor = torch.ones(64 * MiB // 4, dtype=torch.float32)
        del tensor
        probe.stop()
        assert probe.peak_bytes >= probe.start_bytes
        if probe.peak_bytes - probe.start_bytes >= 60 * MiB:
            hits += 1
    assert hits == 20


@linux_with_clear_refs
def test_probe_and_metric_keep_each_others_peaks_across_resets() -> None:
    probe = RSSPeakProbe.start()
    assert probe is not None
    spike = torch.ones(48 * MiB // 4)
    del spike
    inner = MemoryMetricFactory.create("cpu", interval="1s").start()  # resets VmHWM
    inner.stop()
    assert probe.stop().peak_bytes - probe.start_bytes >= 44 * MiB

    outer = MemoryMetricFactory.create("cpu", interval="1s").start()
    spike = torch.ones(48 * MiB // 4)
    del spike
    inner_probe = RSSPeakProbe.start()  # resets VmHWM too
    assert inner_probe is not None
    inner_probe.stop()
    assert outer.stop()["series"]["rss"]["peak_delta_bytes"] >= 44 * MiB


def _raise_the_mark_above_the_rss() -> None:
    """Leave VmHWM ~64 MiB above the RSS: a probe started now must reset it."""
    spike = torch.ones(64 * MiB // 4)
    del spike  # torch frees a buffer this big with munmap: the RSS drops, the mark stays


@linux_with_clear_refs
def test_probe_skips_the_reset_when_the_mark_is_at_the_rss(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Resetting VmHWM is what profiling costs most; at the mark already, none is needed."""
    resets = []
    real_reset = host_module.reset_vmhwm

    def counting_reset() -> str | None:
        resets.append(1)
        return real_reset()

    assert real_reset() is None  # the mark is at the RSS now
    monkeypatch.setattr(host_module, "reset_vmhwm", counting_reset)
    probe = RSSPeakProbe.start()
    assert probe is not None
    assert probe.reset is False
    keep = torch.ones(40 * MiB // 4)
    del keep
    probe.stop()
    assert resets == []
    assert probe.peak_bytes - probe.start_bytes >= 38 * MiB


@linux_with_clear_refs
def test_probe_resets_a_mark_left_above_the_rss_and_stays_exact() -> None:
    _raise_the_mark_above_the_rss()
    probe = RSSPeakProbe.start()
    assert probe is not None
    assert probe.reset is True
    probe.stop()
    # A probe that had not reset would report the 64 MiB spike from before it started.
    assert probe.peak_bytes - probe.start_bytes < 16 * MiB


@linux_with_clear_refs
def test_an_open_probe_measures_each_stretch_from_its_own_start() -> None:
    """profile-all's way: one probe, registered once, begun and ended around every test."""
    probe = RSSPeakProbe.open()
    assert probe is not None
    try:
        assert probe.begin()
        _raise_the_mark_above_the_rss()
        assert probe.end() - probe.start_bytes >= 60 * MiB
        assert probe.begin()
        assert probe.reset is True  # the first stretch's spike left the mark above the RSS
        assert probe.end() - probe.start_bytes < 16 * MiB
    finally:
        probe.close()


@linux_with_clear_refs
def test_a_reset_between_stretches_is_not_the_next_stretchs_peak() -> None:
    """Another metric's reset folds the open probe's mark in, between stretches: begin drops it."""
    probe = RSSPeakProbe.open()
    assert probe is not None
    try:
        assert probe.begin()
        probe.end()
        _raise_the_mark_above_the_rss()
        MemoryMetricFactory.create("cpu", interval="1s").start().stop()  # folds, then resets
        assert probe.begin()
        assert probe.reset is False  # the metric's reset left the mark at the RSS
        assert probe.end() - probe.start_bytes < 16 * MiB
    finally:
        probe.close()


@linux_with_clear_refs
def test_probe_is_refused_where_a_needed_reset_is(monkeypatch: pytest.MonkeyPatch) -> None:
    _raise_the_mark_above_the_rss()
    monkeypatch.setattr(host_module, "reset_vmhwm", lambda: "PermissionError: denied")
    assert RSSPeakProbe.start() is None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_reads_its_own_proc_files_and_counter() -> None:
    parent_key = host_module.vmhwm_counter()
    assert host_module.read_rss_bytes() > 0  # the parent's statm is open now
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads running
        pid = os.fork()
    if pid == 0:  # the child: report, then leave without running pytest's cleanup
        try:
            seen = {
                "rss": host_module.read_rss_bytes(),
                "statm_pid": host_module._statm_file._pid,
                "key": list(host_module.vmhwm_counter()),
                "forks_unseen": len(host_module._forks_unseen),
            }
            os.write(write_end, json.dumps(seen).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        seen = json.loads(pipe.read())
    assert os.waitpid(pid, 0)[1] == 0
    assert seen["statm_pid"] == pid  # reopened for the child, not the parent's inherited fd
    assert seen["key"] == ["vmhwm", pid] != list(parent_key)
    assert seen["forks_unseen"] == 0
    assert seen["rss"] > 0
    assert host_module.vmhwm_counter() == parent_key  # the parent is untouched


def test_the_fork_handler_reaches_no_module() -> None:
    """The interpreter holds fork handlers to its end: one that reached a module imported by
    pytest's assertion rewriter would keep the whole session alive into shutdown."""
    seen: set[int] = set()
    stack: list[object] = [host_module._AFTER_FORK_IN_CHILD]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, type):  # a class of ours would lead to its methods' module globals
            assert not obj.__module__.startswith("pytest_hwbench"), obj
            continue
        assert not isinstance(obj, types.ModuleType), obj
        assert not (isinstance(obj, dict) and "__loader__" in obj), "reaches a module's globals"
        stack.extend(gc.get_referents(obj))
    assert len(seen) < 10


#: Run in a fresh process: the thresholds are process-wide, and holding them is for good.
THRESHOLDS_SCRIPT = """
import ctypes, sys
from pytest_hwbench.metrics.memory._host import hold_malloc_thresholds, read_rss_bytes

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
MiB = 2**20

def touched(size):
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    return block

# Freeing a mapped 16 MiB block raises the mmap threshold to 16 MiB and the trim one to 32 MiB.
libc.free(touched(16 * MiB))
if sys.argv[1] == "hold":
    assert hold_malloc_thresholds()
before = read_rss_bytes()
# 64 blocks of 100 KiB: below either mmap threshold, from the heap's top. Freed, a trim
# threshold of 128 KiB gives them back to the OS at once; one of 32 MiB keeps them resident.
blocks = [touched(100 * 1024) for _ in range(64)]
for block in reversed(blocks):
    libc.free(block)
kept_small = read_rss_bytes() - before
# 8 MiB: mapped (and unmapped when freed) under a 128 KiB mmap threshold, from the heap above.
libc.free(touched(8 * MiB))
kept_big = read_rss_bytes() - before
print(kept_small // 1024, kept_big // 1024)
"""


@pytest.mark.skipif(
    host_module.heap_trimmer() is None, reason="glibc only: the thresholds are glibc's mallopt's"
)
def test_held_malloc_thresholds_undo_what_a_big_free_raised() -> None:
    def kept_kib(mode: str) -> tuple[int, int]:
        done = subprocess.run(
            [sys.executable, "-c", THRESHOLDS_SCRIPT, mode], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        small, big = done.stdout.split()
        return int(small), int(big)

    raised_small, raised_big = kept_kib("raised")
    held_small, held_big = kept_kib("hold")
    assert raised_small >= 4 * 1024  # the raised thresholds keep freed memory resident
    assert raised_big >= 8 * 1024
    assert held_small < 1024  # held: given back as in a fresh process
    assert held_big < 1024


@pytest.mark.parametrize(("young_only", "generation"), [(False, 2), (True, 1)])
def test_release_freed_memory_collects_the_generations_asked(
    monkeypatch: pytest.MonkeyPatch, young_only: bool, generation: int
) -> None:
    """After the warm-up only its own, young, garbage needs collecting: a full collection of a
    torch-sized heap costs ~100 ms."""
    collected: list[int] = []
    monkeypatch.setattr(gc, "collect", lambda generation=2: collected.append(generation) or 0)
    host_module.release_freed_memory(young_only=young_only)
    assert collected == [generation]
