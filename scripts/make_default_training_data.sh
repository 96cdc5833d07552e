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
# SECOND=1 also writes OUT_DIR/second/NAME.ome.tif: the same field and planes with another
# camera-noise draw (--noise-seed 1), for `live-deepz train --second-exposure` (Noise2Noise
# targets, session 8).
# CLEAN=1 also writes OUT_DIR/clean/NAME.ome.tif: the same field and planes without camera
# noise (--no-noise, the expected counts), for `live-deepz train --second-exposure` as
# noise-free targets (session 15).
set -euo pipefail
out=${1:-runs/default_data}; size=${2:-256}
mkdir -p "$out"
if [ "${JOBS:-1}" -gt 1 ] && [ -z "${_WORKER:-}" ]; then
  for _ in $(seq "$JOBS"); do _WORKER=1 "$0" "$out" "$size" & done
  wait; ls -la "$out"; exit 0
fi
# sim NAME ARGS...: writes $out/NAME.ome.tif (+ NAME.truth.json) unless it exists; each stack is
# written in a temporary folder and moved in when complete, and claimed with a lock folder, so
# an interrupted run can be restarted and two runs can share the work (JOBS=2 runs two).
sim() {
  sim_one "$out" "$@"
  clean "$@"
  [ "${SECOND:-0}" = 1 ] || return 0
  mkdir -p "$out/second"
  sim_one "$out/second" "$@" --noise-seed 1
}
# clean NAME ARGS...: the noise-free counterpart of NAME (CLEAN=1)
clean() {
  [ "${CLEAN:-0}" = 1 ] || return 0
  mkdir -p "$out/clean"
  sim_one "$out/clean" "$@" --no-noise
}
# sim_one DIR NAME ARGS...
sim_one() {
  local dir=$1 name=$2; shift 2
  [ -f "$dir/$name.ome.tif" ] && return 0
  mkdir "$dir/.claim-$name" 2>/dev/null || return 0
  local tmp; tmp=$(mktemp -d "$dir/.tmp-XXXXXX")
  live-deepz simulate --quiet --size "$size" --z-range -15 15 --z-step 0.5 "$@" -o "$tmp/$name.ome.tif"
  mv "$tmp/$name".* "$dir/" && rmdir "$tmp" "$dir/.claim-$name"
}
for s in 101 102 103 104 105 106; do sim beads_$s --sample beads --density 4 --seed $s; done
for s in 111 112 113 114 115 116 117 118; do sim beadsvol_$s --sample beads-volume --thickness-um 8 --density 2 --seed $s; done
for s in 121 122; do sim beadstilt_$s --sample beads-tilted --density 4 --tilt-deg 1.5 --azimuth-deg $((s*37 % 360)) --seed $s; done
for s in 131 132 133 134 135 136; do sim worm_$s --sample worm --seed $s; done
for s in 141 142 143 144; do sim filaments_$s --sample filaments --thickness-um 6 --seed $s; done
# session 4: other exposures, cylinders, thick bead gels
for s in 107 108; do sim beads_${s}_5ms --sample beads --density 4 --exposure-ms 5 --seed $s; done
sim beads_109_60ms --sample beads --density 4 --exposure-ms 60 --seed 109
sim beadsvol_119_5ms --sample beads-volume --thickness-um 8 --density 2 --exposure-ms 5 --seed 119
for s in 151 152; do sim beadscyl_$s --sample beads-cylinder --density 4 --seed $s; done
for s in 161 162; do sim beadsthick_$s --sample beads-volume --thickness-um 20 --density 1 --seed $s; done
sim worm_137_5ms --sample worm --exposure-ms 5 --seed 137
sim filaments_145_5ms --sample filaments --thickness-um 6 --exposure-ms 5 --seed 145
ls -la "$out"
