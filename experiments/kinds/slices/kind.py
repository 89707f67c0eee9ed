"""The ``slices`` experiment kind: every UE's flow at once, per-slice delay, loss and deadlines.

scenario -> flows (one per UE) -> receivers + senders in the hosts -> raw records -> tidy tables
(``packets``, ``flows``, ``rtt`` with probes) -> per-slice summary -> figures. Optional RTT
probes (``[[probes]]`` in experiment.toml) measure round trips, e.g. factory -> cloud over LEO.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.framework import accounting, fidelity, stalls
from experiments.framework.cpuuse import CpuMeter
from experiments.framework.kind import Kind
from experiments.framework.mobility_figures import handover_timeline
from experiments.framework.plotting import save
from experiments.framework.session import RunSession
from experiments.framework.sla_monitor import sla_state_figure
from experiments.kinds.slices import analysis, counts, figures, messages, packetstream, service_figures
from experiments.kinds.slices.traffic import (
    LINK_COUNTERS_FILE,
    OVS_COUNTERS_FILE,
    FlowPlan,
    TrafficRun,
    flow_name,
    flows_table,
    plan_flows,
)


class SlicesKind(Kind):
    """Per-slice one-way delay, loss, deadline share and DSCP marking of every UE's flow."""

    name = "slices"

    def check(self, experiment: Any, scenario: Any, params: Any) -> None:
        """Every slice summary needs flows: the scenario must have at least one UE."""
        from topologies.validate import ConfigError

        if not scenario.ues:
            raise ConfigError("ue_groups", [], "at least one UE (kind 'slices' measures the UEs' flows)")

    def __init__(self) -> None:
        self._counts: dict[str, Any] | None = None  # loss split and reconciliation, from collect()
        self._figures: packetstream.SliceFigures | None = None  # per-slice counts and percentiles
        self._counters_source = "unavailable"
        self._outcomes: messages.MessageOutcomes | None = None
        self._service: dict[int, tuple[Any, dict[str, Any]]] | None = None  # flow -> TS 22.104 figures

    def flow_plan(self, session: RunSession, params: Any) -> list[FlowPlan]:
        """The run's flows: one per UE, all from traffic start (a kind may start some later)."""
        return plan_flows(session.scenario)

    def run_traffic(self, session: RunSession, params: Any) -> None:
        experiment = session.experiment
        traffic = TrafficRun(session.network, self.flow_plan(session, params), session.raw_dir,
                             session.log_dir, probes=experiment.probes, drain_s=experiment.drain_s)
        session.metadata["traffic_engine"] = {"implementation": traffic.implementation}
        try:
            traffic.start_receivers()
            if traffic.engine is not None:
                session.metadata["traffic_engine"]["realtime"] = traffic.engine.realtime
            self.before_traffic(session, params)
            start_ns = session.start_clock()
            traffic.start_senders(start_ns, session.duration_s)
            self.traffic_started(session, params, start_ns)
            meter = CpuMeter(traffic.cpu_components())
            meter.start()
            session.network.start_load_probe(session.duration_s)
            session.progress(start_ns)
            traffic.wait_senders(timeout_s=session.duration_s + experiment.drain_s + 30)
            session.metadata["ovs_switch_hop_under_load"] = session.network.stop_load_probe()
            if not experiment.probes:  # probe clients already waited out the drain
                time.sleep(experiment.drain_s)
            session.metadata["cpu_during_traffic"] = meter.stop()
            traffic.stop_receivers()
        finally:
            self.traffic_ended(session, params)
            traffic.kill_all()

    def before_traffic(self, session: RunSession, params: Any) -> None:
        """Receivers are up, senders not yet started: a kind may set the network up. Default: nothing."""

    def traffic_started(self, session: RunSession, params: Any, start_ns: int) -> None:
        """Senders start at ``start_ns`` (CLOCK_REALTIME): a kind may start timed actions. Default:
        nothing."""

    def traffic_ended(self, session: RunSession, params: Any) -> None:
        """Traffic is over (or failed): stop what ``traffic_started`` started. Default: nothing."""

    def collect(self, session: RunSession, params: Any) -> dict[str, Any]:
        """Raw records -> packets.parquet in chunks (packetstream.py: memory bounded in run length),
        counted as they pass; then the percentiles' second pass over the stored table."""
        raw = session.raw_dir
        flows = flows_table(self.flow_plan(session, params), raw)
        receivers = counts.read_receivers(raw)  # a truncated file is a problem, not a crash
        self._outcomes = messages.MessageOutcomes(flows, session.start_ns, session.duration_s,
                                                  session.options.include_host_stalls, session.host_stalls)
        packets, packet_counts, self._figures = packetstream.store_packets(
            raw, flows, session.host_stalls, session.run_dir / "packets.parquet",
            session.options.include_host_stalls, session.start_ns, self._outcomes)
        problems, checks = counts.reconcile_flows(packet_counts, flows, session.duration_s, receivers)
        problems += counts.reconcile_probes(raw)
        link_counters = self._link_counters(session)
        links = accounting.session_links(session)
        received = pd.Series(packet_counts.received, dtype="int64")
        probe_dir = raw if session.experiment.probes else None
        moved = self._moved(session)
        per_flow = accounting.account(counts.streams(flows, received, links, probe_dir, group="flow_id",
                                                     moved=moved),
                                      link_counters, counts.socket_drops(receivers))
        # per flow, attribution is possible where a link carries that flow only: its radio hop
        flows = flows.assign(packets_received=[int(received.get(i, 0)) for i in flows["flow_id"]],
                             **{k: [per_flow[str(i)][k] for i in flows["flow_id"]]
                                for k in accounting.LOSS_KEYS})
        streams = counts.streams(flows, received, links, probe_dir, moved=moved)
        problems += accounting.check_link_counters(streams, link_counters)
        ovs_path = raw / OVS_COUNTERS_FILE
        ovs_counters = json.loads(ovs_path.read_text()) if ovs_path.exists() else None
        self._counts = {"loss": accounting.account(streams, link_counters, counts.socket_drops(receivers),
                                                   accounting.switch_port_drop_delta(ovs_counters),
                                                   accounting.switch_socket_drop_delta(ovs_counters)),
                        "link_counters": link_counters,
                        "reconciliation": accounting.reconciliation(problems, checks),
                        "source": self._counters_source}
        self._service = self._outcomes.flow_metrics()
        tables: dict[str, Any] = {
            "packets": packets, "flows": flows,
            "outages": self._outcomes.outage_table({i: m for i, (m, _) in self._service.items()}),
            "cycles": self._outcomes.cycle_times()}
        if session.experiment.probes:
            tables["rtt"] = analysis.tidy_probes(sorted(raw.glob("probe-*.bin")), session.start_ns)
        return tables

    def summarise(self, tables: dict[str, pd.DataFrame], session: RunSession, params: Any
                  ) -> dict[str, Any]:
        if self._counts is None:
            self.collect(session, params)
        assert self._counts is not None
        loss = self._counts["loss"]
        include = session.options.include_host_stalls
        figures = self._figures
        assert figures is not None
        summary: dict[str, Any] = analysis.summary_from(figures, tables["flows"], loss)
        if self._service is not None:  # TS 22.104 per slice and per flow (messages.py)
            metrics = {i: m for i, (m, _) in self._service.items()}
            per_flow = {i: out for i, (_, out) in self._service.items()}
            for name, service in messages.slice_service(tables["flows"], metrics, per_flow).items():
                summary[name]["service"] = service
            names = {int(r.flow_id): flow_name(r) for r in tables["flows"].itertuples()}
            summary["flows"] = {names[i]: {"flow_id": i, **out} for i, out in per_flow.items()}
        if "rtt" in tables:
            summary["probes"] = analysis.probe_summary(tables["rtt"])
        summary["loss_accounting"] = {
            "total": loss["total"], **({"probes": loss["probes"]} if "probes" in loss else {}),
            "link_counters": self._counts["source"],
            "attribution": "a link's drops count for a slice only if no other slice or probe "
                           "crosses it; per flow (flows.parquet) that is the UE's radio hop"}
        summary["reconciliation"] = self._counts["reconciliation"]
        summary["host_stalls"] = stalls.block_counts(
            session.host_stalls, figures.flagged(), figures.received(), include,
            session.metadata.get("host_stalls", {}).get("unavailable"))
        if summary["host_stalls"].get("detected"):
            summary["host_stalls"]["message_rule"] = (
                "a TS 22.104 message (flows' deadline_met_pct, availability) is left out when its packet "
                "was or a stall window overlaps [its scheduled start, its arrival]: a loop's whole cycle")
        summary["fidelity"] = self._fidelity(tables, session, summary)
        if "sla_monitor" in session.metadata:  # the live SLA monitor's per-slice time in each state
            monitor = session.metadata["sla_monitor"]
            summary["sla"] = {"slices": monitor["slices"], "rounds": monitor["rounds"],
                              "errors": monitor["errors"], "note": monitor["note"]}
        if session.mobility is not None:  # the run's handover events (handovers.json holds them all)
            summary["handovers"] = session.metadata.get("handovers") or {
                "planned": len(session.mobility.handovers)}
        return summary

    def _fidelity(self, tables: dict[str, pd.DataFrame], session: RunSession, summary: dict[str, Any]
                  ) -> dict[str, Any]:
        """The run's own error estimate per slice (experiments/framework/fidelity.py)."""
        assert self._counts is not None
        assert self._figures is not None
        flows, counters, late = tables["flows"], self._counts["link_counters"], self._figures.late
        ovs_extra, ovs_source = fidelity.ovs_extra_ms(session.metadata.get("ovs_switch_hop") or {},
                                                      session.metadata.get("ovs_switch_hop_under_load"))
        links = accounting.session_links(session)
        per_slice, bounds = {}, {}
        for name, group in flows.groupby("slice", sort=False):
            paths = [accounting.path_hops(links, getattr(f, "sender", f.ue), f.destination)
                     for f in group.itertuples()]
            bounds[str(name)] = float(group["latency_bound_ms"].iloc[0])
            per_slice[str(name)] = {
                q_name: fidelity.path_estimate(late.percentile(str(name), 100 * q), paths, counters,
                                               ovs_extra[q_name], q)
                for q_name, q in (("p99", 0.99), ("p999", 0.999))}
        send_late = {"p99": late.percentile(packetstream.ALL, 99),
                     "p999": late.percentile(packetstream.ALL, 99.9)}
        total = summary["loss_accounting"]["total"]
        dropped = total["emulator_loss_pkts"] + max(0, total["unattributed_loss_pkts"])
        engine = (session.metadata.get("traffic_engine") or {}).get("implementation")
        sender = {"c": "C traffic engine", "python": "Python sender processes"}.get(engine, "senders")
        return fidelity.assess(per_slice, bounds, send_late, fidelity.relay_lateness(counters), ovs_extra,
                               dropped, summary["host_stalls"], sender, ovs_source)

    def reconcile(self, tables: dict[str, pd.DataFrame], session: RunSession, params: Any) -> list[str]:
        if self._counts is None:
            self.collect(session, params)
        assert self._counts is not None
        return list(self._counts["reconciliation"]["problems"])

    @staticmethod
    def _moved(session: RunSession) -> dict[str, frozenset[str]]:
        """UEs that handed over -> the links of every cell they were in (their own and backhaul)."""
        if session.mobility is None:
            return {}
        out: dict[str, set[str]] = {}
        for h in session.mobility.handovers:
            out.setdefault(h.ue, set()).update(f"{kind}_{cell}" for cell in (h.source, h.target)
                                               for kind in ("cell", "bh"))
        return {ue: frozenset(links) for ue, links in out.items()}

    def _link_counters(self, session: RunSession) -> dict[str, Any] | None:
        """Link counters when the receivers stopped; else as read at teardown; else None."""
        path = session.raw_dir / LINK_COUNTERS_FILE
        if path.exists():
            self._counters_source = "when the receivers stopped (raw/link_counters.json)"
            return json.loads(path.read_text())
        counters = (session.metadata.get("link_engine") or {}).get("link_counters")
        self._counters_source = "at teardown (metadata.json)" if counters else "unavailable"
        return counters

    def draw_figures(self, run_dir: Path) -> list[Path]:
        chunks = packetstream.parquet_chunks(run_dir / "packets.parquet", packetstream.HIST_COLUMNS)
        summary = json.loads((run_dir / "summary.json").read_text())
        excluded = summary.get("host_stalls", {}).get("excluded_from_timing", False)
        held = summary.get("fidelity", {}).get("held", True)
        hists, left_out = packetstream.owd_histograms(chunks, excluded)
        flows = pd.read_parquet(run_dir / "flows.parquet")
        bounds = dict(zip(flows["slice"], flows["latency_bound_ms"], strict=True))
        paths = save(figures.owd_cdf(hists, bounds, left_out=left_out,
                                     fidelity_note=None if held else "emulator fidelity NOT held: see "
                                     "summary.json 'fidelity'"),
                     run_dir / "owd_cdf")
        if (run_dir / "rtt.parquet").exists():
            rtt = pd.read_parquet(run_dir / "rtt.parquet")
            schedule = None
            if (run_dir / "leo_schedule.parquet").exists():
                frame = pd.read_parquet(run_dir / "leo_schedule.parquet")
                schedule = frame[frame["link"] == "leo"]
            paths += save(figures.rtt_timeline(rtt, schedule), run_dir / "rtt_timeline")
        paths += service_figures.draw(run_dir)
        if (run_dir / "sla_timeline.parquet").exists():  # the live SLA monitor's states
            switch = (summary.get("enforcement") or {}).get("arm_s")
            paths += save(sla_state_figure(pd.read_parquet(run_dir / "sla_timeline.parquet"),
                                           list(flows["slice"].drop_duplicates()), switch),
                          run_dir / "sla_state")
        if (run_dir / "mobility.parquet").exists() and (run_dir / "handovers.json").exists():
            paths += self._handover_figure(run_dir)
        return paths

    @staticmethod
    def _handover_figure(run_dir: Path) -> list[Path]:
        samples = pd.read_parquet(run_dir / "mobility.parquet")
        handovers = json.loads((run_dir / "handovers.json").read_text())
        meta = json.loads((run_dir / "metadata.json").read_text())
        start_ns = meta.get("traffic_start_realtime_ns", 0)
        moving = set(samples["ue"].unique())
        delays: dict[str, list[pd.DataFrame]] = {}
        columns = ["ue", "send_ns", "owd_ms"]
        for chunk in packetstream.parquet_chunks(run_dir / "packets.parquet", columns):
            chunk = chunk[chunk["ue"].isin(moving)]
            for ue, group in chunk.groupby("ue"):
                delays.setdefault(str(ue), []).append(pd.DataFrame(
                    {"t_s": (group["send_ns"] - start_ns) / 1e9, "owd_ms": group["owd_ms"]}))
        return handover_timeline(samples, handovers.get("applied") or handovers["planned"],
                                 {ue: pd.concat(f) for ue, f in delays.items()},
                                 run_dir / "handover_timeline")

    def print_summary(self, summary: dict[str, Any]) -> str:
        return analysis.format_table(summary)
