"""Runner, table, figure and files of ``factorysat bench scale`` (measurements: scale.py)."""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from experiments.bench import scale
from experiments.framework.cpuuse import CpuMeter
from experiments.framework.definition import Experiment
from experiments.framework.results import base_metadata, mark_complete, new_bench_dir, write_json
from experiments.framework.watchdog import ovs_daemon_pid
from topologies.paths import REPO_ROOT


def experiment(n_ues: int, duration_s: float) -> Experiment:
    """The demo's experiment (kind ``slices``) under a per-size name; the scenario comes in memory."""
    demo = REPO_ROOT / "experiments" / "demo" / "experiment.toml"
    base = Experiment.from_file(demo)
    return Experiment(name=f"scale{n_ues}", description=f"bench scale, {n_ues} UEs", scenario_ref="default",
                      duration_s=duration_s, drain_s=base.drain_s, folder=base.folder, kind="slices",
                      controller_apps=base.controller_apps, file=demo)


def run_size(n_ues: int, duration_s: float, out: Path, ovs_realtime: bool = True) -> dict[str, Any]:
    """One size: run it through the ordinary skeleton and measure; never raises for a failed run.
    ``ovs_realtime``: userspace OVS's packet thread at real-time priority (``--ovs-realtime``)."""
    from experiments.framework.session import RunOptions, Terminated
    from experiments.framework.skeleton import run_experiment

    row: dict[str, Any] = {"ues": n_ues, "ovs_realtime": ovs_realtime}
    scenario = scale.factory(n_ues)
    row["cells"] = len(scenario.cells)
    from experiments.kinds.slices.engine import engine_binary

    why = scale.size_ok(scenario, python_agents=engine_binary() is None)
    if why is not None:
        return {**row, "started": False, "failure": why}
    whole_run = CpuMeter({"ovs-vswitchd": [ovs_daemon_pid("ovs-vswitchd")]})  # bring-up included
    whole_run.start()
    t0 = time.monotonic()
    try:
        result = run_experiment(experiment(n_ues, duration_s),
                                RunOptions(scenario=scenario, results_root=out / "runs", progress=False,
                                           ovs_realtime=ovs_realtime))
    except (Exception, KeyboardInterrupt) as exc:
        if isinstance(exc, (KeyboardInterrupt, Terminated)):  # the benchmark itself is stopped
            raise
        run_dir = getattr(exc, "run_dir", None)
        started = run_dir is not None and (Path(run_dir) / "metadata.json").exists() and \
            "bringup_s" in json.loads((Path(run_dir) / "metadata.json").read_text())
        tail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return {**row, "started": bool(started), "failure": tail, "run_dir": str(run_dir)}
    wall = time.monotonic() - t0
    cpu = whole_run.stop()["cpu_pct"]
    return {**row, "started": True, **scale.measure(result.run_dir, scenario),
            **{f"cpu_pct_{key}": cpu[key] for key in ("machine", "ovs-vswitchd")}, "wall_s": round(wall, 1)}


def print_table(sizes: list[dict[str, Any]], goals: dict[str, Any]) -> None:
    def f(v: Any, w: int, d: int = 3) -> str:
        return f"{'n/a':>{w}}" if v is None else f"{v:>{w}.{d}f}" if isinstance(v, float) else f"{v!s:>{w}}"

    print(f"\n{'UEs':>5} {'cells':>5} {'bring-up s':>10} {'err p50':>8} {'p99':>8} {'p99.9':>8} {'max':>8} "
          f"{'p99 all':>8} {'send p99':>8} {'stall %':>7} {'emu loss %':>10} {'OVS sock %':>10} "
          f"{'CPU %':>6} {'relay':>6} {'engine':>6} {'OVS':>6} {'held':>5} {'OVS RT':>6}")
    for s in sizes:
        if "failure" in s or not s.get("started"):
            print(f"{s['ues']:>5} {s.get('cells', ''):>5}  {s.get('failure', 'no packets measured')} "
                  f"(OVS RT {'on' if s.get('ovs_realtime', True) else 'off'})")
            continue
        print(f"{s['ues']:>5} {s['cells']:>5} {f(s['bringup_s'], 10, 1)} {f(s['err_ms_p50'], 8)} "
              f"{f(s['err_ms_p99'], 8)} {f(s['err_ms_p999'], 8)} {f(s['err_ms_max'], 8)} "
              f"{f(s['err_ms_p99_all_packets'], 8)} {f(s.get('send_late_ms_p99'), 8, 1)} "
              f"{f(s['host_stall_flagged_pct'], 7, 2)} "
              f"{f(s['emulator_loss_pct'], 10, 3)} {f(s.get('switch_socket_loss_pct'), 10, 3)} "
              f"{f(s.get('traffic_cpu_pct_machine'), 6, 0)} {f(s.get('traffic_cpu_pct_relay'), 6, 0)} "
              f"{f(s.get('traffic_cpu_pct_traffic_engine'), 6, 0)} "
              f"{f(s.get('traffic_cpu_pct_ovs-vswitchd'), 6, 0)} {f(s['fidelity_held'], 5)} "
              f"{'on' if s.get('ovs_realtime', True) else 'off':>6}")
    print("error = measured - modelled one-way delay (ms) of AGV and camera packets no host stall "
          "touched; send p99: the traffic engine's lateness (ms); OVS sock %: the part of the "
          "emulator loss dropped at the userspace switch's receive sockets; CPU %: the machine, the "
          "relay, the traffic engine and ovs-vswitchd while the traffic ran, % of one core "
          "(2 cores = 200 %)")
    print("goals:")
    for key, value in goals.items():
        ok, text = scale.check(key, value)
        print(f"  [{'MET ' if ok else 'MISS'}] {key} = {value} ({text})")


