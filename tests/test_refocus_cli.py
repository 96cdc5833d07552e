"""``live-deepz refocus``: inputs of every kind, outputs read back, bad inputs refused clearly.

Small images (64x80) and a tiny random model; ``--backend torch --precision fp32``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from _recording_support import make_tiny_model

from live_deepz.cli import main
from live_deepz.recording import open_recording

pytestmark = pytest.mark.timeout(180)

H, W = 64, 80
FAST = ["--backend", "torch", "--precision", "fp32", "--no-progress"]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> str:
    import torch

    torch.set_num_threads(1)
    return str(make_tiny_model(tmp_path_factory.mktemp("models")))


def _frames(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (100 + 2000 * (rng.random((n, H, W)) > 0.9)).astype(np.uint16)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    rc = main(["refocus", *argv])
    cap = capsys.readouterr()
    return rc, cap.out + cap.err


def test_single_image_onto_planes(
    tmp_path: Path, model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tifffile.imwrite(tmp_path / "img.tif", _frames(1)[0])
    out = tmp_path / "img.ome.tif"
    rc, text = _run(
        capsys,
        str(tmp_path / "img.tif"),
        "--planes=-4:4:4",
        "--model",
        model,
        *FAST,
        "-o",
        str(out),
    )
    assert rc == 0, text
    assert "1 frame(s) x 1 channel(s) x 3 plane(s)" in text
    with tifffile.TiffFile(out) as tf:
        assert tf.is_ome and tf.series[0].axes == "ZYX" and tf.series[0].shape == (3, H, W)
    with open_recording(out) as r:
        assert r.kind == "refocus" and r.raw is None and r.complete.all()
        np.testing.assert_array_equal(r.offsets_um, [-4, 0, 4])
        assert np.isfinite(np.asarray(r.planes)).all()
        assert (
            r.metadata["model"]["card"]["name"] == "tiny" and r.metadata["model"]["weights_sha256"]
        )
        assert r.metadata["plan"]["offsets_um"] == [-4.0, 0.0, 4.0]
        assert r.metadata["optics"]["pixel_size_um"] > 0


def test_time_lapse_onto_a_tilted_plane_as_zarr(
    tmp_path: Path, model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tifffile.imwrite(tmp_path / "tl.tif", _frames(3), photometric="minisblack")
    out = tmp_path / "tl.ome.zarr"
    rc, text = _run(
        capsys,
        str(tmp_path / "tl.tif"),
        "--tilt-deg",
        "2",
        "--tilt-azimuth-deg",
        "30",
        "--planes=-1:1:1",
        "--model",
        model,
        *FAST,
        "-o",
        str(out),
    )
    assert rc == 0, text
    with open_recording(out) as r:
        assert r.format == "zarr" and r.planes.shape == (3, 3, H, W) and r.complete.all()
        assert r.metadata["plan"]["surface"]["kind"] == "tilted_plane"
        assert r.metadata["source"]["frames"] == 3


def test_z_stack_needs_an_input_plane(
    tmp_path: Path, model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tifffile.imwrite(tmp_path / "zs.ome.tif", _frames(4), metadata={"axes": "ZYX"})
    out = tmp_path / "zs_out.ome.tif"
    rc, text = _run(
        capsys,
        str(tmp_path / "zs.ome.tif"),
        "--offset-um",
        "2",
        "--model",
        model,
        *FAST,
        "-o",
        str(out),
    )
    assert rc == 1 and "z-stack of 4 planes" in text and "--input-plane" in text
    rc, text = _run(
        capsys,
        str(tmp_path / "zs.ome.tif"),
        "--offset-um",
        "2",
        "--input-plane",
        "9",
        "--model",
        model,
        *FAST,
        "-o",
        str(out),
    )
    assert rc == 1 and "outside the stack's 4 plane(s)" in text
    rc, text = _run(
        capsys,
        str(tmp_path / "zs.ome.tif"),
        "--offset-um",
        "2",
        "--input-plane",
        "2",
        "--model",
        model,
        *FAST,
        "-o",
        str(out),
    )
    assert rc == 0, text
    with open_recording(out) as r:
        assert r.planes.shape == (1, 1, H, W) and r.metadata["source"]["input_plane"] == 2


def test_multichannel_with_one_model_per_channel_tiled(
    tmp_path: Path, model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = np.stack([_frames(1, 1)[0], _frames(1, 2)[0]])
    tifffile.imwrite(tmp_path / "cc.ome.tif", data, metadata={"axes": "CYX"})
    out = tmp_path / "cc_out.ome.tif"
    rc, text = _run(
        capsys,
        str(tmp_path / "cc.ome.tif"),
        "--planes=0,3",
        "--model",
        f"{model},{model}",
        "--tile",
        "48",
        *FAST,
        "-o",
        str(out),
    )
    assert rc == 0, text
    assert "tiled" in text
    with tifffile.TiffFile(out) as tf:
        assert tf.series[0].axes == "CZYX" and tf.series[0].shape == (2, 2, H, W)
    with open_recording(out) as r:
        assert r.planes.shape == (1, 2, 2, H, W) and r.channels == ["C0", "C1"]
        assert len(r.metadata["normalizations"]) == 2
    rc, text = _run(
        capsys,
        str(tmp_path / "cc.ome.tif"),
        "--planes=0",
        "--model",
        f"{model},{model},{model}",
        *FAST,
        "-o",
        str(tmp_path / "x.ome.tif"),
    )
    assert rc == 1 and "3 model(s) given for 2 channels" in text


def test_surface_json_forms(tmp_path: Path, model: str, capsys: pytest.CaptureFixture[str]) -> None:
    tifffile.imwrite(tmp_path / "img.tif", _frames(1)[0])
    calib = {  # the keys `live-deepz calibrate` writes (SurfaceFit.to_json), plane fit
        "fit": "plane",
        "tilt_deg": 1.0,
        "azimuth_deg": 90.0,
        "offset_um": 0.5,
        "coefficients": {"c0": 0.5, "x": 0.0, "y": 0.01745},
        "residual_rms_um": 0.1,
        "n_points": 12,
        "shape": [H, W],
        "pixel_size_um": 0.325,
        "surface_spec": {"kind": "tilted_plane", "gradient": [0.01745, 0.0], "offset_um": 0.5},
    }
    minimal = {"fit": "plane", "tilt_deg": 1.0, "azimuth_deg": 0.0, "offset_um": -1.0}
    quad = {
        "fit": "quadratic",
        "coefficients": {"c0": 0.2, "xx": 1e-4},
        "tilt_deg": 0,
        "azimuth_deg": 0,
    }
    for name, d in (("calib", calib), ("minimal", minimal), ("quad", quad)):
        (tmp_path / f"{name}.json").write_text(json.dumps(d))
        out = tmp_path / f"{name}.ome.tif"
        rc, text = _run(
            capsys,
            str(tmp_path / "img.tif"),
            "--surface",
            str(tmp_path / f"{name}.json"),
            "--model",
            model,
            *FAST,
            "-o",
            str(out),
        )
        assert rc == 0, (name, text)
        with open_recording(out) as r:
            assert r.planes.shape == (1, 1, H, W)
    wrong = dict(calib, shape=[32, 32])
    (tmp_path / "wrong.json").write_text(json.dumps(wrong))
    rc, text = _run(
        capsys,
        str(tmp_path / "img.tif"),
        "--surface",
        str(tmp_path / "wrong.json"),
        "--model",
        model,
        *FAST,
        "-o",
        str(tmp_path / "w.ome.tif"),
    )
    assert rc == 1 and "calibrated on 32×32 px" in text


def test_dpm_tiff_input(tmp_path: Path, model: str, capsys: pytest.CaptureFixture[str]) -> None:
    tifffile.imwrite(tmp_path / "img.tif", _frames(1)[0])
    dpms = np.stack([np.full((H, W), v, np.float32) for v in (-1.0, 2.0)])
    tifffile.imwrite(tmp_path / "dpm.tif", dpms, photometric="minisblack")
    rc, text = _run(
        capsys,
        str(tmp_path / "img.tif"),
        "--dpm",
        str(tmp_path / "dpm.tif"),
        "--model",
        model,
        *FAST,
        "-o",
        str(tmp_path / "d.ome.tif"),
    )
    assert rc == 0, text
    with open_recording(tmp_path / "d.ome.tif") as r:
        np.testing.assert_array_equal(r.offsets_um, [-1.0, 2.0])
    tifffile.imwrite(tmp_path / "small.tif", np.zeros((8, 8), np.float32))
    rc, text = _run(
        capsys,
        str(tmp_path / "img.tif"),
        "--dpm",
        str(tmp_path / "small.tif"),
        "--model",
        model,
        *FAST,
        "-o",
        str(tmp_path / "e.ome.tif"),
    )
    assert rc == 1 and "DPM file" in text


@pytest.mark.parametrize(
    ("kind", "expect"),
    [
        ("complex", "complex64 cannot be refocused"),
        ("bool", "bool cannot be refocused"),
        ("nan", "NaN/inf pixel"),
        ("text", "cannot read"),
        ("missing", "does not exist"),
        ("rgb", "RGB"),
    ],
)
def test_bad_inputs_exit_1_with_a_clear_message(
    tmp_path: Path, model: str, capsys: pytest.CaptureFixture[str], kind: str, expect: str
) -> None:
    src = tmp_path / f"{kind}.tif"
    img = _frames(1)[0]
    if kind == "complex":
        tifffile.imwrite(src, img.astype(np.complex64))
    elif kind == "bool":
        tifffile.imwrite(src, img > 1000, photometric="minisblack")
    elif kind == "nan":
        f = img.astype(np.float32)
        f[5, 5] = np.nan
        tifffile.imwrite(src, f)
    elif kind == "text":
        src.write_text("not an image")
    elif kind == "rgb":
        tifffile.imwrite(src, np.zeros((H, W, 3), np.uint8), photometric="rgb")
    rc, text = _run(
        capsys, str(src), "--planes=0", "--model", model, *FAST, "-o", str(tmp_path / "out.ome.tif")
    )
    assert rc == 1 and expect in text, text
    assert "Traceback" not in text


def test_planes_outside_the_models_range_name_the_range(
    tmp_path: Path, model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tifffile.imwrite(tmp_path / "img.tif", _frames(1)[0])
    rc, text = _run(
        capsys,
        str(tmp_path / "img.tif"),
        "--planes=-20:0:10",
        "--model",
        model,
        *FAST,
        "-o",
        str(tmp_path / "o.ome.tif"),
    )
    assert rc == 1 and "[-10, +10]" in text and "--allow-out-of-range" in text
    assert not (tmp_path / "o.ome.tif").exists()
    rc, text = _run(
        capsys,
        str(tmp_path / "img.tif"),
        "--planes=-12",
        "--allow-out-of-range",
        "--model",
        model,
        *FAST,
        "-o",
        str(tmp_path / "o.ome.tif"),
    )
    assert rc == 0 and "outside the model's trained axial range" in text
    rc, text = _run(
        capsys,
        str(tmp_path / "img.tif"),
        "--planes=0",
        "--model",
        model,
        *FAST,
        "-o",
        str(tmp_path / "o.ome.tif"),
    )
    assert rc == 1 and "already exists" in text
    rc, text = _run(
        capsys,
        str(tmp_path / "img.tif"),
        "--model",
        model,
        *FAST,
        "-o",
        str(tmp_path / "p.ome.tif"),
    )
    assert rc == 1 and "say where to refocus" in text
