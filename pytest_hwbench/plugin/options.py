"""Command-line options, their ini twins, and the one place both are resolved and checked."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import pytest

if TYPE_CHECKING:
    from pytest_hwbench.hardware.registry import HardwareRegistry
    from pytest_hwbench.report.model import Report

# Nothing of ours but leaves is imported at module level: pytest imports this with the plugin in
# every run, and the metrics, units and hardware modules load only when an option needs them.

__all__ = [
    "BENCHMARK_WARMUP_DEFAULT",
    "UNAVAILABLE_POLICIES",
    "HwbenchOptions",
    "add_options",
    "benchmark_plugin_loaded",
    "is_xdist_controller",
    "resolve_options",
]

UNAVAILABLE_POLICIES = ("skip", "deselect", "fail")
SAMPLERS = ("thread", "process")
RSS_RESET_CHOICES = ("on", "off")
WARMUP_CHOICES = ("auto", "off")
#: Untimed calls ``hw_benchmark`` makes before timing, unless ini ``hw_benchmark_warmup`` says.
BENCHMARK_WARMUP_DEFAULT = 1
#: A machine label names a column of a side-by-side table: short.
MACHINE_LABEL_MAX = 80
#: The help text's defaults, checked against the sampler's constants by a unit test.
INTERVAL_HELP = "memory sampling interval (default 10ms; minimum 1ms)"


class _Option(NamedTuple):
    flags: tuple[str, ...]
    dest: str
    help: str
    ini_type: Literal["string", "bool"] = "string"
    default: Any = None
    action: str = "store"
    metavar: str | None = None


_OPTIONS = (
    _Option(
        ("--hw-devices",),
        "hw_devices",
        "platforms that hw_device tests run on: comma-separated names (cpu,cuda) or 'all' "
        "(every available one; default); a marked test's other platforms are deselected",
        "string",
        "all",
        metavar="NAMES",
    ),
    _Option(
        ("--hw-dtypes",),
        "hw_dtypes",
        "dtypes that hw_dtype tests run in: comma-separated torch names (float32,bfloat16); "
        "default: a test's own dtypes=, else float32; a marked test's other dtypes are "
        "deselected",
        "string",
        None,
        metavar="NAMES",
    ),
    _Option(
        ("--hw-report",),
        "hw_report",
        "write a JSON hardware report (memory timelines per test) to PATH",
        "string",
        None,
        metavar="PATH",
    ),
    _Option(
        ("--hw-machine-label",),
        "hw_machine_label",
        "what the report calls this machine (default: its accelerators with their count and "
        "driver, else its CPU's model); reports are told apart by it side by side",
        "string",
        None,
        metavar="LABEL",
    ),
    _Option(
        ("--hw-interval",),
        "hw_interval",
        INTERVAL_HELP,
        "string",
        None,
        metavar="DURATION",
    ),
    _Option(
        ("--hw-sampler",),
        "hw_sampler",
        "background sampler: 'thread' (default) or 'process' (a helper process, ~1 kHz on Linux)",
        "string",
        "thread",
        metavar="KIND",
    ),
    _Option(
        ("--hw-rss-reset",),
        "hw_rss_reset",
        "'on' (default): reset the kernel's RSS high-water mark before each host test, for its "
        "exact peak; 'off': leave it, so that outside tools (GNU time, getrusage) keep the "
        "process's peak, and a test's peak is exact only where it exceeds every earlier one",
        "string",
        "on",
        metavar="on|off",
    ),
    _Option(
        ("--hw-warmup",),
        "hw_warmup",
        "'auto' (default): before the first measured test on each platform, run a small "
        "training step there (kernels, library handles, workspaces), so that one-time costs "
        "land on no test; 'off': measure the first test with them",
        "string",
        "auto",
        metavar="auto|off",
    ),
    _Option(
        ("--hw-heap",),
        "hw_heap",
        "also sample the heap in use (glibc's mallinfo2(): bytes malloc handed out and not had "
        "back) beside RSS in every measured host test; Linux with glibc 2.33+",
        "bool",
        False,
        action="store_true",
    ),
    _Option(
        ("--hw-energy",),
        "hw_energy",
        "measure the energy of every test from its device's counters (CPU packages and DRAM "
        "through Linux RAPL, NVIDIA GPUs through NVML; device-wide, other processes included); "
        "a device without a readable counter gets the reason in each entry, never an error",
        "bool",
        False,
        action="store_true",
    ),
    _Option(
        ("--hw-profile-all",),
        "hw_profile_all",
        "measure memory of every test, not only those using memory_profile or a limit",
        "bool",
        False,
        action="store_true",
    ),
    _Option(
        ("--hw-unavailable",),
        "hw_unavailable",
        "what happens to tests whose hardware is absent: skip (default), deselect, or fail "
        "(for GPU runners that must not silently skip)",
        "string",
        "skip",
        metavar="POLICY",
    ),
    _Option(
        ("--hw-summary",),
        "hw_summary",
        "show the N tests with the highest peak memory growth per platform (default 10; 0 = off)",
        "string",
        "10",
        metavar="N",
    ),
    _Option(
        ("--hw-gpus-per-worker",),
        "hw_gpus_per_worker",
        "under pytest-xdist, give each worker its own K GPUs (sets CUDA_VISIBLE_DEVICES or the "
        "ROCm/XPU equivalent in the worker before anything initializes a device)",
        "string",
        None,
        metavar="K",
    ),
    _Option(
        ("--hw-gpus-share",),
        "hw_gpus_share",
        "with --hw-gpus-per-worker, let workers share GPUs when there are fewer GPUs than "
        "workers x K (otherwise a usage error)",
        "bool",
        False,
        action="store_true",
    ),
    _Option(
        ("--hw-compare",),
        "hw_compare",
        "compare this run with an earlier --hw-report (per-test peak growth and time) and show "
        "the changes",
        "string",
        None,
        metavar="BASE.json",
    ),
    _Option(
        ("--hw-leak-check",),
        "hw_leak_check",
        "fail tests whose device memory after teardown exceeds what they started with by more "
        "than hw_leak_tolerance (default 1MiB)",
        "bool",
        False,
        action="store_true",
    ),
)

#: How long a distributed test's ranks may run unless its marker or ini hw_distributed_timeout say.
DISTRIBUTED_TIMEOUT_DEFAULT_S = 300.0
#: Where the platform (and dtype) ids go among a test's parameters.
AXIS_POSITIONS = ("first", "last")

_INI_ONLY = (
    (
        "hw_distributed_timeout",
        "how long a distributed test's ranks may run before they are killed (default 300s)",
    ),
    (
        "hw_axis_position",
        "where hw_device's platform and hw_dtype's dtype go in a test's id among its other "
        "parameters: first ([cuda-float32-8], default) or last ([8-cuda-float32])",
    ),
    ("hw_memory_limit", "default peak-growth limit of every profiled test (e.g. 2GiB)"),
    ("hw_leak_tolerance", "allowed memory growth over a test under --hw-leak-check (default 1MiB)"),
)


def add_options(parser: pytest.Parser) -> None:
    """Register every option in the ``hwbench`` group, each with its ini twin."""
    group = parser.getgroup("hwbench", "hardware-aware benchmarking (pytest-hwbench)")
    group.addoption(
        "--hw-compare-fail",
        action="append",
        dest="hw_compare_fail",
        default=None,
        metavar="EXPR",
        help="with --hw-compare, fail the session when a test crosses EXPR: 'peak:10%%', "
        "'peak:+256MiB', 'time:5%%', 'time:+5ms', 'duration:+25%%', 'energy:+10%%', "
        "'energy:+5J' (repeatable)",
    )
    parser.addini(
        "hw_compare_fail",
        "thresholds for --hw-compare, one a line (as --hw-compare-fail)",
        type="linelist",
        default=[],
    )
    for option in _OPTIONS:
        kwargs: dict[str, Any] = {"dest": option.dest, "help": option.help, "default": None}
        if option.action == "store":
            kwargs["metavar"] = option.metavar
        group.addoption(*option.flags, action=option.action, **kwargs)
        parser.addini(option.dest, option.help, type=option.ini_type, default=option.default)
    for name, help_text in _INI_ONLY:
        parser.addini(name, help_text, type="string", default=None)
    # hw_benchmark's settings (pytest_hwbench/plugin/benchmark/ reads them).
    parser.addini(
        "hw_peak_flops",
        "theoretical peaks for hw_benchmark's fraction of peak, one device a line: "
        "'DEVICE NAME:bf16=989e12,bandwidth=3.35e12' (override or add to the built-in table)",
        type="linelist",
        default=[],
    )
    parser.addini(
        "hw_benchmark_warmup",
        f"untimed calls hw_benchmark makes before timing (default {BENCHMARK_WARMUP_DEFAULT})",
        type="string",
        default=str(BENCHMARK_WARMUP_DEFAULT),
    )


_FLAGS = {option.dest: option.flags[0] for option in _OPTIONS}


def _ini(config: pytest.Config, name: str) -> Any:
    """Ini key `name`; a value pytest cannot read (``maybe`` for a bool) is a usage error."""
    try:
        return config.getini(name)
    except (ValueError, pytest.UsageError) as exc:  # pytest 9 wraps its ValueError
        raise _usage(f"ini {name}: {exc}") from None


def setting(config: pytest.Config, name: str) -> tuple[Any, str]:
    """The command-line value of `name` if given, else its ini value (which has the default).

    With it, where it came from as the user would write it: "--hw-devices", "ini hw_devices".
    """
    value = config.getoption(name, default=None)
    if value is not None and value is not False:
        return value, _FLAGS.get(name, f"--{name.replace('_', '-')}")
    ini_value = _ini(config, name)
    return (value if ini_value in (None, "") else ini_value), f"ini {name}"


class HwbenchOptions(NamedTuple):
    """Every option, resolved and validated once at start-up (a named tuple: cheap to define)."""

    devices: tuple[str, ...] | None  # None means every available platform
    report_path: Path | None
    interval_s: float | None  # None: the metrics' default
    sampler: str
    profile_all: bool
    unavailable: str
    summary: int
    leak_check: bool
    leak_tolerance_bytes: int
    memory_limit_bytes: int | None
    gpus_per_worker: int | None
    gpus_share: bool
    compare_base: Report | None
    compare_base_path: Path | None
    compare_thresholds: tuple[Any, ...]
    benchmark_warmup: int
    rss_reset: bool = True
    warmup: bool = True
    heap: bool = False
    energy: bool = False
    machine_label: str | None = None
    #: The dtypes --hw-dtypes (or ini hw_dtypes) selects; None: a test's own, else float32.
    dtypes: tuple[str, ...] | None = None
    #: Where the platform and dtype ids go among a test's parameters: "first" or "last".
    axis_position: str = "first"
    #: How long a distributed test's ranks may run (ini hw_distributed_timeout).
    distributed_timeout_s: float = DISTRIBUTED_TIMEOUT_DEFAULT_S

    @property
    def measures_every_test(self) -> bool:
        """Whether every test needs the per-test hooks (a report, profiling, energy, leaks...)."""
        return (
            self.report_path is not None
            or self.profile_all
            or self.energy
            or self.leak_check
            or self.compare_base is not None
        )


def is_xdist_controller(config: pytest.Config) -> bool:
    """Whether this process hands tests to xdist workers (it gathers their reports)."""
    workers = getattr(config.option, "numprocesses", None)
    return not hasattr(config, "workerinput") and bool(workers)


def benchmark_plugin_loaded(config: pytest.Config) -> bool:
    """Whether pytest-benchmark's plugin module is registered (whatever name it was loaded as)."""
    return any(
        getattr(plugin, "__name__", None) == "pytest_benchmark.plugin"
        for plugin in config.pluginmanager.get_plugins()
    )


