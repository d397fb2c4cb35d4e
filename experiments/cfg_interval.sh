#!/bin/bash
# Guidance interval sweep (issue 16): class agreement and Frechet distance of 1,000 samples of a model
# (default: the shipped Fashion-MNIST model) for guidance scales x noise intervals, the evaluation protocol of
# experiments/ttq_lib.sh (Heun, 10 steps, seed 1, bf16). Prints "cfg interval agreement fd seconds" rows.
# Usage: experiments/cfg_interval.sh [MODEL] [OUT_DIR]; CFGS and INTERVALS override the grid.
set -u
MODEL=${1:-models/dit-fmnist.safetensors}
OUT=${2:-runs/cfgint}
DIT=${DIT:-build/dit}
PER_CLASS=${PER_CLASS:-100}
STEPS=${STEPS:-10}
CFGS=${CFGS:-"3 4 5"}
INTERVALS=${INTERVALS:-"0,1 0,0.7 0.1,0.7 0,0.5"}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
mkdir -p "$OUT"
for cfg in $CFGS; do
    for iv in $INTERVALS; do
        npz="$OUT/s-$cfg-$iv.npz"
        start=$(date +%s.%N)
        "$DIT" sample -m "$MODEL" -n "$PER_CLASS" --sampler flow-heun --steps "$STEPS" --cfg-scale "$cfg" \
            --cfg-interval "$iv" --seed 1 --batch 100 --precision bf16 -t 2 --npz "$npz" >/dev/null 2>&1 || {
            echo "$cfg $iv nan nan"; continue; }
        secs=$(echo "$(date +%s.%N) - $start" | bc)
        "$DIT" eval --fmnist "$npz" --per-class "$PER_CLASS" --ref-images 0 -t 2 2>/dev/null |
            awk -v c="$cfg" -v i="$iv" -v s="$secs" '/^Class agreement/ {a = $3} /^Frechet distance/ {f = $5}
                END {printf "%s %s %s %s %.0f\n", c, i, a, f, s}'
    done
done
