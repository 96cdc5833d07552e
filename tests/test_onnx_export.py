"""ONNX export: the file passes the checker and (reference runtime) matches PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from live_deepz.engine._onnx import export_onnx
from live_deepz.errors import InputError
from live_deepz.network import DeepZConfig, DeepZGenerator

onnx = pytest.importorskip("onnx")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: tiny networks on a shared 2-core machine are 10x slower with 2
    OpenMP threads when the other core is busy (spinning barriers)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def generator() -> DeepZGenerator:
    torch.manual_seed(0)
    return DeepZGenerator(DeepZConfig(width=0.125)).eval()


def test_export_dynamic_axes_check_and_match(generator, tmp_path) -> None:
    path = export_onnx(generator, tmp_path / "sub" / "deepz.onnx", 48, 64)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["input"]
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 2, "height", "width"]
    from onnx.reference import ReferenceEvaluator

    ev = ReferenceEvaluator(model)
    rng = np.random.default_rng(0)
    for shape in [(2, 2, 48, 64), (1, 2, 37, 50)]:  # the second is not a multiple of 16
        x = rng.standard_normal(shape, dtype=np.float32)
        (y,) = ev.run(None, {"input": x})
        with torch.no_grad():
            ref = generator(torch.from_numpy(x)).numpy()
        assert y.shape == ref.shape
        assert np.linalg.norm(y - ref) / np.linalg.norm(ref) < 1e-4


def test_export_fixed_shape(generator, tmp_path) -> None:
    path = export_onnx(generator, tmp_path / "fixed.onnx", 32, 32, batch=3, dynamic=False)
    model = onnx.load(str(path))
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [3, 2, 32, 32]


def test_export_rejects_bad_arguments(generator, tmp_path) -> None:
    with pytest.raises(InputError):
        export_onnx(generator, tmp_path / "x.onnx", 0, 32)
    with pytest.raises(InputError):
        export_onnx(generator, tmp_path / "x.onnx", 32, 32, opset=9)
