"""The CPU's energy on Linux: the powercap RAPL counters of each package and its DRAM.

Linux exposes Intel's (and AMD Zen's) Running Average Power Limit counters under
``/sys/class/powercap/intel-rapl:<package>`` (``name`` "package-N", ``energy_uj``,
``max_energy_range_uj``), with subzones ``intel-rapl:<package>:<n>`` for "core", "uncore" and
"dram". Core and uncore are parts of the package, so only packages and DRAM are counted. A
``psys`` zone (the whole platform, on some laptops) overlaps the packages and is left out.

``energy_uj`` wraps to 0 after ``max_energy_range_uj`` (hundreds of kJ: tens of minutes at full
power): a counter read less than once per wrap loses whole wraps (an `EnergyMetric` reads at
its window's two ends only, so far). Since the 2020
PLATYPUS side channel (CVE-2020-8694), kernels make ``energy_uj`` readable by root only.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import weakref
from pathlib import Path

from pytest_hwbench.hardware.energy import EnergyCounter, EnergyUnavailableError

__all__ = ["POWERCAP_ROOT", "RaplCounter", "open_rapl_counters"]

#: Where Linux lists its power-capping zones.
POWERCAP_ROOT = "/sys/class/powercap"
#: RAPL's counters advance about every millisecond (Intel SDM: every ~976 µs).
RAPL_UPDATE_PERIOD_S = 0.001
_ZONE_RE = re.compile(r"^intel-rapl:(\d+)(?::(\d+))?$")


def _read_text(path: Path) -> str:
    with open(path, "rb") as fh:  # sysfs attributes: short ASCII lines, read unbuffered
        return fh.read().decode("ascii").strip()


class RaplCounter(EnergyCounter):
    """One RAPL zone's ``energy_uj``, accumulated across its wrap-arounds."""

    update_period_s = RAPL_UPDATE_PERIOD_S

    def __init__(self, zone: Path, domain: str, covers: str) -> None:
        self.domain = domain
        self.covers = covers
        self._range_uj = int(_read_text(zone / "max_energy_range_uj"))
        self._lock = threading.Lock()  # a sampler's thread may read beside the test's
        # Opened once: reading a sysfs attribute again from offset 0 shows its value now, and
        # a read costs one system call instead of three (~4 µs, not ~13 µs, a read).
        self._fd = os.open(zone / "energy_uj", os.O_RDONLY | os.O_CLOEXEC)
        weakref.finalize(self, os.close, self._fd)
        self._last_uj = self._read_uj()
        self._total_uj = 0

    def _read_uj(self) -> int:
        return int(os.pread(self._fd, 32, 0))

    def read_joules(self) -> float:
        """Joules since this counter was opened, wrap-arounds included."""
        with self._lock:
            now = self._read_uj()
            step = now - self._last_uj
            if step < 0:  # wrapped past max_energy_range_uj back to 0
                step += self._range_uj
            self._total_uj += step
            self._last_uj = now
            return self._total_uj / 1e6


def _permission_help(path: Path) -> str:
    return (
        f"the CPU's RAPL energy counters are readable by root only here ({path}: permission "
        "denied; kernels restrict them since the 2020 PLATYPUS side channel, CVE-2020-8694); "
        "to let this user read them until the next boot: sudo chmod a+r "
        "/sys/class/powercap/intel-rapl:*/energy_uj /sys/class/powercap/intel-rapl:*:*/energy_uj "
        "(a udev rule or a systemd-tmpfiles line keeps it across boots)"
    )


def _zones(root: Path) -> list[tuple[int, int | None, str]]:
    """(package, subzone or None, directory name) of every RAPL zone, in numeric order."""
    try:
        names = os.listdir(root)
    except OSError:
        return []
    zones = []
    for name in names:
        match = _ZONE_RE.match(name)
        if match is not None:
            sub = match.group(2)
            zones.append((int(match.group(1)), None if sub is None else int(sub), name))
    return sorted(zones, key=lambda zone: (zone[0], -1 if zone[1] is None else zone[1]))


def open_rapl_counters(root: str | os.PathLike[str] = POWERCAP_ROOT) -> list[RaplCounter]:
    """A counter for each CPU package and each package's DRAM, opened now (read once).

    Raises `EnergyUnavailableError` where there is none to read: not Linux, no RAPL zones (a VM
    without RAPL, an ARM host, the intel_rapl module not loaded), or the counters root-only.
    """
    if not sys.platform.startswith("linux"):
        raise EnergyUnavailableError(
            f"the CPU's energy is read from Linux's powercap RAPL counters; this is {sys.platform}"
        )
    base = Path(root)
    zones = _zones(base)
    packages = {top for top, sub, _ in zones if sub is None}
    counters: list[RaplCounter] = []
    try:
        for top, sub, name in zones:
            kind = _read_text(base / name / "name")
            if sub is None and kind.startswith("package"):
                covers = f"CPU package {top}: all its cores and caches, every process"
                counters.append(RaplCounter(base / name, kind, covers))
            elif sub is not None and kind == "dram" and top in packages:
                covers = f"the DRAM of CPU package {top}, every process"
                counters.append(RaplCounter(base / name, f"dram-{top}", covers))
    except PermissionError as exc:
        raise EnergyUnavailableError(_permission_help(Path(exc.filename or base))) from None
    except (OSError, ValueError) as exc:
        raise EnergyUnavailableError(
            f"the CPU's RAPL counters under {base} could not be read ({type(exc).__name__}: {exc})"
        ) from None
    if not counters:
        raise EnergyUnavailableError(
            f"no RAPL energy counters under {base} (intel-rapl:<package>): a CPU or virtual "
            "machine without RAPL, or the intel_rapl_msr kernel module not loaded"
        )
    return counters
