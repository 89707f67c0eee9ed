"""TLE files: read and check a 2-line or 3-line element file into sgp4 records.

Anything wrong (unreadable, not text, a malformed line, a bad checksum, elements sgp4 rejects, too
many satellites) is a one-line ConfigError naming the scenario key, the file and the line.
"""

from __future__ import annotations

from pathlib import Path

from sgp4.api import Satrec

from topologies.validate import ConfigError, read_text_file

TLE_KEY = "leo.orbit.tle_file"
# SpaceX's Gen2 filing (FCC, 2022: 29,988 satellites) is the largest constellation on file.
MAX_SATELLITES = 30_000
SATS_WHY = ("the largest filed constellation has ~30,000 satellites; all their positions are held "
            "in memory")
# sgp4 error codes (Vallado et al. 2006, sgp4 package docs)
SGP4_ERRORS = {1: "mean eccentricity out of range", 2: "mean motion below zero",
               3: "perturbed eccentricity out of range", 4: "semi-latus rectum below zero",
               6: "the satellite has decayed"}


def load_tle_file(path: Path, key: str = TLE_KEY) -> tuple[list[str], list[Satrec]]:
    """Read a 2-line or 3-line TLE file into (names, sgp4 records); names default to sat<i>."""
    text = read_text_file(path, key, "TLE file")
    raw = [(n, ln.rstrip()) for n, ln in enumerate(text.splitlines(), 1) if ln.strip()]
    names: list[str] = []
    records: list[Satrec] = []
    i = 0
    while i < len(raw):
        name = None
        if not raw[i][1].startswith("1 "):
            name, i = raw[i][1].strip(), i + 1
        if i + 1 >= len(raw) or not raw[i][1].startswith("1 ") or not raw[i + 1][1].startswith("2 "):
            line = raw[min(i, len(raw) - 1)][0]
            raise ConfigError(key, str(path), f"TLEs: an optional name line, then lines '1 ...' and "
                                              f"'2 ...' (malformed near line {line})")
        (n1, line1), (n2, line2) = raw[i], raw[i + 1]
        check_tle_line(path, key, n1, line1)
        check_tle_line(path, key, n2, line2)
        rec = Satrec.twoline2rv(line1, line2)
        if rec.error:
            raise ConfigError(key, str(path), f"TLEs sgp4 accepts (lines {n1}-{n2}: "
                                              f"{SGP4_ERRORS.get(rec.error, f'error {rec.error}')})")
        records.append(rec)
        names.append(name or f"sat{len(names)}")
        if len(records) > MAX_SATELLITES:
            raise ConfigError(key, str(path), f"at most {MAX_SATELLITES} TLEs ({SATS_WHY})")
        i += 2
    if not records:
        raise ConfigError(key, str(path), "a file with at least one TLE (this one has none)")
    return names, records


def check_tle_line(path: Path, key: str, number: int, line: str) -> None:
    """69 ASCII characters, ending in the modulo-10 checksum (digits, '-' counts 1)."""
    if len(line) != 69 or not line.isascii():
        raise ConfigError(key, str(path), f"TLE lines of 69 characters (line {number} has "
                                          f"{len(line)})")
    if not line[68].isdigit() or tle_checksum(line) != int(line[68]):
        raise ConfigError(key, str(path), f"TLE lines with a correct checksum (line {number} ends in "
                                          f"{line[68]!r}, expected {tle_checksum(line)})")


def tle_checksum(line: str) -> int:
    """The TLE checksum of a line's first 68 characters."""
    return sum(int(c) if c.isdigit() else c == "-" for c in line[:68]) % 10
