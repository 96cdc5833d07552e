"""``live-deepz bench`` (engine/_bench.py) and the matrix table: tiny settings, no timing asserts.

Width 0.0625, 64² frames, 2 planes, ~1 s phases and a 256² matmul ceiling keep each run to a
few seconds on 2 cores; only the JSON's structure and the consistency of its numbers are
checked (planes/s > 0, ratio = TFLOP/s / ceiling, counters consistent), never a speed.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from live_deepz.cli import main

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "--width", "0.0625", "--size", "64", "--planes", "2", "--seconds", "1",
    "--ceiling-n", "256", "--ceiling-repeats", "2", "--threads", "1", "--quiet",
]  # fmt: skip

REQUIRED = (
    "backend",
    "precision",
    "device",
    "date",
    "host_cpu",
    "torch",
    "threads",
    "width",
    "size",
    "planes",
    "flops_per_pixel",
    "command",
    "engine",
    "tflops",
    "ceiling_tflops",
    "ceiling_ratio",
    "ceilings_tflops",
    "latency_ms",
    "dropped",
    "realtime_100fps",
)


def _bench(tmp_path: Path, *extra: str) -> dict[str, Any]:
    out = tmp_path / "bench.json"
    rc = main(["bench", *TINY, *extra, "--json", str(out)])
    assert rc == 0
    return dict(json.loads(out.read_text()))


def _check_engine(r: dict[str, Any]) -> None:
    for key in REQUIRED:
        assert key in r, key
    e = r["engine"]
    assert e["planes_per_s"] > 0
    assert e["calls"] >= 3
    assert math.isclose(e["frames_per_s"] * r["planes"], e["planes_per_s"], rel_tol=1e-9)
    assert r["ceiling_tflops"] > 0
    assert r["ceilings_tflops"]["bf16"] > 0 and r["ceilings_tflops"]["fp32"] > 0
    want = "fp32" if r["precision"] == "fp32" else "bf16"
    assert r["ceiling_precision"] == want
    assert r["ceiling_tflops"] == r["ceilings_tflops"][want]
    assert math.isclose(r["ceiling_ratio"], r["tflops"] / r["ceiling_tflops"], rel_tol=1e-9)
    pixels = r["size"] * r["size"]
    tflops = e["planes_per_s"] * pixels * r["flops_per_pixel"] / 1e12
    assert math.isclose(r["tflops"], tflops, rel_tol=1e-9)
    assert (r["width"], r["size"], r["planes"], r["threads"]) == (0.0625, 64, 2, 1)
    assert r["command"].startswith("live-deepz bench ")
    assert r["host_cpu"]


def test_engine_only_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = _bench(tmp_path, "--backend", "torch", "--precision", "fp32")
    _check_engine(r)
    assert (r["backend"], r["precision"], r["device"]) == ("torch", "fp32", "cpu")
    assert "pipeline" not in r
    assert r["dropped"] is None and r["pipeline_over_engine"] is None
    assert r["latency_ms"]["p50"] > 0
    out = capsys.readouterr().out
    assert "engine only" in out and "planes/s" in out and "TFLOP/s" in out


def test_pipeline_block(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = _bench(tmp_path, "--pipeline", "--rounds", "1", "--camera-replay", "4")
    _check_engine(r)
    assert r["pipeline"]["camera"]["replay_frames"] == 4 and "--camera-replay 4" in r["command"]
    p = r["pipeline"]
    assert p["planes_per_s"] > 0
    assert math.isclose(p["frames_per_s"] * r["planes"], p["planes_per_s"], rel_tol=1e-9)
    assert p["latency_ms"]["p50"] > 0 and p["latency_ms"]["p99"] >= p["latency_ms"]["p50"]
    assert r["latency_ms"]["p50"] == p["latency_ms"]["p50"]
    assert set(p["dropped"]) == {"camera", "engine"} and r["dropped"] == p["dropped"]
    assert p["counters_consistent"] is True
    (rnd,) = p["rounds"]
    c = rnd["counters"]
    assert c["in_flight"] == 0 and c["frames_in"] == c["frames_processed"] + c["dropped_engine"]
    assert math.isclose(r["pipeline_over_engine"], rnd["over_engine"], rel_tol=1e-9)
    assert math.isclose(
        rnd["over_engine"], p["planes_per_s"] / r["engine"]["planes_per_s"], rel_tol=1e-9
    )
    assert isinstance(r["realtime_100fps"], bool)
    assert p["bound"] in ("engine", "camera")
    out = capsys.readouterr().out
    assert "pipeline" in out and "realtime" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backend", "nope"], "unknown backend 'nope'"),
        (["--planes", "0"], "--planes must be >= 1"),
        (["--seconds", "0"], "--seconds must be > 0"),
        (["--camera-replay", "-1"], "--camera-replay must be in 0..1024"),
        (["--precision", "int8"], "unknown precision"),
    ],
)
def test_bad_arguments_exit_1(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", *args]) == 1
    err = capsys.readouterr().err
    assert "live-deepz bench: error:" in err and message in err
    assert "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 and cudagraph run on CUDA")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--precision", "fp16"], "'fp16' is not supported on the CPU"),
        (["--backend", "cudagraph"], "needs CUDA"),
        (["--device", "cuda"], "CUDA is not available"),
    ],
)
def test_cpu_only_machine_refuses_cuda_settings(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", *args]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def _load_bench_engine() -> Any:
    spec = importlib.util.spec_from_file_location(
        "bench_engine", REPO / "benchmarks" / "bench_engine.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_matrix_table_and_filename(tmp_path: Path) -> None:
    from live_deepz.engine._bench import format_summary, result_filename

    r = _bench(tmp_path, "--backend", "torch", "--precision", "fp32")
    assert result_filename(r) == "engine_torch_fp32_64_k2_w0p0625.json"
    assert "engine only" in format_summary(r)
    mod = _load_bench_engine()
    skipped = {"status": "skipped", "reason": "backend 'tensorrt' unavailable: needs CUDA"}
    skipped.update(backend="tensorrt", precision="fp16", device="auto", size=64, planes=2)
    table = mod.markdown_table([r, skipped])
    lines = table.splitlines()
    assert lines[0].startswith("| backend |")
    n_cols = lines[0].count("|")
    assert all(line.count("|") == n_cols for line in lines[2:4])
    assert "| torch | fp32 |" in lines[2] and "skipped: backend 'tensorrt'" in lines[3]
