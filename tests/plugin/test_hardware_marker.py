from __future__ import annotations

import pytest

from pytest_hwbench.testing import FakeBackend, fake_registry


@pytest.mark.usefixtures("cpu_only_machine")
def test_absent_platform_is_skipped_with_each_reason(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.hardware("cuda", "mps")
        def test_gpu():
            raise AssertionError("must not run here")

        @pytest.mark.hardware("cuda", "cpu")
        def test_any():
            pass
        """
    )
    result = pytester.runpytest("-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(
        ["SKIPPED * cuda: torch was built without CUDA; mps: no MPS: not macOS*"]
    )


@pytest.mark.usefixtures("cpu_only_machine")
def test_hw_device_parametrizes_over_marker_platforms_with_stable_ids(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest
        import torch

        @pytest.mark.hardware("cpu", "cuda")
        def test_step(hw_device, hw_backend):
            assert isinstance(hw_device, torch.device)
            assert hw_backend.name == hw_device.type
        """
    )
    result = pytester.runpytest("-v", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "*test_step[[]cpu[]] PASSED*",
            "*test_step[[]cuda[]] SKIPPED*",
            "SKIPPED * cuda: torch was built without CUDA*",
        ]
    )


def test_unmarked_hw_device_runs_on_every_available_platform(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_registry(monkeypatch, FakeBackend("cuda", device_count=2))
    pytester.makepyfile(
        """
        def test_step(hw_device):
            assert hw_device.type in ("cpu", "cuda")
        """
    )
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_step[[]cpu[]] PASSED*", "*test_step[[]cuda[]] PASSED*"])
    pytester.runpytest("--hw-devices=cpu").assert_outcomes(passed=1)
    result = pytester.runpytest("--hw-devices=cpu,mps", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED * mps: no MPS: not macOS*"])


def test_faked_cuda_runs_a_cuda_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_registry(monkeypatch, FakeBackend("cuda", capabilities=["bf16"], device_count=2))
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.hardware("cuda", requires=("bf16",), min_count=2)
        def test_gpu(hw_device):
            assert str(hw_device) == "cuda:0"

        @pytest.mark.hardware("cuda")
        def test_plain():
            pass
        """
    )
    pytester.runpytest().assert_outcomes(passed=2)


@pytest.mark.parametrize(
    ("marker", "reason"),
    [
        ('"cpu", requires=("tf32",)', "cpu: lacks tf32"),
        ('"cpu", min_count=2', "cpu: needs 2 devices, 1 visible"),
        ('"cpu", min_memory="100000GiB"', "cpu: needs 97.7 TiB of device memory, has *"),
    ],
)
def test_unmet_requirements_skip_with_the_reason(
    pytester: pytest.Pytester, marker: str, reason: str
) -> None:
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.hardware({marker})
        def test_needs_more():
            pass
        """
    )
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines([f"SKIPPED * {reason}"])


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ('"gpu"', "unknown platform 'gpu'; registered platforms: cpu, cuda, rocm, mps, xpu, *"),
        ('"nup"', "unknown platform 'nup'; registered platforms: *(did you mean 'npu'?)"),
        ('"cuda", requires=("bfloat",)', "unknown capability 'bfloat'; valid capabilities: fp16*"),
        ('"cuda", min_memory="lots"', "min_memory: bad size 'lots'*512MB (10^6)*"),
        ('"cuda", min_count=0', "min_count must be an int >= 1, got 0"),
        ('"cuda", needs="bf16"', "unknown argument(s) needs; valid: requires, min_memory, *"),
        ("", "name at least one platform*"),
    ],
)
def test_bad_marker_is_a_collection_error_listing_valid_names(
    pytester: pytest.Pytester, marker: str, message: str
) -> None:
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.hardware({marker})
        def test_x():
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*@pytest.mark.hardware: {message}"])


@pytest.mark.usefixtures("cpu_only_machine")
def test_unavailable_policy_deselect(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.hardware("cpu", "cuda")
        def test_step(hw_device):
            pass

        @pytest.mark.hardware("xpu")
        def test_xpu_only():
            pass
        """
    )
    result = pytester.runpytest("--hw-unavailable=deselect")
    result.assert_outcomes(passed=1, deselected=2)


@pytest.mark.usefixtures("cpu_only_machine")
def test_unavailable_policy_fail_for_runners_that_must_not_skip(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.hardware("cuda")
        def test_gpu():
            pass
        """
    )
    result = pytester.runpytest("--hw-unavailable=fail")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*required hardware unavailable (--hw-unavailable=fail): cuda: torch was built*"]
    )


def test_hw_info_fixture_is_the_inventory(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_info(hw_info):
            names = [b["name"] for b in hw_info["backends"]]
            assert names == ["cpu", "cuda", "rocm", "mps", "xpu", "xla"]
            assert hw_info["backends"][0]["available"] is True
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)


@pytest.mark.usefixtures("cpu_only_machine")
def test_markers_on_modules_classes_and_added_by_conftests_are_seen(
    pytester: pytest.Pytester,
) -> None:
    """Runs that use no marker skip the session; a marker from anywhere must still count."""
    pytester.makeconftest(
        """
        import pytest

        def pytest_collection_modifyitems(items):
            for item in items:
                if item.name == "test_marked_by_conftest":
                    item.add_marker(pytest.mark.hardware("cuda"))
        """
    )
    pytester.makepyfile(
        test_module_mark="""
        import pytest

        pytestmark = pytest.mark.hardware("cuda")

        def test_module_marked():
            raise AssertionError("must not run without cuda")
        """,
        test_class_mark="""
        import pytest

        @pytest.mark.hardware("mps")
        class TestOnMac:
            def test_class_marked(self):
                raise AssertionError("must not run without mps")

        def test_marked_by_conftest():
            raise AssertionError("must not run without cuda")

        def test_plain():
            pass
        """,
    )
    result = pytester.runpytest("-rs")
    result.assert_outcomes(passed=1, skipped=3)
    result.stdout.fnmatch_lines_random(
        [
            "SKIPPED *test_module_mark.py*: cuda: torch was built without CUDA",
            "SKIPPED *test_class_mark.py*: mps: no MPS: not macOS*",
            "SKIPPED *test_class_mark.py*: cuda: torch was built without CUDA",
        ]
    )
