"""Latency figures carry the load they were measured under."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from agents.run.pipeline import summary_table
from gan_prune_env.latency import BUSY_CORES, measure_latencies

BUSY_LOOP = "import time\nend = time.time() + 20\nwhile time.time() < end: pass\n"


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="the load is read from /proc/stat")
def test_a_measurement_on_a_busy_machine_says_so():
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 3, 3, padding=1))
    example = torch.zeros(1, 3, 64, 64)
    busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
    try:
        time.sleep(0.5)
        timed = measure_latencies([net, net], example, runs=200, threads=1)
    finally:
        busy.kill()
        busy.wait()
    assert timed[0].other_cores is not None and timed[0].other_cores > 0.5  # the busy loop's core
    assert timed[0].busy and timed[0].as_dict()["busy_machine"] is True
    assert timed[0].other_cores > BUSY_CORES


def results_with_latency(other_cores: float) -> dict:
    macs = {"macs": 4e6, "params": 1e5}
    latency = {"median_ms": 2.0, "iqr_ms": 0.1, "runs": 10, "other_cores": other_cores,
               "busy_machine": other_cores > BUSY_CORES}
    return {"compute": {f"{n}/{w}": macs for n in ("generator", "discriminator")
                        for w in ("teacher", "pruned")},
            "quality": {"teacher": {}, "pruned": {}},
            "latency_ms": {"teacher": latency, "pruned": latency}}


def test_the_summary_warns_when_latency_was_taken_on_a_busy_machine():
    assert "other processes kept 1.5 CPU cores busy" in summary_table(results_with_latency(1.5))
    assert "Warning" not in summary_table(results_with_latency(0.0))
