"""topologies/links/queues.py: QueueConfig validation, the relay's wire form, the netem path's tc argv."""

from __future__ import annotations

import pytest

from topologies.links.queues import QueueClass, QueueConfig, relay_wire, tc_commands

URLLC = QueueClass("urllc", (46,), True, 0)
EMBB = QueueClass("embb", (34,), False, 3)
MMTC = QueueClass("mmtc", (10,), False, 1)
SLICES = QueueConfig((URLLC, EMBB, MMTC), default_class=2)


@pytest.mark.parametrize(("classes", "default", "match"), [
    ((), 0, r"classes: got 0; allowed 1\.\.8 classes"),
    (tuple(QueueClass(f"c{i}", (i,), False, 1) for i in range(9)), 0, r"classes: got 9; allowed 1\.\.8"),
    ((QueueClass("a", (64,), False, 1),), 0, r"classes\[0\] \('a'\)\.dscps: got 64; allowed integers"),
    ((QueueClass("a", (-1,), False, 1),), 0, r"\.dscps: got -1; allowed integers 0\.\.63"),
    ((QueueClass("a", ("46",), False, 1),), 0, r"\.dscps: got '46'; allowed integers"),
    ((URLLC, QueueClass("b", (10, 46), False, 1)), 0,
     r"classes\[1\] \('b'\)\.dscps: DSCP 46 is in class 'urllc' already; allowed in at most one class"),
    ((QueueClass("a", (1,), False, 0),), 0, r"classes\[0\] \('a'\)\.weight: got 0; allowed 1\.\.1000000"),
    ((QueueClass("a", (1,), False, 1000001),), 0, r"\.weight: got 1000001; allowed 1\.\.1000000"),
    ((QueueClass("a", (1,), True, 2),), 0, r"\.weight: got 2; allowed 0 for a strict class"),
    ((QueueClass("a", (1,), False, 1.5),), 0, r"\.weight: got 1\.5; allowed an integer"),
    ((QueueClass("a", (1,), "yes", 0),), 0, r"\.strict: got 'yes'; allowed True or False"),
    ((QueueClass("", (1,), True, 0),), 0, r"classes\[0\]\.name: got ''; allowed a non-empty string"),
    ((URLLC, EMBB), 2, r"default_class: got 2; allowed 0\.\.1"),
    ((URLLC, EMBB), -1, r"default_class: got -1; allowed 0\.\.1"),
])
def test_bad_configs_name_the_field_and_the_allowed_values(classes, default, match) -> None:
    with pytest.raises(ValueError, match=match):
        QueueConfig(classes, default_class=default)


def test_configs_are_frozen_and_take_any_sequence_of_classes() -> None:
    config = QueueConfig([URLLC, EMBB], default_class=1)  # type: ignore[arg-type]
    assert config.classes == (URLLC, EMBB)
    with pytest.raises(AttributeError):
        config.default_class = 0  # type: ignore[misc]


def test_relay_wire_maps_every_dscp_and_lists_the_weights() -> None:
    n, dscp_map, *weights = relay_wire(SLICES).split()
    assert n == "3" and weights == ["0", "3", "1"]
    assert len(dscp_map) == 64 and dscp_map[46] == "0" and dscp_map[34] == "1" and dscp_map[10] == "2"
    assert set(dscp_map[:10] + dscp_map[11:34] + dscp_map[35:46] + dscp_map[47:]) == {"2"}  # the default
    assert relay_wire(QueueConfig((QueueClass("all", (), False, 1),))) == "1 " + "0" * 64 + " 1"


def test_tc_commands_build_an_htb_tree_with_dsfield_filters() -> None:
    cmds = tc_commands("eth1", SLICES, 10.0)
    assert cmds[0] == ["tc", "qdisc", "add", "dev", "eth1", "root", "handle", "1:", "htb", "default", "12"]
    assert cmds[1] == ["tc", "class", "add", "dev", "eth1", "parent", "1:", "classid", "1:1", "htb",
                       "rate", "10000kbit", "ceil", "10000kbit"]
    assert cmds[2:5] == [
        ["tc", "class", "add", "dev", "eth1", "parent", "1:1", "classid", "1:10", "htb", "rate", "10000kbit",
         "ceil", "10000kbit", "prio", "0"],  # strict: the whole rate, served first
        ["tc", "class", "add", "dev", "eth1", "parent", "1:1", "classid", "1:11", "htb", "rate", "7500kbit",
         "ceil", "10000kbit", "prio", "1"],  # weight 3 of 4
        ["tc", "class", "add", "dev", "eth1", "parent", "1:1", "classid", "1:12", "htb", "rate", "2500kbit",
         "ceil", "10000kbit", "prio", "1"],
    ]
    filters = cmds[5:]
    assert filters == [
        ["tc", "filter", "add", "dev", "eth1", "parent", "1:", "protocol", "ip", "prio", "1", "u32", "match",
         "ip", "dsfield", dsfield, "0xfc", "flowid", flowid]
        for dsfield, flowid in (("0xb8", "1:10"), ("0x88", "1:11"), ("0x28", "1:12"))]  # 46, 34, 10 << 2
    assert all(isinstance(w, str) for cmd in cmds for w in cmd)


def test_tc_commands_need_a_rate() -> None:
    with pytest.raises(ValueError, match="rate_mbps: got 0"):
        tc_commands("eth1", SLICES, 0)
