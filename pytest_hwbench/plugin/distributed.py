"""Multi-rank tests: ``@pytest.mark.distributed(world_size=2)`` runs a test in that many ranks.

The pytest process is the driver. It sets the test's fixtures up as for any test, opens a
``torch.distributed`` TCP store on a port the OS picks (so xdist workers never collide), and
starts one process per rank (the ``spawn`` method: CUDA cannot be used in a forked child of a
process that initialized it). Each rank imports the test's module from its file, joins the
process group (gloo on CPU, nccl on CUDA and ROCm with one device per rank, xccl on XPU),
binds ``hw_rank``, ``hw_world_size`` and ``hw_device`` to its own, measures its own memory when
the test is measured, calls the test function and sends back how it went.

The driver waits for every rank until the test's timeout. A rank that fails fails the test
with its traceback, naming the rank; the others are given a grace period and then killed (they
may be waiting in a collective for the rank that failed). A rank that hangs past the timeout
is killed, after every rank's stack is taken (``faulthandler`` on SIGUSR1, where there is one).
Every rank runs in a process group of its own, killed whole at the end: nothing outlives the
test, and a rank whose driver died exits by itself.
"""

from __future__ import annotations

import contextlib
import faulthandler
import importlib.util
import marshal
import os
import pickle
import signal
import sys
import tempfile
import threading
import time
import traceback
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from pytest_hwbench.hardware.base import HardwareBackend

__all__ = ["RankHooks", "RankResult", "run_ranks", "summarize_failure"]

#: How long the other ranks get to finish once one has failed (they may wait on it forever).
FAILURE_GRACE_S = 10.0
#: How long a hung rank gets to write its stack before it is killed.
STACK_WAIT_S = 1.0


@dataclass
class RankResult:
    """How one rank went."""

    rank: int
    #: "passed", "failed", "skipped", "hung", "killed" or "died".
    status: str
    #: The rank's traceback or message (a skip's reason); its stack where it hung.
    message: str = ""
    #: The rank's memory, as a report entry's ``memory``, when the test was measured.
    memory: dict[str, Any] | None = None
    device: str | None = None
    #: When its measurement began, in seconds after the driver started the ranks (its memory
    #: timeline's zero): where its track starts within the test.
    start_s: float | None = None
    #: When the driver heard of it (monotonic seconds).
    received: float = 0.0
    #: When it failed, by the host's clock (the ranks share it): the first failure is the cause.
    failed_at: float | None = None
    #: Its hw_benchmark record, on rank 0 of a test that benchmarks.
    benchmark: dict[str, Any] | None = None


# -- hw_benchmark in the ranks ----------------------------------------------------------------


