#!/usr/bin/env bash
# Simulated z-stacks for the bundled default model (20x/0.75 air, 0.325 um pixels, +-10 um).
# Usage: scripts/make_default_training_data.sh OUT_DIR [SIZE]
# Each stack covers -15..+15 um in 0.5 um steps, so that +-10 um windows fit around every
# sample's sharpest plane. Seeds 100+ are used for training; evaluation uses other seeds.
# Beads are denser than the simulator's default (4 per 100 µm² on slides, 2 per 1000 µm³ in
# gel): at the default density a 256² bead field has ~1 % foreground and yields 0-2 training
# regions, so beads were almost absent from the training set (measured 2026-11-21).
set -euo pipefail
out=${1:-runs/default_data}; size=${2:-256}
mkdir -p "$out"
sim() { live-deepz simulate --quiet --size "$size" --z-range -15 15 --z-step 0.5 "$@"; }
for s in 101 102 103 104 105 106; do sim --sample beads --density 4 --seed $s -o "$out/beads_$s.ome.tif"; done
for s in 111 112 113 114 115 116 117 118; do sim --sample beads-volume --thickness-um 8 --density 2 --seed $s -o "$out/beadsvol_$s.ome.tif"; done
for s in 121 122; do sim --sample beads-tilted --density 4 --tilt-deg 1.5 --azimuth-deg $((s*37 % 360)) --seed $s -o "$out/beadstilt_$s.ome.tif"; done
for s in 131 132 133 134 135 136; do sim --sample worm --seed $s -o "$out/worm_$s.ome.tif"; done
for s in 141 142 143 144; do sim --sample filaments --thickness-um 6 --seed $s -o "$out/filaments_$s.ome.tif"; done
ls -la "$out"