def _usage(message: str) -> pytest.UsageError:
    return pytest.UsageError(f"pytest-hwbench: {message}")


def _check_report_path(raw: str, source: str, base: Path) -> Path:
    """The report's absolute path: a regular file or nothing yet, in a directory we can write.

    A directory, a device (``/dev/null``), a FIFO or a socket is refused before any test runs:
    the report is written by renaming a new file over it, which would replace the node.
    """
    path = Path(os.path.expanduser(raw))
    if not path.is_absolute():
        path = base / path
    try:
        mode: int | None = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None  # not there yet: whether its directory can be made is checked below
    except OSError as exc:
        raise _usage(
            f"{source}={raw}: cannot reach {path.parent} ({exc.strerror or exc}); "
            "choose a path in a directory you can enter and write"
        ) from None
    if mode is not None and stat.S_ISDIR(mode):
        raise _usage(f"{source}={raw}: is a directory; give a file path such as {raw}/hw.json")
    if mode is not None and not stat.S_ISREG(mode):
        raise _usage(
            f"{source}={raw}: is not a regular file (a device, FIFO or socket), and writing the "
            "report would replace it; give the path of a file such as hw.json"
        )
    if len(os.fsencode(path.name)) > 255:
        raise _usage(
            f"{source}={raw}: the file name is longer than 255 bytes; choose a shorter one"
        )
    parent = path.parent
    import tempfile

    try:
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".hwbench-probe-"):
            pass
    except OSError as exc:
        raise _usage(
            f"{source}={raw}: cannot write to {parent} ({exc.strerror or exc}); "
            "choose a writable path"
        ) from None
    return path


