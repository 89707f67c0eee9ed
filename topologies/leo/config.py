"""Typed, validated configuration of the LEO backhaul model (scenario table ``[leo.orbit]``).

Every field has a default, so an empty table gives the reference case: Starlink shell 1 serving a
factory near Munich through a gateway in northern Germany. Every literature constant carries its
source beside it; values marked "assumption" have no published figure behind them and should be
treated as knobs.

The table's keys are these fields, each nested dataclass a sub-table (``[leo.orbit.shell]``), each
bound in the field's metadata (read by :func:`topologies.config_schema.parse_table`). Exceptions:
``[leo.orbit.site]`` has no mask key (the terminal uses the shell's), ``[leo.orbit.terrestrial]``
spells the PoP as ``pop_lat_deg`` / ``pop_lon_deg``, and ``tle_file`` resolves against the
scenario's folder. ``topologies/leo_default.toml`` writes every key out with its default.

Every number is bounded above as well as below; where the upper bound is not physical, its reason
(mostly: the schedule and the satellites' positions are held in memory) is in the error. Times
need an explicit UTC offset or ``Z``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from topologies.config_schema import bounds, nested, parse_table
from topologies.leo.tle import MAX_SATELLITES, SATS_WHY, load_tle_file
from topologies.validate import ConfigError, Table

POLICIES = ("highest_elevation", "longest_visibility")
# Positions computed at once to choose a serving satellite: (interval_s / step + 1) x satellites.
MAX_POSITION_SAMPLES = 2_000_000  # x 3 coordinates x 8 bytes = 48 MB per array
DELAY_WHY = "10 s: beyond any LEO path"
RATE_WHY = "the link engine's largest rate"
SEED_WHY = "a 32-bit seed, as the link engine's"


@dataclass(frozen=True)
class WalkerShell:
    """A Walker-delta shell i:T/P/F (circular orbits, RAAN spread over 360 degrees)."""

    # Starlink shell 1 as authorised by the FCC: 1,584 satellites at 550 km, 53 deg, 72 planes x 22,
    # minimum elevation 25 deg (SpaceX modification application IBFS SAT-MOD-20200417-00037,
    # granted by FCC 21-48, April 2021; also DESIGN.md reference figures).
    altitude_km: float = field(default=550.0, metadata=bounds(min=100.0, max=40_000.0))
    inclination_deg: float = field(default=53.0, metadata=bounds(min=0.0, max=180.0))
    planes: int = field(default=72, metadata=bounds(min=1, max=MAX_SATELLITES, why=SATS_WHY))
    sats_per_plane: int = field(default=22, metadata=bounds(min=1, max=MAX_SATELLITES, why=SATS_WHY))
    # Walker phasing factor F (0..P-1). SpaceX does not publish it: F = 1 is an assumption.
    phasing_f: int = field(default=1, metadata=bounds(min=0, max=lambda shell: shell.planes - 1))
    min_elevation_deg: float = field(default=25.0, metadata=bounds(min=0.0, max=89.0))
    # Secular J2 drift of RAAN and argument of latitude (keeps Walker close to sgp4 over hours).
    j2_secular: bool = True

    def __post_init__(self) -> None:
        if self.total_sats > MAX_SATELLITES:
            raise ConfigError("sats_per_plane", self.sats_per_plane,
                              f"planes x sats_per_plane <= {MAX_SATELLITES} (here {self.planes} x "
                              f"{self.sats_per_plane} = {self.total_sats}; {SATS_WHY})")

    @property
    def total_sats(self) -> int:
        return self.planes * self.sats_per_plane


@dataclass(frozen=True)
class GroundPoint:
    """A point on the (spherical) Earth: user terminal, gateway or point of presence.

    ``min_elevation_deg`` is used for the gateway only; the terminal uses the shell's mask.
    """

    lat_deg: float = field(metadata=bounds(min=-90.0, max=90.0))
    lon_deg: float = field(metadata=bounds(min=-180.0, max=180.0))
    min_elevation_deg: float = field(default=25.0, metadata=bounds(min=0.0, max=89.0))


# Default user terminal: a factory in Garching near Munich (48.25 N, 11.65 E); illustrative site.
DEFAULT_SITE = GroundPoint(48.25, 11.65, 25.0)
# Default gateway: illustrative location near Hanover, ~470 km north of the factory (NOT a surveyed
# Starlink gateway). Its 25 deg mask assumes gateways use the same minimum elevation as terminals.
DEFAULT_GROUND_STATION = GroundPoint(52.37, 9.73, 25.0)
# Default point of presence: Frankfurt am Main (50.11 N, 8.68 E). Starlink customers in Germany are
# seen behind a Frankfurt PoP (reverse-DNS names like *.frntdeu1.isp.starlink.com); city centre
# coordinates, approximate.
DEFAULT_POP = GroundPoint(50.11, 8.68, 0.0)


@dataclass(frozen=True)
class Terrestrial:
    """Ground station -> point of presence -> cloud, over fibre."""

    # keys pop_lat_deg, pop_lon_deg; a PoP has no elevation mask
    pop: GroundPoint = field(default=DEFAULT_POP,
                             metadata=nested(prefix="pop_", fixed=("min_elevation_deg",)))
    # Group index of standard single-mode fibre at 1550 nm is ~1.468 (Corning SMF-28 datasheet).
    fibre_group_index: float = field(default=1.468, metadata=bounds(min=1.0, max=2.0))
    # Fibre route length / great-circle distance. Assumption: real routes are longer than the
    # geodesic; 1.5 is a round figure, not a measured value for this route.
    route_factor: float = field(default=1.5, metadata=bounds(min=1.0, max=5.0))
    # PoP -> cloud host in the same metro (one way). Assumption: same-city data centre.
    pop_to_cloud_delay_ms: float = field(default=0.5, metadata=bounds(min=0.0, max=10_000.0, why=DELAY_WHY))


@dataclass(frozen=True)
class Reconfiguration:
    """The global scheduler's reconfiguration grid."""

    # Every 15 s at seconds 12/27/42/57 of each minute: Tanveer et al., "Making Sense of
    # Constellations", CoNEXT-SW 2023; Pan, Zhao, Cai, "Measuring a Low-Earth-Orbit Satellite
    # Network", 2023 (arXiv:2307.06863); Mohan et al., WWW 2024.
    interval_s: float = field(default=15.0, metadata=bounds(
        min=1.0, max=3600.0, why="one hour: the positions of a whole interval are held in memory"))
    # seconds after the minute of the first instant
    offset_s: float = field(default=12.0, metadata=bounds(min=0.0, max=60.0))


