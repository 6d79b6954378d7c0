"""Plots of the comparison: quality against generator MACs, and the search dynamics."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from .spec import TASKS, ordered


def subplots(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
    """``matplotlib.pyplot.subplots`` on the off-screen Agg backend: benchmarks run headless,
    and import matplotlib only when they draw, so a run that writes no plot never needs it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def save_figure(fig: Any, path: str | Path, dpi: float | str = 120) -> None:
    """Lay out ``fig``, write it to ``path`` and free it (pyplot keeps every open figure)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


MARKERS = {"uniform": "s", "random": "^", "ppo": "v", "mggc": "o", "mggc_no_peer": "P",
           "mggc_no_density": "X", "mggc_g_alone": "D", "mggc_unprojected": "*",
           "mggc_gates": "h"}
COLORS = {"uniform": "tab:gray", "random": "tab:olive", "ppo": "tab:purple", "mggc": "tab:red",
          "mggc_no_peer": "tab:orange", "mggc_no_density": "tab:blue",
          "mggc_g_alone": "tab:green", "mggc_unprojected": "tab:brown",
          "mggc_gates": "tab:pink"}


def plot_quality(records, stats, path: Path, methods: list[str]) -> None:
    tasks = ordered({r["task"] for r in records}, TASKS)
    panels = [("psnr", "PSNR to ground truth (dB)"), ("psnr_teacher", "PSNR to teacher (dB)"),
              ("proxy_fd", "proxy FD (lower is better)")]
    fig, axes = subplots(len(tasks), len(panels), figsize=(5.2 * len(panels),
                                                          4.2 * len(tasks)), squeeze=False)
    for row, task in enumerate(tasks):
        teacher = next(r for r in records if r["task"] == task)
        t_macs = teacher["compute"]["generator/teacher"]["macs"] / 1e6
        budgets = sorted({r["budget"] for r in records if r["task"] == task})
        for col, (metric, label) in enumerate(panels):
            ax = axes[row][col]
            n_methods = len(methods)
            for i, method in enumerate(methods):
                xs, ys, xe, ye, px, py = [], [], [[], []], [[], []], [], []
                for b in budgets:
                    s = stats.get((task, b, method))
                    if not s:
                        continue
                    # a small multiplicative offset per method keeps the error bars apart
                    shift = 1 + 0.02 * (i - (n_methods - 1) / 2)
                    sx, sy = s["g_macs_m"], s[metric]
                    xs.append(sx.mean * shift)
                    ys.append(sy.mean)
                    # max(0, .): the mean of equal floats can differ from them by an ulp
                    xe[0].append(max(0.0, sx.mean - sx.lo) * shift)
                    xe[1].append(max(0.0, sx.hi - sx.mean) * shift)
                    ye[0].append(max(0.0, sy.mean - sy.lo))
                    ye[1].append(max(0.0, sy.hi - sy.mean))
                    px += [v * shift for v in sx.values]
                    py += list(sy.values)
                if xs:
                    ax.scatter(px, py, s=9, color=COLORS.get(method), alpha=0.35, zorder=1)
                    ax.errorbar(xs, ys, xerr=xe, yerr=ye, marker=MARKERS.get(method, "o"),
                                color=COLORS.get(method), linestyle="-" if method == "mggc"
                                else ":", linewidth=1, capsize=3, markersize=6, label=method)
            tq = teacher["teacher_quality"].get(metric)
            if tq is not None and math.isfinite(tq):
                ax.axhline(tq, color="black", linewidth=0.8, linestyle="--",
                           label=f"teacher ({t_macs:.1f} M MACs)")
            for b in budgets:
                ax.axvline(b * t_macs, color="0.85", linewidth=0.8, zorder=0)
            ax.set_xlabel("generator MACs (M), field convention")
            ax.set_ylabel(label)
            if metric == "proxy_fd":
                ax.set_yscale("log")
            ax.set_title(f"{task}: {label.split(' (')[0]}")
            ax.grid(alpha=0.3)
            if row == 0 and col == 0:
                ax.legend(fontsize=7, loc="best")
    fig.suptitle("Quality vs generator MACs after equal search + fine-tuning: marker = mean "
                 "over seeds, bars = min–max over seeds, dots = single seeds; grey lines: "
                 "budgets", fontsize=10)
    save_figure(fig, path, dpi=110)


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window - 1, values[0]), values])
    return np.convolve(padded, kernel, mode="valid")


def plot_dynamics(records, path: Path, methods=("mggc", "mggc_g_alone")) -> None:
    keys = sorted({(r["task"], r["budget"]) for r in records if r["method"] in methods},
                  key=lambda k: (TASKS.index(k[0]) if k[0] in TASKS else 9, -k[1]))
    panels = [("g_norm", "L_G / L_G,ref (genG's loss)"),
              ("g_rec", "L1 to teacher (g_rec, D-independent)"),
              ("d_loss", "L_D (judge's loss); dashed: L_D,ref"),
              ("compute_generator", "G kept-MACs ratio")]
    fig, axes = subplots(max(len(keys), 1), len(panels),
                         figsize=(4.6 * len(panels), 3.3 * max(len(keys), 1)), squeeze=False)
    for row, (task, budget) in enumerate(keys):
        for method in methods:
            recs = [r for r in records if (r["task"], r["budget"], r["method"]) ==
                    (task, budget, method)]
            if not recs:
                continue
            n = min(len(r["dynamics"]["g_loss"]) for r in recs)
            window = max(1, n // 25)
            for col, (key, label) in enumerate(panels):
                series = []
                for r in recs:
                    d = r["dynamics"]
                    v = np.asarray(d["g_loss"][:n]) / r["reference_terms"]["g_loss"] \
                        if key == "g_norm" else np.asarray(d[key][:n], dtype=float)
                    series.append(_smooth(v, window))
                arr = np.stack(series)
                x = np.arange(1, n + 1)
                ax = axes[row][col]
                color = COLORS.get(method)
                ax.plot(x, arr.mean(0), color=color, label=f"{method} (n={len(recs)})")
                ax.fill_between(x, arr.min(0), arr.max(0), color=color, alpha=0.18)
                if key == "d_loss":
                    ax.axhline(recs[0]["reference_terms"]["d_loss"], color="black",
                               linestyle="--", linewidth=0.8)
                if key == "compute_generator":
                    ax.axhline(budget, color="black", linestyle="--", linewidth=0.8)
                ax.set_title(f"{task} @{budget:.0%}: {label}", fontsize=9)
                ax.set_xlabel("search round")
                ax.grid(alpha=0.3)
        axes[row][0].legend(fontsize=8)
    fig.suptitle("Search dynamics: mean over seeds (line), min–max over seeds (band); each "
                 "seed smoothed by a moving average of n/25 rounds", fontsize=10)
    save_figure(fig, path, dpi=110)
