"""Raw packet records -> tidy tables (Parquet) -> per-slice summary.

Loss counts every scheduled packet that was not received (including send errors), so
``deadline_met_pct`` is the share of *sent* packets that arrived within the slice's bound: a lost
packet is a missed deadline, as in 3GPP TS 22.104's availability definition.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.traffic_agent import RECORD

RECORD_DTYPE = np.dtype([("flow_id", "<u4"), ("seq", "<u4"), ("send_ns", "<u8"), ("recv_ns", "<u8"),
                         ("bytes", "<u4"), ("tos", "u1"), ("_pad", "V3")])
assert RECORD_DTYPE.itemsize == RECORD.size


def read_records(path: Path) -> pd.DataFrame:
    """One receiver's raw file as a DataFrame (a trailing partial record is an error)."""
    data = path.read_bytes()
    if len(data) % RECORD.size:
        raise ValueError(f"{path}: {len(data)} bytes is not a whole number of {RECORD.size}-byte records")
    array = np.frombuffer(data, dtype=RECORD_DTYPE)
    return pd.DataFrame({name: array[name] for name in ("flow_id", "seq", "send_ns", "recv_ns",
                                                          "bytes", "tos")})


def tidy_packets(raw_files: list[Path], flows: pd.DataFrame) -> pd.DataFrame:
    """Received packets joined with their flow (UE, kind, slice, destination, bound)."""
    frames = [read_records(p) for p in raw_files]
    records = pd.concat(frames, ignore_index=True) if frames else read_records_empty()
    records = records.drop_duplicates(["flow_id", "seq"])
    packets = records.merge(flows, on="flow_id", how="inner", validate="many_to_one")
    packets["owd_ms"] = (packets["recv_ns"].astype("int64") - packets["send_ns"].astype("int64")) / 1e6
    packets["dscp"] = (packets["tos"].to_numpy() >> 2).astype("uint8")
    packets["on_time"] = packets["owd_ms"] <= packets["latency_bound_ms"]
    columns = ["ue", "kind", "slice", "destination", "flow_id", "seq", "send_ns", "recv_ns",
               "owd_ms", "bytes", "dscp", "on_time"]
    return packets[columns].sort_values(["flow_id", "seq"], ignore_index=True)


def read_records_empty() -> pd.DataFrame:
    return pd.DataFrame({n: pd.Series(dtype=RECORD_DTYPE[n]) for n in
                         ("flow_id", "seq", "send_ns", "recv_ns", "bytes", "tos")})


def slice_summary(packets: pd.DataFrame, flows: pd.DataFrame) -> dict[str, dict[str, float | int]]:
    """Per-slice figures: OWD percentiles, loss, share of sent packets within the bound."""
    summary: dict[str, dict[str, float | int]] = {}
    for name, slice_flows in flows.groupby("slice", sort=True):
        sent = int(slice_flows["packets_scheduled"].sum())
        got = packets[packets["slice"] == name]
        owd = got["owd_ms"].to_numpy()
        expected_dscp = int(slice_flows["dscp_expected"].iloc[0])

        summary[str(name)] = {
            "packets": sent,
            "packets_received": int(owd.size),
            "owd_ms_p50": _percentile(owd, 50),
            "owd_ms_p99": _percentile(owd, 99),
            "owd_ms_p999": _percentile(owd, 99.9),
            "owd_ms_max": round(float(owd.max()), 4) if owd.size else None,
            "loss_pct": round(100.0 * (sent - owd.size) / sent, 4) if sent else None,
            "deadline_met_pct": round(100.0 * int(got["on_time"].sum()) / sent, 4) if sent else None,
            "latency_bound_ms": float(slice_flows["latency_bound_ms"].iloc[0]),
            "dscp_marked_pct": round(100.0 * float((got["dscp"] == expected_dscp).mean()), 2)
            if owd.size else None,
        }
    return summary


def _percentile(values: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 4) if values.size else None


def write_tables(run_dir: Path, packets: pd.DataFrame, flows: pd.DataFrame,
                 summary: dict) -> None:
    packets.to_parquet(run_dir / "packets.parquet", index=False)
    flows.to_parquet(run_dir / "flows.parquet", index=False)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


def format_table(summary: dict[str, dict]) -> str:
    """A fixed-width per-slice table for the terminal."""
    header = (f"{'slice':<7} {'packets':>8} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} "
              f"{'loss %':>7} {'bound ms':>9} {'in bound %':>10} {'DSCP ok %':>9}")
    lines = [header, "-" * len(header)]

    def f(value: float | None, width: int, digits: int = 3) -> str:
        return f"{'n/a':>{width}}" if value is None else f"{value:>{width}.{digits}f}"

    for name, s in summary.items():
        lines.append(f"{name:<7} {s['packets']:>8d} {f(s['owd_ms_p50'], 8)} {f(s['owd_ms_p99'], 8)} "
                     f"{f(s['owd_ms_p999'], 9)} {f(s['loss_pct'], 7, 2)} {f(s['latency_bound_ms'], 9, 1)} "
                     f"{f(s['deadline_met_pct'], 10, 3)} {f(s['dscp_marked_pct'], 9, 1)}")
    return "\n".join(lines)