def _half_interval(orbit: LeoOrbitConfig) -> float:
    """Longest handover window: half the reconfiguration interval (parsed before [handover])."""
    return orbit.reconfiguration.interval_s / 2


@dataclass(frozen=True)
class Handover:
    """Extra delay and a loss burst in short windows around each reconfiguration instant."""

    # Boundary regions ~75 ms before and ~140 ms after each 15 s instant: Casparsen et al.,
    # "Statistical Characterization and Prediction of E2E Latency over LEO Satellite Networks",
    # arXiv:2601.08439 (2026), abstract (500 Hz one-way measurements).
    before_s: float = field(default=0.075, metadata=bounds(min=0.0, max=_half_interval))
    after_s: float = field(default=0.140, metadata=bounds(min=0.0, max=_half_interval))
    # Magnitudes: assumption, chosen so boundary RTT lands inside the 75-140 ms spikes quoted in
    # DESIGN.md. Uplink larger than downlink because uplink delay is the one more affected by the
    # 15 s cycles (Garcia, Sundberg, Brunstrom, LEO-NET 2025).
    uplink_extra_delay_ms: float = field(default=40.0, metadata=bounds(min=0.0, max=10_000.0, why=DELAY_WHY))
    downlink_extra_delay_ms: float = field(default=20.0,
                                           metadata=bounds(min=0.0, max=10_000.0, why=DELAY_WHY))
    # Loss inside the boundary window. Assumption; Kassem et al. (IMC 2022, "A browser-side view of
    # Starlink connectivity") report loss bursts of up to 50 % correlated with handovers.
    loss_pct: float = field(default=10.0, metadata=bounds(min=0.0, max=100.0))
    # Measurements show the spike at every instant, not only on a satellite change (Mohan et al.).
    only_on_satellite_change: bool = False


