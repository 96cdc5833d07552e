"""Ring buffers, subscriptions over them and the statistics helpers (no camera, no model)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from live_deepz.engine import (
    FrameMeta,
    FrameRing,
    PipelineError,
    PlaneMeta,
    PlaneRing,
    RingClosed,
    SlotRing,
    StreamSubscriber,
)
from live_deepz.engine._stats import RollingWindow, StatsCollector
from live_deepz.engine._subscribers import LatestSubscriber

pytestmark = pytest.mark.timeout(60)


def _fmeta(i: int) -> FrameMeta:
    return FrameMeta(
        index=i,
        camera_frame=i,
        camera_time_ms=float(i),
        arrival_s=time.perf_counter(),
        stage_z_um=0.0,
        metadata={},
    )


def _put(ring: FrameRing, value: int) -> int:
    slot = ring.claim()
    assert slot is not None
    slot.arrays["image"].fill(value)
    return ring.publish(slot, _fmeta(ring.next_seq))


def _attached(ring: FrameRing | PlaneRing, kind: str, start: int = 0) -> StreamSubscriber:
    sub = StreamSubscriber(kind, ring.capacity, "test")
    sub._attach(ring, start)
    return sub


def test_wrap_around_keeps_the_newest_and_refuses_overwritten() -> None:
    ring = FrameRing(4, 8, 8, np.uint16)
    assert [_put(ring, v) for v in range(10)] == list(range(10))
    assert ring.next_seq == 10
    assert ring.oldest_seq() == 6
    out = {"image": np.empty((8, 8), np.uint16)}
    for seq in range(6):  # overwritten
        assert ring.read(seq, out) is None
    for seq in range(6, 10):
        meta = ring.read(seq, out)
        assert meta is not None and meta.index == seq
        assert (out["image"] == seq).all()
    assert ring.wait_readable(2, timeout=0) == ("lapped", 6)
    assert ring.wait_readable(7, timeout=0) == ("ok", 7)
    assert ring.wait_readable(10, timeout=0) == ("timeout", 10)


def test_a_read_that_overlaps_an_overwrite_is_detected() -> None:
    ring = FrameRing(2, 4, 4, np.uint16)
    _put(ring, 0)
    _put(ring, 1)
    got = ring.view(0)
    assert got is not None
    slot, gen, meta = got
    assert meta.index == 0 and ring.still_valid(slot, gen)
    ring.claim()  # the producer starts overwriting seq 0's slot while we "copy" it
    assert not ring.still_valid(slot, gen)
    assert meta.index == 0  # the metadata taken with the view stays that frame's
    assert ring.view(0) is None


def test_slot_arrays_are_allocated_once() -> None:
    ring = FrameRing(3, 8, 8, np.uint16)
    ids = {id(s.arrays["image"]) for s in ring._slots}
    for v in range(20):
        _put(ring, v)
    assert {id(s.arrays["image"]) for s in ring._slots} == ids


def test_gated_ring_waits_for_release_instead_of_overwriting() -> None:
    ring = FrameRing(3, 4, 4, np.uint8, gated=True)
    for v in range(3):
        _put(ring, v)
    assert not ring.has_room()
    assert ring.claim(timeout=0.01) is None  # would overwrite seq 0, not released
    ring.release(0)
    assert ring.has_room()
    _put(ring, 3)
    out = {"image": np.empty((4, 4), np.uint8)}
    assert ring.read(1, out) is not None  # seq 1 still held: nothing unreleased was lost

    released = threading.Event()

    def consumer() -> None:
        time.sleep(0.05)
        released.set()
        ring.release(1)

    t = threading.Thread(target=consumer)
    t.start()
    slot = ring.claim(timeout=5)  # blocks until the consumer releases seq 1
    assert slot is not None and released.is_set()
    ring.publish(slot, _fmeta(4))
    t.join()


def test_close_wakes_waiters_and_refuses_producers() -> None:
    ring = FrameRing(2, 4, 4, np.uint8)
    _put(ring, 1)
    result: list[tuple[str, int]] = []
    t = threading.Thread(target=lambda: result.append(ring.wait_readable(1, timeout=10)))
    t.start()
    time.sleep(0.02)
    ring.close("camera exploded")
    t.join(5)
    assert result == [("closed", 1)]
    assert ring.error == "camera exploded"
    with pytest.raises(RingClosed):
        ring.claim()
    sub = _attached(ring, "raw")
    assert sub.get(timeout=1) is not None  # what was published is still delivered
    with pytest.raises(PipelineError, match="camera exploded"):
        sub.get(timeout=1)
    assert sub.ended


def test_publish_after_close_raises() -> None:
    ring = FrameRing(2, 4, 4, np.uint8)
    slot = ring.claim()
    assert slot is not None
    ring.close()
    with pytest.raises(RingClosed):
        ring.publish(slot, _fmeta(0))


@pytest.mark.parametrize(("side", "n_frames"), [(128, 400), (2, 20000)])
def test_concurrent_readers_never_see_torn_frames(side: int, n_frames: int) -> None:
    """A fast producer on a tiny ring against readers: every frame read is whole.

    Large frames make a copy overlap an overwrite; tiny ones make many more races between a
    reader's check and the producer's claim. Any exception in a reader fails the test.
    """
    ring = FrameRing(3, side, side, np.uint32)
    half = side // 2
    stop = threading.Event()
    errors: list[str] = []
    stream_results: list[tuple[list[int], list[int]]] = []
    latest_seen: list[int] = []

    def guarded(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as e:  # a reader must never crash
                errors.append(repr(e))

        return run

    def producer() -> None:
        for v in range(n_frames):
            slot = ring.claim()
            assert slot is not None
            img = slot.arrays["image"]
            img[:half] = v  # two separate writes: a reader in between would see a mix
            img[half:] = v
            ring.publish(slot, _fmeta(v))
        ring.close()

    def stream_reader() -> None:
        sub = _attached(ring, "raw")
        got: list[int] = []
        for f in sub:
            if f.image.min() != f.image.max() or int(f.image[0, 0]) != f.index:
                errors.append(f"torn frame {f.index}")
            got.append(f.index)
        stream_results.append((got, sub.missed_frames()))

    def latest_reader() -> None:
        lat = LatestSubscriber("raw", lambda: (1, ring))
        while not stop.is_set():
            f = lat.get_latest()
            if f is None:
                continue
            if f.image.min() != f.image.max() or int(f.image[0, 0]) != f.index:
                errors.append(f"torn latest {f.index}")
            latest_seen.append(f.index)

    readers = [threading.Thread(target=guarded(stream_reader)) for _ in range(2)]
    readers.append(threading.Thread(target=guarded(latest_reader)))
    for t in readers:
        t.start()
    prod = threading.Thread(target=guarded(producer))
    prod.start()
    prod.join(30)
    for t in readers[:2]:
        t.join(30)
    stop.set()
    readers[2].join(30)

    assert not errors
    assert len(stream_results) == 2
    assert latest_seen == sorted(set(latest_seen))  # newest-only reads move forward
    for got, missed in stream_results:
        assert got == sorted(got)  # in order, no duplicates
        assert sorted(got + missed) == list(range(n_frames))  # every frame: got or missed
        assert not set(got) & set(missed)


def test_slow_subscriber_is_told_exactly_which_frames_it_missed() -> None:
    ring = FrameRing(4, 4, 4, np.uint16)
    sub = _attached(ring, "raw")
    for v in range(3):
        _put(ring, v)
    assert sub.get(timeout=0).index == 0
    for v in range(3, 12):  # seqs 1..7 are overwritten before the subscriber reads them
        _put(ring, v)
    f = sub.get(timeout=0)
    assert f.index == 8
    assert f.missed_before == (1, 2, 3, 4, 5, 6, 7)
    assert [sub.get(timeout=0).index for _ in range(3)] == [9, 10, 11]
    assert sub.get(timeout=0) is None and not sub.ended
    assert sub.missed_frames() == [1, 2, 3, 4, 5, 6, 7]
    assert (sub.delivered, sub.missed) == (5, 7)


def test_plane_ring_names_missed_frames_by_frame_index() -> None:
    """Plane frames have gaps in their frame index (engine skips); misses use the index."""
    ring = PlaneRing(2, max_planes=3, height=4, width=4)
    sub = _attached(ring, "planes")
    offsets = np.zeros(2)
    indices = [0, 5, 9, 14, 20]
    for i in indices:
        slot = ring.claim()
        assert slot is not None
        slot.arrays["planes"][:2] = i
        meta = PlaneMeta(_fmeta(i), time.perf_counter(), 2, offsets, 0, {})
        ring.publish(slot, meta, index=i)
    f = sub.get(timeout=0)
    assert f.index == 14 and f.missed_before == (0, 5, 9)
    assert f.planes.shape == (2, 4, 4) and (f.planes == 14).all()
    assert sub.get(timeout=0).index == 20
    assert ring.index_of(3) == 14 and ring.index_of(99) == -1


def test_subscriber_buffers_are_reused_unless_copy() -> None:
    ring = FrameRing(4, 4, 4, np.uint16)
    sub = _attached(ring, "raw")
    for v in range(3):
        _put(ring, v)
    a = sub.get(timeout=0)
    b = sub.get(timeout=0)
    assert a.image is not None and np.shares_memory(a.image, b.image)
    c = sub.get(timeout=0, copy=True)
    assert not np.shares_memory(b.image, c.image) and (c.image == 2).all()


def test_subscriber_close_ends_a_blocked_get() -> None:
    ring = FrameRing(2, 4, 4, np.uint8)
    sub = _attached(ring, "raw")
    out: list[object] = []
    t = threading.Thread(target=lambda: out.append(sub.get(timeout=10)))
    t.start()
    time.sleep(0.02)
    sub.close()
    t.join(5)
    assert not t.is_alive() and out == [None] and sub.ended


def test_latest_subscriber_skips_and_counts() -> None:
    ring = FrameRing(4, 4, 4, np.uint16)
    lat = LatestSubscriber("raw", lambda: (1, ring))
    assert lat.get_latest() is None
    for v in range(3):
        _put(ring, v)
    assert lat.get_latest().index == 2
    assert lat.get_latest() is None
    _put(ring, 3)
    _put(ring, 4)
    assert lat.get_latest().index == 4
    assert (lat.received, lat.skipped) == (2, 3)
    ring.close("boom")
    with pytest.raises(PipelineError, match="boom"):
        lat.get_latest()


def test_ring_rejects_too_few_slots() -> None:
    with pytest.raises(ValueError):
        SlotRing(1, {"a": ((2,), np.uint8)})


def test_rolling_window_and_stats_snapshot() -> None:
    w = RollingWindow(4)
    assert math.isnan(w.percentile(50))
    for v in [1, 2, 3, 4, 100, 100]:
        w.add(v)
    assert len(w) == 4 and sorted(w.values()) == [3, 4, 100, 100]

    st = StatsCollector("live", window=10)
    for i in range(5):
        st.on_frame_in(float(i), 0.001, i * 2, i * 20.0)  # camera at 100 fps, every 2nd
    st.on_camera_dropped(4)
    st.on_engine_dropped(2)
    st.on_processed(0.0, 0.010, {"infer": 0.008})
    st.on_processed(1.0, 1.030, {"infer": 0.008})
    snap = st.snapshot("running")
    assert (snap.frames_in, snap.frames_processed, snap.dropped_engine) == (5, 2, 2)
    assert snap.in_flight == 1 and snap.dropped_camera == 4
    assert snap.frames_in == snap.frames_processed + snap.dropped_engine + snap.in_flight
    assert snap.latency_p50_ms == pytest.approx(20.0)
    assert snap.stage_ms["infer"] == pytest.approx(8.0)
    assert snap.camera_fps == pytest.approx(100.0)
    with pytest.raises(AttributeError):
        snap.frames_in = 3  # type: ignore[misc]
    assert snap.as_dict()["stage_ms"]["infer"] == pytest.approx(8.0)
