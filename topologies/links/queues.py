"""DSCP-aware class-based queues on a link direction: the configuration and its two wire forms.

A :class:`QueueConfig` splits a direction's serialiser into up to 8 classes chosen by the packet's
DSCP (the SDN controller marks URLLC 46/EF, eMBB 34/AF41, mMTC 10/AF11). Strict classes are served
first (in order), the others share what is left by weight (each backlogged class gets at least its
weight's share of the rate; work-conserving). Two renderings:

- :func:`relay_wire`: the relay's ``qos ID DIR N MAP W_0 .. W_{N-1}`` arguments (relay/relay.c
  serves them; ``RelayBackend.set_queues`` sends them);
- :func:`tc_commands`: the netem path's equivalent, an HTB tree with u32 ``dsfield`` filters (IPv4;
  other traffic, IPv6 included, goes to the default class).
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_CLASSES = 8            # relay.h QOS_MAX_CLASSES
MAX_WEIGHT = 1_000_000     # relay.h QOS_MAX_WEIGHT
NDSCP = 64
HTB_ROOT = "1:"
HTB_PARENT = "1:1"         # holds the link rate; every class borrows from it up to its ceil
HTB_MINOR0 = 0x10          # class i is 1:<hex HTB_MINOR0 + i>


@dataclass(frozen=True)
class QueueClass:
    """One class: ``dscps`` it takes; ``strict`` (weight 0) or a deficit-round-robin ``weight`` >= 1."""

    name: str
    dscps: tuple[int, ...]
    strict: bool
    weight: int


@dataclass(frozen=True)
class QueueConfig:
    """The classes of one direction; DSCPs no class lists go to ``classes[default_class]``."""

    classes: tuple[QueueClass, ...]
    default_class: int = 0

    def __post_init__(self) -> None:
        classes = tuple(self.classes)
        object.__setattr__(self, "classes", classes)
        if not 1 <= len(classes) <= MAX_CLASSES:
            raise ValueError(f"classes: got {len(classes)}; allowed 1..{MAX_CLASSES} classes")
        seen: dict[int, str] = {}
        for i, c in enumerate(classes):
            where = f"classes[{i}] ({c.name!r})"
            if not isinstance(c, QueueClass):
                raise ValueError(f"classes[{i}]: got {type(c).__name__}; allowed a QueueClass")
            if not isinstance(c.name, str) or not c.name:
                raise ValueError(f"classes[{i}].name: got {c.name!r}; allowed a non-empty string")
            if type(c.strict) is not bool:
                raise ValueError(f"{where}.strict: got {c.strict!r}; allowed True or False")
            if type(c.weight) is not int:
                raise ValueError(f"{where}.weight: got {c.weight!r}; allowed an integer")
            if c.strict and c.weight != 0:
                raise ValueError(f"{where}.weight: got {c.weight}; allowed 0 for a strict class")
            if not c.strict and not 1 <= c.weight <= MAX_WEIGHT:
                raise ValueError(f"{where}.weight: got {c.weight}; allowed 1..{MAX_WEIGHT} "
                                 "for a weighted class")
            for d in c.dscps:
                if type(d) is not int or not 0 <= d < NDSCP:
                    raise ValueError(f"{where}.dscps: got {d!r}; allowed integers 0..{NDSCP - 1}")
                if d in seen:
                    raise ValueError(f"{where}.dscps: DSCP {d} is in class {seen[d]!r} already; "
                                     "allowed in at most one class")
                seen[d] = c.name
        if type(self.default_class) is not int or not 0 <= self.default_class < len(classes):
            raise ValueError(f"default_class: got {self.default_class!r}; allowed 0..{len(classes) - 1} "
                             "(an index into classes)")

    def class_of(self, dscp: int) -> int:
        """The index of the class DSCP ``dscp`` goes to."""
        return next((i for i, c in enumerate(self.classes) if dscp in c.dscps), self.default_class)


def relay_wire(config: QueueConfig) -> str:
    """``N MAP W_0 .. W_{N-1}``: what follows ``qos ID DIR`` in the relay's protocol (relayproc.py)."""
    dscp_map = "".join(str(config.class_of(d)) for d in range(NDSCP))
    return " ".join([str(len(config.classes)), dscp_map, *(str(c.weight) for c in config.classes)])


def _kbit(mbps: float) -> str:
    return f"{max(1, round(mbps * 1000))}kbit"


def tc_commands(dev: str, config: QueueConfig, rate_mbps: float) -> list[list[str]]:
    """The netem path's equivalent of ``config`` on ``dev`` at ``rate_mbps``, as ``tc`` argv lists.

    HTB root (unclassified traffic: the default class) over one parent class at the link rate; per
    QueueClass a child: strict ones prio 0 with rate = ceil = link rate, weighted ones prio 1 with
    rate = link rate * weight / sum of weights and ceil = link rate; per listed DSCP a u32 filter on
    the IPv4 DS field (dscp << 2, mask 0xfc). Pure output: nothing is run.
    """
    if not rate_mbps > 0:
        raise ValueError(f"rate_mbps: got {rate_mbps!r}; allowed > 0 (HTB needs the link rate)")
    minor = [f"{HTB_MINOR0 + i:x}" for i in range(len(config.classes))]
    total_w = sum(c.weight for c in config.classes if not c.strict)
    link = _kbit(rate_mbps)
    cmds = [
        ["tc", "qdisc", "add", "dev", dev, "root", "handle", HTB_ROOT, "htb", "default",
         minor[config.default_class]],
        ["tc", "class", "add", "dev", dev, "parent", HTB_ROOT, "classid", HTB_PARENT, "htb",
         "rate", link, "ceil", link],
    ]
    for i, c in enumerate(config.classes):
        rate = link if c.strict else _kbit(rate_mbps * c.weight / total_w)
        cmds.append(["tc", "class", "add", "dev", dev, "parent", HTB_PARENT, "classid", f"1:{minor[i]}",
                     "htb", "rate", rate, "ceil", link, "prio", "0" if c.strict else "1"])
    for i, c in enumerate(config.classes):
        for d in sorted(c.dscps):
            cmds.append(["tc", "filter", "add", "dev", dev, "parent", HTB_ROOT, "protocol", "ip", "prio", "1",
                         "u32", "match", "ip", "dsfield", f"0x{d << 2:02x}", "0xfc",
                         "flowid", f"1:{minor[i]}"])
    return cmds
