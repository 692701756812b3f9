"""Pinning pytest-xdist workers to their own GPUs (``--hw-gpus-per-worker=K``).

The controller decides the plan once, without importing torch or initializing a device (it reads
the backends' visibility variables, else asks a backend that can count its devices unopened),
and hands it to the workers through an environment variable they inherit. Each worker applies its
slice in the earliest hook a plugin gets, before any conftest can initialize a device, by setting
the platform's visibility variable.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_hwbench.names import GPU_PLAN_ENV, XDIST_WORKER_ENV

if TYPE_CHECKING:
    from pytest_hwbench.hardware.base import HardwareBackend

__all__ = [
    "GpuPlan",
    "GpuPlanError",
    "apply_worker_assignment",
    "discover_devices",
    "pinned_devices",
    "plan",
    "release_crashed_worker",
]


class GpuPlanError(ValueError):
    """A pinning request that cannot be met; the message names the numbers involved."""


@dataclass(frozen=True)
class GpuPlan:
    """Which visibility variable to set, over which devices, K per worker, shared or not.

    xdist names its first workers ``gw0`` to ``gw<workers-1>`` and each replacement of a crashed
    worker with the next number: the k-th replacement takes over the k-th crashed worker's GPUs
    (`freed`, in the order the workers crashed), never a live worker's.
    """

    variable: str
    devices: tuple[str, ...]
    per_worker: int
    share: bool
    workers: int = 0
    freed: tuple[tuple[str, ...], ...] = ()

    def for_worker(self, worker_index: int) -> tuple[str, ...]:
        """The devices worker ``gw<worker_index>`` sees (wrapping around only when shared)."""
        replacement = worker_index - self.workers
        if self.workers and 0 <= replacement < len(self.freed):
            return self.freed[replacement]
        n = len(self.devices)
        start = worker_index * self.per_worker
        return tuple(self.devices[(start + j) % n] for j in range(self.per_worker))

    def with_crashed(self, worker_index: int) -> GpuPlan:
        """The plan once worker ``gw<worker_index>`` crashed: its GPUs go to its replacement."""
        return dataclasses.replace(self, freed=(*self.freed, self.for_worker(worker_index)))

    def to_json(self) -> str:
        """The plan as the JSON the workers read from `GPU_PLAN_ENV`."""
        return json.dumps(
            {
                "variable": self.variable,
                "devices": list(self.devices),
                "per_worker": self.per_worker,
                "share": self.share,
                "workers": self.workers,
                "freed": [list(devices) for devices in self.freed],
            }
        )

    @classmethod
    def from_json(cls, text: str) -> GpuPlan:
        """Read a plan written by `to_json`."""
        data = json.loads(text)
        return cls(
            str(data["variable"]),
            tuple(str(d) for d in data["devices"]),
            int(data["per_worker"]),
            bool(data["share"]),
            int(data.get("workers", 0)),
            tuple(tuple(str(d) for d in devices) for devices in data.get("freed", ())),
        )


def discover_devices(
    backends: Iterable[HardwareBackend], environ: Mapping[str, str] | None = None
) -> tuple[str | None, tuple[str, ...]]:
    """The visibility variable to set and the devices to split, without initializing a device.

    A variable the user already set decides both (its entries are what this run may use); the
    backends are asked in registry order, each for its variables in its own order. Otherwise the
    first backend that lists its devices unopened (NVIDIA's, through NVML: MIG instances by
    UUID) decides. Returns no
    devices (and maybe no variable) when nothing says.
    """
    backends = list(backends)
    env = os.environ if environ is None else environ
    for backend in backends:
        for variable in backend.visibility_variables:
            value = env.get(variable)
            if value is not None:
                entries = tuple(e for e in (p.strip() for p in value.split(",")) if e)
                # "-1" hides every device, as an empty value does.
                devices = tuple(e for e in entries if not re.fullmatch(r"-\d+", e))
                repeated = sorted({d for d in devices if devices.count(d) > 1})
                if repeated:
                    raise GpuPlanError(
                        f"{variable}={value} names {', '.join(repeated)} more than once: the "
                        "runtime does not see that as more GPUs (CUDA sees none at all); name "
                        "each device once"
                    )
                return variable, devices
    fallback: str | None = None
    for backend in backends:
        if not backend.visibility_variables:
            continue
        fallback = fallback or backend.visibility_variables[0]
        listed = backend.pinnable_devices()
        if listed:
            return backend.visibility_variables[0], listed
    return fallback, ()


def plan(
    per_worker: int, workers: int, backends: Iterable[HardwareBackend], *, share: bool
) -> GpuPlan:
    """Split the visible devices K per worker; too few devices is an error unless shared."""
    variable, devices = discover_devices(backends)
    if variable is None or not devices:
        raise GpuPlanError(
            f"--hw-gpus-per-worker={per_worker}: no GPU found to pin (no "
            f"{variable or 'visibility variable'} set, and no backend counts a device)"
        )
    mig = all(device.startswith("MIG-") for device in devices)
    noun = "MIG instances" if mig else "GPUs"
    if per_worker > 1 and any(device.startswith("MIG-") for device in devices):
        raise GpuPlanError(
            f"--hw-gpus-per-worker={per_worker}: CUDA shows a process a single MIG instance, so "
            f"a worker uses one of these {len(devices)} {noun}; pass --hw-gpus-per-worker=1"
        )
    if variable in os.environ:
        seen = f"{len(devices)} are visible ({variable}={','.join(devices)})"
    else:  # found by the platform (NVML), not named by the user
        seen = f"{len(devices)} were found ({', '.join(devices)})"
    needed = per_worker * workers
    if needed > len(devices) and not share:
        raise GpuPlanError(
            f"--hw-gpus-per-worker={per_worker} with {workers} workers needs {needed} {noun}, "
            f"but {seen}; use fewer workers (-n) or pass --hw-gpus-share to let workers share "
            f"{noun}"
        )
    if per_worker > len(devices):
        raise GpuPlanError(
            f"--hw-gpus-per-worker={per_worker} exceeds the {len(devices)} visible {noun}"
        )
    return GpuPlan(variable, devices, per_worker, share, workers)


#: What `apply_worker_assignment` set in this process, e.g. ("CUDA_VISIBLE_DEVICES", "2,3").
applied: tuple[str, str] | None = None


def apply_worker_assignment(environ: dict[str, str] | None = None) -> tuple[str, str] | None:
    """In an xdist worker, set its visibility variable from the controller's plan.

    Returns (variable, value) when it did; None outside workers or without a plan.
    """
    env = os.environ if environ is None else environ
    raw_plan = env.get(GPU_PLAN_ENV)
    worker = env.get(XDIST_WORKER_ENV, "")
    match = re.fullmatch(r"gw(\d+)", worker)
    if not raw_plan or match is None:
        return None
    gpu_plan = GpuPlan.from_json(raw_plan)
    value = ",".join(gpu_plan.for_worker(int(match.group(1))))
    env[gpu_plan.variable] = value
    global applied
    applied = (gpu_plan.variable, value)
    return applied


def release_crashed_worker(worker_id: str, environ: dict[str, str] | None = None) -> None:
    """In the controller: worker `worker_id` crashed, so its replacement gets its GPUs.

    xdist starts the replacement right after, with the controller's environment: the plan there
    is updated first.
    """
    env = os.environ if environ is None else environ
    raw_plan = env.get(GPU_PLAN_ENV)
    match = re.fullmatch(r"gw(\d+)", worker_id)
    if raw_plan and match is not None:
        env[GPU_PLAN_ENV] = GpuPlan.from_json(raw_plan).with_crashed(int(match.group(1))).to_json()


def pinned_devices() -> str | None:
    """The GPUs this xdist worker was pinned to ("CUDA_VISIBLE_DEVICES=2,3"), if it was."""
    return None if applied is None else f"{applied[0]}={applied[1]}"
