"""Deployable exports of a (pruned) generator: TorchScript and ONNX, each checked on export.

ONNX uses PyTorch's TorchScript-based exporter (``dynamo=False``): for plain conv nets it is
exact, fast and needs no extra dependency; torch is pinned, so its deprecation notice is
silenced here. Each export is verified against the eager model before it is reported done.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn


@dataclass
class ExportReport:
    torchscript: Path | None
    onnx: Path | None
    torchscript_max_error: float | None
    onnx_max_error: float | None


def _atomic_path(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


INPUT_SHAPE_FILE = "input_shape.json"
"""Extra file of a TorchScript export holding the traced input's ``[C, H, W]``: TorchScript does
not record it, and a user running the file must know the size it was traced at."""


def export_torchscript(model: nn.Module, example: torch.Tensor, path: str | Path) -> float:
    """Trace ``model`` to ``path`` (with the input shape as :data:`INPUT_SHAPE_FILE`); returns
    the max abs difference of the reloaded module."""
    path, model = Path(path), model.eval()
    tmp = _atomic_path(path)
    with torch.no_grad():
        traced = torch.jit.trace(model, example)
        shape = json.dumps([int(s) for s in example.shape[1:]])
        torch.jit.save(traced, str(tmp), _extra_files={INPUT_SHAPE_FILE: shape})
        os.replace(tmp, path)
        reloaded = torch.jit.load(str(path))
        return float((reloaded(example) - model(example)).abs().max())


def export_onnx(model: nn.Module, example: torch.Tensor, path: str | Path,
                opset: int = 17) -> float:
    """Export with a dynamic batch axis; returns onnxruntime's max abs difference to eager."""
    import onnxruntime as ort

    path, model = Path(path), model.eval()
    tmp = _atomic_path(path)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*legacy.*ONNX")
        torch.onnx.export(model, (example,), str(tmp), dynamo=False, opset_version=opset,
                          input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    os.replace(tmp, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = model(example).numpy()
    produced = session.run(None, {"input": example.numpy()})[0]
    return float(np.abs(produced - expected).max())


def export_generator(model: nn.Module, example: torch.Tensor, out_dir: str | Path,
                     name: str = "generator", torchscript: bool = True, onnx: bool = True
                     ) -> ExportReport:
    """Write ``name.ts`` and/or ``name.onnx`` to ``out_dir`` and verify both."""
    out_dir = Path(out_dir)
    ts_path = out_dir / f"{name}.ts" if torchscript else None
    onnx_path = out_dir / f"{name}.onnx" if onnx else None
    ts_err = export_torchscript(model, example, ts_path) if ts_path else None
    onnx_err = export_onnx(model, example, onnx_path) if onnx_path else None
    return ExportReport(ts_path, onnx_path, ts_err, onnx_err)
