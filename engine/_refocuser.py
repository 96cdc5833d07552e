"""One card-aware refocuser: µm DPMs in, refocused planes out.

Every path that runs the network (live pipeline, offline refocus, recording completion,
evaluation, calibration sweeps, the benchmark) converts DPMs here: the model card's trained
axial range is checked (:func:`~live_deepz.dpm.check_range`), µm become network units
(:func:`~live_deepz.dpm.to_network_units`, ``dpm / dpm_scale_um``), and the backend is
called in chunks of at most ``max_planes`` planes (the last chunk padded, so the backend is
prepared for one shape). The live pipeline's hot path converts with
:meth:`Refocuser.network_dpms` into its own preallocated buffer and calls the backend itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from live_deepz.dpm import check_range, to_network_units
from live_deepz.errors import InputError

__all__ = ["Refocuser"]


def _card_values(model_or_card: Any) -> tuple[tuple[float, float] | None, float, str]:
    """(z_range_um, dpm_scale_um, name) of a LoadedModel, ModelCard or card dict (a card
    dict without ``z_range_um`` gives None: no range check)."""
    card = getattr(model_or_card, "card", model_or_card)
    if isinstance(card, Mapping):
        zr, scale, name = card.get("z_range_um"), card.get("dpm_scale_um"), card.get("name")
    else:
        zr = getattr(card, "z_range_um", None)
        scale = getattr(card, "dpm_scale_um", None)
        name = getattr(card, "name", None)
    if (zr is not None and len(zr) != 2) or scale is None:
        raise InputError(
            "a refocuser needs a model card with z_range_um and dpm_scale_um, got "
            f"{type(card).__name__}"
        )
    z_range = None if zr is None else (float(zr[0]), float(zr[1]))
    return z_range, float(scale), str(name or "model")


class Refocuser:
    """A model card's rules around a backend.

    Parameters
    ----------
    model_or_card
        A :class:`~live_deepz.modelfile.LoadedModel`, its ``ModelCard``, or a card dict
        (e.g. the one stored in a recording): gives ``z_range_um`` and ``dpm_scale_um``.
    backend
        A :class:`~live_deepz.engine.Backend` (``infer(image, dpms_net, out)``); None for a
        refocuser that only converts (:meth:`network_dpms`).
    max_planes
        Run at most this many planes per backend call (None: all at once).
    allow_out_of_range
        Warn (:class:`~live_deepz.dpm.OutOfRangeWarning`) instead of raising
        :class:`~live_deepz.errors.DPMRangeError` for DPMs outside the trained range.
    """

    def __init__(
        self,
        model_or_card: Any,
        backend: Any = None,
        *,
        max_planes: int | None = None,
        allow_out_of_range: bool = False,
    ) -> None:
        self.z_range_um, self.dpm_scale_um, self.model_name = _card_values(model_or_card)
        if not self.dpm_scale_um > 0:
            raise InputError(f"dpm_scale_um must be > 0, got {self.dpm_scale_um!r}")
        self.model = model_or_card
        self.backend = backend
        if max_planes is not None and int(max_planes) < 1:
            raise InputError(f"max_planes must be >= 1, got {max_planes}")
        self.max_planes = None if max_planes is None else int(max_planes)
        self.allow_out_of_range = bool(allow_out_of_range)
        self._static: tuple[Any, np.ndarray] | None = None  # (source array, its net units)
        self._bufs: dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray]] = {}

    @classmethod
    def for_recording(cls, path: Any, backend: Any = None, **kwargs: Any) -> Refocuser:
        """A refocuser with the model card stored in a recording's journal (its DPM scale,
        default 10 µm, and its trained range, unchecked when the recording has none)."""
        from live_deepz.recording import find_journal, load_journal

        header, _, _ = load_journal(find_journal(path)[0])
        card = ((header.get("metadata") or {}).get("model") or {}).get("card") or {}
        return cls(
            {
                "z_range_um": card.get("z_range_um") or None,
                "dpm_scale_um": card.get("dpm_scale_um") or 10.0,
                "name": card.get("name"),
            },
            backend,
            **kwargs,
        )

    @classmethod
    def from_range(
        cls,
        z_range_um: tuple[float, float] | None,
        dpm_scale_um: float,
        backend: Any = None,
        **kwargs: Any,
    ) -> Refocuser:
        """A refocuser from the two card numbers (no card at hand)."""
        zr = None if z_range_um is None else tuple(z_range_um)
        card = {"z_range_um": zr, "dpm_scale_um": dpm_scale_um}
        return cls(card, backend, **kwargs)

    # -- conversion -------------------------------------------------------------------

    def check(self, dpms_um: Any, what: str = "the DPMs") -> bool:
        """Refuse (or warn about) DPMs outside the card's trained range."""
        if self.z_range_um is None:
            return True
        return check_range(dpms_um, self.z_range_um, allow=self.allow_out_of_range, what=what)

    def network_dpms(
        self,
        dpms_um: Any,
        *,
        out: np.ndarray | None = None,
        what: str = "the DPMs",
        checked: bool = True,
    ) -> np.ndarray:
        """µm → network units (float32), after the range check (``checked=False`` skips it,
        for callers that checked the plan once)."""
        if checked:
            self.check(dpms_um, what)
        return to_network_units(dpms_um, self.dpm_scale_um, out=out)

    def _net_for(self, dpms_um: np.ndarray, shape: tuple[int, int], what: str) -> np.ndarray:
        """Network-unit (K, H, W) DPMs; a read-only input is converted once and kept
        read-only (a static plan: backends upload it once per shape)."""
        static = not dpms_um.flags.writeable or dpms_um.ndim == 1
        if static and self._static is not None:
            src, net = self._static
            same = src is dpms_um or (
                dpms_um.ndim == 1 and src.ndim == 1 and np.array_equal(src, dpms_um)
            )
            if same and net.shape[1:] == shape:
                return net
        if dpms_um.ndim == 1:
            net1 = self.network_dpms(dpms_um, what=what)
            net = np.ascontiguousarray(
                np.broadcast_to(net1[:, None, None], (len(net1), *shape)), dtype=np.float32
            )
        else:
            net = self.network_dpms(dpms_um, what=what)
        if static:
            net.flags.writeable = False
            self._static = (dpms_um.copy() if dpms_um.ndim == 1 else dpms_um, net)
        return net

    # -- inference --------------------------------------------------------------------

    def refocus(
        self,
        frames: np.ndarray,
        dpms_um: Any,
        *,
        out: np.ndarray | None = None,
        what: str = "the refocus DPMs",
    ) -> np.ndarray:
        """Refocus normalised ``frames`` to the planes ``dpms_um``.

        ``frames``: ``(H, W)`` or ``(N, H, W)`` float32, normalised. ``dpms_um``: ``(K,)``
        uniform offsets or ``(K, H, W)`` DPM maps, µm. Returns ``(K, H, W)`` (or
        ``(N, K, H, W)``) float32, in ``out`` when given.
        """
        if self.backend is None:
            raise RuntimeError("this Refocuser has no backend (it only converts DPMs)")
        imgs = np.asarray(frames)
        single = imgs.ndim == 2
        if imgs.ndim not in (2, 3):
            raise InputError(f"refocus needs (H, W) or (N, H, W) frames, got {imgs.shape}")
        shape = (int(imgs.shape[-2]), int(imgs.shape[-1]))
        dpms = np.asarray(dpms_um, dtype=np.float32)
        if dpms.ndim != 1 and (dpms.ndim != 3 or dpms.shape[1:] != shape):
            raise InputError(
                f"refocus needs (K,) offsets or (K, H, W) DPMs for {shape} frames, got {dpms.shape}"
            )
        if dpms is not dpms_um and isinstance(dpms_um, np.ndarray):
            dpms.flags.writeable = dpms_um.flags.writeable
        net = self._net_for(dpms, shape, what)
        k = int(net.shape[0])
        stack = imgs[None] if single else imgs
        res = out if out is not None else np.empty((len(stack), k, *shape), np.float32)
        res_n = res[None] if single and res.ndim == 3 else res
        for i, img in enumerate(stack):
            x = np.ascontiguousarray(img, dtype=np.float32)
            self._infer_chunked(x, net, res_n[i])
        return res_n[0] if single else res_n

    def _infer_chunked(self, image: np.ndarray, net: np.ndarray, out: np.ndarray) -> None:
        k, h, w = net.shape
        if self.max_planes is None or k <= self.max_planes:
            self.backend.infer(image, net, out)
            return
        n_chunks = -(-k // self.max_planes)
        per = -(-k // n_chunks)
        key = (per, h, w)
        if key not in self._bufs:
            self._bufs = {key: (np.empty(key, np.float32), np.empty(key, np.float32))}
        buf, res = self._bufs[key]
        for s in range(0, k, per):
            e = min(s + per, k)
            n = e - s
            buf[:n] = net[s:e]
            if n < per:
                buf[n:] = buf[n - 1]
            self.backend.infer(image, buf, res)
            out[s:e] = res[:n]

    def __call__(self, image: np.ndarray, dpms_um: Any) -> np.ndarray:
        """``refocus(image, dpms_um)`` (a calibration ``RefocusFn``)."""
        return self.refocus(image, dpms_um)

    def describe(self) -> dict[str, Any]:
        d = getattr(self.backend, "describe", None)
        return {
            "model": self.model_name,
            "z_range_um": None if self.z_range_um is None else list(self.z_range_um),
            "dpm_scale_um": self.dpm_scale_um,
            "backend": d() if callable(d) else None,
        }