@dataclass(frozen=True)
class AccessDelay:
    """Medium access / scheduling delay on the terminal<->satellite link, one way.

    Drawn once per 15 s period from a log-normal (delay is stable inside a period and changes at
    period edges: Casparsen et al. 2026), plus per-packet jitter inside the period.
    Calibration: SpaceX's FCC filing (RDOF, Sept 2020) reports terminal<->PoP RTT median 30 ms and
    95th percentile 42 ms; with ~10 ms bent-pipe propagation RTT and ~4 ms gateway->PoP fibre RTT
    that leaves a median access RTT of ~18 ms and a p95/median ratio giving sigma ~0.3.
    The uplink/downlink split (11/7 ms) is an assumption following Garcia et al. (LEO-NET 2025):
    uplink delay is the direction more shaped by scheduling.
    """

    uplink_median_ms: float = field(default=11.0, metadata=bounds(min=0.0, max=10_000.0, why=DELAY_WHY))
    downlink_median_ms: float = field(default=7.0, metadata=bounds(min=0.0, max=10_000.0, why=DELAY_WHY))
    sigma: float = field(default=0.3, metadata=bounds(min=0.0, max=3.0))
    # Per-packet jitter (standard deviation) inside a period. Assumption: small next to the
    # period-to-period variation (Casparsen et al. 2026: stable intra-period regime).
    uplink_jitter_ms: float = field(default=2.0, metadata=bounds(min=0.0, max=10_000.0, why=DELAY_WHY))
    downlink_jitter_ms: float = field(default=1.0, metadata=bounds(min=0.0, max=10_000.0, why=DELAY_WHY))
    # assumption: loss is concentrated around handovers
    baseline_loss_pct: float = field(default=0.0, metadata=bounds(min=0.0, max=100.0))


@dataclass(frozen=True)
class Rates:
    """Per-direction capacity, drawn once per 15 s period from a log-normal around the median."""

    # Starlink medians: uplink ~15-17, downlink ~100-120 Mbit/s (DESIGN.md reference figures;
    # Mohan et al. WWW 2024, M-Lab speed tests).
    uplink_median_mbps: float = field(default=16.0, metadata=bounds(
        min=0.0, max=1_000_000.0, min_exclusive=True, why=RATE_WHY))
    downlink_median_mbps: float = field(default=110.0, metadata=bounds(
        min=0.0, max=1_000_000.0, min_exclusive=True, why=RATE_WHY))
    # assumption: period-to-period throughput variation
    sigma: float = field(default=0.2, metadata=bounds(min=0.0, max=3.0))


@dataclass(frozen=True)
class Weather:
    """Optional rain fade that scales capacity during one window."""

    enabled: bool = False
    # seconds after the schedule start; a run lasts at most an hour, a `leo schedule` a week
    start_s: float = field(default=0.0, metadata=bounds(min=0.0, max=7 * 86400.0, why="one week"))
    duration_s: float = field(default=60.0, metadata=bounds(min=0.0, max=7 * 86400.0, why="one week"))
    # Rain cuts uplink capacity ~50 % (DESIGN.md reference figures).
    uplink_rate_factor: float = field(default=0.5, metadata=bounds(min=0.0, max=1.0))
    # no published figure used; set it if you have one
    downlink_rate_factor: float = field(default=1.0, metadata=bounds(min=0.0, max=1.0))
    extra_loss_pct: float = field(default=0.0, metadata=bounds(min=0.0, max=100.0))


def _last_sat_index(orbit: LeoOrbitConfig) -> int | None:
    """The Walker shell's last satellite; unbounded with a TLE file (its size is known on reading)."""
    return None if orbit.tle_file else orbit.shell.total_sats - 1


@dataclass(frozen=True)
class Compute:
    """In-orbit compute: a designated satellite reached over laser ISLs."""

    # Satellite index (plane * sats_per_plane + slot); -1 = the serving satellite at t = 0.
    sat_index: int = field(default=-1, metadata=bounds(min=-1, max=_last_sat_index))
    # 100 Gbit/s laser ISLs as in ADA Space's "Three-Body Computing Constellation" (12 satellites
    # launched May 2025, 744 TOPS each; DESIGN.md reference figures).
    isl_rate_gbps: float = field(default=100.0, metadata=bounds(
        min=0.0, max=1000.0, min_exclusive=True, why="the link engine's largest rate, 1 Tbit/s"))


