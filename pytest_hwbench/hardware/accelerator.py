"""Any accelerator torch drives through `torch.accelerator` that no dedicated backend claims.

Out-of-tree devices (Ascend NPUs through torch_npu, Gaudi HPUs, Cambricon MLUs, any PrivateUse1
backend) plug into torch under their own device type and answer `torch.accelerator`'s one API:
device count, synchronize and, from torch 2.9, the caching allocator's counters. One
`AcceleratorBackend` per device type makes such a device a platform named by its type, so
``@pytest.mark.hardware("npu")`` works on a machine with torch_npu and nothing of ours to
install. A dedicated backend (cuda, rocm, mps, xpu, or a third party's) always wins: the generic
one yields to it for its device type.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_hwbench.hardware._probe import call_or_none, works
from pytest_hwbench.hardware.base import (
    Capability,
    Detection,
    DeviceProperties,
    HardwareBackend,
)
from pytest_hwbench.hardware.peak_counters import before_peak_reset

if TYPE_CHECKING:
    import torch

__all__ = [
    "KNOWN_ACCELERATORS",
    "AcceleratorBackend",
    "KnownAccelerator",
    "accelerator_device_type",
]


@dataclass(frozen=True)
class KnownAccelerator:
    """What is known of an out-of-tree device type before torch is imported."""

    #: Who makes it and what it is, for `hwbench info` and reasons.
    description: str
    vendor: str
    #: The Python package that teaches torch this device type (imported by torch's autoload).
    package: str
    #: The torch.distributed backend for its devices, or None.
    communication_backend: str | None = None
    #: The runtime's device-visibility variables, first the one a pinning plan sets.
    visibility_variables: tuple[str, ...] = ()


#: Device types registered (as the generic backend) on every machine, so markers naming them
#: validate without importing torch; any other PrivateUse1 name is found when torch is loaded.
KNOWN_ACCELERATORS: Mapping[str, KnownAccelerator] = {
    "npu": KnownAccelerator(
        "Huawei Ascend NPU", "Huawei", "torch_npu", "hccl", ("ASCEND_RT_VISIBLE_DEVICES",)
    ),
    "hpu": KnownAccelerator(
        "Intel Gaudi HPU",
        "Intel (Habana Labs)",
        "habana_frameworks.torch",
        "hccl",
        ("HABANA_VISIBLE_MODULES",),
    ),
    "mlu": KnownAccelerator(
        "Cambricon MLU", "Cambricon", "torch_mlu", "cncl", ("MLU_VISIBLE_DEVICES",)
    ),
    "musa": KnownAccelerator(
        "Moore Threads GPU", "Moore Threads", "torch_musa", "mccl", ("MUSA_VISIBLE_DEVICES",)
    ),
    "mtia": KnownAccelerator("Meta Training and Inference Accelerator", "Meta", "mtia"),
}

# Properties every device module's get_device_properties names for the DeviceProperties fields.
_NAMED_FIELDS = frozenset({"name", "total_memory", "uuid", "multi_processor_count"})


def accelerator_device_type() -> str | None:
    """The device type of the accelerator torch has in this process ("npu", "cuda"), or None.

    Imports torch (and through torch's autoload, the out-of-tree packages installed); None for
    a torch without `torch.accelerator` (< 2.6), a CPU-only build, or a torch that fails to load.
    """
    try:
        import torch

        current = torch.accelerator.current_accelerator()
    except Exception:  # ImportError, an old torch, a broken out-of-tree package
        return None
    return None if current is None else str(current.type)


class AcceleratorBackend(HardwareBackend):
    """The devices of one `torch.accelerator` device type, measured through that API alone.

    Memory: the caching allocator's ``allocated``/``reserved`` with exact peaks where its peak
    reset works, sampled (and flagged) where not; timing: `synchronize` brackets each reading.
    """

    fallbacks = ("cpu",)

    def __init__(self, device_type: str) -> None:
        super().__init__()
        device_type = device_type.strip().lower()
        known = KNOWN_ACCELERATORS.get(device_type)
        # Per instance, not per class: one generic backend per device type, named by it.
        self.name = device_type  # type: ignore[misc]
        self.torch_device_type = device_type  # type: ignore[misc]
        self.known = known
        self.description = (  # type: ignore[misc]
            f"{known.description if known else 'accelerator'} via torch.accelerator "
            f"({known.package if known else 'a PrivateUse1 backend'}; memory: its allocator, "
            "exact peaks where it resets them)"
        )
        self.communication_backend = known.communication_backend if known else None  # type: ignore[misc]
        self.visibility_variables = known.visibility_variables if known else ()  # type: ignore[misc]

    def _dedicated(self) -> list[str]:
        """Other registered backends for this device type, which win over the generic one."""
        from pytest_hwbench.hardware.registry import default_registry

        return [
            backend.name
            for backend in default_registry()
            if backend.torch_device_type == self.torch_device_type
            and not isinstance(backend, AcceleratorBackend)
        ]

    def _package_hint(self) -> str:
        if self.known is None:
            return "the package that registers it"
        return self.known.package

    def detect(self) -> Detection:
        """Present when torch's accelerator here is this device type and has devices."""
        dedicated = self._dedicated()
        if dedicated:
            names = ", ".join(repr(name) for name in dedicated)
            return Detection.absent(
                f"{self.torch_device_type} devices have a dedicated backend ({names}), which "
                "measures them instead of the generic torch.accelerator one"
            )
        try:
            import torch
        except Exception as exc:
            return Detection.absent(f"torch cannot be imported: {exc}")
        api = getattr(torch, "accelerator", None)
        if api is None or not hasattr(api, "current_accelerator"):
            return Detection.absent(
                f"torch {torch.__version__} has no torch.accelerator (torch >= 2.6 has it)"
            )
        current = api.current_accelerator()
        if current is None:
            return Detection.absent(
                f"torch has no accelerator here (no {self.torch_device_type} backend is loaded: "
                f"install {self._package_hint()})"
            )
        if current.type != self.torch_device_type:
            return Detection.absent(
                f"torch's accelerator here is {current.type}, not {self.torch_device_type} "
                f"(install {self._package_hint()})"
            )
        if not api.is_available():
            return Detection.absent(
                f"torch has a {self.torch_device_type} backend but no device or driver answers "
                "(torch.accelerator.is_available() is False)"
            )
        return Detection(available=True, device_count=int(api.device_count()))

    def synchronize(self, device: torch.device | int | None = None) -> None:
        """Wait for all queued work on `device` (default: the current device of this type)."""
        import torch

        torch.accelerator.synchronize(device)

    def _device_module(self) -> Any:
        """``torch.<device type>``, the module the out-of-tree package registered, or None."""
        import torch

        return getattr(torch, self.torch_device_type, None)

    def _query_properties(self, index: int) -> DeviceProperties:
        import torch

        module = self._device_module()
        props = call_or_none(module, "get_device_properties", index)
        name = getattr(props, "name", None) or call_or_none(module, "get_device_name", index)
        total = getattr(props, "total_memory", None)
        if not isinstance(total, int):
            info = call_or_none(torch.accelerator, "get_memory_info", index)
            total = int(info[1]) if info is not None else 0
        extra: dict[str, str] = {}
        for field in dir(props) if props is not None else ():
            if field.startswith("_") or field in _NAMED_FIELDS:
                continue
            value = getattr(props, field, None)
            if isinstance(value, (bool, int, float, str)):
                extra[field] = str(value)
        dtypes = _supported_dtypes(index)
        if dtypes is not None:
            extra["supported_dtypes"] = ",".join(sorted(dtypes))
        if module is not None:
            extra["device_module"] = str(getattr(module, "__name__", ""))
        uuid = getattr(props, "uuid", None)
        sms = getattr(props, "multi_processor_count", None)
        return DeviceProperties(
            backend=self.name,
            index=index,
            name=str(name or f"{self.torch_device_type} device"),
            vendor=self.known.vendor if self.known else "",
            total_memory_bytes=int(total),
            uuid=str(uuid) if uuid else None,
            multiprocessor_count=sms if isinstance(sms, int) else None,
            runtime_version=_runtime_version(module),
            extra=extra,
        )

    def _query_capabilities(self, index: int) -> frozenset[Capability]:
        import torch

        api = torch.accelerator
        # Until its allocator is initialized torch answers memory calls itself (zeros, no-op
        # resets): a first tensor initializes it, so the probes below reach the allocator.
        with contextlib.suppress(Exception):  # the probes then say what they can
            self.properties(index)  # the device module's query initializes the device
            torch.empty(1, device=torch.device(self.torch_device_type, index))
        caps: set[Capability] = {Capability.SYNCHRONIZE}
        dtypes = _supported_dtypes(index)
        if dtypes is None:  # the device module may still say so for bfloat16
            if call_or_none(self._device_module(), "is_bf16_supported"):
                caps.add(Capability.BF16)
        else:
            for dtype, capability in (
                ("float16", Capability.FP16),
                ("bfloat16", Capability.BF16),
                ("float64", Capability.FP64),
            ):
                if dtype in dtypes:
                    caps.add(capability)
        if works(api, "memory_allocated", index) and works(api, "memory_reserved", index):
            caps.add(Capability.MEMORY_STATS)
            before_peak_reset(self.torch_device_type, index)
            if works(api, "reset_peak_memory_stats", index):
                caps.add(Capability.PEAK_MEMORY_RESET)
        if works(api, "get_memory_info", index):
            caps.add(Capability.DEVICE_MEMORY_INFO)
        return frozenset(caps)


def _supported_dtypes(index: int) -> set[str] | None:
    """The dtypes torch says device `index` allocates and converts (torch >= 2.8), or None."""
    import torch

    capability = call_or_none(torch.accelerator, "get_device_capability", index)
    dtypes = capability.get("supported_dtypes") if isinstance(capability, dict) else None
    if not dtypes:
        return None
    return {str(dtype).removeprefix("torch.") for dtype in dtypes}


def _runtime_version(module: Any) -> str | None:
    """The out-of-tree runtime's version where its device module says it."""
    version = getattr(getattr(module, "version", None), "__version__", None) or getattr(
        module, "__version__", None
    )
    return str(version) if version else None
