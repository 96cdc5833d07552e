"""The device's dense matmul throughput: the ceiling a convolution network can approach.

Benchmarks report the generator's achieved TFLOP/s as a fraction of this number measured in
the same run (the machines are shared, so absolute times drift; ratios drift less).
"""

from __future__ import annotations

import statistics
import time

import torch

from live_deepz.errors import InputError

__all__ = ["measure_matmul_ceiling"]

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def measure_matmul_ceiling(
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str = torch.bfloat16,
    n: int = 4096,
    repeats: int = 5,
    warmup: int = 1,
) -> float:
    """Median TFLOP/s of an ``n x n @ n x n`` matmul (``2 n^3`` FLOP) on ``device``.

    Parameters
    ----------
    device
        ``"cpu"`` or ``"cuda:N"``.
    dtype
        torch dtype or ``"fp32" | "bf16" | "fp16"``.
    n
        Matrix size (4096: ~0.2 s per product in bf16 on 2 CPU cores).
    repeats, warmup
        Timed and untimed repetitions; the median of the timed ones is used. On CUDA the
        device is synchronised before each clock read.
    """
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise InputError(f"unknown dtype {dtype!r}; use one of {', '.join(_DTYPES)}")
        dtype = _DTYPES[dtype]
    if n < 1 or repeats < 1 or warmup < 0:
        raise InputError(f"need n >= 1, repeats >= 1, warmup >= 0; got {n}, {repeats}, {warmup}")
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    gen = torch.Generator(device=dev).manual_seed(0)
    a = torch.randn(n, n, generator=gen, device=dev, dtype=torch.float32).to(dtype)
    b = torch.randn(n, n, generator=gen, device=dev, dtype=torch.float32).to(dtype)
    c = torch.empty(n, n, device=dev, dtype=dtype)
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            if cuda:
                torch.cuda.synchronize(dev)
            t0 = time.perf_counter()
            torch.mm(a, b, out=c)
            if cuda:
                torch.cuda.synchronize(dev)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return 2.0 * n**3 / statistics.median(times) / 1e12
