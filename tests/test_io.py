"""OME-TIFF writer/reader: round trip and actionable errors for bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from live_deepz.errors import InputError
from live_deepz.io import read_stack, write_ome_tiff


def test_round_trip_zyx(tmp_path) -> None:
    data = np.random.default_rng(0).integers(0, 4000, (7, 20, 24)).astype(np.uint16)
    z = -1.5 + 0.5 * np.arange(7)
    extra = {"optics": {"na": 0.75}, "seed": np.int64(3), "z": z}
    p = write_ome_tiff(
        tmp_path / "s.ome.tif", data, pixel_size_um=0.325, z_positions_um=z, extra_metadata=extra
    )
    with tifffile.TiffFile(p) as tif:
        assert tif.is_ome
        xml = tif.ome_metadata
    assert 'PhysicalSizeZ="0.5"' in xml and 'PositionZ="-1.5"' in xml
    assert 'Namespace="live-deepz"' in xml
    s = read_stack(p)
    np.testing.assert_array_equal(s.data, data)
    assert s.axes == "ZYX" and s.n_planes == 7
    assert s.z_step_um == pytest.approx(0.5)
    assert s.pixel_size_um == pytest.approx(0.325)
    np.testing.assert_allclose(s.z_positions_um, z)
    assert s.metadata == {"optics": {"na": 0.75}, "seed": 3, "z": z.tolist()}


def test_round_trip_zcyx_compressed_float(tmp_path) -> None:
    data = np.random.default_rng(1).random((4, 2, 8, 9)).astype(np.float32)
    p = write_ome_tiff(
        tmp_path / "c.ome.tif",
        data,
        axes="ZCYX",
        z_step_um=0.25,
        channel_names=["nuclei", "calcium"],
        compress=True,
    )
    s = read_stack(p)
    assert s.axes == "ZCYX" and s.channel_names == ["nuclei", "calcium"]
    np.testing.assert_array_equal(s.data, data)
    np.testing.assert_allclose(s.z_positions_um, [0.0, 0.25, 0.5, 0.75])
    assert s.pixel_size_um is None and s.metadata == {}
    # an explicit z step overrides the file's
    assert read_stack(p, z_step_um=1.0).z_step_um == 1.0


def test_bad_inputs(tmp_path) -> None:
    with pytest.raises(InputError, match="not found"):
        read_stack(tmp_path / "missing.tif")
    txt = tmp_path / "notes.tif"
    txt.write_text("not an image")
    with pytest.raises(InputError, match="not a readable TIFF"):
        read_stack(txt)
    single = tmp_path / "single.tif"
    tifffile.imwrite(single, np.zeros((16, 16), np.uint16))
    with pytest.raises(InputError, match="single 2D image"):
        read_stack(single)
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.zeros((3, 16, 16), np.uint16), photometric="minisblack")
    with pytest.raises(InputError, match="z step"):
        read_stack(plain)
    assert read_stack(plain, z_step_um=0.5).z_step_um == 0.5
    nan = tmp_path / "nan.ome.tif"
    bad = np.zeros((3, 8, 8), np.float32)
    bad[1, 2, 3] = np.nan
    write_ome_tiff(nan, bad, z_step_um=0.5)
    with pytest.raises(InputError, match="NaN"):
        read_stack(nan)
    rgb = tmp_path / "rgb.tif"
    tifffile.imwrite(rgb, np.zeros((16, 16, 3), np.uint8), photometric="rgb")
    with pytest.raises(InputError, match="RGB"):
        read_stack(rgb)
    five = tmp_path / "five.ome.tif"
    write_ome_tiff(five, np.zeros((2, 3, 2, 4, 4), np.uint16), axes="TZCYX", z_step_um=1.0)
    with pytest.raises(InputError, match="expected a z-stack"):
        read_stack(five)
    with pytest.raises(InputError, match="axes"):
        write_ome_tiff(tmp_path / "x.ome.tif", np.zeros((2, 4, 4)), axes="YX")
    with pytest.raises(InputError, match="z positions"):
        write_ome_tiff(tmp_path / "x.ome.tif", np.zeros((2, 4, 4)), z_positions_um=[0.0])


def test_imagej_spacing(tmp_path) -> None:
    p = tmp_path / "ij.tif"
    tifffile.imwrite(
        p,
        np.zeros((4, 8, 8), np.uint16),
        imagej=True,
        resolution=(1 / 0.5, 1 / 0.5),
        metadata={"spacing": 0.3, "unit": "micron", "axes": "ZYX"},
    )
    s = read_stack(p)
    assert s.z_step_um == pytest.approx(0.3)
    assert s.pixel_size_um == pytest.approx(0.5)


def test_open_recording_is_reachable_from_io() -> None:
    """The issue's entry point ``live_deepz.io.open_recording`` reads recordings (and names a
    missing file like the recording package does)."""
    import live_deepz.io as lio
    from live_deepz.errors import LiveDeepzError

    with pytest.raises(LiveDeepzError, match=r"nothing\.ome\.tif"):
        lio.open_recording("nothing.ome.tif")
