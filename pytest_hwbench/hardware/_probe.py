"""Asking a runtime module whether a call works, for capability probes that must never raise."""

from __future__ import annotations

from typing import Any

__all__ = ["call_or_none", "works"]


def works(module: Any, function: str, *args: Any) -> bool:
    """Whether `module.function(*args)` exists and runs (drivers may refuse memory queries)."""
    call = getattr(module, function, None)
    if call is None:
        return False
    try:
        call(*args)
    except Exception:
        return False
    return True


def call_or_none(module: Any, function: str, *args: Any) -> Any:
    """`module.function(*args)`, or None where it is missing or refuses."""
    call = getattr(module, function, None)
    if call is None:
        return None
    try:
        return call(*args)
    except Exception:  # an out-of-tree module without the query, or a driver refusing it
        return None
