"""A fake Linux powercap tree: RAPL zones whose energy counters a test advances by hand."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

__all__ = ["FakePowercap"]

#: A common ``max_energy_range_uj`` of Intel packages (2^32 units of 61 µJ: ~262 kJ).
DEFAULT_RANGE_UJ = 262_143_328_850


class FakePowercap:
    """RAPL zones under `root`, laid out as Linux's ``/sys/class/powercap``.

    ``intel-rapl:<n>`` per package ("package-<n>") with subzones ``intel-rapl:<n>:0`` ("core")
    and, with `dram`, ``intel-rapl:<n>:1`` ("dram"); with `psys`, an ``intel-rapl:<packages>``
    zone named "psys". Counters are whole microjoules in ``energy_uj`` and wrap to 0 past
    ``max_energy_range_uj``, as the kernel's do. Point ``open_rapl_counters(root)`` at it, or
    `install` it as the CPU backend's powercap tree; `attach` finds one a test made earlier.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        packages: int = 1,
        dram: bool = True,
        psys: bool = False,
        max_range_uj: int = DEFAULT_RANGE_UJ,
        start_uj: int = 0,
    ) -> None:
        self.root = Path(root)
        self.max_range_uj = max_range_uj
        #: Zone directory by domain: "package-0", "core-0", "dram-0", "psys".
        self.zones: dict[str, Path] = {}
        for package in range(packages):
            self._zone(f"intel-rapl:{package}", "package-" + str(package), f"package-{package}")
            self._zone(f"intel-rapl:{package}:0", "core", f"core-{package}")
            if dram:
                self._zone(f"intel-rapl:{package}:1", "dram", f"dram-{package}")
        if psys:
            self._zone(f"intel-rapl:{packages}", "psys", "psys")
        for domain in self.zones:
            self.set_uj(domain, start_uj)

    @classmethod
    def attach(cls, root: str | os.PathLike[str]) -> FakePowercap:
        """The fake tree made earlier under `root` (by another test's code, another process)."""
        fake = cls.__new__(cls)
        fake.root = Path(root)
        fake.zones = {}
        ranges = set()
        for zone in sorted(fake.root.glob("intel-rapl:*")):
            name = (zone / "name").read_text(encoding="ascii").strip()
            package = zone.name.split(":")[1]
            domain = name if name.startswith(("package-", "psys")) else f"{name}-{package}"
            fake.zones[domain] = zone
            ranges.add(int((zone / "max_energy_range_uj").read_text(encoding="ascii")))
        if not fake.zones:
            raise FileNotFoundError(f"no fake RAPL zones under {fake.root}")
        fake.max_range_uj = max(ranges)
        return fake

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakePowercap:
        """Make the CPU backend read this tree instead of ``/sys/class/powercap``, until undone."""
        from pytest_hwbench.hardware import _rapl

        monkeypatch.setattr(_rapl, "POWERCAP_ROOT", str(self.root))
        return self

    def _zone(self, directory: str, name: str, domain: str) -> None:
        zone = self.root / directory
        zone.mkdir(parents=True)
        (zone / "name").write_text(name + "\n", encoding="ascii")
        (zone / "max_energy_range_uj").write_text(f"{self.max_range_uj}\n", encoding="ascii")
        self.zones[domain] = zone

    def read_uj(self, domain: str) -> int:
        """The counter's raw value, as ``energy_uj`` shows it."""
        return int((self.zones[domain] / "energy_uj").read_text(encoding="ascii"))

    def set_uj(self, domain: str, value: int) -> None:
        """Set the counter's raw value (0 to ``max_energy_range_uj``)."""
        if not 0 <= value <= self.max_range_uj:
            raise ValueError(f"energy_uj must be within 0..{self.max_range_uj}, got {value}")
        # In place, as sysfs: a reader keeps its file open and reads it again from offset 0.
        # The new digits go in with one write, then the file is cut to them, so a reader in
        # between sees at worst stale digits after a shorter value (only at a wrap).
        target = self.zones[domain] / "energy_uj"
        data = f"{value}\n".encode("ascii")
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT, 0o644)
        except PermissionError:  # made root-only (0400) and we are its owner, not root
            mode = os.stat(target).st_mode
            os.chmod(target, mode | 0o200)
            try:
                fd = os.open(target, os.O_WRONLY)
            finally:
                os.chmod(target, mode)
        try:
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
        finally:
            os.close(fd)

    def add_joules(self, domain: str, joules: float) -> None:
        """Advance `domain`'s counter by `joules`, wrapping past its range as the hardware does."""
        import fcntl  # Unix only, as RAPL is: imported here, so the fakes load everywhere

        # Locked: processes sharing the tree (xdist workers) must not lose each other's joules.
        with open(self.root / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            value = self.read_uj(domain) + round(joules * 1e6)
            if value > self.max_range_uj:
                value -= self.max_range_uj
            self.set_uj(domain, value)

    def make_root_only(self) -> None:
        """Make every ``energy_uj`` readable by its owner only, as kernels since 2020 do.

        Like the real files, it refuses other users; a process running as root still reads.
        """
        for zone in self.zones.values():
            os.chmod(zone / "energy_uj", 0o400)
