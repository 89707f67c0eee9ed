"""Shared fixtures. Root tests are marked ``root``; they need root and the OVS daemons."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def state_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run manifests go to a scratch state folder (``topologies.manifest.STATE_ROOT``)."""
    root = tmp_path / "state"
    monkeypatch.setattr("topologies.manifest.STATE_ROOT", root)
    return root


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    if os.environ.get("CI") == "true":
        raise pytest.UsageError("CI runs as root: root tests must not be skipped there")
    skip = pytest.mark.skip(reason="needs root (network namespaces, OVS); CI runs these as root")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)
