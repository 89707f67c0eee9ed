"""The link benchmark's figure is drawn even when every delay-test packet met a host stall (all
error percentiles NaN), as in the software-emulated VM test guest."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from experiments.bench import links_report


@pytest.mark.parametrize("err", [math.nan, 0.05])
def test_figure_with_and_without_measurable_errors(tmp_path: Path, err: float) -> None:
    rows = [{"pps": pps, "delay_ms": d, "err_ms_p99": err, "err_ms_p50": err}
            for pps in (1_000, 10_000, 100_000) for d in (1, 10, 50, 300)]
    update = {"trace": {"t_send_s": [0.0, 1.0], "owd_ms": [1.0, 2.0]}, "update_times_s": [0.5]}
    results = {"relay": {"delay_error": rows, "update": update, "max_pps": {"1400B": {"kpps": 100.0}}}}
    paths = links_report.figure(results, tmp_path)
    assert all(p.stat().st_size > 1000 for p in paths)
