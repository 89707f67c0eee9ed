"""The 124-UE factory of ``bench scale`` (100 AGVs, 20 cameras, 4 sensors, 2 cells, LEO) starts,
runs 5 s and leaves nothing behind. Needs root. Its timing is the benchmark's, not this test's."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest
from netstate import snapshot

pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")


def test_the_124_ue_factory_starts_runs_and_leaves_nothing(tmp_path) -> None:
    from experiments.bench import scale, scale_run
    from experiments.framework.session import RunOptions
    from experiments.framework.skeleton import run_experiment

    scenario = scale.factory(124)
    assert len(scenario.ues) == 124 and len(scenario.cells) == 2
    result = run_experiment(scale_run.experiment(124, 5.0),
                            RunOptions(scenario=scenario, results_root=tmp_path, progress=False))
    run = result.run_dir
    assert (run / "COMPLETE").exists()
    flows = pd.read_parquet(run / "flows.parquet")
    assert len(flows) == 124 and (flows["packets_received"] > 0).all()  # every UE got through
    meta = json.loads((run / "metadata.json").read_text())
    cells = meta["link_engine"]["cells"]["links"]
    assert set(cells) == {"gnb1", "gnb2"}  # gNBs are cells inside the relay, not OVS bridges
    tag = meta["run_tag"]
    after = snapshot()
    left = {kind: {n for n in names if n.startswith(tag)} for kind, names in after.items()}
    assert left == {"netns": set(), "links": set(), "bridges": set(), "manifests": set()}, left
