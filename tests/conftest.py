"""Shared fixtures. Root tests are marked ``root``; they need root and the OVS daemons."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    if os.environ.get("CI") == "true":
        raise pytest.UsageError("CI runs as root: root tests must not be skipped there")
    skip = pytest.mark.skip(reason="needs root (network namespaces, OVS); CI runs these as root")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)
