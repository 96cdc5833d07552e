"""The live planes and how the live plan is composed from them (no Qt).

The plan of a live view is the grid's planes plus the depth slider's plane::

    plan = StaticPlanePlan(grid_offsets ∪ {depth_um})

Two calibrations change how that plan is built (:meth:`LivePlans.current_plan`):

- a **surface** (:class:`SurfaceCalibration`, from the calibration wizard): the planes
  become ``surface + offsets``;
- **drift compensation**: a drift plan (flat planes at the offsets plus 0 for the
  drift-corrected feed, around the tracked focus). The engine never builds one (that is
  calibration's job): a new set of offsets asks the ``continue_drift`` callable given from
  outside for a plan that continues the current correction. While drift compensation is
  on, the surface is not applied (the two are not combined yet).

:class:`LivePlans` only holds and composes; whoever drives the pipeline applies the plan
(and uses :meth:`LivePlans.change` to put the old values back when that fails).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from live_deepz.dpm import StaticPlanePlan, check_range, parse_planes
from live_deepz.errors import DPMRangeError, InputError

__all__ = [
    "DEFAULT_PLANES",
    "MAX_LIVE_PLANES",
    "LivePlans",
    "SurfaceCalibration",
    "clip_to_range",
    "is_drift_plan",
]

DEFAULT_PLANES = "-10:10:2"
MAX_LIVE_PLANES = 64
"""At most this many planes per frame in the live display (the grid + the depth plane)."""

ContinueDrift = Callable[[Any, np.ndarray], Any]
"""``(current drift plan, new offsets) -> drift plan`` continuing the current correction."""


@dataclass
class SurfaceCalibration:
    """A surface applied from the calibration wizard: the planes are ``surface + offsets``."""

    surface_um: np.ndarray
    """``(H, W)`` µm, read-only."""
    spec: dict[str, Any] | None
    summary: str


def is_drift_plan(plan: Any) -> bool:
    """Whether ``plan`` is a drift-compensation plan (it tracks and updates per frame)."""
    return plan is not None and hasattr(plan, "trace") and hasattr(plan, "update")


def clip_to_range(
    grid: np.ndarray, depth_um: float, z_range_um: tuple[float, float]
) -> tuple[np.ndarray, float]:
    """The grid's planes inside the model's range (``[0]`` or the range's start when none
    is) and the depth clamped to it."""
    lo, hi = (float(v) for v in z_range_um)
    inside = grid[(grid >= lo) & (grid <= hi)]
    if inside.size == 0:
        inside = np.array([0.0]) if lo <= 0.0 <= hi else np.array([lo])
    return inside, float(min(max(depth_um, lo), hi))


class LivePlans:
    """The live planes (grid, depth), the surface calibration and the drift plan, and the
    plan they compose to; see the module docstring."""

    def __init__(self, planes: str = DEFAULT_PLANES, depth_um: float = 0.0) -> None:
        self.grid_offsets: np.ndarray = parse_planes(planes)
        self.planes_spec = planes
        self.depth_um = float(depth_um)
        self.calibration: SurfaceCalibration | None = None
        self.drift_enabled = False
        """Drift compensation wanted (its plan may still be being prepared)."""
        self.drift_plan: Any = None
        """The drift plan in use, or None."""
        self.continue_drift: ContinueDrift | None = None
        """Builds the drift plan for new offsets (given from outside: calibration)."""

    # ------------------------------------------------------------------ offsets
    def plan_offsets(self) -> np.ndarray:
        """The offsets the pipeline computes: the grid's plus the depth slider's."""
        return parse_planes([*self.grid_offsets.tolist(), self.depth_um])

    def drift_offsets(self) -> np.ndarray:
        """The offsets of a drift plan: the plan's plus 0 (the drift-corrected feed)."""
        return parse_planes([*self.plan_offsets().tolist(), 0.0])

    def set_grid(self, offsets: np.ndarray, spec: str) -> None:
        self.grid_offsets, self.planes_spec = np.asarray(offsets, dtype=float), spec

    def reset(self, planes: str, depth_um: float) -> str:
        """New planes (a session opens); returns a warning when ``planes`` is unusable (the
        grid stays)."""
        try:
            self.set_grid(parse_planes(planes), planes)
        except InputError as exc:
            return f"Plane plan {planes!r} ignored: {exc}"
        finally:
            self.depth_um = float(depth_um)
        return ""

    def adopt_clipped(self, grid: np.ndarray, depth_um: float) -> str:
        """Take a (range-clipped) grid and depth; returns a warning when planes were left
        out ("" when none was)."""
        changed = not np.array_equal(grid, self.grid_offsets)
        if changed:
            self.set_grid(grid, ",".join(f"{v:g}" for v in grid))
        self.depth_um = float(depth_um)
        left_out = "Planes outside the model's trained range were left out of the plan."
        return left_out if changed else ""

    def validate_planes(
        self, spec: str, z_range_um: tuple[float, float]
    ) -> tuple[np.ndarray | None, str]:
        """``(offsets, "")`` if ``spec`` is usable with a model of ``z_range_um``, else
        ``(None, message)`` in plain words."""
        try:
            offsets = parse_planes(spec)
        except InputError as exc:
            return None, str(exc).replace("planes ", "Planes ", 1)
        lo, hi = z_range_um
        try:
            check_range(offsets, (lo, hi), what="planes")
        except DPMRangeError:
            return None, (
                f"Planes {offsets.min():+g} … {offsets.max():+g} µm go outside the model's "
                f"trained range ({lo:+g} … {hi:+g} µm), where Deep-Z is not valid. Choose "
                "planes within that range."
            )
        if offsets.size + 1 > MAX_LIVE_PLANES:
            return None, (
                f"{offsets.size} planes are too many for live display ({MAX_LIVE_PLANES} at most)."
            )
        return offsets, ""

    @contextlib.contextmanager
    def change(self) -> Iterator[None]:
        """Change the state inside ``with``; an exception puts the old values back (the
        pipeline refused the composed plan)."""
        old = (
            self.grid_offsets,
            self.planes_spec,
            self.depth_um,
            self.calibration,
            self.drift_enabled,
        )
        try:
            yield
        except BaseException:
            (
                self.grid_offsets,
                self.planes_spec,
                self.depth_um,
                self.calibration,
                self.drift_enabled,
            ) = old
            raise

    # ------------------------------------------------------------------ composition
    def current_plan(self) -> Any:
        """The plan for the current planes: drift-compensated, on the calibrated surface, or
        flat (see the module docstring)."""
        dp = self.drift_plan
        if self.drift_enabled and dp is not None:
            want = self.drift_offsets()
            if np.array_equal(want, dp.offsets_um):
                return dp
            if self.continue_drift is None:
                raise InputError("drift compensation has no plan builder; switch it off and on")
            return self.continue_drift(dp, want)
        offsets = self.plan_offsets()
        cal = self.calibration
        if cal is not None:
            return StaticPlanePlan(offsets, cal.surface_um, surface_spec=cal.spec)
        return StaticPlanePlan(offsets)

    def adopt_plan(self, plan: Any) -> Any:
        """``plan`` is in use now: keep it if it is a drift plan. Returns the drift plan it
        replaced (to close once the engine has left it), or None."""
        old = self.drift_plan
        if plan is old:
            return None
        self.drift_plan = plan if is_drift_plan(plan) else None
        return old

    def take_drift_plan(self) -> Any:
        """Forget the drift plan (returned, to close) and switch drift compensation off."""
        old, self.drift_plan = self.drift_plan, None
        self.drift_enabled = False
        return old

    def surface_note(self) -> str:
        """Why the surface is not applied now ("" when it is, or there is none)."""
        if self.calibration is not None and self.drift_enabled:
            return "Surface calibration stored; it applies when drift compensation is off."
        return ""
