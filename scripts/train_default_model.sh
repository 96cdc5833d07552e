#!/usr/bin/env bash
# Train the bundled default model `deepz-sim20x-default` on simulated z-stacks.
# Usage: scripts/train_default_model.sh [STEPS] [WIDTH]
# CPU default (no GPU here): width 0.25, L1-only pre-training (the MAE term dominates the
# paper's loss; the LS-GAN phase needs a GPU to be affordable: add --steps N there).
set -euo pipefail
# THREADS=1 by default: on a shared 2-core machine one torch thread is steadier than two.
steps=${1:-6000}; width=${2:-0.25}
data=runs/default_data; out=runs/default_model
[ -f "$data/filaments_144.ome.tif" ] || scripts/make_default_training_data.sh "$data" 256
OMP_NUM_THREADS=${THREADS:-1} live-deepz train --data "$data"/*.ome.tif -o "$out" --width "$width" \
  --pretrain-steps "$steps" --steps 0 --patch 128 --batch 8 --z-half-range 10 \
  --val-every 200 --seed 0 --device cpu --overwrite
mkdir -p live_deepz/models/deepz-sim20x-default
cp "$out/model.safetensors" "$out/card.json" live_deepz/models/deepz-sim20x-default/
