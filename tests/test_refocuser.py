"""The engine's one refocuser: range check, µm → network units, chunks and padding."""

from __future__ import annotations

import numpy as np
import pytest

from live_deepz.dpm import OutOfRangeWarning
from live_deepz.engine import Refocuser
from live_deepz.errors import DPMRangeError, InputError


class RecordingBackend:
    """``out[k] = image * (1 + k_net)`` and remembers every DPM array it was handed."""

    def __init__(self) -> None:
        self.seen: list[np.ndarray] = []

    def infer(self, image: np.ndarray, dpms_net: np.ndarray, out: np.ndarray) -> None:
        assert out.shape == dpms_net.shape
        self.seen.append(dpms_net)
        out[...] = image[None] * (1.0 + dpms_net)


CARD = {"z_range_um": (-10.0, 10.0), "dpm_scale_um": 5.0, "name": "t"}


def test_converts_micrometres_with_the_card_scale() -> None:
    b = RecordingBackend()
    r = Refocuser(CARD, b)
    img = np.full((4, 6), 2.0, np.float32)
    out = r.refocus(img, np.array([-5.0, 0.0, 10.0]))
    assert out.shape == (3, 4, 6)
    np.testing.assert_allclose(out[:, 0, 0], 2.0 * (1.0 + np.array([-1.0, 0.0, 2.0])))
    maps = np.stack([np.full((4, 6), v, np.float32) for v in (-5.0, 0.0, 10.0)])
    np.testing.assert_array_equal(r.refocus(img, maps), out)
    stack = r.refocus(np.stack([img, 2 * img]), maps)
    assert stack.shape == (2, 3, 4, 6)
    np.testing.assert_array_equal(stack[1], 2 * out)


def test_refuses_or_warns_outside_the_trained_range() -> None:
    img = np.ones((4, 4), np.float32)
    with pytest.raises(DPMRangeError, match="plan 3"):
        Refocuser(CARD, RecordingBackend()).refocus(img, [12.0], what="plan 3")
    with pytest.warns(OutOfRangeWarning):
        out = Refocuser(CARD, RecordingBackend(), allow_out_of_range=True).refocus(img, [12.0])
    assert out[0, 0, 0] == pytest.approx(1.0 + 12.0 / 5.0)
    with pytest.raises(InputError, match=r"\(K, H, W\)"):
        Refocuser(CARD, RecordingBackend()).refocus(img, np.zeros((2, 3, 3)))


def test_chunks_pad_the_last_call_and_match_one_call() -> None:
    img = np.random.default_rng(0).random((5, 5), dtype=np.float32)
    dz = np.linspace(-8, 8, 7)
    whole = Refocuser(CARD, RecordingBackend()).refocus(img, dz)
    b = RecordingBackend()
    chunked = Refocuser(CARD, b, max_planes=3).refocus(img, dz)
    np.testing.assert_array_equal(chunked, whole)
    assert [a.shape[0] for a in b.seen] == [3, 3, 3]  # 7 planes: 3 + 3 + (1 padded to 3)


def test_static_dpms_are_converted_once_and_handed_read_only() -> None:
    b = RecordingBackend()
    r = Refocuser(CARD, b)
    img = np.ones((4, 4), np.float32)
    for _ in range(3):
        r.refocus(img, [-2.0, 2.0])
    assert b.seen[0] is b.seen[1] is b.seen[2] and not b.seen[0].flags.writeable
    net = r.network_dpms(np.array([5.0]))
    assert net.dtype == np.float32 and net[0] == pytest.approx(1.0)
