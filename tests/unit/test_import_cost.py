"""pytest loads the plugin in every run of every user: importing it must not pull in heavy deps."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "statement",
    [
        "import pytest_hwbench",
        "import pytest_hwbench.plugin",
        "from pytest_hwbench import hardware; hardware.default_registry()",
    ],
)
def test_import_pulls_in_no_heavy_dependency(statement: str) -> None:
    code = (
        f"{statement}\n"
        "import sys\n"
        "heavy = sorted(m for m in ('torch', 'pynvml', 'psutil', 'numpy') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == ""


def test_a_run_that_does_not_use_the_plugin_loads_only_its_front_door(
    pytester: pytest.Pytester,
) -> None:
    """Installed but unused: the plugin module and its options, not the session or metrics."""
    pytester.makeconftest(
        """
        import sys

        def pytest_unconfigure(config):
            ours = sorted(m for m in sys.modules if m.startswith("pytest_hwbench"))
            heavy = sorted(m for m in ("torch", "psutil", "pynvml") if m in sys.modules)
            print("\\nloaded: " + ",".join(ours) + " | heavy: " + ",".join(heavy))
        """
    )
    pytester.makepyfile(
        "import pytest\n\n"
        "@pytest.mark.parametrize('n', range(3))\n"
        "def test_plain(n):\n    assert n >= 0\n"
    )
    result = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    line = next(x for x in result.outlines if x.startswith("loaded: "))
    loaded, heavy = line.removeprefix("loaded: ").split(" | heavy: ")
    assert set(loaded.split(",")) == {
        "pytest_hwbench",
        "pytest_hwbench._version",
        "pytest_hwbench.names",
        "pytest_hwbench.plugin",
        "pytest_hwbench.plugin.hookspecs",
        "pytest_hwbench.plugin.marks",
        "pytest_hwbench.plugin.options",
    }
    assert heavy == ""


def test_interval_help_states_the_samplers_constants() -> None:
    """The option's help is written out (importing the sampler at start-up would cost every run)."""
    from pytest_hwbench.metrics.sampler import DEFAULT_INTERVAL_S, MIN_INTERVAL_S
    from pytest_hwbench.plugin.options import INTERVAL_HELP

    assert f"default {DEFAULT_INTERVAL_S * 1e3:g}ms" in INTERVAL_HELP
    assert f"minimum {MIN_INTERVAL_S * 1e3:g}ms" in INTERVAL_HELP


def test_profile_all_without_a_report_loads_no_metric_machinery(
    pytester: pytest.Pytester,
) -> None:
    """Every test is measured by the RSS peak probe: no metrics, hardware layer or torch."""
    pytester.makeconftest(
        """
        import sys

        def pytest_unconfigure(config):
            ours = sorted(m for m in sys.modules if m.startswith("pytest_hwbench"))
            heavy = sorted(m for m in ("torch", "psutil", "pynvml") if m in sys.modules)
            print("\\nloaded: " + ",".join(ours) + " | heavy: " + ",".join(heavy))
        """
    )
    pytester.makepyfile("def test_plain():\n    assert True\n")
    result = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider", "--hw-profile-all")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*hwbench: peak memory growth*"])
    line = next(x for x in result.outlines if x.startswith("loaded: "))
    loaded, heavy = line.removeprefix("loaded: ").split(" | heavy: ")
    modules = set(loaded.split(","))
    assert "pytest_hwbench.metrics.memory._host" in modules
    # The shared peak counters live in the hardware layer; no backend or registry loads.
    hardware = {m for m in modules if m.startswith("pytest_hwbench.hardware")}
    assert hardware == {"pytest_hwbench.hardware", "pytest_hwbench.hardware.peak_counters"}
    assert "pytest_hwbench.metrics.memory.base" not in modules
    assert "pytest_hwbench.metrics.memory.factory" not in modules
    assert heavy == ""


def test_a_report_of_a_run_that_never_imported_torch_does_not_import_it(
    pytester: pytest.Pytester,
) -> None:
    """The report describes the host from the OS; the rest is named as not probed."""
    pytester.makeconftest(
        """
        import sys

        def pytest_unconfigure(config):
            print("\\ntorch loaded: " + str("torch" in sys.modules))
        """
    )
    pytester.makepyfile("def test_plain():\n    assert True\n")
    report = pytester.path / "hw.json"
    result = pytester.runpytest_subprocess(
        "-s", "-p", "no:cacheprovider", "--hw-profile-all", f"--hw-report={report}"
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["torch loaded: False"])
    import json

    machine = json.loads(report.read_text())["machine"]
    assert machine["torch"]["version"] is None
    assert machine["not_probed"]["backends"] == ["cuda", "rocm", "mps", "xpu", "xla"]
    (cpu,) = machine["backends"]
    assert cpu["name"] == "cpu"
    assert cpu["devices"][0]["properties"]["total_memory_bytes"] > 0
    assert cpu["devices"][0]["capabilities"] is None
