"""The offload experiment end to end as root: complete run folder, every target answers in the
order the model predicts from the replayed schedules, and nothing is left behind."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from netstate import snapshot

from experiments.framework.definition import load_experiment
from experiments.kinds.offload.model import parse_params, predict_response_ms
from topologies.scenario import load_scenario

pytestmark = pytest.mark.root
REPO = Path(__file__).resolve().parents[2]
DURATION_S = 8
ORDER_MARGIN_MS = 5.0  # predicted medians closer than this are not ordered by the test


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def test_offload_run_complete_ordered_and_clean(tmp_path: Path) -> None:
    before = snapshot()
    proc = subprocess.run([sys.executable, "-m", "experiments", "run", "offload", "--duration-s",
                           str(DURATION_S), "--results", str(tmp_path), "--quiet"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = Path(proc.stdout.strip().splitlines()[-1])
    assert run_dir.parent == tmp_path / "offload"
    for name in ("COMPLETE", "metadata.json", "summary.json", "requests.parquet", "experiment.toml",
                 "leo_schedule.parquet", "offload_response.png", "offload_response.pdf",
                 "raw/client-cam1.jsonl", "raw/server-sat1.jsonl"):
        assert (run_dir / name).is_file(), name
    assert "edge1" in proc.stdout and "cloud1" in proc.stdout  # the per-target table was printed

    params = parse_params(load_experiment("offload").params)
    summary = json.loads((run_dir / "summary.json").read_text())
    targets = summary["targets"]
    assert list(targets) == ["edge1", "sat1", "cloud1"]
    requests = pd.read_parquet(run_dir / "requests.parquet")
    assert len(requests) == math.ceil(DURATION_S * 1000 / params.interval_ms)  # none dropped silently
    for host, s in targets.items():
        assert s["ok"] > 0 and s["response_ms_p50"] is not None, host
        assert s["requests"] == len(requests[requests["target"] == host])
        # compute is a sleep of the modelled time: never shorter, at most a few ms longer
        assert s["compute_model_ms"] <= s["compute_ms_p50"] < s["compute_model_ms"] + 5.0, host
    ok = requests[requests["ok"]]
    assert ((ok["uplink_ms"] + ok["compute_ms"] + ok["downlink_ms"] - ok["response_ms"]).abs()
            < 1e-3).all()

    # The prediction in summary.json comes from the schedules this run replayed ...
    schedule = pd.read_parquet(run_dir / "leo_schedule.parquet")
    frames = {name: part.drop(columns="link") for name, part in schedule.groupby("link")}
    predicted = predict_response_ms(params, load_scenario(None), frames, DURATION_S)
    for host, s in targets.items():
        assert s["predicted"]["response_ms"] == pytest.approx(predicted[host]["response_ms"], abs=0.01)
    # ... and the measured medians come in the order it predicts (for clearly separated targets).
    hosts = list(targets)
    for a in hosts:
        for b in hosts:
            gap = predicted[b]["response_ms"] - predicted[a]["response_ms"]
            if gap >= ORDER_MARGIN_MS:
                assert targets[a]["response_ms_p50"] < targets[b]["response_ms_p50"], (a, b, predicted)
    # the edge is never behind the LEO link in this scenario
    assert predicted["edge1"]["response_ms"] + ORDER_MARGIN_MS < predicted["cloud1"]["response_ms"]

    meta = json.loads((run_dir / "metadata.json").read_text())
    tag = meta["run_tag"]
    after = snapshot()
    for kind in ("netns", "links", "bridges"):
        assert not {n for n in after[kind] - before[kind] if n.startswith(tag)}, kind
        assert not {n for n in after[kind] if n.startswith(tag)}, kind
    assert f"{tag}.json" not in after["manifests"]
    assert not _processes_mentioning(str(run_dir)), "offload agents still running"
