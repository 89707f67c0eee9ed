"""The demo scenario end to end as root: a complete run folder, honest numbers, nothing left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from netstate import snapshot, wait_for_traffic

from topologies.schedprio import OVS_RT_PRIO

pytestmark = pytest.mark.root
REPO = Path(__file__).resolve().parents[2]


SWITCHES = ("gnb1", "gnb2", "upf1", "ut1", "gs1")


def _ours(state: dict[str, set[str]], run_tag: str) -> dict[str, set[str]]:
    """The objects of one run (tag ``fsXX``) in a snapshot; other work may share the machine."""
    def mine(name: str) -> bool:
        rest = name.removeprefix(run_tag)
        return name.startswith(run_tag) and (rest == "rly" or rest.split("-")[0] in SWITCHES)

    ours = {kind: {n for n in names if mine(n)} for kind, names in state.items()}
    ours["manifests"] = {n for n in state["manifests"] if n == f"{run_tag}.json"}
    return ours


def _factorysat(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "experiments", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def _children_of(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # an unreaped zombie is not running


def test_demo_run_is_complete_and_leaves_nothing(tmp_path) -> None:
    proc = _factorysat("run", "demo", "--duration-s", "6", "--results", str(tmp_path))
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out
    run_dir = Path(out.strip().splitlines()[-1])
    assert run_dir.parent == tmp_path / "demo"
    for name in ("COMPLETE", "metadata.json", "summary.json", "packets.parquet", "flows.parquet",
                 "owd_cdf.png", "owd_cdf.pdf", "scenario.resolved.json", "experiment.toml"):
        assert (run_dir / name).is_file(), name
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["link_backend"] in ("relay", "netem") and meta["ovs_datapath"] in ("user", "kernel")
    assert meta["git"]["commit"] and "dirty" in meta["git"] and meta["seed"] == 1
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary) == {"urllc", "embb", "mmtc", "loss_accounting", "reconciliation", "host_stalls",
                            "fidelity", "handovers", "flows"}
    # TS 22.104 per slice and flow, and what 6 s can claim: not URLLC's 99.9999 % (3.7 M messages)
    for name in ("urllc", "embb", "mmtc"):
        service = summary[name]["service"]
        assert 0.0 <= service["availability_pct"] <= 100.0 and service["survival_violations"] >= 0
        assert service["availability_pct_ci95"][0] <= service["availability_msgs_pct"]
    assert summary["urllc"]["service"]["target_met"] in (False, "undetermined")
    assert summary["urllc"]["service"]["messages_needed_for_target"] == 3_688_878
    assert set(summary["flows"]) == {"agv1", "agv2", "agv3", "agv4", "cam1", "cam2", "sensor1", "sensor2",
                                     "sensor3", "sensor4"}
    assert (run_dir / "availability_timeline.png").is_file() and (run_dir / "outages.parquet").is_file()
    # the run checked its own error: relay lateness of every link kind, an estimate per slice, a verdict
    fid = summary["fidelity"]
    assert isinstance(fid["held"], bool) and fid["held"] == (not fid["causes"])
    assert {"radio", "bh", "leo"} <= set(fid["relay_late_ms"]) or meta["link_backend"] == "netem"
    assert set(fid["per_slice"]) == {"urllc", "embb", "mmtc"} and fid["error_ms_p999_est"] >= 0
    assert fid["send_late_ms_p99"] is not None
    # the OVS hop in the estimate was probed while the traffic ran (a scratch bridge of the same daemon)
    assert fid["ovs_hop_source"] == "under the run's load" and meta["ovs_switch_hop_under_load"]["probes"] > 0
    assert fid["ovs_hop_ms_p999"] >= fid["ovs_hop_ms_p99"] >= 0
    # where the CPUs went while the traffic ran, per component
    cpu = meta["cpu_during_traffic"]["cpu_pct"]
    assert cpu["relay"] is not None or meta["link_backend"] == "netem"
    assert cpu["machine"] > 0
    # userspace OVS's packet thread was real-time for the run (recorded), and is back as it was
    rt = meta["ovs_realtime"]
    assert rt["requested"] is True
    if meta["ovs_datapath"] == "user":
        assert [t["to"] for t in rt["threads"]] in ([[os.SCHED_FIFO, OVS_RT_PRIO]], [None])
        for thread in rt["threads"]:
            if thread["to"] is not None and Path(f"/proc/{thread['tid']}").exists():
                assert [os.sched_getscheduler(thread["tid"]),
                        os.sched_getparam(thread["tid"]).sched_priority] == thread["from"]
    else:
        assert rt["threads"] == []  # the kernel datapath: ovs-vswitchd is not on the packet path
    # the host-stall sentinel watched the whole run; its packets are flagged in packets.parquet
    stalls = summary["host_stalls"]
    assert stalls["detected"] and stalls["sentinel_complete"] and stalls["sentinel_realtime"]
    assert stalls["duration_s"] >= 6 and (run_dir / "raw" / "hoststall.txt").is_file()
    flagged = pd.read_parquet(run_dir / "packets.parquet")["host_stall"]
    assert stalls["packets_flagged"] == int(flagged.sum()) == sum(
        summary[s]["packets_host_stall"] for s in ("urllc", "embb", "mmtc"))
    assert stalls["excluded_from_timing"] == (stalls["packets_flagged"] > 0)
    # Counts reconcile, every lost packet is in exactly one class, link counters were stored.
    assert summary["reconciliation"]["ok"] and summary["reconciliation"]["problems"] == []
    total = summary["loss_accounting"]["total"]
    assert total["counters_available"] and total["lost_pkts"] == sum(
        total[k] for k in ("modelled_loss_pkts", "emulator_loss_pkts", "in_flight_at_stop_pkts",
                           "unattributed_loss_pkts"))
    assert total["scheduled_pkts"] == sum(summary[s]["packets"] for s in ("urllc", "embb", "mmtc"))
    counters = meta["link_engine"]["link_counters"]
    assert counters["unavailable"] == {} and "radio_agv1" in counters["links"]
    flows = pd.read_parquet(run_dir / "flows.parquet").set_index("ue")
    assert counters["links"]["radio_agv1"]["uplink"]["tx"] >= flows.loc["agv1", "packets_received"]
    summary = {k: v for k, v in summary.items() if k in ("urllc", "embb", "mmtc")}
    for s in summary.values():
        for key in ("owd_ms_p50", "owd_ms_p99", "owd_ms_p999", "loss_pct", "deadline_met_pct",
                    "packets"):
            assert s[key] is not None, key
        assert s["packets"] > 0 and s["dscp_marked_pct"] == 100.0
    # The cells ran the NR model (topologies/nr): its parameters are in the metadata, every AGV
    # packet went through a cell's URLLC slice, and the configured grant beat the dynamic one.
    nr_meta = meta["link_engine"]["cells"]["nr"]
    assert set(nr_meta) == {"gnb1", "gnb2"} and nr_meta["gnb1"]["profile"] == "low_latency"
    nr = counters["nr_cells"]["gnb1"]
    assert nr["slice_names"] == ["urllc", "embb", "mmtc"]
    urllc_out = sum(counters["nr_cells"][c]["slices"][0]["uplink"]["out"] for c in ("gnb1", "gnb2"))
    assert urllc_out >= sum(flows.loc[f"agv{i}", "packets_received"] for i in (1, 2, 3, 4))  # AGVs move
    assert nr["slices"][1]["uplink"]["out"] > 0 and nr["slices"][1]["uplink"]["prb"] > 0

    def model_median_ms(s: dict) -> float:
        hist = s["uplink"]["delay_hist"]
        half, seen = sum(n for _, n in hist) / 2, 0
        for b, n in hist:
            seen += n
            if seen >= half:
                return (b + 0.5) * nr["hist_bin_ns"] / 1e6
        raise AssertionError("empty histogram")

    assert model_median_ms(nr["slices"][0]) < model_median_ms(nr["slices"][1])
    # agv1 and agv3 drove across the hall: each handover was applied inside its interruption, and
    # the controller moved the UPF's rule for the UE (the path switch)
    handovers = json.loads((run_dir / "handovers.json").read_text())
    assert [(h["ue"], h["source"], h["target"]) for h in handovers["applied"]] == [
        (h["ue"], h["source"], h["target"]) for h in handovers["planned"]] and handovers["planned"]
    for h in handovers["applied"]:
        assert h["applied"] and h["applied_lag_ms"] < h["interruption_ms"], h
        assert h["path_switch_ms"] is not None and 0 <= h["path_switch_ms"] < 500, h
    assert meta["handovers"]["path_switched"] == len(handovers["planned"])
    assert (run_dir / "handover_timeline.png").is_file() and (run_dir / "mobility.parquet").is_file()
    # Sensors cross gnb2's scheduler (dynamic grants: a request, then a grant, > 2 ms), the
    # backhaul and the orbit-driven LEO link (whose schedule the run folder holds).
    schedule = pd.read_parquet(run_dir / "leo_schedule.parquet")
    leo_up = schedule[(schedule["link"] == "leo") & (schedule["direction"] == "uplink")]
    assert summary["mmtc"]["owd_ms_p50"] >= leo_up["delay_ms"].min() + 2.0
    assert summary["urllc"]["owd_ms_p50"] < 5.0
    assert summary["urllc"]["owd_ms_p50"] < leo_up["delay_ms"].min()
    assert summary["urllc"]["loss_pct"] < 1.0 and summary["embb"]["loss_pct"] < 1.0
    packets = pd.read_parquet(run_dir / "packets.parquet")
    assert (packets.groupby("slice")["dscp"].first().to_dict()
            == {"urllc": 46, "embb": 34, "mmtc": 10})
    leftovers = _ours(snapshot(), meta["run_tag"])
    assert not any(leftovers.values()), f"leftovers: {leftovers}"
    # Figures regenerate from the stored tables alone.
    (run_dir / "owd_cdf.png").unlink()
    redraw = _factorysat("figures", str(run_dir))
    out, _ = redraw.communicate(timeout=120)
    assert redraw.returncode == 0, out
    assert (run_dir / "owd_cdf.png").stat().st_size > 1000


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_run_leaves_nothing_after_clean(tmp_path, sig) -> None:
    proc = _factorysat("run", "demo", "--duration-s", "60", "--results", str(tmp_path))
    wait_for_traffic(proc, tmp_path, after_s=2.0)
    children = _children_of(proc.pid)
    assert children, "the run should have started host and traffic processes"
    run_dir = next(tmp_path.glob("demo/*"))
    meta = json.loads((run_dir / "metadata.json").read_text())
    run_tag = meta["run_tag"]
    assert any(_ours(snapshot(), run_tag).values())  # the check below can see this run's objects
    raised = [t for t in meta["ovs_realtime"]["threads"] if t["to"] is not None]
    for thread in raised:  # ovs-vswitchd's packet thread is real-time while the run goes on
        assert os.sched_getscheduler(thread["tid"]) == os.SCHED_FIFO
    proc.send_signal(sig)
    proc.communicate(timeout=60)
    if sig == signal.SIGKILL:
        clean = _factorysat("clean")
        out, _ = clean.communicate(timeout=60)
        assert clean.returncode == 0, out
    time.sleep(0.5)
    leftovers = _ours(snapshot(), run_tag)
    assert not any(leftovers.values()), f"leftovers after {sig!r}: {leftovers}"
    alive = {pid for pid in children if _running(pid)}
    assert not alive, f"processes still running after {sig!r}: {alive}"
    assert not (run_dir / "COMPLETE").exists()  # visibly incomplete
    for thread in raised:  # given back by the run's teardown, or by `clean` after a SIGKILL
        assert [os.sched_getscheduler(thread["tid"]),
                os.sched_getparam(thread["tid"]).sched_priority] == thread["from"]
