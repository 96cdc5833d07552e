"""The backend interface: one frame + K DPMs -> K refocused planes, buffers allocated once.

A :class:`Backend` owns a private copy of the generator converted to its precision and
memory layout, a static input batch ``(K, 2, H, W)`` and (on CUDA) static device/pinned host
buffers. :meth:`Backend.infer` broadcasts the normalised image into channel 0 of the batch,
copies the DPMs into channel 1 only when they changed, runs the network in chunks of at most
``max_batch`` planes and writes the planes into the caller's ``out`` array in place.

Subclasses implement :meth:`Backend._build` (called by :meth:`prepare` for a new shape) and
:meth:`Backend._forward` (one chunk); the staging logic lives here.
"""

from __future__ import annotations

import copy
import functools
import logging
import os
import time
import warnings
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from live_deepz.errors import InputError

log = logging.getLogger("live_deepz.engine")

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

#: Peak activation memory of the paper-size generator per input pixel and plane, in
#: elements (times the dtype's size for bytes): eager bf16 on the CPU grew its peak RSS by
#: 510-620 elements per pixel at 256²-1024². Used to size the default batch on CUDA.
_ACTIVATION_ELEMS_PER_PIXEL = 600.0


class BackendUnavailableError(InputError):
    """The requested backend cannot run here (missing package, no CUDA, unsupported dtype)."""