def figure(sizes: list[dict[str, Any]], out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = scale.error_percentiles([s for s in sizes if s.get("ovs_realtime", True)])
    fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    for key, label, style in (("err_ms_p50", "p50", ":"), ("err_ms_p99", "p99", "-"),
                              ("err_ms_p999", "p99.9", "--"), ("err_ms_max", "max", "-.")):
        ax.plot(data["ues"], data[key], style, marker="o", label=label)
    off = scale.error_percentiles([s for s in sizes if not s.get("ovs_realtime", True)])
    if len(off["ues"]):  # --ovs-realtime both: the same sizes without OVS at real-time priority
        ax.plot(off["ues"], off["err_ms_p99"], "-", color="grey", marker="x", label="p99, OVS RT off")
    ax.axhline(0.1, color="red", lw=0.8, ls="--", label="goal p99 0.1 ms")
    ax.axhline(0.5, color="red", lw=0.8, ls=":", label="goal p99.9 0.5 ms")
    ax.set_yscale("symlog", linthresh=0.1)  # linear below 0.1 ms (errors can be slightly negative)
    if len(data["ues"]):
        ax.set_xscale("log")
        ax.set_xticks(list(data["ues"]), [str(int(n)) for n in data["ues"]])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    else:  # e.g. only sizes where nothing measurable arrived
        ax.text(0.5, 0.5, "no size delivered packets to measure", ha="center", transform=ax.transAxes)
    ax.set_ylim(bottom=-0.2)
    ax.set(xlabel="UEs", ylabel="emulator error (ms, measured - modelled)",
           title="Whole-emulator error vs factory size\n(packets no host stall touched)")
    ax.legend(fontsize=7)
    paths = [out / "bench_scale.png", out / "bench_scale.pdf"]
    for p in paths:
        fig.savefig(p, dpi=130)
    plt.close(fig)
    return paths


def metadata(base: dict[str, Any], sizes: tuple[int, ...], duration_s: float, started: float
             ) -> dict[str, Any]:
    """``base`` (results.base_metadata() taken at start) plus how the benchmark ran; each size's
    run folder has its own full metadata.json."""
    import os

    return {**base, "command": "factorysat bench scale", "sizes": list(sizes), "duration_s": duration_s,
            "wall_s": round(time.time() - started, 1), "load_average_at_end": os.getloadavg()}


def main(sizes: tuple[int, ...], duration_s: float, results: Path,
         ovs_realtime: tuple[bool, ...] = (True,)) -> int:
    """Each size (with each ``ovs_realtime`` setting, side by side), until one does not start."""
    run_id, out = new_bench_dir(results, "bench_scale")
    rows: list[dict[str, Any]] = []
    started, base = time.time(), base_metadata()
    for n in sizes:
        for rt in ovs_realtime:
            print(f"factorysat bench scale: {n} UEs, {duration_s:g} s, OVS real-time "
                  f"{'on' if rt else 'off'} ...", flush=True)
            row = run_size(n, duration_s, out, rt)
            rows.append(row)
            write_json(out / "summary.json", {"run_id": run_id, "sizes": rows, "complete": False})
            if "failure" in row:
                print(f"  run failed: {row['failure']}", file=sys.stderr)
        if not all(r.get("started") for r in rows if r["ues"] == n):
            print(f"  {n} UEs did not start: stopping here", file=sys.stderr)
            break
    goals = scale.goals_of([r for r in rows if r["ovs_realtime"] == ovs_realtime[0]])
    summary = {"run_id": run_id, "duration_s": duration_s, "sizes": rows, **goals,
               "goals": {k: {"op": op, "value": v, "unit": u} for k, (op, v, u) in scale.GOALS.items()},
               "goal_met": {k: scale.check(k, v)[0] for k, v in goals.items()},
               "method": scale.__doc__.strip().split("\n\n")[1], "complete": True}
    print_table(rows, goals)
    figs = figure(rows, out)
    write_json(out / "metadata.json", metadata(base, sizes, duration_s, started))
    write_json(out / "summary.json", summary)
    mark_complete(out)
    print(f"\nfigure: {figs[0]}\n{out}")
    return 0
