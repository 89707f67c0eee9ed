"""The northbound REST API served during a real run (``--northbound``): a client reads the slices,
changes eMBB's RAN share in the running NR cells, is refused a bad change and an over-large flow,
and everything it did is in the run's records and the relay's own counters."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from shortrun import run_short  # same folder: on sys.path under pytest

pytestmark = pytest.mark.root
EXPERIMENT = """
[experiment]
name = "northbound"
kind = "slices"
duration_s = 8.0
drain_s = 1.0
"""


def call(creds: dict[str, str], method: str, path: str, body: Any = None, token: str | None = None
         ) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(creds["url"] + path, data=data, method=method, headers={
        "Authorization": f"Bearer {token or creds['token']}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def client(results: Path, answers: dict[str, Any]) -> None:
    deadline = time.monotonic() + 120
    while not (found := list(results.glob("*/*/northbound.json"))):
        if time.monotonic() > deadline:
            answers["error"] = "no northbound.json within 120 s"
            return
        time.sleep(0.2)
    time.sleep(0.2)  # the file is written whole (O_EXCL, then one write); let it land
    creds = json.loads(found[0].read_text())
    answers["slices"] = call(creds, "GET", "/v1/slices")
    answers["patch"] = call(creds, "PATCH", "/v1/slices/embb/ran", {"min_pct": 30})
    answers["patch_too_much"] = call(creds, "PATCH", "/v1/slices/embb/ran", {"min_pct": 95})
    answers["patch_unknown_key"] = call(creds, "PATCH", "/v1/slices/embb/ran", {"share": 3})
    flow = {"name": "cam1-extra", "ue": "cam1", "slice": "embb", "direction": "uplink", "rate_mbps": 10.0,
            "packet_bytes": 1200}
    answers["admit"] = call(creds, "POST", "/v1/flows", flow)
    answers["refuse"] = call(creds, "POST", "/v1/flows", {**flow, "name": "cam1-huge", "rate_mbps": 60.0})
    answers["no_token"] = call(creds, "GET", "/v1/slices", token="x" * 20)


def test_northbound_api_changes_the_running_cells_and_refuses_bad_requests(tmp_path: Path) -> None:
    answers: dict[str, Any] = {}
    thread = threading.Thread(target=client, args=(tmp_path / "results", answers), daemon=True)
    thread.start()
    run_dir, _summary = run_short(tmp_path, "northbound", EXPERIMENT, northbound=True)
    thread.join(30)
    assert "error" not in answers, answers
    status, slices = answers["slices"]
    assert status == 200 and set(slices["slices"]) == {"urllc", "embb", "mmtc"}
    assert answers["patch"] == (200, {"slice": "embb", "cells": ["gnb1", "gnb2"], "ran": {
        "dedicated_pct": 0.0, "min_pct": 30.0, "max_pct": 100.0, "priority": 5}})
    assert answers["patch_too_much"][0] == 422 and "100" in answers["patch_too_much"][1]["error"]
    assert answers["patch_unknown_key"][0] == 400 and "min_pct" in answers["patch_unknown_key"][1]["error"]
    assert answers["admit"][0] == 201 and answers["admit"][1]["admitted"] is True
    assert answers["refuse"][0] == 409 and "Mbit/s" in answers["refuse"][1]["error"]
    assert answers["no_token"][0] == 401
    meta = json.loads((run_dir / "metadata.json").read_text())
    northbound = meta["northbound"]
    assert [r["status"] for r in northbound["requests"]] == [200, 200, 422, 400, 201, 409, 401]
    assert len(northbound["ran_changes"]) == 1 and northbound["admitted_flows"][0]["name"] == "cam1-extra"
    # the relay's cells changed once each, and only by the accepted change
    changes = meta["link_engine"]["cells"]["share_changes"]
    assert [c["cell"] for c in changes] == ["gnb1", "gnb2"]
    assert changes[0]["slices"]["embb"]["min_prbs"] == 81  # 30 % of 273 PRBs
    nr = meta["link_engine"]["link_counters"]["nr_cells"]["gnb1"]
    assert [s["changes"] for s in nr["slices"]] == [1, 1, 1]  # every slice's line is sent again
    assert not (run_dir / "northbound.json").stat().st_mode & 0o077
