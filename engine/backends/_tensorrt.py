"""TensorRT backend through torch-tensorrt (dynamo IR), with an on-disk engine cache.

``torch_tensorrt`` is imported only when a :class:`TensorRTBackend` is constructed, so the
rest of live-deepz never needs it. The engine is built for one static input shape
``(batch, 2, H, W)`` with *explicit typing*: the generator copy and the example input are
cast to the backend's dtype (fp16 by default) before compiling, so TensorRT keeps exactly the
dtypes of the PyTorch graph.

Engine cache: ``$LIVE_DEEPZ_CACHE/trt/`` (default ``~/.cache/live-deepz/trt/``); one
``<key>.ep`` (saved with ``torch_tensorrt.save(..., output_format="exported_program")`` and
loaded with ``torch.export.load(...).module()``) plus a ``<key>.json`` with the key's fields.
The key hashes the model weights, the input shape, the precision, the GPU (name and compute
capability) and the torch / torch-tensorrt / tensorrt versions, so a second start with the
same model and frame size loads the engine (seconds) instead of building it (minutes).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

from ._base import Backend, BackendUnavailableError, weights_fingerprint

log = logging.getLogger("live_deepz.engine")


def cache_root() -> Path:
    """``$LIVE_DEEPZ_CACHE`` or ``~/.cache/live-deepz`` (the TensorRT engines go in ``trt/``)."""
    return Path(os.environ.get("LIVE_DEEPZ_CACHE", "~/.cache/live-deepz")).expanduser()


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def engine_cache_key(
    weights_sha256: str,
    input_shape: tuple[int, ...],
    precision: str,
    device: str,
) -> tuple[str, dict[str, Any]]:
    """The cache file stem and the fields it hashes (written next to the engine as JSON)."""
    props = torch.cuda.get_device_properties(torch.device(device))
    fields: dict[str, Any] = {
        "weights_sha256": weights_sha256,
        "input_shape": list(input_shape),
        "precision": precision,
        "gpu": props.name,
        "compute_capability": f"{props.major}.{props.minor}",
        "torch": torch.__version__,
        "torch_tensorrt": _version("torch-tensorrt"),
        "tensorrt": _version("tensorrt"),
        "cuda": torch.version.cuda,
    }
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]
    b, _c, h, w = input_shape
    return f"deepz_{h}x{w}_b{b}_{precision}_{digest}", fields


class TensorRTBackend(Backend):
    """A TensorRT engine (torch-tensorrt, dynamo IR) per prepared shape, cached on disk.

    Options
    -------
    cache : bool
        Load/save engines in the on-disk cache (default True).
    cache_dir : str | Path
        Override the cache folder (default ``cache_root() / "trt"``).
    weights_sha256 : str
        The model file's hash (``LoadedModel.weights_sha256``); computed from the weights
        when omitted.
    workspace_size, optimization_level, min_block_size
        Passed to ``torch_tensorrt.compile`` when given.
    """

    name = "tensorrt"
    uniform_chunks = True

    def __init__(self, generator: torch.nn.Module, **kwargs: Any) -> None:
        if not torch.cuda.is_available():
            raise BackendUnavailableError("backend 'tensorrt' needs CUDA")
        kwargs.setdefault("device", "cuda:0")
        kwargs.setdefault("precision", "fp16")
        kwargs.setdefault("channels_last", False)  # TensorRT takes contiguous NCHW inputs
        try:
            import torch_tensorrt
        except Exception as exc:  # ImportError, or a broken TensorRT install
            raise BackendUnavailableError(
                f"backend 'tensorrt' unavailable: cannot import torch_tensorrt ({exc}); "
                "install it with pip install 'live-deepz[tensorrt]' matching your torch"
            ) from None
        self._trt = torch_tensorrt
        weights_sha = kwargs.pop("weights_sha256", None) or weights_fingerprint(generator)
        super().__init__(generator, **kwargs)
        if not self._is_cuda:
            raise BackendUnavailableError("backend 'tensorrt' runs on CUDA devices only")
        self.weights_sha256 = weights_sha
        self._engine: Any = None
        self._info["torch_tensorrt"] = getattr(torch_tensorrt, "__version__", "?")

    # ----------------------------------------------------------------- build
    def _cache_dir(self) -> Path:
        d = self.opts.get("cache_dir")
        return Path(d).expanduser() if d else cache_root() / "trt"

    def _compile(self, example: torch.Tensor) -> Any:
        trt = self._trt
        params = inspect.signature(trt.dynamo.compile).parameters
        kwargs: dict[str, Any] = {"ir": "dynamo", "inputs": [example]}
        if "use_explicit_typing" in params:
            kwargs["use_explicit_typing"] = True  # dtypes as in the (cast) model and input
        else:  # older torch-tensorrt: ask for the precision instead
            kwargs["enabled_precisions"] = {self.dtype}
        for opt in ("workspace_size", "optimization_level", "min_block_size"):
            if self.opts.get(opt) is not None:
                kwargs[opt] = self.opts[opt]
        with torch.inference_mode(False), torch.no_grad():
            return trt.compile(self.model, **kwargs)

    def _save(self, module: Any, path: Path, example: torch.Tensor, fields: dict[str, Any]) -> None:
        trt = self._trt
        params = inspect.signature(trt.save).parameters
        kw: dict[str, Any] = {"output_format": "exported_program"}
        kw["arg_inputs" if "arg_inputs" in params else "inputs"] = [example]
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            trt.save(module, str(tmp), **kw)
            os.replace(tmp, path)
            path.with_suffix(".json").write_text(json.dumps(fields, indent=2, sort_keys=True))
        except Exception as exc:  # a cache write failure must not stop the live view
            log.warning("could not save the TensorRT engine to %s: %s", path, exc)
            tmp.unlink(missing_ok=True)

    def _build(self, height: int, width: int, batch: int) -> None:
        example = self._input[:batch].contiguous()  # (batch, 2, H, W) in self.dtype
        key, fields = engine_cache_key(
            self.weights_sha256, tuple(example.shape), self.precision, self.device
        )
        path = self._cache_dir() / f"{key}.ep"
        use_cache = bool(self.opts.get("cache", True))
        self._engine = None
        t0 = time.perf_counter()
        if use_cache and path.exists():
            try:
                self._engine = torch.export.load(str(path)).module()
                with torch.inference_mode():
                    self._engine(example)  # also checks the engine runs on this GPU
                self._info.update(engine_cache="hit", engine_path=str(path))
            except Exception as exc:
                log.warning("cached TensorRT engine %s unusable (%s); rebuilding", path, exc)
                self._engine = None
        if self._engine is None:
            log.info(
                "building a TensorRT engine for %s (takes minutes the first time)",
                tuple(example.shape),
            )
            self._engine = self._compile(example)
            if use_cache:
                self._save(self._engine, path, example, fields)
            self._info.update(engine_cache="miss" if use_cache else "off", engine_path=str(path))
        with torch.inference_mode():
            for _ in range(2):
                self._engine(example)
        torch.cuda.synchronize(self._tdevice)
        self._info["engine_key"] = key
        self._info["build_s"] = round(time.perf_counter() - t0, 2)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._engine(x)
        if isinstance(y, list | tuple):
            y = y[0]
        return y