class RankBenchmark:
    """``hw_benchmark`` in a distributed test: rounds every rank runs together, rank 0 timing.

    Each round starts at a barrier and ends when every rank has finished its calls and its
    device's queued work (a barrier after a synchronize): the step as the job sees it, set by
    its slowest rank. Rank 0's times become the test's benchmark. Calling it runs
    ``default_rounds`` rounds; ``pedantic`` takes pytest-benchmark's arguments.
    """

    def __init__(self, warmup_rounds: int, default_rounds: int = 20) -> None:
        self.warmup_rounds = warmup_rounds
        self.default_rounds = default_rounds
        self._device: Any = None
        #: Rank 0's record of the rounds (the report entry's ``benchmark``), once run.
        self.record: dict[str, Any] | None = None

    def bind(self, device: Any) -> None:
        """Run on `device` (the rank's own), in a rank."""
        self._device = device

    def __call__(
        self,
        function: Callable[..., Any],
        *args: Any,
        flops: float | None = None,
        bytes_moved: float | None = None,
        dtype: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Time `function(*args, **kwargs)` over the default rounds; return its result."""
        return self.pedantic(
            function, args=args, kwargs=kwargs, rounds=self.default_rounds,
            warmup_rounds=self.warmup_rounds, flops=flops, bytes_moved=bytes_moved,
        )  # fmt: skip

    def pedantic(
        self,
        target: Callable[..., Any],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        setup: Callable[[], Any] | None = None,
        rounds: int = 1,
        warmup_rounds: int = 0,
        iterations: int = 1,
        flops: float | None = None,
        bytes_moved: float | None = None,
        dtype: Any = None,
    ) -> Any:
        """pytest-benchmark's ``pedantic``, every round a step of the whole job.

        `flops` and `bytes_moved` give throughput at the median; `dtype` is taken as
        ``hw_benchmark`` takes it, but no fraction of a device's peak is worked out here
        (the ranks have no peak table).
        """
        import statistics

        import torch
        import torch.distributed as dist

        from pytest_hwbench.plugin.benchmark.driving import call_arguments, check_pedantic

        if self._device is None:
            raise RuntimeError("hw_benchmark of a distributed test runs in its ranks only")
        check_pedantic(rounds, warmup_rounds, iterations, setup)
        module = getattr(torch, self._device.type, None)
        synchronize = getattr(module, "synchronize", None) if self._device.type != "cpu" else None
        result = None
        for _ in range(warmup_rounds):
            call_args, call_kwargs = call_arguments(setup, args, dict(kwargs or {}))
            result = target(*call_args, **call_kwargs)
        times = []
        for _ in range(rounds):
            call_args, call_kwargs = call_arguments(setup, args, dict(kwargs or {}))
            dist.barrier()
            start = time.perf_counter()
            for _ in range(iterations):
                result = target(*call_args, **call_kwargs)
            if synchronize is not None:
                synchronize(self._device)
            dist.barrier()
            times.append((time.perf_counter() - start) / iterations)
        if dist.get_rank() == 0:
            quartiles = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
            median = statistics.median(times)
            throughput: dict[str, Any] = {}
            if flops is not None:
                throughput.update(flops=flops, flops_per_s=flops / median)
            if bytes_moved is not None:
                throughput.update(bytes_moved=bytes_moved, bytes_per_s=bytes_moved / median)
            self.record = {
                "timed": True,
                "unit": "seconds",
                "min": min(times),
                "max": max(times),
                "mean": statistics.fmean(times),
                "median": median,
                "stddev": statistics.stdev(times) if len(times) > 1 else 0.0,
                "iqr": quartiles[2] - quartiles[0],
                "rounds": rounds,
                "iterations": iterations,
                "warmup_rounds": warmup_rounds,
                "timer": f"barrier+synchronize+perf_counter (rank 0 of {dist.get_world_size()})",
                "throughput": throughput or None,
                "warnings": [],
            }
        return result


# -- the driver ------------------------------------------------------------------------------------


def _unpicklable(kwargs: Mapping[str, Any]) -> tuple[str, Any, Exception] | None:
    """The first fixture value that cannot be pickled, with why; None when all can."""
    for name, value in kwargs.items():
        try:
            pickle.dumps(value)
        except Exception as exc:
            return name, value, exc
    return None


def _picklable(kwargs: Mapping[str, Any]) -> bytes:
    """`kwargs` pickled, or a failure naming the fixture that cannot travel to the ranks.

    Pickled once; only when that fails is each value tried, to name the one to blame.
    """
    try:
        return pickle.dumps(dict(kwargs))
    except Exception as whole:
        name, value, problem = _unpicklable(kwargs) or ("(together)", kwargs, whole)
    pytest.fail(
        f"fixture {name!r} ({type(value).__name__}) cannot be sent to the ranks of a "
        f"distributed test ({type(problem).__name__}: {problem}); ranks get the test's fixtures "
        "pickled: return plain data from it, or build the object inside the test",
        pytrace=False,
    )


def _function_payload(item: pytest.Function) -> dict[str, Any]:
    """How a rank finds the test function: its module's file and name, its code if it can."""
    function = item.function
    module = sys.modules.get(function.__module__)
    path = getattr(module, "__file__", None) or str(item.path)
    payload: dict[str, Any] = {
        "module": function.__module__,
        "path": path,
        "qualname": function.__qualname__,
        "class": item.cls.__name__ if item.cls is not None else None,
    }
    code = function.__code__
    if not code.co_freevars:  # the code pytest compiled, asserts rewritten, travels as it is
        payload["code"] = marshal.dumps(code)
        payload["defaults"] = function.__defaults__
    return payload


def run_ranks(
    item: pytest.Function,
    kwargs: Mapping[str, Any],
    backend: HardwareBackend,
    world_size: int,
    timeout_s: float,
    measure: Mapping[str, Any] | None,
) -> list[RankResult]:
    """Run `item`'s function in `world_size` ranks on `backend`'s platform; how each went.

    `kwargs` are the test's fixture values (pickled to the ranks; the per-rank ones are
    replaced there). `measure` (interval, sampler) measures each rank's memory; None does not.
    """
    import multiprocessing
    from datetime import timedelta

    import torch.distributed as dist

    platform = backend.name
    communication = backend.communication_backend
    if communication is None:
        pytest.skip(f"{platform}: torch.distributed has no backend for its devices")
    fixtures = _picklable(kwargs)
    store = dist.TCPStore(  # type: ignore[attr-defined]
        "127.0.0.1", 0, None, True, timedelta(seconds=timeout_s), wait_for_workers=False
    )
    context = multiprocessing.get_context("spawn")
    workdir = Path(tempfile.mkdtemp(prefix="hwbench-ranks-"))
    started = time.time()  # the ranks share the host's clock: their starts are measured from it
    function = _function_payload(item)
    processes: list[Any] = []
    connections: list[Connection] = []
    try:
        for rank in range(world_size):
            receiver, sender = context.Pipe(duplex=False)
            payload = {
                "function": function,
                "fixtures": fixtures,
                "rank": rank,
                "world_size": world_size,
                "platform": platform,
                "device_type": backend.torch_device_type,
                "device_index": None if backend.is_host else rank,
                "communication": communication,
                "store_port": store.port,
                "timeout_s": timeout_s,
                "measure": dict(measure) if measure is not None else None,
                "stack_file": str(workdir / f"rank{rank}.stack"),
                "driver_pid": os.getpid(),
                "started": started,
                "sys_path": list(sys.path),
            }
            # Not a daemon: a daemonic process may not start children (a DataLoader's workers);
            # the driver kills and reaps every rank itself.
            process = context.Process(
                target=rank_main, args=(payload, sender), name=f"hwbench-rank{rank}"
            )
            process.start()
            sender.close()
            processes.append(process)
            connections.append(receiver)
        return _gather(processes, connections, workdir, timeout_s)
    finally:
        for process in processes:
            _kill_group(process)
        for connection in connections:
            connection.close()
        for leftover in workdir.glob("*"):
            with contextlib.suppress(OSError):
                leftover.unlink()
        with contextlib.suppress(OSError):
            workdir.rmdir()
        del store


def _gather(
    processes: list[Any], connections: list[Connection], workdir: Path, timeout_s: float
) -> list[RankResult]:
    """Wait for every rank's report, a failure's grace period, or the timeout."""
    from multiprocessing.connection import wait

    results: dict[int, RankResult] = {}
    deadline = time.monotonic() + timeout_s
    failed_at: float | None = None
    waiting = {id(conn): rank for rank, conn in enumerate(connections)}
    sentinels = {process.sentinel: rank for rank, process in enumerate(processes)}
    while len(results) < len(processes):
        now = time.monotonic()
        limit = deadline if failed_at is None else min(deadline, failed_at + FAILURE_GRACE_S)
        if now >= limit:
            break
        pending_conns = [c for c in connections if id(c) in waiting]
        pending_sentinels = [s for s, r in sentinels.items() if r not in results]
        ready_list: list[Any] = wait([*pending_conns, *pending_sentinels], timeout=limit - now)
        for ready in ready_list:
            if isinstance(ready, int):  # a rank's process ended
                rank = sentinels[ready]
                conn = connections[rank]
                if id(conn) in waiting and conn.poll():
                    continue  # its report is in the pipe: read it on the next pass
                if rank not in results:
                    code = processes[rank].exitcode
                    results[rank] = RankResult(
                        rank, "died", _exit_text(code), received=time.monotonic()
                    )
                    failed_at = failed_at or time.monotonic()
                continue
            rank = waiting.pop(id(ready))
            try:
                report: dict[str, Any] = ready.recv()
            except (EOFError, OSError):
                continue  # it died before reporting: its sentinel says so
            result = RankResult(rank, **report, received=time.monotonic())
            results[rank] = result
            if result.status == "failed":
                failed_at = failed_at or time.monotonic()
    missing = [rank for rank in range(len(processes)) if rank not in results]
    if missing:
        stacks = _stacks(processes, missing, workdir)
        hung = failed_at is None
        for rank in missing:
            status = "hung" if hung else "killed"
            results[rank] = RankResult(rank, status, stacks.get(rank, ""))
    return [results[rank] for rank in range(len(processes))]


def _stacks(processes: list[Any], ranks: list[int], workdir: Path) -> dict[int, str]:
    """Every rank's Python stacks, asked of the live ones by SIGUSR1 (faulthandler)."""
    if not hasattr(signal, "SIGUSR1"):
        return {}
    for rank in ranks:
        with contextlib.suppress(OSError, ValueError):
            if processes[rank].pid is not None:
                os.kill(processes[rank].pid, signal.SIGUSR1)
    time.sleep(STACK_WAIT_S)
    stacks = {}
    for rank in ranks:
        with contextlib.suppress(OSError):
            stacks[rank] = (workdir / f"rank{rank}.stack").read_text(errors="replace").strip()
    return stacks


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"exited by signal {signal.Signals(-code).name} before reporting"
    return f"exited with status {code} before reporting"


def _kill_group(process: Any) -> None:
    """Kill a rank and everything it started (its own process group), and reap it."""
    pid = process.pid
    if pid is None:
        return
    if hasattr(os, "killpg"):
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
    if process.is_alive():
        process.kill()
    process.join(timeout=5)


def summarize_failure(results: list[RankResult], world_size: int, timeout_s: float) -> str | None:
    """The test's failure message from its ranks' results, or None when every rank passed."""
    # The first to fail is the cause; the others often fail because it did (a peer gone).
    failed = sorted(
        (r for r in results if r.status in ("failed", "died")),
        key=lambda r: (r.failed_at if r.failed_at is not None else float("inf"), r.received),
    )
    hung = [r for r in results if r.status == "hung"]
    if failed:
        first = failed[0]
        lines = [f"rank {first.rank} of {world_size} failed" + _also(failed[1:]) + ":"]
        lines.append(first.message.rstrip())
        killed = [r.rank for r in results if r.status == "killed"]
        if killed:
            lines.append(
                f"(rank{'s' if len(killed) > 1 else ''} {', '.join(map(str, killed))} "
                f"killed {FAILURE_GRACE_S:.0f} s after, still running)"
            )
        return "\n".join(lines)
    if hung:
        ranks = ", ".join(str(r.rank) for r in hung)
        lines = [
            f"rank{'s' if len(hung) > 1 else ''} {ranks} of {world_size} did not finish within "
            f"the timeout ({timeout_s:g} s): killed (a collective that never completes?)"
        ]
        for result in hung:
            if result.message:
                lines += [f"--- rank {result.rank}'s stacks ---", result.message]
        return "\n".join(lines)
    return None


def _also(others: list[RankResult]) -> str:
    if not others:
        return ""
    return f" (and rank{'s' if len(others) > 1 else ''} {', '.join(str(r.rank) for r in others)})"


# -- a rank ----------------------------------------------------------------------------------------


def _watch_driver(driver_pid: int) -> None:
    """Exit when the driver is gone (its process died: nothing must outlive a test)."""

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != driver_pid:
                os._exit(70)

    threading.Thread(target=watch, name="hwbench-driver-watch", daemon=True).start()


def _load_function(spec: Mapping[str, Any]) -> Callable[..., Any]:
    """The test function, from its module's file (run here afresh, as spawn does)."""
    name, path = spec["module"], spec["path"]
    module = sys.modules.get(name)
    if module is None:
        loader_spec = importlib.util.spec_from_file_location(name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise ImportError(f"cannot import the test's module {name} from {path}")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[name] = module
        loader_spec.loader.exec_module(module)
    if "code" in spec:
        import builtins

        import _pytest.assertion.rewrite as rewrite

        namespace = module.__dict__
        # The names pytest's assertion rewriting gives a test module, which its code uses.
        namespace.setdefault("@py_builtins", builtins)
        namespace.setdefault("@pytest_ar", rewrite)
        code = marshal.loads(spec["code"])
        return types.FunctionType(code, namespace, code.co_name, spec["defaults"])
    target: Any = module
    for part in spec["qualname"].split("."):
        target = getattr(target, part)
    function: Callable[..., Any] = target
    return function


def _rank_memory(metric: Any, platform: str) -> dict[str, Any]:
    """A stopped metric's results in a report entry's ``memory`` form."""
    metrics: dict[str, Any] = metric.get_metrics()
    metrics["device"] = {k: v for k, v in metrics["device"].items() if k != "properties"}
    metrics.pop("running", None)
    metrics["platform"] = platform
    metrics["primary_series"] = metric.primary_series
    metrics["timeline"] = metric.get_memory_timeline().to_dict()
    return metrics


def rank_main(payload: dict[str, Any], connection: Connection) -> None:
    """One rank: join the group, run the test with its own fixtures, report how it went."""
    if hasattr(os, "setpgrp"):
        os.setpgrp()  # the driver kills this group: the rank and whatever it started
    _watch_driver(payload["driver_pid"])
    stack_file = open(payload["stack_file"], "w")  # noqa: SIM115 - open while the rank runs
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, file=stack_file, all_threads=True)
    rank, world_size = payload["rank"], payload["world_size"]
    report: dict[str, Any] = {"status": "failed", "message": ""}
    try:
        report = _run_rank(payload, rank, world_size)
    except BaseException as exc:  # anything before the test itself ran
        report = {
            "status": "failed",
            "message": "".join(traceback.format_exception(exc)),
            "failed_at": time.time(),
        }
    with contextlib.suppress(Exception):
        connection.send(report)
    connection.close()
    if report.get("status") != "passed":
        # Leave at once: the other ranks see their peer gone and fail now, rather than wait in
        # a collective (or in this group's teardown) until the driver's grace period ends.
        os._exit(0)
    with contextlib.suppress(Exception):
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def _run_rank(payload: dict[str, Any], rank: int, world_size: int) -> dict[str, Any]:
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    for path in payload["sys_path"]:
        if path not in sys.path:
            sys.path.append(path)
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(payload["store_port"]),
    )
    index = payload["device_index"]
    device = (
        torch.device(payload["device_type"], index)
        if index is not None
        else torch.device(payload["device_type"])
    )
    if payload["device_type"] == "cuda":
        torch.cuda.set_device(device)
    timeout = timedelta(seconds=payload["timeout_s"])
    store = dist.TCPStore(  # type: ignore[attr-defined]
        "127.0.0.1", payload["store_port"], None, False, timeout
    )
    dist.init_process_group(
        payload["communication"], store=store, rank=rank, world_size=world_size, timeout=timeout
    )
    report: dict[str, Any] = {"device": str(device)}
    metric = None
    try:
        function = _load_function(payload["function"])
        kwargs = pickle.loads(payload["fixtures"])
        kwargs.update(
            {
                name: value
                for name, value in (
                    ("hw_rank", rank),
                    ("hw_world_size", world_size),
                    ("hw_device", device),
                    ("hw_devices", [device]),
                )
                if name in kwargs
            }
        )
        bench = kwargs.get("hw_benchmark")
        if isinstance(bench, RankBenchmark):
            bench.bind(device)
        if payload["function"]["class"] is not None:
            owner = sys.modules[payload["function"]["module"]]
            instance = getattr(owner, payload["function"]["class"])()
            function = types.MethodType(function, instance)
        measure = payload["measure"]
        if measure is not None:
            from pytest_hwbench.metrics.memory.factory import MemoryMetricFactory

            spec = payload["platform"] if index is None else f"{payload['platform']}:{index}"
            metric = MemoryMetricFactory.create(
                spec, interval=measure.get("interval_s"), sampler=measure.get("sampler", "thread")
            )
            metric.start()
            report["start_s"] = round(time.time() - payload["started"], 6)
        try:
            function(**kwargs)
            report["status"] = "passed"
            if isinstance(bench, RankBenchmark) and bench.record is not None:
                report["benchmark"] = bench.record
        except pytest.skip.Exception as exc:
            report.update(status="skipped", message=str(exc.msg))
        except BaseException as exc:
            # From the test's own frame on: this function's frame is no news to the user.
            frames = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
            text = traceback.format_exception(type(exc), exc, frames)
            report.update(status="failed", message="".join(text), failed_at=time.time())
    finally:
        if metric is not None:
            with contextlib.suppress(Exception):
                metric.stop()
                report["memory"] = _rank_memory(metric, payload["platform"])
    return report  # the group is left for after the report: its end fails the other ranks


