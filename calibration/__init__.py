"""live_deepz.calibration: focus estimation, surface fitting and drift tracking (no Qt)."""
