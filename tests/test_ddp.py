"""Data-parallel training: helpers, and 2 CPU processes (gloo) launched by torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from live_deepz.modelfile import load_model
from live_deepz.training.ddp import DistEnv, all_reduce_sum, init_distributed, shard, wrap_ddp

TESTS = Path(__file__).resolve().parent

WORKER = """
import json, sys
sys.path.insert(0, {tests!r})
import torch
from _training_data import synth_stack
from live_deepz.training import FieldStack, PairConfig, TrainConfig, build_pairs
from live_deepz.training.ddp import barrier, cleanup, init_distributed
from live_deepz.training.trainer import Trainer

torch.set_num_threads(1)
out, cache, report = sys.argv[1:4]
env = init_distributed("cpu")
stacks = [FieldStack(synth_stack(size=64, seed=30 + i, n_beads=20), 0.5, 0.325, name=f"s{{i}}")
          for i in range(2)]
data = None
for turn in (True, False):  # rank 0 fills the cache first, the others read it
    if env.is_main == turn:
        data = build_pairs(stacks, PairConfig(patch=32, z_half_range_um=2.0), cache)
    barrier(env)
cfg = TrainConfig(width=0.0625, batch_size=4, pretrain_steps=2, steps=1, val_every=2,
                  max_val_pairs=16, progress=False, device="cpu")
trainer = Trainer(cfg, data, out, env=env)
res = trainer.fit()
weights = {{k: v.flatten().tolist() for k, v in trainer.generator.state_dict().items()}}
with open(f"{{report}}.{{env.rank}}.json", "w") as fh:
    json.dump({{"world": env.world_size, "best": res.best_val_mae, "weights": weights}}, fh)
cleanup(env)
"""


def test_single_process_helpers() -> None:
    env = DistEnv()
    assert env.is_main and not env.distributed
    assert shard(list(range(10)), DistEnv(rank=1, world_size=3)) == [1, 4, 7]
    assert list(shard(np.arange(4), env)) == [0, 1, 2, 3]
    assert all_reduce_sum([1.5, 2.0], env, torch.device("cpu")) == [1.5, 2.0]
    m = torch.nn.Linear(2, 2)
    assert wrap_ddp(m, env, torch.device("cpu")) is m


def test_init_without_torchrun_is_a_single_process(monkeypatch) -> None:
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    assert init_distributed("cpu") == DistEnv()


def _run(script: Path, args: list[str], nproc: int | None) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    if nproc is None:
        cmd = [sys.executable, str(script), *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", str(script), *args]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.slow
def test_two_gloo_processes_train_identical_replicas(tmp_path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(TESTS)))
    cache = tmp_path / "cache"
    _run(script, [str(tmp_path / "ddp"), str(cache), str(tmp_path / "ddp")], nproc=2)
    r0, r1 = (json.loads((tmp_path / f"ddp.{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    assert r0["weights"] == r1["weights"]  # bit-identical replicas
    assert r0["best"] == r1["best"]  # validation shared over ranks via all-reduce
    model = load_model(tmp_path / "ddp")  # rank 0 wrote a loadable model
    assert model.card.training["world_size"] == 2

    # the same global batch in one process follows the same path (up to reduction order)
    _run(script, [str(tmp_path / "one"), str(cache), str(tmp_path / "one")], nproc=None)
    one = json.loads((tmp_path / "one.0.json").read_text())
    assert one["world"] == 1
    for k, v in one["weights"].items():
        np.testing.assert_allclose(r0["weights"][k], v, rtol=1e-3, atol=1e-4, err_msg=k)
