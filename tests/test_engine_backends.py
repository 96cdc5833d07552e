"""Inference backends: equivalence with an fp32 eager reference, staging, inputs, auto choice."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from live_deepz.engine._ceiling import measure_matmul_ceiling
from live_deepz.engine.backends import (
    Backend,
    BackendUnavailableError,
    available_backends,
    create_backend,
    relative_error,
    resolve_precision,
)
from live_deepz.engine.backends._base import cpu_bf16_matrix
from live_deepz.errors import InputError
from live_deepz.network import DeepZConfig, DeepZGenerator

H, W, K = 72, 88, 3  # not multiples of 16: exercises the generator's padding
TOL = {"fp32": 1e-4, "bf16": 1e-2, "fp16": 1e-2}


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


def _inputs(seed: int, h: int = H, w: int = W, k: int = K) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.random((h, w), dtype=np.float32)
    dpms = rng.uniform(-1.0, 1.0, (k, 1, 1)).astype(np.float32) + 0.1 * rng.standard_normal(
        (k, h, w), dtype=np.float32
    )
    return image, dpms


def _reference(generator: torch.nn.Module, image: np.ndarray, dpms: np.ndarray) -> np.ndarray:
    """fp32 eager, NCHW, straight through the generator: (K, 2, H, W) -> (K, H, W)."""
    x = np.stack([np.broadcast_to(image, dpms.shape), dpms], axis=1)
    with torch.no_grad():
        return generator(torch.from_numpy(np.ascontiguousarray(x)))[:, 0].numpy()


def _run(backend: Backend, image: np.ndarray, dpms: np.ndarray) -> np.ndarray:
    out = np.full(dpms.shape, np.nan, np.float32)
    backend.infer(image, dpms, out)
    return out


CPU_CASES = [
    ("torch", "fp32", {}),
    ("torch", "fp32", {"channels_last": False}),
    ("torch", "bf16", {}),
    ("torch", "bf16", {"max_batch": 2}),  # two chunks: 2 + 1 planes
]


@pytest.mark.parametrize(("name", "precision", "opts"), CPU_CASES)
def test_backend_matches_fp32_reference(generator, name, precision, opts) -> None:
    backend = create_backend(name, generator, precision=precision, device="cpu", **opts)
    for seed in (1, 2):  # fresh random inputs, twice through the same static buffers
        image, dpms = _inputs(seed)
        ref = _reference(generator, image, dpms)
        err = relative_error(_run(backend, image, dpms), ref)
        assert err < TOL[precision], (name, precision, opts, err)
    d = backend.describe()
    assert d["name"] == name and d["precision"] == precision and d["device"] == "cpu"
    assert d["shape"] == {"height": H, "width": W, "n_planes": K}
    assert d["counters"]["frames"] == 2


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_compile_backend_matches_reference(generator) -> None:
    precision = "bf16"  # the CPU's fast path (fp32 compiles the same way)
    if available_backends()["compile"] != "available":
        pytest.skip(available_backends()["compile"])
    backend = create_backend("compile", generator, precision=precision, device="cpu")
    image, dpms = _inputs(3, 48, 64, 2)
    err = relative_error(_run(backend, image, dpms), _reference(generator, image, dpms))
    assert err < TOL[precision], err
    d = backend.describe()
    assert d["name"] == "compile" and "compile_s" in d


def test_same_dpms_object_is_uploaded_once(generator) -> None:
    backend = create_backend("torch", generator, precision="fp32", device="cpu")
    image, dpms = _inputs(4)
    dpms.flags.writeable = False  # what a static plane plan hands over every frame
    for seed in (5, 6):
        image = _inputs(seed)[0]
        err = relative_error(_run(backend, image, dpms), _reference(generator, image, dpms))
        assert err < TOL["fp32"]
    assert backend.describe()["counters"]["dpm_uploads"] == 1
    # a new array with other values is uploaded and used
    _, dpms2 = _inputs(7)
    err = relative_error(_run(backend, image, dpms2), _reference(generator, image, dpms2))
    assert err < TOL["fp32"]
    assert backend.describe()["counters"]["dpm_uploads"] == 2


def test_same_writeable_dpms_object_mutated_in_place_is_reuploaded(generator) -> None:
    backend = create_backend("torch", generator, precision="fp32", device="cpu")
    image, dpms = _inputs(8)
    _run(backend, image, dpms)
    dpms *= -1.0  # same object, new values: a writeable array is never trusted unchanged
    err = relative_error(_run(backend, image, dpms), _reference(generator, image, dpms))
    assert err < TOL["fp32"]


def test_shape_change_reprepares(generator) -> None:
    backend = create_backend("torch", generator, precision="fp32", device="cpu")
    for h, w, k in [(40, 56, 2), (33, 47, 1), (40, 56, 2)]:
        image, dpms = _inputs(9, h, w, k)
        err = relative_error(_run(backend, image, dpms), _reference(generator, image, dpms))
        assert err < TOL["fp32"]
    backend.prepare(40, 56, 2)  # idempotent for the current shape
    assert backend.describe()["counters"]["prepares"] == 3


def test_auto_choice_is_reported(generator) -> None:
    backend = create_backend("auto", generator)
    d = backend.describe()
    assert d["chosen_by"] == "auto"
    assert d["name"] in ("torch", "compile", "cudagraph", "tensorrt")
    assert d["precision"] == resolve_precision("auto", d["device"])
    if not torch.cuda.is_available():
        assert d["device"] == "cpu" and d["name"] == "torch"
        assert d["precision"] == ("bf16" if cpu_bf16_matrix() else "fp32")
    info = available_backends()
    assert info["torch"] == "available"
    assert info["auto"].startswith(d["name"])
    if not torch.cuda.is_available():
        assert info["cudagraph"].startswith("unavailable")
        assert info["tensorrt"].startswith("unavailable")


def test_unknown_or_unavailable_backends_raise(generator) -> None:
    with pytest.raises(BackendUnavailableError, match="unknown backend"):
        create_backend("nope", generator)
    with pytest.raises(InputError, match="precision"):
        create_backend("torch", generator, precision="fp8")
    with pytest.raises(InputError, match="fp16"):
        create_backend("torch", generator, precision="fp16", device="cpu")
    if not torch.cuda.is_available():
        for name in ("cudagraph", "tensorrt"):
            with pytest.raises(BackendUnavailableError, match="CUDA"):
                create_backend(name, generator)
        with pytest.raises(BackendUnavailableError, match="CUDA"):
            create_backend("torch", generator, device="cuda")


def test_backend_leaves_callers_generator_alone(generator) -> None:
    before = {k: v.clone() for k, v in generator.state_dict().items()}
    create_backend("torch", generator, precision="bf16", device="cpu")
    for k, v in generator.state_dict().items():
        assert v.dtype == torch.float32 and torch.equal(v, before[k])


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda i, d, o: (i.astype(np.float64), d, o), "image must be float32"),
        (lambda i, d, o: (i[None], d, o), "image has shape"),
        (lambda i, d, o: (i.tolist(), d, o), "numpy array"),
        (lambda i, d, o: (i, d[:, :-1], o), "each DPM must match"),
        (lambda i, d, o: (i, d[0], o), "dpms_net has shape"),
        (lambda i, d, o: (i, d.astype(np.float16), o), "dpms_net must be float32"),
        (lambda i, d, o: (i, d, o[:-1]), "out has shape"),
        (lambda i, d, o: (i, d, o.astype(np.float64)), "out must be float32"),
        (lambda i, d, o: (i, d[:0], o[:0]), "no planes"),
    ],
)
def test_bad_inputs_raise_input_error(generator, change, match) -> None:
    backend = create_backend("torch", generator, precision="fp32", device="cpu")
    image, dpms = _inputs(10)
    out = np.empty_like(dpms)
    with pytest.raises(InputError, match=match):
        backend.infer(*change(image, dpms, out))


def test_nan_image_and_readonly_out_raise(generator) -> None:
    backend = create_backend("torch", generator, precision="fp32", device="cpu")
    image, dpms = _inputs(11)
    out = np.empty_like(dpms)
    bad = image.copy()
    bad[3, 4] = np.nan
    with pytest.raises(InputError, match="NaN"):
        backend.infer(bad, dpms, out)
    bad[3, 4] = np.inf
    with pytest.raises(InputError, match="NaN or inf"):
        backend.infer(bad, dpms, out)
    with pytest.raises(InputError, match="negative strides"):
        backend.infer(image, dpms, out[:, ::-1])
    out.flags.writeable = False
    with pytest.raises(InputError, match="read-only"):
        backend.infer(image, dpms, out)


def test_strided_views_are_accepted(generator) -> None:
    backend = create_backend("torch", generator, precision="fp32", device="cpu")
    image, dpms = _inputs(13)
    flipped = image[::-1]  # negative strides
    ref = _reference(generator, np.ascontiguousarray(flipped), dpms)
    out = np.empty((K, H, W + 5), np.float32)[:, :, 2 : W + 2]  # non-contiguous out
    backend.infer(flipped, dpms, out)
    assert relative_error(out, ref) < TOL["fp32"]


def test_matmul_ceiling_is_positive() -> None:
    tflops = measure_matmul_ceiling("cpu", "fp32", n=256, repeats=2)
    assert 0 < tflops < 1e3
    with pytest.raises(InputError):
        measure_matmul_ceiling("cpu", "int8")


def test_weights_fingerprint_and_host_arrays(generator) -> None:
    from live_deepz.engine.backends import pinned_host_array, weights_fingerprint

    a = weights_fingerprint(generator)
    assert a == weights_fingerprint(generator) and len(a) == 64
    other = DeepZGenerator(DeepZConfig(width=0.125))
    assert weights_fingerprint(other) != a
    buf = pinned_host_array((2, 8, 8))
    assert buf.shape == (2, 8, 8) and buf.dtype == np.float32


def test_num_threads_option_applies_in_infer(generator) -> None:
    n = torch.get_num_threads()
    try:
        backend = create_backend("torch", generator, precision="fp32", num_threads=1)
        torch.set_num_threads(2)
        image, dpms = _inputs(12, 32, 32, 1)
        _run(backend, image, dpms)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(n)
