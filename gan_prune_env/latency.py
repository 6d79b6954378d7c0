"""CPU latency of a network, measured the way a deployment would see it.

MACs alone do not prove speed (a compressed generator can run no faster than the original),
so every report pairs MACs with a measured latency of the *physically sliced* network.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


BUSY_CORES = 0.25
"""CPU cores used by *other* processes during a measurement above which it is flagged: a
latency taken on a busy machine is inflated, and says so."""


@dataclass
class Latency:
    median_ms: float
    iqr_ms: float
    runs: int
    other_cores: float | None = None
    """CPU cores (0 .. cpu_count) other processes kept busy while this was measured; None where
    the OS does not say (``/proc/stat`` is Linux's)."""

    @property
    def busy(self) -> bool:
        return self.other_cores is not None and self.other_cores > BUSY_CORES

    def as_dict(self) -> dict[str, float | bool | None]:
        return {"median_ms": self.median_ms, "iqr_ms": self.iqr_ms, "runs": self.runs,
                "other_cores": self.other_cores, "busy_machine": self.busy}


def _machine_busy_seconds() -> float | None:
    """CPU seconds every process has used since boot (Linux), or None."""
    try:
        with open("/proc/stat") as handle:
            fields = [int(v) for v in handle.readline().split()[1:8]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """CPU cores other processes used between ``start()`` and ``stop()``: the machine's busy
    time minus this process's own CPU time, over the wall time."""

    def start(self) -> None:
        self._busy, self._own = _machine_busy_seconds(), time.process_time()
        self._wall = time.perf_counter()

    def stop(self) -> float | None:
        busy = _machine_busy_seconds()
        if busy is None or self._busy is None:
            return None
        wall = time.perf_counter() - self._wall
        own = time.process_time() - self._own
        return max(0.0, (busy - self._busy - own) / wall) if wall > 0 else None


def measure_latencies(models: Sequence[nn.Module], example: torch.Tensor, runs: int = 30,
                      warmup: int = 3, threads: int | None = None) -> list[Latency]:
    """Median and interquartile range of forward time, batch as given, eval mode.

    Models are timed *interleaved* (a, b, a, b, ...) so that load from other processes on a
    shared machine hits all of them alike, and ratios between them stay meaningful; that load is
    recorded with each result (``other_cores``, ``busy``), as absolute times do not survive it.
    """
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    times: list[list[float]] = [[] for _ in models]
    load = OtherLoad()
    try:
        with torch.inference_mode():
            for model in models:
                model.eval()
                for _ in range(warmup):
                    model(example)
            load.start()
            for _ in range(runs):
                for i, model in enumerate(models):
                    start = time.perf_counter()
                    model(example)
                    times[i].append((time.perf_counter() - start) * 1e3)
        other_cores = load.stop()
    finally:
        torch.set_num_threads(previous)
    results = []
    for samples in times:
        q1, median, q3 = np.percentile(samples, [25, 50, 75])
        results.append(Latency(float(median), float(q3 - q1), runs, other_cores))
    return results
