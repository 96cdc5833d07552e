"""PyTorch backends: eager (``torch``), ``torch.compile`` (``compile``) and CUDA graphs.

CPU measurements (paper-size generator, width 1.0, one 512x512 plane = 0.260 TFLOP; 2-core
AMD EPYC (Zen 5) VM with AVX512-bf16 and no AMX; torch 2.13 / oneDNN 3.12; the cores were
shared with other jobs, so medians of interleaved rounds, ±20 % and worse under load):

=============================  ============  ===========  ================
variant                        s/plane       TFLOP/s      vs bf16 matmul
=============================  ============  ===========  ================
fp32 eager, NCHW               1.80          0.14         --
fp32 eager, channels_last      1.21          0.22         --
bf16 ``torch.autocast``        1.5-2.6       0.10-0.17    17-30 %
bf16 weights, NCHW             0.70          0.37         64 %
**bf16 weights, channels_last**  **0.43-0.45**  **0.58-0.60**  **~100 %**
  same, 2 / 4 planes per call  0.52 / 0.84   (per plane)  worse
  + level-1 channels 25->32    no gain (noise)
  + ``torch.jit.freeze``       0.53          0.49         84 %
  ``torch.compile`` (inductor)  0.40-0.50     0.52-0.65    90-110 %
  compile ``freezing=True``     0.40-0.68     0.38-0.65    within noise
=============================  ============  ===========  ================

The bf16 4096² matmul ceiling measured in the same runs was 0.50-0.58 TFLOP/s (best
0.66-0.72; ``torch.mm`` and oneDNN 1x1/3x3 convolutions agree): this CPU has no AMX, so the
~2 TFLOP/s quoted for AMX machines does not apply here. bf16 weights + channels_last reaches
the ceiling (oneDNN's blocked NHWC bf16 convolutions); autocast re-casts the weights every
call and stays NCHW. ``torch.compile`` was 0-10 % faster in the best rounds and within the
noise in the medians, at the price of 2-20 s compilation per shape (cached on disk by
inductor), so the CPU default (``auto``) is eager bf16 channels_last. Batching planes does
not help on 2 cores. With the other core busy, 2 OpenMP threads become erratic (0.46-4.4 s
per plane) while 1 thread stays at ~0.86 s: pass ``num_threads=1`` where the acquisition/UI
share a 2-core machine. bf16 vs the fp32 reference: relative error 4-5e-3.
"""

from __future__ import annotations

import logging
import shutil
import time
from typing import Any

import torch

from ._base import Backend, BackendUnavailableError

log = logging.getLogger("live_deepz.engine")


