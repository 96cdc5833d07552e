"""A failed ``refocus`` leaves nothing behind; tiny images and broken models are refused;
``--units counts``; the progress bar counts planes (issue 15)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from _recording_support import make_tiny_model

from live_deepz.cli import main
from live_deepz.input_limits import MIN_FRAME_PX
from live_deepz.recording import open_recording

pytestmark = pytest.mark.timeout(180)
FAST = ["--backend", "torch", "--precision", "fp32", "--no-progress"]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> str:
    import torch

    torch.set_num_threads(1)
    return str(make_tiny_model(tmp_path_factory.mktemp("models")))


def _image(h: int = 48, w: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (100 + 2000 * (rng.random((h, w)) > 0.9)).astype(np.uint16)


def _refocus(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    rc = main(["refocus", *argv])
    cap = capsys.readouterr()
    return rc, cap.out + cap.err


def test_nan_input_leaves_no_output_and_the_rerun_needs_no_overwrite(
    tmp_path: Path, model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _image().astype(np.float32)
    bad[3, 3] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", bad)
    out = tmp_path / "o.ome.tif"
    rc, text = _refocus(
        capsys,
        str(tmp_path / "nan.tif"),
        "--planes=-2:2:2",
        "--model",
        model,
        *FAST,
        "-o",
        str(out),
    )
    assert rc == 1 and "NaN" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.tif"]  # no output, no journal
    tifffile.imwrite(tmp_path / "ok.tif", _image())
    rc, text = _refocus(
        capsys, str(tmp_path / "ok.tif"), "--planes=-2:2:2", "--model", model, *FAST, "-o", str(out)
    )
    assert rc == 0, text


@pytest.mark.parametrize("shape", [(1, 3), (MIN_FRAME_PX - 1, 64)])
def test_images_below_the_networks_smallest_input_are_refused(
    tmp_path: Path, model: str, capsys: pytest.CaptureFixture[str], shape: tuple[int, int]
) -> None:
    tifffile.imwrite(tmp_path / "small.tif", np.full(shape, 200, np.uint16))
    out = tmp_path / "o.ome.zarr"
    rc, text = _refocus(
        capsys, str(tmp_path / "small.tif"), "--planes=0", "--model", model, *FAST, "-o", str(out)
    )
    assert rc == 1 and f"at least {MIN_FRAME_PX}×{MIN_FRAME_PX} px" in text, text
    assert not out.exists() and not list(tmp_path.glob("o.*"))


def test_min_frame_follows_the_unet_depth() -> None:
    from live_deepz.network import SIZE_MULTIPLE

    assert MIN_FRAME_PX == 2 * SIZE_MULTIPLE


def test_model_with_nan_weights_is_refused_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    folder = make_tiny_model(tmp_path, "broken")
    with safe_open(folder / "model.safetensors", "np") as fh:
        meta = fh.metadata()
    weights = load_file(folder / "model.safetensors")
    first = sorted(weights)[0]
    weights[first] = np.full_like(weights[first], np.nan)
    save_file(weights, folder / "model.safetensors", metadata=meta)
    tifffile.imwrite(tmp_path / "img.tif", _image())
    out = tmp_path / "o.ome.tif"
    rc, text = _refocus(
        capsys,
        str(tmp_path / "img.tif"),
        "--planes=0",
        "--model",
        str(folder),
        *FAST,
        "-o",
        str(out),
    )
    assert rc == 1 and "NaN or inf" in text and str(folder) in text, text
    assert not out.exists()


def test_non_finite_output_is_an_error_naming_the_model(tmp_path: Path) -> None:
    from live_deepz.dpm import StaticPlanePlan
    from live_deepz.engine._offline import read_input, refocus_file
    from live_deepz.errors import ModelFileError
    from live_deepz.modelfile import load_model

    class NaNBackend:
        def infer(self, image: np.ndarray, dpms: np.ndarray, out: np.ndarray) -> None:
            out[:] = np.nan

    folder = make_tiny_model(tmp_path, "m")
    tifffile.imwrite(tmp_path / "img.tif", _image())
    out = tmp_path / "o.ome.tif"
    with pytest.raises(ModelFileError, match="NaN/inf") as info:
        refocus_file(
            read_input(tmp_path / "img.tif"),
            out,
            StaticPlanePlan([0.0]),
            [load_model(folder)],
            backends=[NaNBackend()],
            progress=False,
        )
    assert str(folder) in str(info.value)
    assert not out.exists() and not list(tmp_path.glob("o.*"))


def test_units_counts_undo_the_normalisation(
    tmp_path: Path, model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tifffile.imwrite(tmp_path / "img.tif", _image())
    outs = {}
    for units in ("normalized", "counts"):
        out = tmp_path / f"{units}.ome.tif"
        rc, text = _refocus(
            capsys,
            str(tmp_path / "img.tif"),
            "--planes=-2:2:2",
            "--units",
            units,
            "--model",
            model,
            *FAST,
            "-o",
            str(out),
        )
        assert rc == 0, text
        with open_recording(out) as r:
            outs[units] = (np.asarray(r.planes), r.metadata)
    norm, _ = outs["normalized"]
    counts, meta_c = outs["counts"]
    nz = meta_c["normalizations"][0]
    np.testing.assert_allclose(counts, norm * nz["scale"] + nz["background"], rtol=1e-5, atol=1e-3)
    assert nz["scale"] > 100 and nz["background"] > 50  # a real change of units
    journal = (tmp_path / "counts.journal.jsonl").read_text().splitlines()[0]
    assert '"unit_name":"counts"' in journal and "camera counts" in journal


def test_progress_counts_planes_for_one_image(
    tmp_path: Path, model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tifffile.imwrite(tmp_path / "img.tif", _image())
    rc = main(
        [
            "refocus",
            str(tmp_path / "img.tif"),
            "--planes=-4:4:1",
            "--model",
            model,
            "--backend",
            "torch",
            "--precision",
            "fp32",
            "-o",
            str(tmp_path / "o.ome.tif"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 0 and "9/9" in err and "plane" in err, err