def torch_dtype(precision: str) -> torch.dtype:
    """``"fp32" | "bf16" | "fp16"`` -> the torch dtype."""
    try:
        return _DTYPES[precision]
    except KeyError:
        raise InputError(
            f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)} or 'auto'"
        ) from None


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags from ``/proc/cpuinfo`` (empty where unavailable)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_name() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (else ``platform``'s guess)."""
    import platform

    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def compute_devices() -> list[dict[str, Any]]:
    """The CPU (with its bf16 matrix extensions) and every CUDA device torch sees."""
    import os

    devices: list[dict[str, Any]] = [
        {
            "device": "cpu",
            "name": cpu_name(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "bf16_matrix": sorted(cpu_flags() & {"amx_bf16", "avx512_bf16", "amx_tile"}),
        }
    ]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            devices.append(
                {
                    "device": f"cuda:{i}",
                    "name": p.name,
                    "memory_gib": round(p.total_memory / 2**30, 1),
                    "capability": f"{p.major}.{p.minor}",
                }
            )
    return devices


def cpu_bf16_matrix() -> str | None:
    """The CPU's bf16 matrix instructions (``"amx_bf16"``, ``"avx512_bf16"``) or None.

    Without one of them oneDNN emulates bf16 with fp32 arithmetic plus conversions, which
    is slower than plain fp32, so ``precision="auto"`` only picks bf16 when one is present.
    """
    flags = cpu_flags()
    for name in ("amx_bf16", "avx512_bf16"):
        if name in flags:
            return name
    return None


def resolve_device(device: str | torch.device = "auto") -> str:
    """``"auto"`` -> ``"cuda:0"`` when CUDA is usable else ``"cpu"``; ``"cuda"`` -> ``"cuda:0"``."""
    dev = str(device)
    if dev == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if dev == "cpu":
        return "cpu"
    if dev.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BackendUnavailableError(
                f"device {dev!r} requested but CUDA is not available to PyTorch "
                f"(torch {torch.__version__}); use device='cpu' or install a CUDA build."
            )
        return "cuda:0" if dev == "cuda" else dev
    raise InputError(f"unknown device {dev!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'")


def resolve_precision(precision: str, device: str) -> str:
    """``"auto"``: fp16 on CUDA, bf16 on a CPU with AMX/AVX512-bf16, else fp32."""
    if precision == "auto":
        if device.startswith("cuda"):
            return "fp16"
        return "bf16" if cpu_bf16_matrix() else "fp32"
    torch_dtype(precision)  # validates
    if precision == "fp16" and device == "cpu":
        raise InputError(
            "precision 'fp16' is not supported on the CPU (slow, no fast kernels); "
            "use 'bf16' or 'fp32'."
        )
    return precision


def relative_error(y: np.ndarray, ref: np.ndarray) -> float:
    """``||y - ref|| / ||ref||`` in float64 (the tests' and benchmarks' accuracy measure)."""
    y64 = np.asarray(y, dtype=np.float64)
    r64 = np.asarray(ref, dtype=np.float64)
    return float(np.linalg.norm(y64 - r64)) / max(float(np.linalg.norm(r64)), 1e-30)


def weights_fingerprint(module: nn.Module) -> str:
    """A sha256 over the module's parameter/buffer names, shapes, dtypes and values."""
    import hashlib

    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def default_max_batch(height: int, width: int, precision: str, device: str) -> int:
    """Planes per network call: a few on CUDA within ~40 % of free memory, one on the CPU.

    On the CPU, batching does not raise oneDNN's throughput at 512² and above (the
    convolutions already fill both cores) and multiplies peak memory, so one plane per call.
    """
    if not device.startswith("cuda"):
        return 1
    try:
        free, _total = torch.cuda.mem_get_info(torch.device(device))
    except Exception:  # pragma: no cover - driver quirks
        return 4
    per_plane = _ACTIVATION_ELEMS_PER_PIXEL * torch_dtype(precision).itemsize * height * width
    return int(max(1, min(64, (0.4 * free) // max(per_plane, 1.0))))


def host_tensor(a: np.ndarray) -> torch.Tensor:
    """``torch.from_numpy`` without the warning for read-only arrays (we only read them).

    Arrays with negative strides (e.g. ``image[::-1]``) are copied first.
    """
    if any(st < 0 for st in a.strides):
        a = np.ascontiguousarray(a)
    if a.flags.writeable:
        return torch.from_numpy(a)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(a)


def _check_array(name: str, a: Any, shape: tuple[int, ...] | None, ndim: int) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise InputError(f"{name} must be a numpy array, got {type(a).__name__}")
    if a.dtype != np.float32:
        raise InputError(f"{name} must be float32, got {a.dtype}; convert with .astype(np.float32)")
    if a.ndim != ndim or (shape is not None and a.shape != shape):
        want = shape if shape is not None else f"{ndim}-D"
        raise InputError(f"{name} has shape {a.shape}, expected {want}")
    return a


class Backend(ABC):
    """One inference engine for the Deep-Z generator at a fixed precision and device.

    Parameters
    ----------
    generator
        The generator (fp32, any device); the backend works on its own copy.
    precision
        ``"fp32"``, ``"bf16"`` or ``"fp16"`` (already resolved: no ``"auto"`` here).
    device
        ``"cpu"`` or ``"cuda:N"``.
    max_batch
        Planes per network call (``None``: :func:`default_max_batch`).
    channels_last
        Use the NHWC memory layout (default True: oneDNN's and cuDNN's fast layout;
        4x faster than NCHW for bf16 on the CPU).
    check_finite
        Reject images containing NaN/inf with :class:`InputError` (default True; costs one
        pass over the image).
    num_threads
        CPU intra-op threads for inference, applied with ``torch.set_num_threads`` in the
        thread that calls :meth:`infer` (None: leave PyTorch's setting). On a small machine
        where acquisition and display share the cores, fewer threads than cores can be
        faster: OpenMP barriers spin when a core is taken.
    """

    name: ClassVar[str] = "base"
    #: Static-shape backends (compiled, graphs, TensorRT) run every chunk at the same batch.
    uniform_chunks: ClassVar[bool] = False

    def __init__(
        self,
        generator: nn.Module,
        *,
        precision: str = "fp32",
        device: str = "cpu",
        max_batch: int | None = None,
        channels_last: bool = True,
        check_finite: bool = True,
        num_threads: int | None = None,
        **opts: Any,
    ) -> None:
        if not isinstance(generator, nn.Module):
            raise InputError(f"generator must be a torch.nn.Module, got {type(generator).__name__}")
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.dtype = torch_dtype(self.precision)
        if max_batch is not None and int(max_batch) < 1:
            raise InputError(f"max_batch must be >= 1, got {max_batch}")
        self.max_batch = None if max_batch is None else int(max_batch)
        self.channels_last = bool(channels_last)
        self.check_finite = bool(check_finite)
        if num_threads is not None and int(num_threads) < 1:
            raise InputError(f"num_threads must be >= 1, got {num_threads}")
        self.num_threads = None if num_threads is None else int(num_threads)
        self.opts = dict(opts)
        self.chosen_by = "user"
        self._tdevice = torch.device(self.device)
        self._is_cuda = self._tdevice.type == "cuda"
        self.model = self._convert(generator)
        self._shape: tuple[int, int, int] | None = None
        self._chunks: list[tuple[int, int]] = []
        self._batch = 0
        self._last_dpms: np.ndarray | None = None
        self.prepare_s: float | None = None
        self.counters = {"frames": 0, "dpm_uploads": 0, "prepares": 0}
        self._info: dict[str, Any] = {}
        self._stream: torch.cuda.Stream | None = None

    # ------------------------------------------------------------------ set-up
    def _convert(self, generator: nn.Module) -> nn.Module:
        """A private eval-mode copy in the backend's dtype, device and memory layout."""
        model = copy.deepcopy(generator).eval().requires_grad_(False)
        model = model.to(device=self._tdevice, dtype=self.dtype)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        return model

    def prepare(self, height: int, width: int, n_planes: int) -> None:
        """Allocate the static buffers and build/compile/capture for this shape (idempotent)."""
        shape = (int(height), int(width), int(n_planes))
        if min(shape) < 1:
            raise InputError(f"prepare needs positive height, width, n_planes; got {shape}")
        if shape == self._shape:
            return
        t0 = time.perf_counter()
        h, w, k = shape
        mb = self.max_batch or default_max_batch(h, w, self.precision, self.device)
        n_chunks = -(-k // mb)
        batch = -(-k // n_chunks)  # balanced chunks
        n_rows = batch * n_chunks if self.uniform_chunks else k
        self._chunks = [(s, min(s + batch, n_rows)) for s in range(0, n_rows, batch)]
        self._batch = batch
        self._last_dpms = None
        self._shape = None
        with torch.inference_mode(False):  # static buffers must be normal tensors (export)
            self._alloc(h, w, k, n_rows)
            self._build(h, w, batch)
        self._shape = shape
        self.prepare_s = time.perf_counter() - t0
        self.counters["prepares"] += 1
        log.info(
            "%s backend prepared for %dx%d, %d planes (%d per call) in %.1f s",
            self.name,
            h,
            w,
            k,
            batch,
            self.prepare_s,
        )

    def _alloc(self, h: int, w: int, k: int, n_rows: int) -> None:
        mf = torch.channels_last if self.channels_last else torch.contiguous_format
        # the network's static input: (n_rows, 2, H, W) [image, dpm]; rows >= k are padding
        self._input = torch.zeros((n_rows, 2, h, w), dtype=self.dtype, device=self._tdevice)
        self._input = self._input.contiguous(memory_format=mf)
        if self._is_cuda:
            self._stream = torch.cuda.Stream(self._tdevice)
            self._image_host = torch.empty((h, w), dtype=torch.float32, pin_memory=True)
            self._dpms_host = torch.empty((k, h, w), dtype=torch.float32, pin_memory=True)
            self._image_dev = torch.zeros((h, w), dtype=torch.float32, device=self._tdevice)
            self._out_dev = torch.empty((n_rows, h, w), dtype=torch.float32, device=self._tdevice)
            self._image_host_np = self._image_host.numpy()
            self._dpms_host_np = self._dpms_host.numpy()

    @abstractmethod
    def _build(self, height: int, width: int, batch: int) -> None:
        """Compile/capture/warm up for input chunks of shape ``(batch, 2, height, width)``."""

    @abstractmethod
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the network on one chunk ``(b, 2, H, W)`` -> ``(b, 1, H, W)`` (any dtype)."""

    # --------------------------------------------------------------- inference
    def check_inputs(self, image: Any, dpms_net: Any, out: Any) -> tuple[int, int, int]:
        """Validate the three arrays; raise :class:`InputError` naming the problem."""
        img = _check_array("image", image, None, 2)
        h, w = img.shape
        dpms = _check_array("dpms_net", dpms_net, None, 3)
        if dpms.shape[1:] != (h, w):
            raise InputError(
                f"dpms_net has shape {dpms.shape}; each DPM must match the image ({h}, {w})"
            )
        k = dpms.shape[0]
        if k < 1:
            raise InputError("dpms_net holds no planes (shape[0] == 0)")
        o = _check_array("out", out, (k, h, w), 3)
        if not o.flags.writeable:
            raise InputError("out is read-only; pass a writeable preallocated float32 array")
        if any(st < 0 for st in o.strides):
            raise InputError("out has negative strides (a flipped view); pass a plain array")
        if self.check_finite and not np.isfinite(img).all():
            raise InputError("image contains NaN or inf; check the camera frame/normalisation")
        return h, w, k

    def infer(self, image: np.ndarray, dpms_net: np.ndarray, out: np.ndarray) -> None:
        """Refocus ``image`` (H, W) onto the K DPMs ``dpms_net`` (K, H, W) into ``out`` (K, H, W).

        All three are float32; the DPMs are in network units (µm / ``dpm_scale_um``). The
        DPMs are copied to the input batch only when ``dpms_net`` is a different object from
        the previous call or a writeable array (a static plan hands the same read-only array
        each frame, which is uploaded once). Calls :meth:`prepare` if the shape changed.
        """
        h, w, k = self.check_inputs(image, dpms_net, out)
        if (h, w, k) != self._shape:
            self.prepare(h, w, k)
        upload = dpms_net is not self._last_dpms or dpms_net.flags.writeable
        if upload:
            self._last_dpms = None  # the input batch's DPMs are stale until this call succeeds
        if self.num_threads is not None and torch.get_num_threads() != self.num_threads:
            torch.set_num_threads(self.num_threads)
        with torch.inference_mode():
            if self._is_cuda:
                self._infer_cuda(image, dpms_net, out, upload)
            else:
                self._infer_cpu(image, dpms_net, out, upload)
        if upload:
            self.counters["dpm_uploads"] += 1
        # keep a reference: the identity test stays valid while we hold the object
        self._last_dpms = dpms_net
        self.counters["frames"] += 1

    def _infer_cpu(
        self, image: np.ndarray, dpms: np.ndarray, out: np.ndarray, upload: bool
    ) -> None:
        k = dpms.shape[0]
        if upload:
            self._input[:k, 1].copy_(host_tensor(dpms))
        self._input[:, 0].copy_(host_tensor(image))  # broadcast (H, W) -> (rows, H, W)
        out_t = torch.from_numpy(out)
        for s, e in self._chunks:
            y = self._forward(self._input[s:e])  # (b, 1, H, W)
            n = min(e, k) - s
            if n > 0:
                out_t[s : s + n].copy_(y[:n, 0])

    def _infer_cuda(
        self, image: np.ndarray, dpms: np.ndarray, out: np.ndarray, upload: bool
    ) -> None:
        assert self._stream is not None
        k = dpms.shape[0]
        self._stream.wait_stream(torch.cuda.current_stream(self._tdevice))
        with torch.cuda.stream(self._stream):
            # pageable numpy -> pinned staging (host memcpy) -> device, asynchronously
            self._image_host_np[...] = image
            self._image_dev.copy_(self._image_host, non_blocking=True)
            if upload:
                self._dpms_host_np[...] = dpms
                self._input[:k, 1].copy_(self._dpms_host, non_blocking=True)
            self._run_cuda()
            # device -> the caller's array (pinned if allocated with pinned_host_array)
            torch.from_numpy(out).copy_(self._out_dev[:k], non_blocking=False)
        self._stream.synchronize()

    def _run_cuda(self) -> None:
        """Image broadcast + all chunks into ``self._out_dev`` (overridden by cudagraph)."""
        self._input[:, 0].copy_(self._image_dev)
        for s, e in self._chunks:
            self._out_dev[s:e].copy_(self._forward(self._input[s:e])[:, 0])

    # ------------------------------------------------------------------ report
    def describe(self) -> dict[str, Any]:
        """Name, precision, device, prepared shape, batch and build information."""
        d: dict[str, Any] = {
            "name": self.name,
            "precision": self.precision,
            "device": self.device,
            "device_name": device_name(self.device),
            "shape": None,
            "chosen_by": self.chosen_by,
            "channels_last": self.channels_last,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        }
        if self._shape is not None:
            h, w, k = self._shape
            d.update(
                shape={"height": h, "width": w, "n_planes": k},
                batch=self._batch,
                chunks=len(self._chunks),
                prepare_s=self.prepare_s,
            )
        d.update(self._info)
        d["counters"] = dict(self.counters)
        return d

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.precision} on {self.device}>"


@functools.lru_cache(maxsize=8)
def device_name(device: str) -> str:
    """A human name for the device (GPU model, or the CPU model from /proc/cpuinfo)."""
    if device.startswith("cuda"):
        return str(torch.cuda.get_device_name(torch.device(device)))
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return os.uname().machine


def pinned_host_array(shape: tuple[int, ...], dtype: Any = np.float32) -> np.ndarray:
    """A numpy array in page-locked memory when CUDA is available (fast async copies).

    Ring buffers that receive the planes of a CUDA backend can allocate their slots with
    this; on a machine without CUDA it is an ordinary ``np.empty``.
    """
    if torch.cuda.is_available():
        t = torch.empty(shape, dtype=torch.from_numpy(np.empty(0, dtype)).dtype, pin_memory=True)
        return t.numpy()
    return np.empty(shape, dtype=dtype)
