"""ONNX export of the Deep-Z generator (for onnxruntime / TensorRT's trtexec / other runtimes).

The generator's replicate padding to a multiple of 16 is traced as shape arithmetic
(``Shape -> Mod -> Pad(mode="edge")`` and a final ``Slice``), so the exported graph accepts
any batch, height and width (verified against PyTorch with ``onnx.reference`` in the tests
on sizes that are not multiples of 16). Input ``input`` ``(N, 2, H, W)`` float32
``[image, dpm / dpm_scale_um]``; output ``output`` ``(N, 1, H, W)``.
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from live_deepz.errors import InputError

__all__ = ["export_onnx"]


def export_onnx(
    generator: nn.Module,
    path: str | os.PathLike[str],
    height: int,
    width: int,
    batch: int | None = None,
    opset: int = 17,
    *,
    dynamic: bool = True,
    check: bool = True,
) -> Path:
    """Write ``generator`` (fp32, CPU copy) to an ONNX file and check it.

    Parameters
    ----------
    generator
        A ``DeepZGenerator`` (any device/dtype; exported as fp32).
    path
        Output ``.onnx`` file (folders are created).
    height, width
        The example input's size; with ``dynamic=True`` any size works at run time.
    batch
        Fixed batch size, or None for a dynamic batch axis (example batch 1).
    opset
        ONNX opset version (17 default; >= 11 needed for dynamic ``Pad``).
    dynamic
        Mark H and W (and the batch when ``batch is None``) as dynamic axes.
    check
        Run ``onnx.checker.check_model(full_check=True)`` on the written file.

    Returns
    -------
    Path
        The written file.
    """
    if height < 1 or width < 1 or (batch is not None and batch < 1):
        raise InputError(f"export_onnx needs positive sizes, got {height}x{width} batch {batch}")
    if opset < 11:
        raise InputError(f"opset {opset} is too old for dynamic padding; use 11 or newer")
    out = Path(path).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(generator).to("cpu", torch.float32).eval().requires_grad_(False)
    in_ch = int(getattr(getattr(model, "config", None), "in_channels", 2))
    example = torch.zeros(batch or 1, in_ch, height, width)
    axes: dict[str, dict[int, str]] = {}
    if dynamic or batch is None:
        for name in ("input", "output"):
            axes[name] = {}
            if batch is None:
                axes[name][0] = "batch"
            if dynamic:
                axes[name].update({2: "height", 3: "width"})
    with warnings.catch_warnings():
        # the TorchScript-based exporter is chatty about constant folding of Slice steps
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(out),
            dynamo=False,  # the dynamo exporter needs onnxscript, not a dependency
            opset_version=opset,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes=axes or None,
            do_constant_folding=True,
        )
    if check:
        import onnx

        onnx.checker.check_model(str(out), full_check=True)
    return out
