"""The Mininet Link subclass bound to a LinkEngine.

Relay links are two veth pairs: ``intfName1`` (in node1) <-> ``a<ID>`` (relay netns) and
``b<ID>`` (relay netns) <-> ``intfName2`` (in node2); the relay forwards between ``a<ID>`` and
``b<ID>``. The node-side interfaces carry exactly the names and MACs Mininet asked for, so its Intf
objects work unchanged. netem links are one veth pair with netem on each node's egress.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mininet.link import Link

from topologies.links.params import DirectionParams

if TYPE_CHECKING:
    from topologies.links.engine import LinkEngine

OFFLOADS_OFF = ("tx", "off", "tso", "off", "gso", "off", "gro", "off")


def make_link_class(engine: LinkEngine) -> type:
    """Return a Link subclass whose instances are emulated by ``engine``."""

    class EngineLink(Link):
        """Mininet link with per-direction delay/jitter/loss/rate (ab = node1 -> node2)."""

        def __init__(self, node1: Any, node2: Any, port1: int | None = None, port2: int | None = None,
                     intfName1: str | None = None, intfName2: str | None = None,
                     addr1: str | None = None, addr2: str | None = None, link_name: str | None = None,
                     ab: DirectionParams | None = None, ba: DirectionParams | None = None,
                     txo: bool = True, dynamic: bool = False, **params: Any) -> None:
            if not link_name:
                raise ValueError("link_name is required for links of a LinkEngine")
            ab = ab or DirectionParams()
            ba = ba or DirectionParams()
            transparent = ab.is_transparent() and ba.is_transparent() and not dynamic
            self.link_name = link_name
            self._engine = engine
            self._root_links: list[str] = []
            self._mode = "veth" if transparent else ("relay" if engine.backend == "relay" else "netem")
            # netem lives in the ports' root qdiscs: switches must not touch them (switches.py)
            self.owns_qdisc = self._mode == "netem"
            self._state = engine._register(link_name, self, relayed=self._mode == "relay")
            # A direction entering a switch carries that switch's latency (engine.switch_hop_ms).
            self._state.hop_ms = {"ab": 0.0 if getattr(node2, "inNamespace", True) else engine.switch_hop_ms,
                                  "ba": 0.0 if getattr(node1, "inNamespace", True) else engine.switch_hop_ms}
            try:
                Link.__init__(self, node1, node2, port1=port1, port2=port2, intfName1=intfName1,
                              intfName2=intfName2, addr1=addr1, addr2=addr2, **params)
                names = (self.intf1.name, self.intf2.name)
                if self._mode == "relay":
                    _offloads(node1, names[0], OFFLOADS_OFF)
                    _offloads(node2, names[1], OFFLOADS_OFF)
                    engine._attach_relay(self._state, f"a{self._state.link_id}",
                                         f"b{self._state.link_id}", ab, ba)
                else:
                    lossy = any(p.loss_pct > 0 or p.loss_burst is not None for p in (ab, ba))
                    words: tuple[str, ...] = ("tx", "off") if not txo else ()
                    if lossy:  # single packets, not 64 KB super-frames, must be dropped
                        words += ("tso", "off", "gso", "off")
                    if words:
                        _offloads(node1, names[0], words)
                        _offloads(node2, names[1], words)
                    if self._mode == "netem":
                        devs = {"ab": (names[0], _pid(node1)), "ba": (names[1], _pid(node2))}
                        engine._attach_netem(self._state, devs, ab, ba)
            except BaseException:
                engine._detach(link_name)
                raise

        def makeIntfPair(self, intfname1: str, intfname2: str, addr1: str | None = None,  # noqa: N802
                         addr2: str | None = None, node1: Any = None, node2: Any = None,
                         deleteIntfs: bool = True) -> None:  # noqa: N803
            if self._mode != "relay":
                Link.makeIntfPair(intfname1, intfname2, addr1, addr2, node1, node2, deleteIntfs=False)
                return
            link_id, ns = self._state.link_id, engine.netns
            batch = ""
            for end, intf, addr, node in ((f"a{link_id}", intfname1, addr1, node1),
                                          (f"b{link_id}", intfname2, addr2, node2)):
                if not getattr(node, "inNamespace", True):
                    # a switch port in the root namespace: record it before creating it
                    engine.manifest.add("link", intf)
                    self._root_links.append(intf)
                mac = f" address {addr}" if addr else ""
                batch += f"link add {end} type veth peer name {intf}{mac} netns {node.pid}\n"
            from topologies.links.engine import _run
            _run(["ip", "-n", ns, "-batch", "-"], stdin=batch)

        def delete(self) -> None:
            engine._detach(self.link_name)
            if self.intf1 is not None:
                Link.delete(self)
            for name in self._root_links:
                engine.manifest.discard("link", name)
            self._root_links = []

    return EngineLink


def _pid(node: Any) -> int | None:
    return node.pid if getattr(node, "inNamespace", True) else None


def _offloads(node: Any, intf: str, words: tuple[str, ...]) -> None:
    node.cmd("ethtool", "-K", intf, *words)
