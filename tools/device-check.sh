#!/usr/bin/env bash
# Real-hardware check on a lent GPU machine (torch, pytest, nvidia-ml-py there; no install, no network).
# From the checkout root: OUT=/some/dir bash tools/device-check.sh. A .devsite folder (test-only
# packages the machine lacks, e.g. `pip install --target .devsite jsonschema`) joins PYTHONPATH.
set -u
OUT=${OUT:-/tmp/hwbench-device}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTEST_PLUGINS=pytest_hwbench.plugin
[ -d .devsite ] && PYTHONPATH=$PYTHONPATH:$PWD/.devsite
export PYTHONDONTWRITEBYTECODE=1
step() { echo "=== $* ($(date +%T))"; }
step environment
nvidia-smi --query-gpu=name,memory.total,driver_version,mig.mode.current --format=csv
python3 -c "import torch, pytest; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'pytest', pytest.__version__, 'cpus', __import__('os').cpu_count())"
step "peak reset before CUDA initializes (a fresh process)"
python3 - <<'PY'
import torch
for name, call in [
    ("memory_stats", lambda: torch.cuda.memory_stats(0)),
    ("max_memory_allocated", lambda: torch.cuda.max_memory_allocated(0)),
    ("reset_peak_memory_stats", lambda: torch.cuda.reset_peak_memory_stats(0)),
    ("is_initialized", torch.cuda.is_initialized),
]:
    try:
        print(name, "->", repr(call()))
    except Exception as exc:
        print(name, "!!", type(exc).__name__, repr(str(exc)))
PY
step "energy: NVML's counter vs its power, idle and under a 2 s matmul loop; a 5 ms window"
timeout 60 python3 - <<'PY' 2>&1 | tee "$OUT/energy.txt"
import time, torch
from pytest_hwbench import hardware
from pytest_hwbench.hardware import _nvml
try:
    (counter,) = hardware.get_hardware_backend("cuda").energy_counters(0)
except hardware.EnergyUnavailableError as exc:
    raise SystemExit(f"no energy counter: {exc}")
handle = _nvml.handle_for_torch_device(0)
def window(seconds, load):
    a = torch.randn(8192, 8192, device="cuda")
    j0, t0, powers = counter.read_joules(), time.monotonic(), []
    while time.monotonic() - t0 < seconds:
        if load:
            a = (a @ a).clamp_(-1, 1)
            torch.cuda.synchronize()
        else:
            time.sleep(0.01)
        powers.append(_nvml.device_power_mw(handle) / 1000)
    j, s = counter.read_joules() - j0, time.monotonic() - t0
    print(f"{'load' if load else 'idle'} {s:.3f} s: counter {j:.2f} J = {j / s:.1f} W; "
          f"power mean {sum(powers) / len(powers):.1f} W (x{s:.3f} s = {sum(powers) / len(powers) * s:.2f} J), "
          f"max {max(powers):.1f} W, {len(powers)} readings")
window(2.0, False)
window(0.5, True)  # clocks up
window(2.0, True)
for _ in range(5):
    j0 = counter.read_joules(); t0 = time.monotonic()
    while time.monotonic() - t0 < 0.005:
        pass
    print(f"5 ms window: {counter.read_joules() - j0:.3f} J")
PY
step "energy per test through the plugin: counter vs integrated power on a 2 s load, a 5 ms test, idle"
timeout 60 python3 -m pytest tests/gpu/test_energy_real.py -k per_test -s -q -p no:cacheprovider 2>&1 | tee "$OUT/energy-plugin.txt" | grep -E "^(sustained|idle|5 ms):|passed|failed|^E " | tail -12
step real-hardware twins
timeout 150 python3 -m pytest tests/gpu -v -rs -p no:cacheprovider --junitxml="$OUT/gpu.xml" 2>&1 | tee "$OUT/gpu.txt" | grep -E "PASSED|FAILED|ERROR|SKIPPED|^E |passed|failed" | tail -60
step example suites with a report
timeout 100 python3 -m pytest example_suites -p no:cacheprovider --hw-report="$OUT/hw-report.json" -q 2>&1 | tee "$OUT/examples.txt" | tail -22
step the unit and plugin tests on a machine with a real GPU
timeout 300 python3 -m pytest tests/unit tests/plugin -q -rs -p no:cacheprovider --maxfail=40 \
  --deselect tests/unit/test_benchmarks_smoke.py 2>&1 | tee "$OUT/rest.txt" | grep -E "^(FAILED|ERROR)|^E  |passed|failed" | tail -80
