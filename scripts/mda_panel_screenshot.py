"""Screenshot of the MDA panel (docs/mda_panel.png) after a short MDA on the simulated worm.

QT_QPA_PLATFORM=offscreen OMP_NUM_THREADS=1 python scripts/mda_panel_screenshot.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import useq
from qtpy.QtWidgets import QApplication

from live_deepz.engine import create_backend
from live_deepz.microscope import open_core
from live_deepz.modelfile import load_model, resolve_model
from live_deepz.ui._mda_widget import MDAPanel

OUT = Path(__file__).resolve().parents[1] / "docs" / "mda_panel.png"


def main() -> None:
    app = QApplication.instance() or QApplication(sys.argv)
    core = open_core("sim", sample="worm", size=256, exposure_ms=20)
    model = load_model(resolve_model(None))
    backend = create_backend("torch", model.generator, precision="fp32", device="cpu")
    panel = MDAPanel(
        core,
        backend,
        dpm_scale_um=float(model.card.dpm_scale_um),
        z_range_um=tuple(model.card.z_range_um),
        model_name=f"{model.card.name} ({model.weights_sha256[:12]}…)",
        models=model,
        planes="-4:4:2",
    )
    panel.resize(1500, 800)
    panel.show()
    seq = useq.MDASequence(
        stage_positions=[(0, 0, 0), (40, 20, 0), (-30, 10, 0)],
        channels=["nuclei", "calcium"],
        time_plan={"interval": 1.0, "loops": 3},
        axis_order="tpcz",
    )
    out = Path(tempfile.mkdtemp()) / "shot.ome.zarr"
    panel.run(seq, output=out)
    t0 = time.perf_counter()
    while (core.mda.is_running() or panel.processor.running) and time.perf_counter() - t0 < 300:
        app.processEvents()
        time.sleep(0.02)
    for _ in range(20):
        app.processEvents()
        time.sleep(0.02)
    panel.grab().save(str(OUT))
    print(f"wrote {OUT}; {panel.status.text()}")
    panel.shutdown()


if __name__ == "__main__":
    main()
