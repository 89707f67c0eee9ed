"""``factorysat bench scale``: the whole emulator's own error as the factory grows (issue 9, item 8).

For each size (default 10, 30, 60, 124, 250, 500 UEs) it runs the default factory with every
jitter set to 0 (AGVs every 10 ms and 8 Mbit/s cameras in the ratio 5:1, 4 sensors, one cell per
~60 UEs, the LEO link on) for ``duration_s`` through the ordinary run skeleton, then measures
against the model taken from the scenario (not from the run's own self-check):
per-packet error = measured one-way delay - (slice radio delay + cell backhaul + edge link), on the
edge-bound flows (AGVs and cameras; the sensors' LEO path varies with the orbit schedule and is
left out of the error), on packets the host-stall sentinel did not flag. It stops after the first
size that fails to start (or whose Python traffic agents, the fallback of the C traffic engine,
would not fit in memory). Results: results/bench_scale/<run_id>/.
"""

from __future__ import annotations

import copy
import math
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from experiments.framework.stats import percentile, share_pct
from topologies.scenario import Scenario, parse_scenario

SIZES = (10, 30, 60, 124, 250, 500)
UES_PER_CELL = 60
SENSORS = 4
CAMERA_SHARE = 1 / 6  # AGVs : cameras = 5 : 1
# Resident memory of one Python traffic agent (sender or receiver), measured here with `ps -o rss`
# on a running demo: 14-16 MB each. A size whose agents would not fit is not started.
AGENT_RSS_MB = 16.0
MEMORY_HEADROOM = 0.7  # use at most this share of MemAvailable

