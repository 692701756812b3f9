"""Fake hardware for tests: make a platform look present (N devices, given properties) or absent.

Public, so users can fake hardware in their own test suites as we do in ours.
"""

from __future__ import annotations

from pytest_hwbench.testing._backend import FakeBackend, fake_registry

__all__ = ["FakeBackend", "fake_registry"]