@dataclass(frozen=True)
class LeoOrbitConfig:
    """Everything the LEO schedule depends on; build with :meth:`from_table` or :meth:`default`."""

    shell: WalkerShell = WalkerShell()
    tle_file: Path | None = None  # read by from_table: resolved against the scenario's folder
    # the site's mask is the shell's min_elevation_deg (a gateway has its own)
    site: GroundPoint = field(default=DEFAULT_SITE, metadata=nested(fixed=("min_elevation_deg",)))
    ground_station: GroundPoint = DEFAULT_GROUND_STATION
    terrestrial: Terrestrial = Terrestrial()
    epoch_utc: str = "2025-06-02T12:00:00Z"  # ISO 8601 with 'Z' or an offset: schedule t_s = 0
    # at most half of reconfiguration.interval_s (checked in __post_init__)
    step_s: float = field(default=1.0, metadata=bounds(min=0.0, max=1.0, min_exclusive=True))
    reconfiguration: Reconfiguration = Reconfiguration()
    policy: str = field(default="highest_elevation", metadata=bounds(choices=POLICIES))
    seed: int = field(default=1, metadata=bounds(min=0, max=2**32 - 1, why=SEED_WHY))
    handover: Handover = Handover()
    access: AccessDelay = AccessDelay()
    rates: Rates = Rates()
    weather: Weather = Weather()
    compute: Compute = Compute()

    def __post_init__(self) -> None:
        """Rules across fields (error paths relative to ``[leo.orbit]``)."""
        parse_epoch(self.epoch_utc, "epoch_utc")
        if self.step_s > 0 and self.reconfiguration.interval_s / self.step_s < 2:
            raise ConfigError("step_s", self.step_s, "at most half of reconfiguration.interval_s")
        samples = position_samples(self.reconfiguration.interval_s, self.step_s, self.shell.total_sats)
        if self.tle_file is None and samples > MAX_POSITION_SAMPLES:  # TLEs: checked on reading
            raise self.samples_error("", samples, self.shell.total_sats)

    def samples_error(self, prefix: str, samples: int, n_sats: int) -> ConfigError:
        """Too many positions per reconfiguration slot: name step_s if below 1 s, else interval_s."""
        key, value = (("step_s", self.step_s) if self.step_s < 1.0
                      else ("reconfiguration.interval_s", self.reconfiguration.interval_s))
        return ConfigError(prefix + key, value,
                           f"(reconfiguration.interval_s / min(1, step_s) + 1) x satellites <= "
                           f"{MAX_POSITION_SAMPLES} (here {samples} for {n_sats} satellites): the "
                           "positions of a whole interval are held in memory")

    @property
    def epoch(self) -> datetime:
        return parse_epoch(self.epoch_utc, "leo.orbit.epoch_utc")

    @classmethod
    def default(cls) -> LeoOrbitConfig:
        return cls.from_table(Table({}, "leo.orbit"))

    @classmethod
    def from_table(cls, table: Table, base_dir: Path | None = None) -> LeoOrbitConfig:
        """Validate ``[leo.orbit]``; relative ``tle_file`` paths resolve against ``base_dir``."""
        with table as t:
            text = t.get("tle_file", None)
            tle_file: Path | None = None
            if text is not None:
                if not isinstance(text, str) or not text:
                    raise ConfigError(t.key("tle_file"), text, "a path to a TLE file (string)")
                tle_file = Path(text)
                if not tle_file.is_absolute() and base_dir is not None:
                    tle_file = base_dir / tle_file
                if not tle_file.is_file():
                    raise ConfigError(t.key("tle_file"), text, "an existing TLE file")
            config = parse_table(cls, t, tle_file=tle_file)
        if tle_file is not None:  # read it now: a bad file fails before anything starts
            names, _ = load_tle_file(tle_file, table.key("tle_file"))
            samples = position_samples(config.reconfiguration.interval_s, config.step_s, len(names))
            if samples > MAX_POSITION_SAMPLES:
                raise config.samples_error(table.key(""), samples, len(names))
            if config.compute.sat_index >= len(names):
                raise ConfigError(table.key("compute.sat_index"), config.compute.sat_index,
                                  f"-1 or an index of the TLE file (0..{len(names) - 1})")
        return config


def position_samples(interval_s: float, step_s: float, n_sats: int) -> int:
    """Satellite positions computed at once to decide one reconfiguration slot."""
    return (int(interval_s / min(1.0, step_s)) + 1) * n_sats


EPOCH_TEXT = ("an ISO 8601 time with 'Z' or a UTC offset, e.g. '2025-06-02T12:00:00Z' or "
              "'2025-06-02T14:00:00+02:00', between 1957 and 2100")


def parse_epoch(text: str, path: str) -> datetime:
    """Parse an ISO 8601 timestamp with an explicit offset (``2025-06-02T12:00:00Z``) into UTC.

    A time without ``Z`` or an offset is an error, not silently UTC.
    """
    try:
        value = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise ConfigError(path, text, EPOCH_TEXT) from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise ConfigError(path, text, EPOCH_TEXT + " (this one has no time zone)")
    value = value.astimezone(UTC)
    if not 1957 <= value.year <= 2100:  # sgp4 and the sidereal-time formula hold in this range
        raise ConfigError(path, text, EPOCH_TEXT)
    return value
