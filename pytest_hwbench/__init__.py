"""pytest-hwbench: hardware-aware benchmarks and memory profiling of ML code, as a pytest plugin.

Importing this package is cheap: torch, pynvml and psutil load only when a measurement needs them.
"""

from pytest_hwbench._version import __version__

__all__ = ["__version__"]
