"""An app outside ``controllers.apps``, loaded by its dotted module path in the launcher tests:
``SliceSwitch`` plus one extra rule through the ``rules_for`` extension point."""

from __future__ import annotations

from typing import Any

from controllers.apps.slice_switch import SliceSwitch
from controllers.policy import COOKIE_APP, TABLE_FORWARD, FlowRule

EXTRA_COOKIE = COOKIE_APP | 0xF1


class DropExperimentalEthertype(SliceSwitch):
    """SliceSwitch that also drops IEEE local-experimental ethertype 0x88B5 in the forward table."""

    def rules_for(self, datapath: Any) -> list[FlowRule]:
        extra = FlowRule(TABLE_FORWARD, 1, {"eth_type": 0x88B5}, (), EXTRA_COOKIE)
        return super().rules_for(datapath) + [extra]
