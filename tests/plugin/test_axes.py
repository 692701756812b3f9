"""The platform and dtype axes: hardware(dtypes=...), hw_dtype, hw_devices, directory-wide axes,
id order, selection that deselects, and the bridge for a suite's own device/dtype fixtures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_hwbench.testing import fake_cuda, fake_mps

Loader = Callable[[Path], dict[str, Any]]

DTYPE_SUITE = """
import pytest
import torch

@pytest.mark.hardware("cpu", "mps", dtypes=("float32", torch.float64))
def test_step(hw_device, hw_dtype):
    assert isinstance(hw_dtype, torch.dtype)
    assert hw_dtype in (torch.float32, torch.float64)
"""


def test_a_dtype_axis_beside_the_platforms_and_what_a_device_cannot_run(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    report_path: Path,
    load_valid_report: Loader,
) -> None:
    fake_mps(monkeypatch)  # MPS is here, and Metal has no float64
    pytester.makepyfile(DTYPE_SUITE)
    result = pytester.runpytest("-v", "-rs", f"--hw-report={report_path}")
    result.assert_outcomes(passed=3, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "*::test_step[[]cpu-float32[]] PASSED*",
            "*::test_step[[]cpu-float64[]] PASSED*",
            "*::test_step[[]mps-float32[]] PASSED*",
            "*::test_step[[]mps-float64[]] SKIPPED*",
            "SKIPPED [[]1[]] *: mps: float64 needs fp64, which mps:0 lacks",
        ]
    )
    entries = {t["nodeid"].split("::")[1]: t for t in load_valid_report(report_path)["tests"]}
    assert entries["test_step[cpu-float64]"]["dtype"] == "float64"
    assert entries["test_step[mps-float64]"]["dtype"] == "float64"
    assert entries["test_step[mps-float64]"]["platform"] == "mps"


def test_the_command_line_selects_dtypes_and_platforms_and_deselects_the_rest(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_mps(monkeypatch)
    pytester.makepyfile(DTYPE_SUITE)
    result = pytester.runpytest("-v", "--hw-dtypes=double", "--hw-devices=cpu")
    result.assert_outcomes(passed=1, deselected=3)  # not skipped: the user asked for a subset
    result.stdout.fnmatch_lines(["*::test_step[[]cpu-float64[]] PASSED*"])


def test_without_dtypes_hw_dtype_is_float32_or_the_selection(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import torch

        def test_default(hw_dtype, request):
            assert hw_dtype is getattr(torch, request.node.callspec.id)
        """
    )
    pytester.runpytest("-v").stdout.fnmatch_lines(["*::test_default[[]float32[]] PASSED*"])
    result = pytester.runpytest("-v", "--hw-dtypes=bfloat16,half")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        ["*::test_default[[]bfloat16[]] PASSED*", "*::test_default[[]float16[]] PASSED*"]
    )


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        (
            'dtypes=("float32", "float128")',
            "dtypes: unknown dtype 'float128'; valid dtypes: float32",
        ),
        ("dtypes=(3,)", "dtypes: unknown dtype '3'; valid dtypes: float32"),
    ],
)
def test_a_bad_dtype_is_a_collection_error_naming_the_valid_ones(
    pytester: pytest.Pytester, marker: str, message: str
) -> None:
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.hardware("cpu", {marker})
        def test_x(hw_dtype):
            pass
        """
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines([f"*test_x: @pytest.mark.hardware: {message}*"])


def test_dtypes_without_hw_dtype_and_a_bad_selection_say_what_to_do(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.hardware("cpu", dtypes=("bfloat16",))
        def test_x(hw_device):
            pass
        """
    )
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(
        ["*test_x: hardware(dtypes=...) runs the test once per dtype: take the hw_dtype fixture*"]
    )
    result = pytester.runpytest("--hw-dtypes=fp32")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--hw-dtypes=fp32: unknown dtype 'fp32'; valid dtypes: float32*"])


