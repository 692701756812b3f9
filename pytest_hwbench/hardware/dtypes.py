"""The dtypes a test may ask for by name, and the capability each needs of a device.

Names are torch's own attribute names (``torch.bfloat16`` is "bfloat16"); the aliases torch
also defines ("half", "float", "double", ...) are accepted and named canonically. Read without
importing torch: markers are checked at collection, before any test has loaded it. A leaf:
capabilities are named by their values here, and `HardwareBackend.dtype_unmet_reason` reads
them.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "DTYPE_ALIASES",
    "DTYPE_NAMES",
    "UnknownDtypeError",
    "canonical_dtype",
    "dtype_capability",
]

#: torch's dtypes by name, the ones a device-parametrized test plausibly computes in.
DTYPE_NAMES: tuple[str, ...] = (
    "float32", "float64", "float16", "bfloat16",
    "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz",
    "complex64", "complex128",
    "int8", "int16", "int32", "int64", "uint8", "bool",
)  # fmt: skip
#: torch's other names for some of them.
DTYPE_ALIASES: dict[str, str] = {
    "float": "float32", "double": "float64", "half": "float16",
    "cfloat": "complex64", "cdouble": "complex128",
    "short": "int16", "int": "int32", "long": "int64",
}  # fmt: skip
#: The capability (its value) a device needs to compute in a dtype; dtypes absent here every
#: torch device handles.
_NEEDS: dict[str, str] = {
    "float16": "fp16",
    "bfloat16": "bf16",
    "float64": "fp64",
    "complex128": "fp64",
    "float8_e4m3fn": "fp8",
    "float8_e5m2": "fp8",
    "float8_e4m3fnuz": "fp8",
    "float8_e5m2fnuz": "fp8",
}


class UnknownDtypeError(ValueError):
    """A dtype name that is none of `DTYPE_NAMES` (or their aliases)."""


def canonical_dtype(value: Any) -> str:
    """The canonical name of `value`: a dtype's name, an alias, or a ``torch.dtype`` itself.

    ``"half"``, ``"torch.float16"`` and ``torch.float16`` are all "float16"; anything else
    raises `UnknownDtypeError` naming the valid names.
    """
    text = str(value).strip()
    name = text.removeprefix("torch.").lower()
    name = DTYPE_ALIASES.get(name, name)
    if name not in DTYPE_NAMES:
        raise UnknownDtypeError(f"unknown dtype {text!r}; valid dtypes: {', '.join(DTYPE_NAMES)}")
    return name


def dtype_capability(name: str) -> str | None:
    """The capability (its value: "bf16") a device needs for dtype `name` (canonical), or None."""
    return _NEEDS.get(name)
