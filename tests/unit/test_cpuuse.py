"""CPU use per emulator component over a window (metadata.json cpu_during_traffic)."""

from __future__ import annotations

import subprocess
import sys
import time

from experiments.framework.cpuuse import CpuMeter


def test_busy_component_counted_idle_one_not_and_an_exited_one_named() -> None:
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<5: pass"])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    short = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.1)"])
    try:
        time.sleep(0.3)  # past the interpreters' start-up
        meter = CpuMeter({"busy": [busy.pid], "idle": [idle.pid], "short": [short.pid], "none": [None]})
        meter.start()
        time.sleep(1.0)
        out = meter.stop()
    finally:
        for p in (busy, idle, short):
            p.kill()
            p.wait()
    cpu = out["cpu_pct"]
    assert cpu["busy"] > 30  # a spinning process: most of one CPU (loosely: the machine may be shared)
    assert cpu["idle"] < 5
    assert cpu["machine"] >= cpu["busy"] - 5
    assert cpu["none"] is None and "none" not in out["incomplete"]
    assert out["incomplete"] == ["short"]  # it exited inside the window: not counted, and said so
    assert 0.9 < out["window_s"] < 3
