"""``factorysat bench analysis`` on a 2-second run: its synthetic files reconcile and are analysed
completely (the benchmark's memory figures themselves are printed, not tested)."""

from __future__ import annotations

from pathlib import Path

from experiments.bench import analysis


def test_two_seconds_of_the_124_ue_factory_are_written_and_analysed(tmp_path: Path) -> None:
    made = analysis.write_raw(tmp_path / "raw", 2.0)
    got = analysis.child(tmp_path / "raw", tmp_path, 2.0)
    assert got["reconciled"], got["problems"]
    assert got["packets"] == made["records"] == got["checks"]["scheduled_pkts"]  # every packet, once
    assert got["peak_rss_mb"] > 0 and (tmp_path / "owd_cdf.png").stat().st_size > 1000
    assert 1.0 <= got["urllc_owd_ms_p99"] < 3.0  # 1 ms + exponential(0.2 ms)