def test_a_conftest_gives_its_directory_the_axes(pytester: pytest.Pytester) -> None:
    pytester.mkpydir("models")
    pytester.makepyfile(
        **{
            "models/conftest.py": """
                import pytest

                def pytest_hwbench_default_hardware(definition):
                    return pytest.mark.hardware("cpu", "cuda", dtypes=("float32", "float64"))
                """,
            "models/test_model.py": """
                import pytest

                def test_forward(hw_device, hw_dtype):
                    pass

                def test_gradcheck(hw_device):  # no dtype axis: the directory's is not its
                    pass

                def test_profiled(memory_profile):  # no axis at all: runs as ever, on the host
                    pass

                @pytest.mark.hardware("cpu")  # its own marker wins
                def test_cpu_only(hw_device, hw_dtype):
                    pass
                """,
            "test_elsewhere.py": """
                def test_outside(hw_device):
                    pass
                """,
        }
    )
    result = pytester.runpytest("-v", "-rs")
    result.stdout.fnmatch_lines_random(
        [
            "*models/test_model.py::test_forward[[]cpu-float32[]] PASSED*",
            "*models/test_model.py::test_forward[[]cpu-float64[]] PASSED*",
            "*models/test_model.py::test_forward[[]cuda-float32[]] SKIPPED*",
            "*models/test_model.py::test_forward[[]cuda-float64[]] SKIPPED*",
            "*models/test_model.py::test_cpu_only[[]cpu-float32[]] PASSED*",
            "*models/test_model.py::test_gradcheck[[]cpu[]] PASSED*",
            "*models/test_model.py::test_gradcheck[[]cuda[]] SKIPPED*",
            "*models/test_model.py::test_profiled PASSED*",
            "*test_elsewhere.py::test_outside[[]cpu[]] PASSED*",  # only what is available
        ]
    )
    result.assert_outcomes(passed=6, skipped=3)
    # The directory's axes are a default the command line replaces; a test's own, it selects in.
    result = pytester.runpytest("-v", "--hw-dtypes=bfloat16")
    result.stdout.fnmatch_lines_random(
        [
            "*models/test_model.py::test_forward[[]cpu-bfloat16[]] PASSED*",
            "*models/test_model.py::test_forward[[]cuda-bfloat16[]] SKIPPED*",
        ]
    )
    result.assert_outcomes(passed=5, skipped=2)  # test_cpu_only's marker names no dtypes
    result = pytester.runpytest("-v", "--hw-devices=cuda")
    result.assert_outcomes(passed=1, skipped=4, deselected=1)  # test_cpu_only names cpu


