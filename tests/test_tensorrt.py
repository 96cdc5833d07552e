"""CUDA backends (cudagraph, compile on CUDA, TensorRT + its engine cache).

Everything here skips cleanly without CUDA; the TensorRT tests also need torch-tensorrt.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from live_deepz.engine.backends import create_backend, relative_error
from live_deepz.network import DeepZConfig, DeepZGenerator

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]

H, W, K = 64, 80, 3


@pytest.fixture(scope="module")
def generator() -> DeepZGenerator:
    torch.manual_seed(0)
    return DeepZGenerator(DeepZConfig(width=0.125)).eval()


def _case(generator: torch.nn.Module, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    image = rng.random((H, W), dtype=np.float32)
    dpms = rng.uniform(-1, 1, (K, 1, 1)).astype(np.float32) * np.ones((K, H, W), np.float32)
    x = np.stack([np.broadcast_to(image, dpms.shape), dpms], axis=1)
    with torch.no_grad():
        ref = generator(torch.from_numpy(np.ascontiguousarray(x)))[:, 0].numpy()
    return image, dpms, ref


@pytest.mark.parametrize(
    ("name", "precision"),
    [("torch", "fp32"), ("torch", "fp16"), ("torch", "bf16"), ("cudagraph", "fp16")],
)
def test_cuda_backends_match_reference(generator, name, precision) -> None:
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("GPU without bf16")
    backend = create_backend(name, generator, precision=precision, device="cuda", max_batch=2)
    tol = 1e-3 if precision == "fp32" else 1e-2  # fp32 convs may use TF32 off; cuDNN algos
    for seed in (0, 1):  # twice: graph replay with new image and new DPMs
        image, dpms, ref = _case(generator, seed)
        out = np.empty_like(dpms)
        backend.infer(image, dpms, out)
        assert relative_error(out, ref) < tol


@pytest.mark.slow
def test_compile_on_cuda(generator) -> None:
    pytest.importorskip("triton")
    backend = create_backend("compile", generator, precision="fp16", device="cuda")
    image, dpms, ref = _case(generator)
    out = np.empty_like(dpms)
    backend.infer(image, dpms, out)
    assert relative_error(out, ref) < 1e-2


@pytest.mark.slow
def test_tensorrt_matches_and_engine_cache_is_reused(generator, tmp_path, monkeypatch) -> None:
    pytest.importorskip("torch_tensorrt")
    monkeypatch.setenv("LIVE_DEEPZ_CACHE", str(tmp_path))
    image, dpms, ref = _case(generator)
    first = create_backend("tensorrt", generator, precision="fp16", device="cuda")
    out = np.empty_like(dpms)
    first.infer(image, dpms, out)
    assert relative_error(out, ref) < 1e-2
    assert first.describe()["engine_cache"] == "miss"
    assert list((tmp_path / "trt").glob("*.ep"))
    second = create_backend("tensorrt", generator, precision="fp16", device="cuda")
    out2 = np.empty_like(dpms)
    second.infer(image, dpms, out2)
    assert second.describe()["engine_cache"] == "hit"
    assert relative_error(out2, ref) < 1e-2


def test_auto_on_cuda_reports_choice(generator) -> None:
    backend = create_backend("auto", generator, prepare_shape=(H, W, K))
    d = backend.describe()
    assert d["chosen_by"] == "auto" and d["device"].startswith("cuda")
    assert d["precision"] == "fp16"
