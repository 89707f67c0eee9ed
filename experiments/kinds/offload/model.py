"""The offload model: parameters, compute targets and what the model predicts for each target.

The ``offload`` experiment kind (kind.py) sends inference requests from a factory camera to edge,
orbit or cloud.

A camera UE sends image requests (UDP fragments, see :mod:`experiments.agents.offload`) to a server
on each target in turn: the factory edge server (behind the UPF), the in-orbit compute host
(terminal -> serving satellite -> laser ISLs -> computing satellite) and the ground cloud (LEO
link -> ground station -> PoP). Network delays are MEASURED in the emulator; the compute time is
MODELLED (the server sleeps ``ops / (peak TOPS x utilisation)``; no inference runs).

params (experiment.toml) -> network -> servers + client -> raw JSON lines -> requests.parquet ->
summary.json -> figure (kind.py, analysis.py, figures.py). ``predict_response_ms`` gives the
model's expectation of each target's median from the scenario, the LEO schedules and the compute
model; it is stored beside the measurements in summary.json.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from experiments.agents.offload import MAX_DATAGRAM_BYTES, REPLY, REQ, fragment_sizes
from experiments.framework.session import SCHEDULE_SLACK_S
from topologies.config_schema import bounds, parse_table
from topologies.links import DirectionParams
from topologies.nr.sim import unloaded_median_ms
from topologies.scenario import Scenario
from topologies.validate import ConfigError, Table

OFFLOAD_PORT = 5003
UTILISATION_PCT = 5.0
# ^ ASSUMPTION: share of the peak INT8 rate a batch-1 detector achieves. Two public data points
#   for YOLOv8n at 640 px (8.7 GOP) with TensorRT: Jetson Orin Nano 8GB (20 dense INT8 TOPS)
#   5.8 ms per image (github.com/the0807/YOLOv8-ONNX-TensorRT) -> 7.5 %; Jetson Orin NX (50
#   dense TOPS) 89 inferences/s (Roboflow Inference benchmarks, docs.roboflow.com) -> 1.5 %.
#   5 % lies between them; the same share is applied to every target.


@dataclass(frozen=True)
class Target:
    """A compute target: an emulated host and the accelerator modelled on it."""

    host: str
    hardware: str
    peak_tops: float = field(metadata=bounds(min=0, max=1e6, min_exclusive=True))
    utilisation_pct: float = field(default=UTILISATION_PCT,
                                   metadata=bounds(min=0, max=100, min_exclusive=True))

    def compute_ms(self, inference_gop: float) -> float:
        """Modelled compute time: ops / (peak TOPS x utilisation), in ms."""
        return inference_gop * 1e9 / (self.peak_tops * 1e12 * self.utilisation_pct / 100.0) * 1e3


DEFAULT_TARGETS = (
    # NVIDIA Jetson AGX Orin 64GB: 275 TOPS INT8 *sparse* (Jetson AGX Orin Series datasheet /
    # technical brief: GPU 170 + 2 DLA 105 sparse TOPS); 2:4 structured sparsity doubles the
    # peak, so a dense (unpruned) network sees 275 / 2 = 137.5 TOPS.
    Target("edge1", "NVIDIA Jetson AGX Orin 64GB", 137.5),
    # ADA Space "Three-Body Computing Constellation" (launched May 2025): up to 744 TOPS per
    # satellite (DESIGN.md reference figures). Precision and sparsity not published: taken as is.
    Target("sat1", "ADA Space computing satellite", 744.0),
    # NVIDIA A100 (datasheet): INT8 Tensor Core 624 TOPS dense, 1,248 TOPS with sparsity.
    Target("cloud1", "NVIDIA A100", 624.0),
)
# Ultralytics YOLOv8 docs (detection, COCO): YOLOv8n at 640 px = 8.7 GFLOPs per image.
DEFAULT_MODEL = ("YOLOv8n 640x640", 8.7)
# 3GPP TS 22.104 (video-operated remote control): transfer interval 10-100 ms, and the
# end-to-end latency must stay below it -> a response within 100 ms.
DEFAULT_DEADLINE_MS = 100.0
OVS_ONE_WAY_MS = 0.125  # DESIGN.md (measured on this machine): userspace OVS ~0.25 ms RTT per switch
WIRE_OVERHEAD_BYTES = 8 + 20 + 14  # UDP + IPv4 + Ethernet headers per datagram


@dataclass(frozen=True)
class OffloadParams:
    """The ``[params]`` table of an offload experiment (bounds in each field's metadata)."""

    client: str = "cam1"
    request_bytes: int = field(default=80_000, metadata=bounds(
        min=1, max=1_000_000, why="1 MB: a request is held in memory and sent as one burst"))
    reply_bytes: int = field(default=1_000, metadata=bounds(
        min=REPLY.size, max=1400, why="a reply is one datagram"))
    max_datagram_bytes: int = field(default=MAX_DATAGRAM_BYTES, metadata=bounds(
        min=REQ.size + 1, max=1472, why="a 1500 B MTU minus the IPv4 and UDP headers"))
    pacing_rate_mbps: float = field(default=0.0, metadata=bounds(
        min=0, max=100_000, why="100 Gbit/s, past any emulated link"))  # 0 = burst
    interval_ms: float = field(default=250.0, metadata=bounds(
        min=10, max=60_000, why="one minute: a run holds at least a few requests"))
    # the link schedules must outlast the last request's timeout
    timeout_ms: float = field(default=1_000.0, metadata=bounds(
        min=1, max=SCHEDULE_SLACK_S * 1000, why="the link schedules run only this long past the traffic"))
    deadline_ms: float = field(default=DEFAULT_DEADLINE_MS,
                               metadata=bounds(min=0, max=60_000, min_exclusive=True))
    model: str = DEFAULT_MODEL[0]
    inference_gop: float = field(default=DEFAULT_MODEL[1],
                                 metadata=bounds(min=0, max=1e6, min_exclusive=True))
    targets: tuple[Target, ...] = DEFAULT_TARGETS  # [params.targets.<host>] tables

    def compute_ms(self) -> dict[str, float]:
        return {t.host: t.compute_ms(self.inference_gop) for t in self.targets}


def parse_params(raw: dict) -> OffloadParams:
    """Validate the ``[params]`` table (unknown keys and bad values raise ConfigError)."""
    with Table(raw, "params") as t:
        targets = DEFAULT_TARGETS
        if t.has("targets"):
            with t.table("targets") as tt:
                targets = tuple(parse_table(Target, tt.table(h), host=h) for h in list(tt.raw))
            if not targets:
                raise ConfigError("params.targets", {}, "at least one [params.targets.<host>] table")
        return parse_table(OffloadParams, t, targets=targets)


def target_roles(scenario: Scenario) -> dict[str, str]:
    """Host -> role of every possible offload target in ``scenario``."""
    roles = {scenario.core.edge: "edge", scenario.cloud.name: "cloud"}
    if scenario.leo.compute_host:
        roles[scenario.leo.compute_host] = "orbit"
    return roles


def check_scenario(params: OffloadParams, scenario: Scenario) -> None:
    """The client must be a UE and every target an edge / in-orbit / cloud host of ``scenario``."""
    ues = [u.name for u in scenario.ues]
    if params.client not in ues:
        raise ConfigError("params.client", params.client, "a UE of the scenario: " + ", ".join(ues))
    roles = target_roles(scenario)
    for target in params.targets:
        if target.host not in roles:
            raise ConfigError(f"params.targets.{target.host}", target.host,
                              "a target host of the scenario: " + ", ".join(roles))
    needed = math.ceil(params.timeout_ms / 1000.0)
    if needed > SCHEDULE_SLACK_S:  # the link schedules must outlast the last request's timeout
        raise ConfigError("params.timeout_ms", params.timeout_ms, f"<= {SCHEDULE_SLACK_S * 1000}")


# --- what the model predicts -------------------------------------------------------------------
def _weighted_median(frame: pd.DataFrame, direction: str, column: str, duration_s: float) -> float:
    part = frame[frame["direction"] == direction].sort_values("t_s")
    t = part["t_s"].to_numpy()
    hold = np.diff(np.append(t, max(duration_s, t[-1] + 1.0)))
    keep = (t < duration_s) & part["up"].to_numpy() & (hold > 0)
    values, weights = part[column].to_numpy()[keep], hold[keep]
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, 0.5 * cum[-1])])