def _parse_interval(raw: str, source: str) -> float:
    from pytest_hwbench.metrics.sampler import MIN_INTERVAL_S
    from pytest_hwbench.units import SizeError, parse_duration

    try:
        interval_s = parse_duration(raw)
    except SizeError as exc:
        raise _usage(f"{source}: {exc}") from None
    if interval_s < MIN_INTERVAL_S:
        raise _usage(
            f"{source}={raw}: below the 1ms minimum (exact peaks come from "
            "high-water marks; the sampler only draws the shape)"
        )
    return interval_s


def _choice(config: pytest.Config, name: str, choices: tuple[str, ...]) -> str:
    """The setting `name`, lower-cased, which must be one of `choices` (its default if unset)."""
    raw, source = setting(config, name)
    value = str(raw or choices[0]).strip().lower()
    if value not in choices:
        raise _usage(f"{source}={value}: valid: {', '.join(choices)}")
    return value


def _parse_ini_size(name: str, raw: str) -> int:
    from pytest_hwbench.units import SizeError, parse_size

    try:
        return parse_size(raw)
    except SizeError as exc:
        raise _usage(f"ini {name}: {exc}") from None


def _resolve_dtypes(config: pytest.Config) -> tuple[str, ...] | None:
    """--hw-dtypes (or ini hw_dtypes) as canonical dtype names, or None when not given."""
    raw, source = setting(config, "hw_dtypes")
    if raw is None or not str(raw).strip():
        return None
    from pytest_hwbench.hardware.dtypes import DTYPE_NAMES, UnknownDtypeError, canonical_dtype

    names = [n.strip() for n in str(raw).split(",") if n.strip()]
    if not names:
        raise _usage(f"{source}={raw}: name a dtype ({', '.join(DTYPE_NAMES)})")
    try:
        return tuple(dict.fromkeys(canonical_dtype(n) for n in names))
    except UnknownDtypeError as exc:
        raise _usage(f"{source}={raw}: {exc}") from None


