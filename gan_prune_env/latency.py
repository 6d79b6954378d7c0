"""CPU latency of a network, measured the way a deployment would see it.

MACs alone do not prove speed (a compressed generator can run no faster than the original),
so every report pairs MACs with a measured latency of the *physically sliced* network.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass
class Latency:
    median_ms: float
    iqr_ms: float
    runs: int

    def as_dict(self) -> dict[str, float]:
        return {"median_ms": self.median_ms, "iqr_ms": self.iqr_ms, "runs": self.runs}


def measure_latencies(models: Sequence[nn.Module], example: torch.Tensor, runs: int = 30,
                      warmup: int = 3, threads: int | None = None) -> list[Latency]:
    """Median and interquartile range of forward time, batch as given, eval mode.

    Models are timed *interleaved* (a, b, a, b, ...) so that load from other processes on a
    shared machine hits all of them alike, and ratios between them stay meaningful.
    """
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    times: list[list[float]] = [[] for _ in models]
    try:
        with torch.inference_mode():
            for model in models:
                model.eval()
                for _ in range(warmup):
                    model(example)
            for _ in range(runs):
                for i, model in enumerate(models):
                    start = time.perf_counter()
                    model(example)
                    times[i].append((time.perf_counter() - start) * 1e3)
    finally:
        torch.set_num_threads(previous)
    results = []
    for samples in times:
        q1, median, q3 = np.percentile(samples, [25, 50, 75])
        results.append(Latency(float(median), float(q3 - q1), runs))
    return results