# Goals of issue 9 ("Goals (benchmark ...)"): printed against the measured figures.
GOALS = {
    "err_ms_p99_at_124": ("<=", 0.1, "ms"),
    "err_ms_p999_at_124": ("<=", 0.5, "ms"),
    "bringup_s_at_124": ("<=", 15.0, "s"),
    "emulator_loss_pct_at_124": ("<=", 0.0, "%"),
    "largest_ues_fidelity_held": (">=", 250, "UEs"),
}


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` as ``parts`` counts differing by at most one (the first ones larger)."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def factory_raw(n_ues: int) -> dict[str, Any]:
    """The default scenario as a dict, scaled to ``n_ues`` UEs, every jitter 0."""
    if n_ues < SENSORS + 2:
        raise ValueError(f"a scaled factory needs at least {SENSORS + 2} UEs (got {n_ues})")
    text = resources.files("topologies").joinpath("default_scenario.toml").read_text(encoding="utf-8")
    raw = tomllib.loads(text)
    for s in raw["slices"]:
        for direction in ("uplink", "downlink"):
            s["radio"][direction]["jitter_ms"] = 0.0
    orbit = raw.get("leo", {}).get("orbit")
    if isinstance(orbit, dict):  # topologies/leo_default.toml [leo.orbit.access]
        access = orbit.setdefault("access", {})
        access["uplink_jitter_ms"] = access["downlink_jitter_ms"] = 0.0
    n_cells = max(1, round(n_ues / UES_PER_CELL))
    # the emulator's error is measured against a known per-packet delay: cells with the fixed radio
    # model (the NR model's own delays are checked by `factorysat bench cell`)
    template_cell = {k: v for k, v in raw["cells"][0].items() if k not in ("radio_model", "nr")}
    template_cell["radio_model"] = "fixed"
    raw.pop("mobility", None)  # and nothing moves
    raw["cells"] = [{**copy.deepcopy(template_cell), "name": f"gnb{i + 1}"} for i in range(n_cells)]
    by_kind = {g["kind"]: g for g in raw["ue_groups"]}
    cameras = round((n_ues - SENSORS) * CAMERA_SHARE)
    agvs = n_ues - SENSORS - cameras
    groups = []
    for kind, total in (("agv", agvs), ("camera", cameras)):
        counts = split_evenly(total, n_cells)  # AGVs' remainder in the first cells, cameras' in the last
        for i, count in enumerate(counts if kind == "agv" else counts[::-1]):
            if count:
                groups.append({**copy.deepcopy(by_kind[kind]), "count": count, "cell": f"gnb{i + 1}"})
    groups.append({**copy.deepcopy(by_kind["sensor"]), "count": SENSORS, "cell": "gnb1"})
    raw["ue_groups"] = groups
    raw["site"]["name"] = f"bench-scale-{n_ues}"
    return raw


def factory(n_ues: int) -> Scenario:
    return parse_scenario(factory_raw(n_ues), f"bench scale: default factory, {n_ues} UEs, jitter 0")


def modelled_owd_ms(scenario: Scenario) -> dict[str, float]:
    """Modelled one-way delay of each edge-bound UE's flow: radio + backhaul + edge link (uplink)."""
    cells = {c.name: c for c in scenario.cells}
    edge = scenario.core.edge_link.uplink.delay_ms
    return {ue.name: scenario.slice(ue.slice).radio.uplink.delay_ms + cells[ue.cell].backhaul.uplink.delay_ms
            + edge for ue in scenario.ues if ue.traffic.destination == scenario.core.edge}


def memory_needed_mb(scenario: Scenario) -> float:
    """Agents of a run: one sender per UE, one receiver per destination."""
    return (len(scenario.ues) + len(scenario.servers())) * AGENT_RSS_MB


def memory_available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return math.inf


def measure(run_dir: Path, scenario: Scenario) -> dict[str, Any]:
    """Error of the edge-bound flows against the scenario's model, plus the run's own figures."""
    import json

    packets = pd.read_parquet(run_dir / "packets.parquet")
    summary = json.loads((run_dir / "summary.json").read_text())
    metadata = json.loads((run_dir / "metadata.json").read_text())
    model = modelled_owd_ms(scenario)
    edge = packets[packets["ue"].isin(model.keys())]
    stalled = edge["host_stall"].to_numpy(dtype=bool)
    err = edge["owd_ms"].to_numpy() - edge["ue"].map(model).to_numpy(dtype=float)
    clean = err[~stalled]
    total = summary["loss_accounting"]["total"]
    emulator_lost = total["emulator_loss_pkts"] + max(0, total["unattributed_loss_pkts"])
    sends = sorted((run_dir / "raw").glob("send-*.json"))  # the C engine writes realtime_at_end
    engine_rt_end = json.loads(sends[0].read_text()).get("realtime_at_end") if sends else None
    return {
        "bringup_s": metadata.get("bringup_s"),
        "engine_realtime_at_end": engine_rt_end,
        "ovs_realtime_dropped": (metadata.get("ovs_realtime") or {}).get("dropped"),
        "packets_measured": int(len(clean)),
        "err_ms_p50": percentile(clean, 50), "err_ms_p99": percentile(clean, 99),
        "err_ms_p999": percentile(clean, 99.9),
        "err_ms_max": round(float(clean.max()), 4) if len(clean) else None,
        "err_ms_p99_all_packets": percentile(err, 99),
        "host_stall_flagged_pct": share_pct(int(stalled.sum()), len(err)),
        "host_stalls_per_min": summary["host_stalls"].get("stalls_per_min"),
        "emulator_loss_pct": share_pct(emulator_lost, total["scheduled_pkts"]),
        # of which measured at the userspace switch's receive sockets (ovs-vswitchd fell behind)
        "switch_socket_loss_pct": share_pct(total["emulator_detail"].get("switch_socket_drops", 0),
                                            total["scheduled_pkts"]),
        "unattributed_loss_pct": share_pct(max(0, total["unattributed_loss_pkts"]), total["scheduled_pkts"]),
        "fidelity_held": summary["fidelity"]["held"],
        "send_late_ms_p99": summary["fidelity"]["send_late_ms_p99"],  # the traffic engine's lateness
        # % of one CPU per component while the traffic ran (experiments/framework/cpuuse.py)
        **{f"traffic_cpu_pct_{k.replace(' ', '_')}": v
           for k, v in (metadata.get("cpu_during_traffic") or {}).get("cpu_pct", {}).items()},
        "fidelity_error_ms_p999_est": summary["fidelity"]["error_ms_p999_est"],
        "run_dir": str(run_dir),
    }


def goals_of(sizes: list[dict[str, Any]]) -> dict[str, Any]:
    at124 = next((s for s in sizes if s["ues"] == 124 and s.get("started")), None)
    held = [s["ues"] for s in sizes if s.get("fidelity_held")]
    return {
        "err_ms_p99_at_124": at124 and at124["err_ms_p99"],
        "err_ms_p999_at_124": at124 and at124["err_ms_p999"],
        "bringup_s_at_124": at124 and at124["bringup_s"],
        "emulator_loss_pct_at_124": at124 and at124["emulator_loss_pct"],
        "largest_ues_fidelity_held": max(held) if held else 0,
    }


def check(key: str, value: Any) -> tuple[bool, str]:
    op, goal, unit = GOALS[key]
    if value is None:
        return False, f"goal {op} {goal} {unit}: not measured"
    ok = value <= goal if op == "<=" else value >= goal
    return ok, f"goal {op} {goal} {unit}" + ("" if ok else f": missed by {abs(value - goal):.3g} {unit}")


def size_ok(scenario: Scenario, python_agents: bool) -> str | None:
    """Why a size is not started, or None: with the Python traffic agents (a process per UE;
    the C traffic engine is one process), whether they would fit in memory."""
    if not python_agents:
        return None
    need, have = memory_needed_mb(scenario), memory_available_mb()
    if need > MEMORY_HEADROOM * have:
        return (f"not started: its {len(scenario.ues) + len(scenario.servers())} Python traffic agents "
                f"would need ~{need:.0f} MB, {have:.0f} MB available")
    return None


def error_percentiles(sizes: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    ran = [s for s in sizes if s.get("err_ms_p99") is not None]
    return {k: np.array([s[k] for s in ran], dtype=float) for k in ("ues", "err_ms_p50", "err_ms_p99",
                                                                    "err_ms_p999", "err_ms_max")}
