"""The ``leo_failover`` kind: does LEO-aware adaptation keep the slices that ask for it clear of the
LEO link's reconfiguration spikes and outages?

One run, two arms of equal length: adaptation **off** (every slice stays on the LEO link), then
**on** (slices with ``leo_protection = "steer"`` move to the scenario's ``[backup]`` backhaul around
each reconfiguration instant, known from the orbit schedule, and when the heartbeat over the LEO
path stops answering or loses more than the scenario's loss limit, and back). The controller's
``leo_adaptation`` app decides and acts (controllers/apps/leo_adaptation.py,
controllers/adaptation.py); at traffic start this kind hands it the run's configuration and
afterwards reads what it did. The scenario's ``[[leo.outages]]`` script faults (the link down, or a
fade: ``loss_pct``); the experiment's ``[[probes]]`` from the edge server to the cloud are the
heartbeat (its interval sets the detector's resolution). Everything else is the ``slices`` kind's
(flows, records, loss accounting, fidelity).

summary.json adds ``leo_failover``: per arm, slice and period (``boundary`` / ``outage`` /
``other``, analysis.py) delay percentiles and loss; per scripted fault (``kind`` outage | fade) the
detection and reaction time (fault -> the controller has the new path installed) and the packets
lost; every path change; and the verdict (``spikes_removed``). Figures ``leo_failover_timeline.png``
(heartbeat RTT, the protected and other cloud-bound slices' one-way delay, the active path) and
``leo_failover_zoom.png`` (one reconfiguration, one outage and one fade per arm, up close).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from controllers.adaptation import SteeringConfig, steer_windows
from controllers.apps import ADAPTATION_FILE_NAME, ADAPTATION_STATUS_FILE_NAME
from experiments.framework.plotting import save
from experiments.framework.results import write_json
from experiments.framework.session import RunSession
from experiments.framework.stats import number_text as _f
from experiments.kinds.leo_failover import analysis, figures
from experiments.kinds.slices import packetstream
from experiments.kinds.slices.kind import SlicesKind
from topologies.factory import BACKUP_LINK, LEO_LINK
from topologies.leo.selection import instants_in_window_s
from topologies.validate import ConfigError, Table

FIGURE_NAMES = ("leo_failover_timeline", "leo_failover_zoom")
APP = "leo_adaptation"


@dataclass(frozen=True)
class FailoverParams:
    settle_s: float = 2.0          # left out at the start of each arm
    # a boundary window's p99 may exceed the rest's by this much and count as clean: the backup's own
    # delay may be above the LEO link's usual one (the model's spike is +40 ms uplink)
    spike_tolerance_ms: float = 10.0


class LeoFailoverKind(SlicesKind):
    """Cloud-bound slices across LEO reconfigurations and outages, adaptation off then on."""

    name = "leo_failover"

    def parse_params(self, raw: Any) -> FailoverParams:
        d = FailoverParams()
        with Table(raw, "params") as t:
            return FailoverParams(t.number("settle_s", d.settle_s, min=0, max=600),
                                  t.number("spike_tolerance_ms", d.spike_tolerance_ms, min=0, max=10_000))

    def check(self, experiment: Any, scenario: Any, params: FailoverParams) -> None:
        super().check(experiment, scenario, params)
        if scenario.backup is None:
            raise ConfigError("backup", None, "a [backup] table in the scenario (the backhaul to steer over)")
        if scenario.leo.orbit is None:
            raise ConfigError("leo.orbit", None, "an orbit model (the reconfiguration grid comes from it)")
        protected = [s.name for s in scenario.slices if s.leo_protection == "steer"]
        if not protected:
            raise ConfigError("slices", [s.name for s in scenario.slices],
                              'at least one slice with leo_protection = "steer"')
        path = (scenario.core.edge, scenario.cloud.name)
        beats = [p for p in experiment.probes if (p.source, p.target) == path]
        if not beats:
            raise ConfigError("probes", [], f"a [[probes]] entry from {scenario.core.edge!r} to "
                                             f"{scenario.cloud.name!r} (the LEO path's heartbeat)")
        if scenario.backup.detect_ms <= beats[0].interval_ms:
            raise ConfigError("backup.detect_ms", scenario.backup.detect_ms,
                              f"more than the heartbeat's interval_ms ({beats[0].interval_ms:g})")
        if scenario.backup.fade_window_ms < 10 * beats[0].interval_ms:
            raise ConfigError("backup.fade_window_ms", scenario.backup.fade_window_ms,
                              f"at least 10 heartbeats' interval_ms ({10 * beats[0].interval_ms:g}): a loss "
                              "share needs that many")
        if APP not in experiment.controller_apps:
            raise ConfigError("controller.apps", list(experiment.controller_apps),
                              f'a list with "{APP}" (the app that steers), e.g. ["slice_switch", "{APP}"]')
        if experiment.duration_s / len(analysis.ARMS) <= 2 * params.settle_s:
            raise ConfigError("experiment.duration_s", experiment.duration_s,
                              f"more than {4 * params.settle_s:g} s: two arms, each longer than twice "
                              "params.settle_s")

    @staticmethod
    def arm_s(session: RunSession) -> float:
        return session.duration_s / len(analysis.ARMS)

    # --- the run ---------------------------------------------------------------------------------
    @staticmethod
    def instants(scenario: Any, duration_s: float) -> list[float]:
        """The reconfiguration instants whose boundary window touches the run (schedule time = run time)."""
        config = scenario.leo.orbit
        return [float(i) for i in instants_in_window_s(config, 0.0, duration_s + config.handover.before_s)]

    @classmethod
    def boundary_windows(cls, scenario: Any, duration_s: float) -> list[tuple[float, float]]:
        """The LEO model's boundary windows [I - before, I + after) of every instant in the run."""
        h = scenario.leo.orbit.handover
        return [(i - h.before_s, i + h.after_s) for i in cls.instants(scenario, duration_s)]

    @staticmethod
    def steer_pairs(session: RunSession) -> list[tuple[str, str]]:
        """(UE address, cloud address) of every flow of a protected slice to the cloud."""
        scenario, network = session.scenario, session.network
        protected = {s.name for s in scenario.slices if s.leo_protection == "steer"}
        cloud = scenario.cloud.name
        return sorted({(network.host(ue.name).IP(), network.host(cloud).IP()) for ue in scenario.ues
                       if ue.slice in protected and ue.traffic.destination == cloud})

    def traffic_started(self, session: RunSession, params: FailoverParams, start_ns: int) -> None:
        scenario, backup = session.scenario, session.scenario.backup
        h = scenario.leo.orbit.handover
        windows = steer_windows(self.instants(scenario, session.duration_s), h.before_s, h.after_s,
                                backup.guard_before_ms / 1000, backup.guard_after_ms / 1000)
        probe = session.raw_dir / f"probe-{scenario.core.edge}-{scenario.cloud.name}.bin"
        beat = next(p for p in session.experiment.probes if (p.source, p.target) == (scenario.core.edge,
                                                                                     scenario.cloud.name))
        config = SteeringConfig(start_ns, self.arm_s(session), session.duration_s, tuple(windows),
                                tuple(self.steer_pairs(session)), tuple(session.network.steer_switches()),
                                str(probe), backup.detect_ms, backup.failback_hold_s, beat.interval_ms,
                                backup.fade_loss_pct, backup.fade_window_ms)
        write_json(session.network.controller_file(ADAPTATION_FILE_NAME), config.to_dict())
        session.metadata["leo_failover"] = {
            "steer_windows_s": [[round(a, 6), round(b, 6)] for a, b in windows],
            "pairs": [list(p) for p in config.pairs]}

    def traffic_ended(self, session: RunSession, params: FailoverParams) -> None:
        """What the app did (its status file), into metadata.json ``leo_failover``."""
        block = session.metadata.setdefault("leo_failover", {})
        try:
            status = json.loads(session.network.controller_file(ADAPTATION_STATUS_FILE_NAME).read_text())
        except (OSError, ValueError, AssertionError) as exc:
            block["error"] = f"the {APP} app's status is unreadable: {exc}"
            return
        block.update({"changes": status.get("changes", []), "detections": status.get("detections", []),
                      "controller_restarts_s": status.get("restarts_s", []),
                      "error": status.get("error") or (None if status.get("configured") else
                                                       f"the {APP} app never read its configuration")})

    def _moved(self, session: RunSession) -> dict[str, frozenset[str]]:  # type: ignore[override]
        """Handovers as in the slices kind, plus: a protected UE's packets crossed the LEO link or
        the backup, so its paths leave both out (they count for neither; accounting.py)."""
        out = {ue: set(links) for ue, links in SlicesKind._moved(session).items()}
        protected = {s.name for s in session.scenario.slices if s.leo_protection == "steer"}
        for ue in session.scenario.ues:
            if ue.slice in protected:
                out.setdefault(ue.name, set()).update({LEO_LINK, BACKUP_LINK})
        return {ue: frozenset(links) for ue, links in out.items()}

    def reconcile(self, tables: dict[str, pd.DataFrame], session: RunSession, params: Any) -> list[str]:
        problems = super().reconcile(tables, session, params)
        block = session.metadata.get("leo_failover", {})
        if block.get("error"):
            problems.append(f"leo_failover: {block['error']}")
        failed = analysis.unresolved_failures(block.get("changes", []))
        if failed:
            problems.append(f"leo_failover: {len(failed)} path changes refused and not made good by a retry, "
                            f"first: {failed[0]['error']}")
        return problems

    # --- results -------------------------------------------------------------------------------------
    def summarise(self, tables: dict[str, pd.DataFrame], session: RunSession, params: FailoverParams
                  ) -> dict[str, Any]:
        summary = super().summarise(tables, session, params)
        scenario = session.scenario
        arm_s = self.arm_s(session)
        protected = [s.name for s in scenario.slices if s.leo_protection == "steer"]
        flows = tables["flows"]
        cloud = flows[flows["destination"] == scenario.cloud.name]
        got = analysis.received(packetstream.parquet_chunks(session.run_dir / "packets.parquet",
                                                            analysis.COLUMNS), cloud)
        due = analysis.due_times(cloud, session.duration_s)
        boundary = self.boundary_windows(scenario, session.duration_s)
        faults = [o for o in scenario.leo.outages if o.start_s < session.duration_s]
        spans = [(o.start_s, min(o.end_s, session.duration_s)) for o in faults]
        block = session.metadata.get("leo_failover", {})
        changes = [{**c, "applied_s": None if c.get("applied_ns") is None
                    else round((c["applied_ns"] - session.start_ns) / 1e9, 6)}
                   for c in block.get("changes", [])]
        for c in changes:  # decided (the loop's clock) -> every flow mod sent
            c["install_ms"] = None if c["applied_s"] is None else round((c["applied_s"] - c["t_s"]) * 1000, 3)
        arms = analysis.period_figures(got, due, arm_s, params.settle_s, boundary,
                                       [s for s, o in zip(spans, faults, strict=True) if o.kind == "outage"],
                                       [s for s, o in zip(spans, faults, strict=True) if o.kind == "fade"])
        b = scenario.backup
        summary["leo_failover"] = {
            "arm_s": round(arm_s, 6), "settle_s": params.settle_s, "duration_s": session.duration_s,
            "protected_slices": protected, "cloud": scenario.cloud.name,
            "cloud_slices": sorted(set(cloud["slice"].astype(str))),
            "backup": {"kind": b.kind, "switch": b.switch, "guard_before_ms": b.guard_before_ms,
                       "guard_after_ms": b.guard_after_ms, "detect_ms": b.detect_ms,
                       "failback_hold_s": b.failback_hold_s, "fade_loss_pct": b.fade_loss_pct,
                       "fade_window_ms": b.fade_window_ms,
                       "uplink_delay_ms": b.link.uplink.delay_ms,
                       "downlink_delay_ms": b.link.downlink.delay_ms},
            "boundary_windows_s": [[round(x, 6), round(y, 6)] for x, y in boundary],
            "steer_windows_s": block.get("steer_windows_s", []),
            "outages_s": [list(o) for o in spans],
            "arms": arms,
            "outages": [{"kind": o.kind, "loss_pct": o.loss_pct, **r} for o, r in zip(
                faults, analysis.reactions(spans, changes, block.get("detections", []), arm_s, got, due,
                                           protected), strict=True)],
            "path_changes": changes, "detections": block.get("detections", []),
            "controller_restarts_s": block.get("controller_restarts_s", []),
            "install_ms_max": max((c["install_ms"] for c in changes if c["install_ms"] is not None),
                                  default=None),
            "verdict": analysis.verdict(arms, protected, params.spike_tolerance_ms),
            "note": "periods by scheduled send time; the steered slices' loss on the LEO or backup link "
                    "is not attributed to either link (loss_accounting)"}
        return summary

    def draw_figures(self, run_dir: Path) -> list[Path]:
        paths = super().draw_figures(run_dir)
        summary = json.loads((run_dir / "summary.json").read_text())
        block = summary["leo_failover"]
        flows = pd.read_parquet(run_dir / "flows.parquet")
        cloud = flows[flows["destination"] == block["cloud"]]
        got = analysis.received(packetstream.parquet_chunks(run_dir / "packets.parquet", analysis.COLUMNS),
                                cloud)
        rtt = pd.read_parquet(run_dir / "rtt.parquet") if (run_dir / "rtt.parquet").exists() else None
        due, end_s = analysis.due_times(cloud, block["duration_s"]), block["duration_s"]
        paths += save(figures.timeline(block, got, rtt, analysis.sla_bins(got, due, end_s, 0.5)),
                      run_dir / FIGURE_NAMES[0])
        paths += save(figures.zoom(block, got, rtt, analysis.sla_bins(got, due, end_s, 0.1)),
                      run_dir / FIGURE_NAMES[1])
        return paths

    def print_summary(self, summary: dict[str, Any]) -> str:
        block = summary["leo_failover"]
        lines = [super().print_summary(summary), "",
                 "LEO adaptation: cloud-bound slices per arm and period, one-way delay p99 / max ms, "
                 "lost / due"]
        for arm in analysis.ARMS:
            a = block["arms"][arm]
            lines.append(f"  {arm:>3} ({a['window_s'][0]:g}-{a['window_s'][1]:g} s)")
            for name, periods in a["slices"].items():
                mark = " (protected)" if name in block["protected_slices"] else ""
                cells = [f"{p} {_f(v['owd_ms_p99'])} / {_f(v['owd_ms_max'])}  {v['lost_pkts']}/{v['packets']}"
                         for p, v in periods.items() if v["packets"]]
                lines.append(f"      {name}{mark}: " + ";  ".join(cells))
        for o in block["outages"]:
            what = "outage" if o.get("kind", "outage") == "outage" else f"fade ({o['loss_pct']:g} % loss)"
            lines.append(f"  {what} {o['start_s']:g}-{o['end_s']:g} s ({o['arm']}): detected after "
                         f"{_f(o['detect_ms'], 0)} ms, on the backup after {_f(o['reaction_ms'], 0)} ms, "
                         f"lost before the new path {o['lost_before_new_path_pkts']}, in the fault "
                         f"{o['lost_in_outage_pkts']}")
        v = block["verdict"]
        for name, arms in v["slices"].items():
            lines.append(f"  {name}: boundary spike p99 off {_f(arms['off']['spike_ms_p99'])} ms "
                         f"({arms['off']['boundary_lost_pkts']} lost), "
                         f"on {_f(arms['on']['spike_ms_p99'])} ms "
                         f"({arms['on']['boundary_lost_pkts']} lost)")
        lines.append(f"  reconfiguration spikes removed (within {v['tolerance_ms']:g} ms, no loss, only with "
                     f"adaptation on): {'yes' if v['spikes_removed'] else 'NO'}")
        return "\n".join(lines)
