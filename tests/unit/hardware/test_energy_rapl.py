"""The CPU's energy counters: RAPL through powercap, against a fake tree laid out as Linux's."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_hwbench import hardware
from pytest_hwbench.hardware import _rapl
from pytest_hwbench.hardware._rapl import open_rapl_counters
from pytest_hwbench.testing import FakePowercap

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="RAPL is read through Linux's powercap"
)


@linux_only
def test_packages_and_their_dram_are_counted_not_core_nor_psys(tmp_path: Path) -> None:
    tree = FakePowercap(tmp_path, packages=2, psys=True)
    counters = open_rapl_counters(tmp_path)
    assert [c.domain for c in counters] == ["package-0", "dram-0", "package-1", "dram-1"]
    assert counters[0].covers == "CPU package 0: all its cores and caches, every process"
    assert counters[1].covers == "the DRAM of CPU package 0, every process"
    assert all(c.update_period_s == pytest.approx(0.001) for c in counters)
    tree.add_joules("package-0", 12.5)
    tree.add_joules("core-0", 10.0)  # part of the package: never added to it
    tree.add_joules("dram-1", 0.25)
    tree.add_joules("psys", 99.0)
    assert [c.read_joules() for c in counters] == [12.5, 0.0, 0.0, 0.25]


@linux_only
def test_a_counter_is_joules_since_it_was_opened_across_wrap_arounds(tmp_path: Path) -> None:
    tree = FakePowercap(tmp_path, dram=False, max_range_uj=10_000_000, start_uj=9_000_000)
    (counter,) = open_rapl_counters(tmp_path)
    assert counter.read_joules() == 0.0  # what ran before it was opened does not count
    tree.add_joules("package-0", 0.5)
    assert counter.read_joules() == pytest.approx(0.5)
    tree.add_joules("package-0", 1.5)  # 9.5 J + 1.5 J passes the 10 J range: wraps to 1 J
    assert tree.read_uj("package-0") == 1_000_000
    assert counter.read_joules() == pytest.approx(2.0)
    for _ in range(12):  # one wrap between each pair of reads, as long as reads come often
        tree.add_joules("package-0", 4.0)
        counter.read_joules()
    assert counter.read_joules() == pytest.approx(50.0)


@linux_only
def test_the_host_backend_offers_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    FakePowercap(tmp_path)
    monkeypatch.setattr(_rapl, "POWERCAP_ROOT", str(tmp_path))
    counters = hardware.get_hardware_backend("cpu").energy_counters()
    assert [c.domain for c in counters] == ["package-0", "dram-0"]


@linux_only
def test_no_rapl_zones_is_a_reason_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "dtpm").mkdir()  # another powercap driver, no RAPL
    with pytest.raises(hardware.EnergyUnavailableError) as excinfo:
        open_rapl_counters(tmp_path)
    assert str(excinfo.value) == (
        f"no RAPL energy counters under {tmp_path} (intel-rapl:<package>): a CPU or virtual "
        "machine without RAPL, or the intel_rapl_msr kernel module not loaded"
    )
    with pytest.raises(hardware.EnergyUnavailableError, match="no RAPL energy counters"):
        open_rapl_counters(tmp_path / "absent")


def test_platforms_without_a_counter_say_so() -> None:
    for name in ("mps", "xpu"):
        with pytest.raises(hardware.EnergyUnavailableError) as excinfo:
            hardware.get_hardware_backend(name).energy_counters()
        assert str(excinfo.value) == f"{name}: no energy counter is known for this platform"


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    """A directory another user can walk into (pytest's tmp_path is its owner's only)."""
    path = Path(tempfile.mkdtemp(prefix="hwbench-powercap-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path)


#: Opens the counters as another user; prints the unavailable reason, or "opened".
_OPEN_AS_NOBODY = """
import os, sys
from pytest_hwbench.hardware import EnergyUnavailableError
from pytest_hwbench.hardware._rapl import open_rapl_counters
if os.geteuid() == 0:  # imported first: root's Python may be out of nobody's reach
    os.setgid(65534)
    os.setuid(65534)  # nobody: the kernel refuses it a root-only file, as any user
try:
    open_rapl_counters(sys.argv[1])
except EnergyUnavailableError as exc:
    print(exc)
else:
    print("opened")
"""


@linux_only
def test_root_only_counters_say_how_to_grant_access(world_readable_dir: Path) -> None:
    tree = FakePowercap(world_readable_dir)
    for path in [world_readable_dir, *world_readable_dir.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o444)
    tree.make_root_only()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", _OPEN_AS_NOBODY, str(world_readable_dir)],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    message = done.stdout.strip()
    zone = world_readable_dir / "intel-rapl:0" / "energy_uj"
    assert message.startswith(
        f"the CPU's RAPL energy counters are readable by root only here ({zone}: permission "
        "denied; kernels restrict them since the 2020 PLATYPUS side channel, CVE-2020-8694); "
        "to let this user read them until the next boot: sudo chmod a+r "
        "/sys/class/powercap/intel-rapl:*/energy_uj"
    )