def resolve_options(
    config: pytest.Config, registry: Callable[[], HardwareRegistry]
) -> HwbenchOptions:
    """Read and check every option; bad input is a usage error before any test runs.

    `registry` is only called when an option names platforms: building it imports every backend.
    """
    raw_devices, source = setting(config, "hw_devices")
    raw_devices = str(raw_devices or "all").strip().lower()
    devices: tuple[str, ...] | None = None
    if raw_devices != "all":
        names = tuple(dict.fromkeys(n.strip() for n in raw_devices.split(",") if n.strip()))
        known = registry()
        unknown = [n for n in names if not known.knows(n)]
        if unknown or not names:
            raise _usage(
                f"{source}={raw_devices}: unknown platform {', '.join(unknown) or '(none)'}; "
                f"valid: all, or a comma-separated list of {', '.join(known.names())}"
                + (known.close_match_hint(unknown[0]) if unknown else "")
            )
        devices = names

    dtypes = _resolve_dtypes(config)
    axis_position = str(_ini(config, "hw_axis_position") or "first").strip().lower()
    if axis_position not in AXIS_POSITIONS:
        raise _usage(f"ini hw_axis_position={axis_position}: valid: {', '.join(AXIS_POSITIONS)}")

    raw_report, source = setting(config, "hw_report")
    # A path on the command line is relative to where pytest runs; one in an ini file, to it.
    report_base = Path.cwd()
    if source.startswith("ini"):
        report_base = config.inipath.parent if config.inipath else config.rootpath
    report_path = _check_report_path(str(raw_report), source, report_base) if raw_report else None

    raw_label, source = setting(config, "hw_machine_label")
    machine_label = " ".join(str(raw_label).split()) if raw_label else None
    if raw_label is not None and raw_label != "" and not machine_label:
        raise _usage(f"{source}: give a label, e.g. --hw-machine-label='A100 runner'")
    if machine_label is not None and len(machine_label) > MACHINE_LABEL_MAX:
        raise _usage(
            f"{source}={machine_label[:20]}...: at most {MACHINE_LABEL_MAX} characters "
            f"(got {len(machine_label)})"
        )

    raw_interval, source = setting(config, "hw_interval")
    interval_s = _parse_interval(str(raw_interval), source) if raw_interval else None

    sampler, source = setting(config, "hw_sampler")
    sampler = str(sampler or "thread").strip().lower()
    if sampler not in SAMPLERS:
        raise _usage(f"{source}={sampler}: valid samplers: {', '.join(SAMPLERS)}")

    unavailable, source = setting(config, "hw_unavailable")
    unavailable = str(unavailable or "skip").strip().lower()
    if unavailable not in UNAVAILABLE_POLICIES:
        raise _usage(f"{source}={unavailable}: valid policies: {', '.join(UNAVAILABLE_POLICIES)}")

    rss_reset = _choice(config, "hw_rss_reset", RSS_RESET_CHOICES) == "on"
    heap, source = setting(config, "hw_heap")
    if heap:
        from pytest_hwbench.metrics.memory._host import NO_HEAP_REASON, heap_in_use_reader

        if heap_in_use_reader() is None:
            raise _usage(f"{source}: {NO_HEAP_REASON}; leave it off")
    warmup = _choice(config, "hw_warmup", WARMUP_CHOICES) == "auto"

    raw_summary, source = setting(config, "hw_summary")
    raw_summary = str(raw_summary or "0").strip()
    if not raw_summary.isdigit():
        raise _usage(f"{source}={raw_summary}: give a number of tests (0 turns it off)")

    raw_limit = _ini(config, "hw_memory_limit")
    memory_limit = _parse_ini_size("hw_memory_limit", raw_limit) if raw_limit else None
    raw_tolerance = _ini(config, "hw_leak_tolerance")
    leak_tolerance = _parse_ini_size("hw_leak_tolerance", raw_tolerance) if raw_tolerance else 2**20

    raw_gpus, source = setting(config, "hw_gpus_per_worker")
    gpus_per_worker: int | None = None
    if raw_gpus not in (None, ""):
        text = str(raw_gpus).strip()
        if not text.isdigit() or int(text) < 1:
            raise _usage(f"{source}={text}: give a whole number of GPUs >= 1")
        gpus_per_worker = int(text)

    raw_warmup = str(_ini(config, "hw_benchmark_warmup") or BENCHMARK_WARMUP_DEFAULT).strip()
    if not raw_warmup.isdigit():
        raise _usage(f"ini hw_benchmark_warmup={raw_warmup!r}: give a number of calls (0 or more)")
    if _ini(config, "hw_peak_flops"):
        from pytest_hwbench.plugin.benchmark.peaks import parse_peak_lines

        parse_peak_lines(_ini(config, "hw_peak_flops"))  # a typo fails now, not in a test

    compare_base, compare_path, thresholds = _resolve_compare(config)

    raw_timeout = _ini(config, "hw_distributed_timeout")
    distributed_timeout_s = DISTRIBUTED_TIMEOUT_DEFAULT_S
    if raw_timeout:
        from pytest_hwbench.units import parse_duration

        try:
            distributed_timeout_s = parse_duration(raw_timeout)
        except ValueError as exc:
            raise _usage(f"ini hw_distributed_timeout={raw_timeout}: {exc}") from None

    return HwbenchOptions(
        devices=devices,
        distributed_timeout_s=distributed_timeout_s,
        dtypes=dtypes,
        axis_position=axis_position,
        report_path=report_path,
        interval_s=interval_s,
        sampler=sampler,
        profile_all=bool(setting(config, "hw_profile_all")[0]),
        unavailable=unavailable,
        summary=int(raw_summary),
        leak_check=bool(setting(config, "hw_leak_check")[0]),
        leak_tolerance_bytes=leak_tolerance,
        memory_limit_bytes=memory_limit,
        gpus_per_worker=gpus_per_worker,
        gpus_share=bool(setting(config, "hw_gpus_share")[0]),
        compare_base=compare_base,
        compare_base_path=compare_path,
        compare_thresholds=thresholds,
        benchmark_warmup=int(raw_warmup),
        rss_reset=rss_reset,
        warmup=warmup,
        heap=bool(heap),
        energy=bool(setting(config, "hw_energy")[0]),
        machine_label=machine_label,
    )


def _resolve_compare(
    config: pytest.Config,
) -> tuple[Report | None, Path | None, tuple[Any, ...]]:
    """Load the base report and parse thresholds now, so a typo fails before the run."""
    raw_fail = config.getoption("hw_compare_fail", default=None) or _ini(config, "hw_compare_fail")
    raw_base = setting(config, "hw_compare")[0]
    if not raw_base:
        if raw_fail:
            raise _usage("--hw-compare-fail needs --hw-compare=BASE.json to compare with")
        return None, None, ()
    from pytest_hwbench.report import ReportError
    from pytest_hwbench.report.compare import load_for_compare
    from pytest_hwbench.report.thresholds import ThresholdError, parse_threshold

    try:
        thresholds = tuple(parse_threshold(text) for text in raw_fail)
    except ThresholdError as exc:
        raise _usage(f"--hw-compare-fail: {exc}") from None
    path = Path(os.path.expanduser(str(raw_base)))
    try:
        base = load_for_compare(path)
    except ReportError as exc:
        raise _usage(f"--hw-compare: {exc}") from None
    return base, path, thresholds
