#!/usr/bin/env bash
# Simulated z-stacks for the bundled default model (20x/0.75 air, 0.325 um pixels, +-10 um).
# Usage: scripts/make_default_training_data.sh OUT_DIR [SIZE]
# Each stack covers -15..+15 um in 0.5 um steps, so that +-10 um windows fit around every
# sample's sharpest plane. Seeds 100+ are used for training; evaluation uses other seeds.
# Beads are denser than the simulator's default (4 per 100 µm² on slides, 2 per 1000 µm³ in
# gel): at the default density a 256² bead field has ~1 % foreground and yields 0-2 training
# regions, so beads were almost absent from the training set (measured 2026-11-21).
# Besides the default 20 ms exposure, a few stacks at 5 ms (4x fewer photons) and 60 ms so the
# model does not depend on one SNR, bead cylinders, and beads through a 20 µm gel (foci over
# the whole +-10 µm range) were added in session 4.
set -euo pipefail
out=${1:-runs/default_data}; size=${2:-256}
mkdir -p "$out"
sim() { live-deepz simulate --quiet --size "$size" --z-range -15 15 --z-step 0.5 "$@"; }
for s in 101 102 103 104 105 106; do sim --sample beads --density 4 --seed $s -o "$out/beads_$s.ome.tif"; done
for s in 111 112 113 114 115 116 117 118; do sim --sample beads-volume --thickness-um 8 --density 2 --seed $s -o "$out/beadsvol_$s.ome.tif"; done
for s in 121 122; do sim --sample beads-tilted --density 4 --tilt-deg 1.5 --azimuth-deg $((s*37 % 360)) --seed $s -o "$out/beadstilt_$s.ome.tif"; done
for s in 131 132 133 134 135 136; do sim --sample worm --seed $s -o "$out/worm_$s.ome.tif"; done
for s in 141 142 143 144; do sim --sample filaments --thickness-um 6 --seed $s -o "$out/filaments_$s.ome.tif"; done
# session 4: other exposures, cylinders, thick bead gels
for s in 107 108; do sim --sample beads --density 4 --exposure-ms 5 --seed $s -o "$out/beads_${s}_5ms.ome.tif"; done
sim --sample beads --density 4 --exposure-ms 60 --seed 109 -o "$out/beads_109_60ms.ome.tif"
sim --sample beads-volume --thickness-um 8 --density 2 --exposure-ms 5 --seed 119 -o "$out/beadsvol_119_5ms.ome.tif"
for s in 151 152; do sim --sample beads-cylinder --density 4 --seed $s -o "$out/beadscyl_$s.ome.tif"; done
for s in 161 162; do sim --sample beads-volume --thickness-um 20 --density 1 --seed $s -o "$out/beadsthick_$s.ome.tif"; done
sim --sample worm --exposure-ms 5 --seed 137 -o "$out/worm_137_5ms.ome.tif"
sim --sample filaments --thickness-um 6 --exposure-ms 5 --seed 145 -o "$out/filaments_145_5ms.ome.tif"
ls -la "$out"