class TorchBackend(Backend):
    """Eager PyTorch: bf16/fp16 weights (not autocast), channels_last, inference mode.

    Options: ``warmup`` (default True) runs the network once in :meth:`prepare` so that
    oneDNN/cuDNN pick and cache their kernels before the first frame.
    """

    name = "torch"

    def __init__(self, generator: torch.nn.Module, **kwargs: Any) -> None:
        super().__init__(generator, **kwargs)
        if self._is_cuda:
            torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest algorithms

    def _build(self, height: int, width: int, batch: int) -> None:
        if self.opts.get("warmup", True):
            with torch.inference_mode():
                for s, e in self._chunks[:1] + self._chunks[-1:]:
                    self._forward(self._input[s:e])
            if self._is_cuda:
                torch.cuda.synchronize(self._tdevice)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class CompileBackend(TorchBackend):
    """``torch.compile`` of the converted generator, static shapes.

    CUDA: ``mode="max-autotune-no-cudagraphs"`` by default (``mode=`` overrides; CUDA graphs
    are the ``cudagraph`` backend's job and inductor's graph trees are thread-bound, while the
    pipeline runs inference on a worker thread). CPU: inductor with ``freezing=True`` (weights
    folded as constants, oneDNN-prepacked, ReLU/add fused into the convolutions). The first
    :meth:`prepare` compiles (tens of seconds on 2 cores); ``describe()["compile_s"]``.
    """

    name = "compile"
    uniform_chunks = True

    def __init__(self, generator: torch.nn.Module, **kwargs: Any) -> None:
        super().__init__(generator, **kwargs)
        reason = compile_unavailable_reason(self.device)
        if reason:
            raise BackendUnavailableError(f"backend 'compile' unavailable: {reason}")
        mode = self.opts.get("mode")
        options = self.opts.get("options")
        if mode is None and options is None:
            if self._is_cuda:
                mode = "max-autotune-no-cudagraphs"
            else:
                options = {"freezing": True}
        self._compile_kwargs: dict[str, Any] = {"dynamic": False}
        if mode is not None:
            self._compile_kwargs["mode"] = mode
        if options is not None:
            self._compile_kwargs["options"] = dict(options)
        self._compiled = torch.compile(self.model, **self._compile_kwargs)
        self._info["compile"] = {
            k: v for k, v in self._compile_kwargs.items() if k in ("mode", "options")
        }

    def _build(self, height: int, width: int, batch: int) -> None:
        t0 = time.perf_counter()
        with torch.inference_mode():
            self._compiled(self._input[:batch])  # compiles for this shape
        if self._is_cuda:
            torch.cuda.synchronize(self._tdevice)
        self._info["compile_s"] = round(time.perf_counter() - t0, 2)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._compiled(x)


class CudaGraphBackend(TorchBackend):
    """Eager CUDA kernels recorded once into a CUDA graph and replayed each frame.

    The graph covers the image broadcast into the static input batch, every chunk's
    forward pass and the fp32 copy into the static output buffer; host<->device copies stay
    outside it. Warm-up runs on a side stream before capture (cuDNN autotuning, allocator).
    """

    name = "cudagraph"
    uniform_chunks = True

    def __init__(self, generator: torch.nn.Module, **kwargs: Any) -> None:
        if not torch.cuda.is_available():
            raise BackendUnavailableError(
                "backend 'cudagraph' needs CUDA (torch.cuda.is_available() is False)"
            )
        kwargs.setdefault("device", "cuda:0")
        super().__init__(generator, **kwargs)
        if not self._is_cuda:
            raise BackendUnavailableError("backend 'cudagraph' runs on CUDA devices only")
        self._graph: torch.cuda.CUDAGraph | None = None

    def _build(self, height: int, width: int, batch: int) -> None:
        self._graph = None
        side = torch.cuda.Stream(self._tdevice)
        side.wait_stream(torch.cuda.current_stream(self._tdevice))
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(int(self.opts.get("warmup_iters", 3))):
                Backend._run_cuda(self)
        torch.cuda.current_stream(self._tdevice).wait_stream(side)
        torch.cuda.synchronize(self._tdevice)
        graph = torch.cuda.CUDAGraph()
        t0 = time.perf_counter()
        with torch.inference_mode(), torch.cuda.graph(graph):
            Backend._run_cuda(self)
        torch.cuda.synchronize(self._tdevice)
        self._graph = graph
        self._info["capture_s"] = round(time.perf_counter() - t0, 3)

    def _run_cuda(self) -> None:
        assert self._graph is not None, "prepare() first"
        self._graph.replay()

    def _infer_cpu(self, *args: Any, **kwargs: Any) -> None:  # pragma: no cover
        raise BackendUnavailableError("backend 'cudagraph' runs on CUDA devices only")


def compile_unavailable_reason(device: str) -> str | None:
    """Why ``torch.compile`` cannot run on ``device`` here, or None if it can."""
    if device.startswith("cuda"):
        import importlib.util

        if importlib.util.find_spec("triton") is None:
            return "inductor needs triton on CUDA (pip install triton)"
        return None
    if not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        return "inductor's CPU code generation needs a C++ compiler (g++/clang++) on PATH"
    return None
