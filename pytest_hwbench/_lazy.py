"""Things built or loaded on first use, so that importing our packages stays cheap.

A leaf: it imports nothing of ours.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

__all__ = ["ProcessDefault", "lazy_exports"]

T = TypeVar("T")


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's module ``__getattr__`` and ``__dir__`` for names that load on first use.

    `exports` maps each name to the submodule that defines it; the first access imports that
    submodule and keeps the value in the package's globals, so later ones cost nothing.
    """
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted([*namespace, *exports])

    return __getattr__, __dir__


class ProcessDefault(Generic[T]):
    """A process-wide object, built by `build` on first use (thread-safe); tests may drop it."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._lock = threading.Lock()
        #: The object once built (a test may set it to stand in for the real one).
        self.value: T | None = None

    def get(self) -> T:
        """The object, built now if it was not yet."""
        with self._lock:
            if self.value is None:
                self.value = self._build()
            return self.value

    def reset(self) -> None:
        """Drop the object, so the next `get` builds it anew."""
        with self._lock:
            self.value = None
