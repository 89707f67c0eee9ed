"""AGVs that move on the factory floor and hand over between NR cells (scenario ``[mobility]``).

A pure function of the scenario and the run's length, computed before anything starts:
:func:`mobility_schedule` walks every route, samples each cell's received power at the UE every
``measurement_period_ms`` and decides handovers as an A3 event (TS 38.331 section 5.5.4.4: a
neighbour stronger than the serving cell by ``hysteresis_db`` for ``time_to_trigger_ms``). The run
applies the handovers (experiments/framework/mobility_driver.py): the UE is interrupted for
``handover_interruption_ms`` (its buffers wait, relay/nrcell.c) and re-attached to the target cell.

Received power = the cell's transmit power - path loss, 3GPP TR 38.901 Table 7.4.1-1 Indoor
Factory: ``inf_los`` PL = 31.84 + 21.50 log10(d3D) + 19.00 log10(fc); ``inf_sl`` (sparse clutter,
low base station, NLOS) PL = max(PL_LOS, 33 + 25.5 log10(d3D) + 20 log10(fc)); d3D in m (1-600 m),
fc in GHz; shadow fading (sigma 4.3 dB LOS, 5.7 dB SL) spatially correlated over 10 m (TR 38.901
Table 7.5-6 InF) when ``shadow_fading`` is on, seeded by the scenario's seed.
Left out: L3 filtering of measurements, fast fading, beam management, the UPF path switch (the
source cell forwards the UE's downlink over Xn: README "Cells inside the relay").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from topologies.config_schema import bounds, check_fields
from topologies.validate import ConfigError

# TS 38.331 TimeToTrigger values, ms.
TTT_MS = (0, 40, 64, 80, 100, 128, 160, 256, 320, 480, 512, 640, 1024, 1280, 2560, 5120)
PATH_LOSS_MODELS = ("inf_los", "inf_sl")
SHADOW_SIGMA_DB = {"inf_los": 4.3, "inf_sl": 5.7}  # TR 38.901 Table 7.4.1-1
SHADOW_CORRELATION_M = 10.0                         # TR 38.901 Table 7.5-6, InF


@dataclass(frozen=True)
class MobilityConfig:
    """``[mobility]``: how UEs measure and hand over."""

    path_loss_model: str = field(default="inf_sl", metadata=bounds(choices=PATH_LOSS_MODELS))
    shadow_fading: bool = True
    # A3 hysteresis 0-30 dB in 0.5 dB steps (TS 38.331 Hysteresis); 3 dB and 160 ms are typical
    # intra-frequency settings (assumption), TTT one of TS 38.331's values.
    hysteresis_db: float = field(default=3.0, metadata=bounds(min=0, max=30))
    time_to_trigger_ms: int = field(default=160, metadata=bounds(min=0, max=5120))
    measurement_period_ms: float = field(default=20.0, metadata=bounds(min=1, max=1000))
    # Assumption: 30 ms, between IMT-2020's 0 ms mobility interruption requirement (ITU-R M.2410)
    # and the tens of ms reported for NR handovers; TS 38.133 section 6.1.1.2.2 gives its parts.
    handover_interruption_ms: float = field(default=30.0, metadata=bounds(min=0, max=10_000))
    ue_height_m: float = field(default=1.5, metadata=bounds(min=0, max=50))  # TR 38.901 InF UE height

    def __post_init__(self) -> None:
        check_fields(self)
        if self.time_to_trigger_ms not in TTT_MS:
            raise ConfigError("time_to_trigger_ms", self.time_to_trigger_ms,
                              f"one of {', '.join(map(str, TTT_MS))} (TS 38.331 TimeToTrigger)")
        if self.hysteresis_db * 2 != int(self.hysteresis_db * 2):
            raise ConfigError("hysteresis_db", self.hysteresis_db, "steps of 0.5 dB (TS 38.331 Hysteresis)")


@dataclass(frozen=True)
class Route:
    """``[[mobility.routes]]``: a UE driving through waypoints at a speed, round and round if ``loop``."""

    ue: str
    waypoints_m: tuple[tuple[float, ...], ...]
    speed_mps: float = field(default=1.5, metadata=bounds(min=0.01, max=50))  # a typical AGV: 1-2 m/s
    loop: bool = True

    def __post_init__(self) -> None:
        if len(self.waypoints_m) < 2 or any(len(w) != 2 for w in self.waypoints_m):
            raise ConfigError("waypoints_m", [list(w) for w in self.waypoints_m], "two or more [x, y] points")

    def position_m(self, t_s: float) -> tuple[float, float]:
        """Where the UE is ``t_s`` after the start (at the first waypoint), along the polyline."""
        pts = [tuple(w) for w in self.waypoints_m]
        if self.loop:
            pts.append(pts[0])
        seg = [math.dist(a, b) for a, b in zip(pts, pts[1:], strict=False)]
        total = sum(seg)
        s = t_s * self.speed_mps
        s = s % total if (self.loop and total > 0) else min(s, total)
        for (a, b), length in zip(zip(pts, pts[1:], strict=False), seg, strict=True):
            if s <= length and length > 0:
                f = s / length
                return a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1])
            s -= length
        return pts[-1][0], pts[-1][1]


@dataclass(frozen=True)
class CellSite:
    """Where a cell's antenna is (``[[cells]] position_m``, ``height_m``, ``tx_power_dbm``)."""

    position_m: tuple[float, float]
    height_m: float = 8.0          # TR 38.901 InF: base stations at 8 m in the evaluated halls
    tx_power_dbm: float = 24.0     # assumption: an indoor small cell (TR 38.901 InH/InF evaluations)