def _summarize_ranks(session: Any, nodeid: str, platform: str, results: list[RankResult]) -> None:
    """The rank that grew most joins the terminal's top peak growths, named with its rank."""
    from pytest_hwbench.plugin.summary import SummaryRow

    rows = []
    for result in results:
        memory = result.memory or {}
        primary = str(memory.get("primary_series"))
        stats = (memory.get("series") or {}).get(primary)
        if stats is not None:
            rows.append(SummaryRow.of(platform, primary, stats, f"{nodeid} (rank {result.rank})"))
    if rows:
        session.measuring.top_rows.add(max(rows, key=lambda row: row.growth_bytes))


# -- the hook --------------------------------------------------------------------------------------


class RankHooks:
    """Runs distributed tests' bodies in their ranks; registered only where a test is one."""

    def __init__(self, session: Any) -> None:
        #: The `HwbenchSession`: its plans, registry, measurer and options.
        self.session = session

    @pytest.hookimpl(tryfirst=True)
    def pytest_pyfunc_call(self, pyfuncitem: pytest.Function) -> bool | None:
        """A distributed test's body runs in its ranks, not here; its ranks' memory is kept."""
        session = self.session
        plan = session.planning.plan(pyfuncitem)
        spec = plan.distributed
        if spec is None:
            return None
        from pytest_hwbench.names import RANKS_RESULT_KEY

        backend = session.registry.get(plan.platform)
        world_size = spec.world_size_on(backend)
        timeout_s = spec.timeout_s or session.options.distributed_timeout_s
        kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
        measure = {"interval_s": session.options.interval_s, "sampler": session.options.sampler}
        results = run_ranks(pyfuncitem, kwargs, backend, world_size, timeout_s, measure)
        pyfuncitem.stash[RANKS_RESULT_KEY] = [
            {
                "rank": r.rank,
                "device": r.device,
                "status": r.status,
                "start_s": r.start_s,
                "memory": r.memory,
            }
            for r in results
        ]
        failure = summarize_failure(results, world_size, timeout_s)
        if failure is not None:
            pytest.fail(failure, pytrace=False)
        _summarize_ranks(session, pyfuncitem.nodeid, plan.platform, results)
        if results and results[0].benchmark is not None:
            from pytest_hwbench.names import BENCHMARK_RESULT_KEY

            pyfuncitem.stash[BENCHMARK_RESULT_KEY] = results[0].benchmark
        skipped = [r for r in results if r.status == "skipped"]
        if skipped:
            pytest.skip(f"rank {skipped[0].rank}: {skipped[0].message}")
        if plan.limit is not None:
            for result in results:
                memory = result.memory or {}
                primary = memory.get("primary_series")
                stats = (memory.get("series") or {}).get(primary)
                if stats is not None:
                    session.measuring.enforce_limit(
                        pyfuncitem, plan.limit, plan.platform, str(primary), stats, (),
                        who=f"rank {result.rank} of {world_size}",
                    )  # fmt: skip
        return True