def _hop(p: DirectionParams) -> tuple[float, float | None]:
    return p.delay_ms, p.rate_mbps


def predict_response_ms(params: OffloadParams, scenario: Scenario,
                        frames: dict[str, pd.DataFrame] | None, duration_s: float
                        ) -> dict[str, dict[str, float]]:
    """Per target, the model's expected median uplink / compute / downlink / response (ms).

    One-way delays of every link on the path (time-weighted medians of the LEO schedules over the
    run), serialisation of the whole request (or reply) at the path's slowest rate, userspace-OVS
    switching; jitter and loss are ignored. Used to know which target *should* answer first.
    """
    ue = next(u for u in scenario.ues if u.name == params.client)
    radio = scenario.slice(ue.slice).radio
    cell = next(c for c in scenario.cells if c.name == ue.cell)
    backhaul, capacity = cell.backhaul, cell.capacity
    plan = scenario.nr_plan(cell.name)
    if plan is not None:  # an NR cell: its model's unloaded median, at the cell's average capacity
        idx = plan.slice_index(ue.slice)
        air = {d: (unloaded_median_ms(plan, idx, d), plan.cell.capacity_mbps(d))
               for d in ("uplink", "downlink")}
    else:
        air = {d: _hop(getattr(radio, d)) for d in ("uplink", "downlink")}
    roles = target_roles(scenario)

    def scheduled(name: str, direction: str) -> tuple[float, float | None]:
        frame = frames[name]
        return (_weighted_median(frame, direction, "delay_ms", duration_s),
                _weighted_median(frame, direction, "rate_mbps", duration_s))

    sizes = fragment_sizes(params.request_bytes, params.max_datagram_bytes)
    request_wire = sum(s + REQ.size + WIRE_OVERHEAD_BYTES for s in sizes)
    reply_wire = params.reply_bytes + WIRE_OVERHEAD_BYTES
    out = {}
    for target in params.targets:
        role = roles[target.host]
        # the gNB is a cell inside the relay (topologies/links/cells.py): its shared capacity is a
        # hop, and it is no OVS switch
        up = [air["uplink"], _hop(capacity.uplink), _hop(backhaul.uplink)]
        down = [air["downlink"], _hop(capacity.downlink), _hop(backhaul.downlink)]
        if role == "edge":
            up.append(_hop(scenario.core.edge_link.uplink))
            down.append(_hop(scenario.core.edge_link.downlink))
            switches = 1  # UPF
        elif role == "orbit":
            up.append(scheduled("orbit_compute", "uplink"))
            down.append(scheduled("orbit_compute", "downlink"))
            switches = 2  # UPF, user terminal
        else:
            if frames and "leo" in frames:
                up.append(scheduled("leo", "uplink"))
                down.append(scheduled("leo", "downlink"))
            else:
                up.append(_hop(scenario.leo.link.uplink))
                down.append(_hop(scenario.leo.link.downlink))
            up.append(_hop(scenario.cloud.terrestrial.uplink))
            down.append(_hop(scenario.cloud.terrestrial.downlink))
            switches = 3  # UPF, user terminal, ground station
        uplink = _one_way(up, request_wire) + switches * OVS_ONE_WAY_MS
        downlink = _one_way(down, reply_wire) + switches * OVS_ONE_WAY_MS
        compute = target.compute_ms(params.inference_gop)
        out[target.host] = {"uplink_ms": round(uplink, 3), "compute_ms": round(compute, 4),
                            "downlink_ms": round(downlink, 3),
                            "response_ms": round(uplink + compute + downlink, 3)}
    return out


def _one_way(hops: list[tuple[float, float | None]], wire_bytes: int) -> float:
    rates = [r for _, r in hops if r]
    serialise = wire_bytes * 8 / (min(rates) * 1e3) if rates else 0.0  # ms
    return sum(d for d, _ in hops) + serialise