def test_a_hook_returning_something_else_is_an_error(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("def pytest_hwbench_default_hardware(definition):\n    return ('cpu',)\n")
    pytester.makepyfile("def test_x(hw_device):\n    pass\n")
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(
        ["*pytest_hwbench_default_hardware must return pytest.mark.hardware(...) or None*"]
    )


ID_SUITE = """
import pytest

@pytest.mark.hardware("cpu", dtypes=("float32",))
@pytest.mark.parametrize("batch", [8])
def test_step(hw_device, hw_dtype, batch):
    pass
"""


def test_the_platform_leads_the_id_unless_the_ini_says_last(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(ID_SUITE)
    pytester.makeconftest(
        """
        def pytest_generate_tests(metafunc):  # a suite's own axis, added in its conftest
            if "backend" in metafunc.fixturenames:
                metafunc.parametrize("backend", ["eager"])
        """
    )
    pytester.makepyfile(
        test_backend="""
        import pytest

        @pytest.mark.hardware("cpu")
        def test_compiled(hw_device, backend):
            pass
        """
    )
    result = pytester.runpytest("--co", "-q")
    result.stdout.fnmatch_lines_random(
        ["*::test_step[[]cpu-float32-8[]]", "*::test_compiled[[]cpu-eager[]]"]
    )
    pytester.makeini("[pytest]\nhw_axis_position = last\n")
    pytester.runpytest("--co", "-q").stdout.fnmatch_lines(["*::test_step[[]8-cpu-float32[]]"])
    pytester.makeini("[pytest]\nhw_axis_position = middle\n")
    result = pytester.runpytest("--co", "-q")
    result.stderr.fnmatch_lines(["*ini hw_axis_position=middle: valid: first, last*"])


BRIDGE_CONFTEST = """
import pytest

def pytest_addoption(parser):
    parser.addoption("--device", default=None, help="the suite's own: cpu, cuda, mps or all")
    parser.addoption("--dtype", default=None, help="the suite's own: float32, float64 or all")


def pytest_configure(config):
    # The suite's options select as they always did: through ours.
    for theirs, ours in (("device", "hw_devices"), ("dtype", "hw_dtypes")):
        value = config.getoption(theirs)
        if value and value != "all":
            setattr(config.option, ours, value)


def pytest_hwbench_default_hardware(definition):
    return pytest.mark.hardware("cpu", "mps", dtypes=("float32", "float64"))


@pytest.fixture
def device(hw_device):
    return hw_device


@pytest.fixture
def dtype(hw_dtype):
    return hw_dtype


def pytest_collection_modifyitems(items):
    for item in items:  # the suite's own id rules keep working: the platform leads the id
        if "[mps" in item.nodeid:
            item.add_marker(pytest.mark.xfail(reason="mps: a known gap", strict=False))
"""


def test_a_suites_own_device_fixture_bridged_keeps_its_ids_options_and_rules(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_mps(monkeypatch)
    pytester.makeconftest(BRIDGE_CONFTEST)
    pytester.makepyfile(
        """
        import pytest
        import torch

        @pytest.mark.parametrize("size", [2])
        def test_matmul(device, dtype, size):
            assert dtype in (torch.float32, torch.float64)
            assert device.type in ("cpu", "mps")
        """
    )
    result = pytester.runpytest("-v", "-rsx")
    result.stdout.fnmatch_lines_random(
        [
            "*::test_matmul[[]cpu-float32-2[]] PASSED*",
            "*::test_matmul[[]cpu-float64-2[]] PASSED*",
            "*::test_matmul[[]mps-float32-2[]] XPASS*",
            "*::test_matmul[[]mps-float64-2[]] SKIPPED*",
        ]
    )
    result = pytester.runpytest("-v", "-k", "cpu-float32")
    result.assert_outcomes(passed=1, deselected=3)
    # The suite's options choose the axes, as they always did: the rest is never collected.
    result = pytester.runpytest("-v", "--device=cpu")
    result.assert_outcomes(passed=2)
    result = pytester.runpytest("-v", "--device=cpu", "--dtype=float64")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*::test_matmul[[]cpu-float64-2[]] PASSED*"])


def test_hw_devices_hands_a_min_count_test_its_devices(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_cuda(monkeypatch, count=2)
    pytester.makepyfile(
        """
        import pytest
        import torch

        @pytest.mark.hardware("cuda", min_count=2)
        def test_pair(hw_devices):
            assert hw_devices == [torch.device("cuda", 0), torch.device("cuda", 1)]

        @pytest.mark.hardware("cuda", min_count=3)
        def test_three(hw_devices):
            pass

        def test_one(hw_devices):
            assert hw_devices == [torch.device("cpu")]
        """
    )
    result = pytester.runpytest("-v", "-rs")
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED [[]1[]] *: cuda: needs 3 devices, 2 visible"])


def test_hw_devices_under_xdist_are_the_workers_own_gpus(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("xdist", reason="pytest-xdist is part of the test extra")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    pytester.makeconftest(
        """
        import pytest
        from pytest_hwbench.testing import fake_cuda

        def pytest_configure(config):
            patch = pytest.MonkeyPatch()
            fake_cuda(patch, count=4)  # after the worker's pinning: it sees its own two
            config.add_cleanup(patch.undo)
        """
    )
    pytester.makepyfile(
        """
        import os
        import pytest

        @pytest.mark.hardware("cuda", min_count=2)
        @pytest.mark.parametrize("i", range(4))
        def test_pair(hw_devices, i):
            assert [d.index for d in hw_devices] == [0, 1]
            assert os.environ["CUDA_VISIBLE_DEVICES"] in ("0,1", "2,3")

        @pytest.mark.hardware("cuda", min_count=3)
        def test_more_than_a_worker_has(hw_devices):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-n", "2", "--hw-gpus-per-worker=2", "-rs")
    result.assert_outcomes(passed=4, skipped=1)
    result.stdout.fnmatch_lines(["*cuda: needs 3 devices, 2 visible*"])
