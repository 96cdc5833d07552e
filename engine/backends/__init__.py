"""Inference backends: one camera frame + K DPMs -> K refocused planes.

``create_backend(name, generator, precision=..., device=...)`` returns a :class:`Backend`:

=============  ===============================================================  ==========
name           what                                                             devices
=============  ===============================================================  ==========
``torch``      eager PyTorch, bf16/fp16 weights + channels_last                 CPU, CUDA
``compile``    ``torch.compile`` (inductor; CPU: ``freezing=True``)             CPU, CUDA
``cudagraph``  eager kernels captured once into a CUDA graph                    CUDA
``tensorrt``   torch-tensorrt (dynamo IR) engine, cached on disk                CUDA
=============  ===============================================================  ==========

``name="auto"`` takes the first available of :data:`AUTO_ORDER` for the device;
``precision="auto"`` is fp16 on CUDA, bf16 on a CPU with AMX/AVX512-bf16, else fp32.

Measured on the development machine (2-core AMD EPYC VM with AVX512-bf16, no AMX, shared
with other jobs): paper-size generator, one 512x512 plane, eager bf16 + channels_last
0.43-0.45 s (~0.6 TFLOP/s, at the measured bf16 matmul ceiling) vs fp32 1.8 s and bf16
autocast 1.5-2.6 s; the table is in ``_torch.py``'s docstring.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import logging
from typing import Any

import torch

from ._base import (
    PRECISIONS,
    Backend,
    BackendUnavailableError,
    compute_devices,
    cpu_bf16_matrix,
    cpu_flags,
    cpu_name,
    pinned_host_array,
    relative_error,
    resolve_device,
    resolve_precision,
    weights_fingerprint,
)
from ._torch import CompileBackend, CudaGraphBackend, TorchBackend, compile_unavailable_reason

__all__ = [
    "AUTO_ORDER",
    "BACKENDS",
    "PRECISIONS",
    "Backend",
    "BackendUnavailableError",
    "CompileBackend",
    "CudaGraphBackend",
    "TorchBackend",
    "available_backends",
    "compute_devices",
    "cpu_bf16_matrix",
    "cpu_flags",
    "cpu_name",
    "create_backend",
    "pinned_host_array",
    "relative_error",
    "resolve_device",
    "resolve_precision",
    "weights_fingerprint",
]

log = logging.getLogger("live_deepz.engine")

BACKENDS = ("torch", "compile", "cudagraph", "tensorrt")

#: ``auto``'s preference per device type, fastest first (measured; see module docstring).
AUTO_ORDER: dict[str, tuple[str, ...]] = {
    "cuda": ("tensorrt", "cudagraph", "compile", "torch"),
    "cpu": ("torch",),
}


def _tensorrt_class() -> type[Backend]:
    from ._tensorrt import TensorRTBackend  # lazy: imports nothing heavy until built

    return TensorRTBackend


def _classes() -> dict[str, Any]:
    return {
        "torch": TorchBackend,
        "compile": CompileBackend,
        "cudagraph": CudaGraphBackend,
        "tensorrt": _tensorrt_class,
    }


def _tensorrt_reason() -> str | None:
    if not torch.cuda.is_available():
        return "needs CUDA (torch.cuda.is_available() is False)"
    if importlib.util.find_spec("torch_tensorrt") is None:
        return "torch-tensorrt is not installed (pip install 'live-deepz[tensorrt]')"
    return None


def unavailable_reason(name: str, device: str = "auto") -> str | None:
    """Why backend ``name`` cannot run on ``device`` here (None: it can)."""
    if name not in BACKENDS:
        return f"unknown backend {name!r}; choose from auto, {', '.join(BACKENDS)}"
    try:
        dev = resolve_device(device)
    except BackendUnavailableError as exc:
        return str(exc)
    if name == "torch":
        return None
    if name == "compile":
        return compile_unavailable_reason(dev)
    if not dev.startswith("cuda"):
        return "needs CUDA (torch.cuda.is_available() is False)"
    if name == "tensorrt":
        return _tensorrt_reason()
    return None


def available_backends() -> dict[str, str]:
    """``name -> "available" | "unavailable: reason"`` for the default device (for ``info``)."""
    out: dict[str, str] = {}
    for name in BACKENDS:
        reason = unavailable_reason(name)
        if reason is None:
            text = "available"
            if name == "tensorrt":
                with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                    text += f" (torch-tensorrt {importlib.metadata.version('torch-tensorrt')})"
            out[name] = text
        else:
            out[name] = f"unavailable: {reason}"
    dev = resolve_device("auto")
    auto = next((n for n in AUTO_ORDER[dev.split(":")[0]] if not unavailable_reason(n)), "torch")
    out["auto"] = f"{auto} on {dev}, {resolve_precision('auto', dev)}"
    return out


def create_backend(
    name: str,
    generator: torch.nn.Module,
    *,
    precision: str = "auto",
    device: str = "auto",
    **opts: Any,
) -> Backend:
    """Make a backend; ``name`` is ``auto`` or one of :data:`BACKENDS`.

    ``auto`` tries :data:`AUTO_ORDER` for the device and takes the first one that
    constructs; with ``prepare_shape=(H, W, K)`` it also prepares it and falls back to the
    next one if that fails (e.g. a TensorRT build error). The chosen backend has
    ``describe()["chosen_by"] == "auto"`` and is logged. Other ``opts`` go to the backend
    (``max_batch``, ``channels_last``, ``mode``, ``cache_dir``, ...).

    Raises
    ------
    BackendUnavailableError
        The named backend cannot run here (the message says why).
    """
    shape = opts.pop("prepare_shape", None)
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    classes = _classes()
    if name != "auto":
        reason = unavailable_reason(name, dev)
        if reason:
            raise BackendUnavailableError(f"backend {name!r} unavailable: {reason}")
        cls = classes[name]() if name == "tensorrt" else classes[name]
        backend: Backend = cls(generator, precision=prec, device=dev, **opts)
        if shape is not None:
            backend.prepare(*shape)
        return backend
    errors: list[str] = []
    for cand in AUTO_ORDER[dev.split(":")[0]]:
        reason = unavailable_reason(cand, dev)
        if reason:
            errors.append(f"{cand}: {reason}")
            continue
        try:
            cls = classes[cand]() if cand == "tensorrt" else classes[cand]
            backend = cls(generator, precision=prec, device=dev, **opts)
            if shape is not None:
                backend.prepare(*shape)
        except BackendUnavailableError as exc:
            errors.append(f"{cand}: {exc}")
            continue
        except Exception as exc:  # a failed build: fall back to the next backend
            if cand == "torch":
                raise
            log.warning("auto: backend %s failed (%s); trying the next one", cand, exc)
            errors.append(f"{cand}: {type(exc).__name__}: {exc}")
            continue
        backend.chosen_by = "auto"
        backend._info["auto_skipped"] = errors
        log.info("auto backend: %s, %s on %s", backend.name, backend.precision, backend.device)
        return backend
    raise BackendUnavailableError("no backend could be created: " + "; ".join(errors))
