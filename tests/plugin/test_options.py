from __future__ import annotations

import pytest


def test_help_lists_every_option_and_ini_twin(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(
        [
            "hardware-aware benchmarking (pytest-hwbench):",
            "*--hw-devices=NAMES*",
            "*--hw-report=PATH*",
            "*--hw-interval=DURATION*",
            "*--hw-sampler=KIND*",
            "*--hw-profile-all*",
            "*--hw-unavailable=POLICY*",
            "*--hw-summary=N*",
            "*--hw-leak-check*",
        ]
    )
    for ini in ("hw_devices", "hw_report", "hw_interval", "hw_memory_limit", "hw_leak_tolerance"):
        result.stdout.fnmatch_lines([f"  {ini} *"])


def test_markers_are_registered_for_strict_markers(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.hardware(*names, requires=(), min_memory=None, min_count=1, dtypes=())*",
            "@pytest.mark.memory_limit(*",
            "@pytest.mark.memory_leak_limit(size)*",
        ]
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.hardware("cpu")
        @pytest.mark.memory_limit("1GiB")
        @pytest.mark.memory_leak_limit("100MiB")
        def test_marked():
            pass
        """
    )
    pytester.runpytest("--strict-markers").assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--hw-devices=cpu,tpu"],
            "*--hw-devices=cpu,tpu: unknown platform tpu; valid: all, or*cpu, cuda, rocm, mps*",
        ),
        (["--hw-interval=fast"], "*--hw-interval: bad duration 'fast'*10ms*"),
        (["--hw-interval=100us"], "*below the 1ms minimum*"),
        (["--hw-sampler=gpu"], "*--hw-sampler=gpu: valid samplers: thread, process*"),
        (["--hw-unavailable=ignore"], "*valid policies: skip, deselect, fail*"),
        (["--hw-summary=lots"], "*--hw-summary=lots: give a number*"),
        (["--hw-warmup=sometimes"], "--hw-warmup=sometimes: valid: auto, off"),
        (["--hw-rss-reset=no"], "--hw-rss-reset=no: valid: on, off"),
    ],
)
def test_bad_options_are_usage_errors_before_any_test(
    pytester: pytest.Pytester, args: list[str], message: str
) -> None:
    pytester.makepyfile("def test_never(): raise AssertionError('must not run')")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: pytest-hwbench: {message}"])


def test_bad_ini_memory_limit_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nhw_memory_limit = 2 gigs\n")
    pytester.makepyfile("def test_never(): raise AssertionError('must not run')")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini hw_memory_limit: bad size '2 gigs'*512MB (10^6)*"])


def test_bad_ini_choice_is_a_usage_error_naming_the_key(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nhw_warmup = maybe\n")
    pytester.makepyfile("def test_never(): raise AssertionError('must not run')")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: pytest-hwbench: ini hw_warmup=maybe: valid: auto, off"])


def test_unwritable_report_path_fails_at_start(pytester: pytest.Pytester) -> None:
    blocker = pytester.path / "file"
    blocker.write_text("not a directory")
    pytester.makepyfile("def test_never(): raise AssertionError('must not run')")
    result = pytester.runpytest(f"--hw-report={blocker}/sub/report.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--hw-report=*: cannot write to*choose a writable path*"])


def test_report_path_that_is_a_directory_is_refused(pytester: pytest.Pytester) -> None:
    pytester.mkdir("reports")
    result = pytester.runpytest("--hw-report=reports")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--hw-report=reports: is a directory*"])


def test_ini_twin_is_used_when_the_flag_is_absent(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nhw_devices = cpu\nhw_report = from-ini.json\n")
    pytester.makepyfile("def test_a(hw_device): assert hw_device.type == 'cpu'")
    pytester.runpytest().assert_outcomes(passed=1)
    assert (pytester.path / "from-ini.json").exists()
    pytester.runpytest("--hw-report=from-flag.json").assert_outcomes(passed=1)
    assert (pytester.path / "from-flag.json").exists()


def test_ini_report_path_is_relative_to_the_ini_file(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nhw_report = reports/hw.json\n")
    pytester.makepyfile("def test_a(): pass")
    sub = pytester.mkdir("elsewhere")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(sub)
        pytester.runpytest(str(pytester.path)).assert_outcomes(passed=1)
    assert (pytester.path / "reports" / "hw.json").exists()
    assert not (sub / "reports").exists()


def test_per_test_hooks_are_registered_only_when_used(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import pytest

        def pytest_sessionfinish(session):
            hooks = session.config.pluginmanager.get_plugin("hwbench_test_hooks")
            print(f"test hooks: {'on' if hooks is not None else 'off'}")
        """
    )
    pytester.makepyfile(test_plain="def test_a(): pass")
    result = pytester.runpytest("-s", "test_plain.py")
    result.stdout.fnmatch_lines(["*test hooks: off"])
    pytester.makepyfile(test_used="def test_b(memory_profile): pass")
    pytester.runpytest("-s", "test_used.py").stdout.fnmatch_lines(["*test hooks: on"])
    pytester.runpytest("-s", "test_plain.py", "--hw-profile-all").stdout.fnmatch_lines(
        ["*test hooks: on"]
    )