def path_loss_db(model: str, d3d_m: float, fc_ghz: float) -> float:
    """TR 38.901 Table 7.4.1-1 InF path loss (d3D clamped to its 1 m lower bound)."""
    d = max(1.0, d3d_m)
    los = 31.84 + 21.50 * math.log10(d) + 19.00 * math.log10(fc_ghz)
    if model == "inf_los":
        return los
    return max(los, 33.0 + 25.5 * math.log10(d) + 20.0 * math.log10(fc_ghz))


class ShadowMap:
    """Per cell, a Gaussian field of shadow fading (sigma dB) on a 10 m grid, bilinear in between:
    correlated over the TR 38.901 InF distance, the same at the same place."""

    def __init__(self, cells: list[str], sigma_db: float, seed: int, extent_m: float = 1000.0) -> None:
        self.n = int(extent_m / SHADOW_CORRELATION_M) + 2
        rng = np.random.default_rng(seed)
        self.grids = {c: rng.normal(0.0, sigma_db, (self.n, self.n)) for c in cells}

    def at(self, cell: str, x: float, y: float) -> float:
        gx = min(max(x / SHADOW_CORRELATION_M + self.n / 2, 0.0), self.n - 1.001)
        gy = min(max(y / SHADOW_CORRELATION_M + self.n / 2, 0.0), self.n - 1.001)
        i, j, fx, fy = int(gx), int(gy), gx - int(gx), gy - int(gy)
        g = self.grids[cell]
        return float((1 - fx) * (1 - fy) * g[i, j] + fx * (1 - fy) * g[i + 1, j]
                     + (1 - fx) * fy * g[i, j + 1] + fx * fy * g[i + 1, j + 1])


@dataclass(frozen=True)
class Handover:
    t_s: float
    ue: str
    source: str
    target: str
    interruption_ms: float


@dataclass
class MobilitySchedule:
    """What :func:`mobility_schedule` computed: handovers in time order and every measurement."""

    handovers: list[Handover]
    samples: list[dict[str, Any]]  # t_s, ue, x_m, y_m, cell, rsrp_dbm, serving

    def handovers_table(self) -> list[dict[str, Any]]:
        return [vars(h) for h in self.handovers]


def mobility_schedule(config: MobilityConfig, routes: tuple[Route, ...], sites: dict[str, CellSite],
                      carrier_ghz: dict[str, float], start_cell: dict[str, str], duration_s: float,
                      seed: int) -> MobilitySchedule:
    """Handovers (A3 with hysteresis and time-to-trigger) of every routed UE over ``duration_s``."""
    cells = sorted(sites)
    shadow = ShadowMap(cells, SHADOW_SIGMA_DB[config.path_loss_model], seed) if config.shadow_fading else None
    step_s = config.measurement_period_ms / 1000
    handovers: list[Handover] = []
    samples: list[dict[str, Any]] = []
    for route in routes:
        serving, candidate, since = start_cell[route.ue], None, 0.0
        busy_until = -1.0
        for k in range(int(duration_s / step_s) + 1):
            t = k * step_s
            x, y = route.position_m(t)
            rsrp = {}
            for c in cells:
                site = sites[c]
                d3d = math.hypot(math.dist((x, y), site.position_m), site.height_m - config.ue_height_m)
                rsrp[c] = site.tx_power_dbm - path_loss_db(config.path_loss_model, d3d, carrier_ghz[c]) \
                    - (shadow.at(c, x, y) if shadow else 0.0)
            best = max((c for c in cells if c != serving), key=rsrp.__getitem__, default=None)
            if t >= busy_until and best is not None and rsrp[best] > rsrp[serving] + config.hysteresis_db:
                if candidate != best:
                    candidate, since = best, t
                if t - since >= config.time_to_trigger_ms / 1000 - 1e-9:
                    handovers.append(Handover(round(t, 6), route.ue, serving, best,
                                              config.handover_interruption_ms))
                    serving, candidate = best, None
                    busy_until = t + config.handover_interruption_ms / 1000
            else:
                candidate = None
            samples += [{"t_s": round(t, 6), "ue": route.ue, "x_m": round(x, 3), "y_m": round(y, 3),
                         "cell": c, "rsrp_dbm": round(rsrp[c], 2), "serving": c == serving} for c in cells]
    handovers.sort(key=lambda h: (h.t_s, h.ue))
    return MobilitySchedule(handovers, samples)
