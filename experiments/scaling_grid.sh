#!/usr/bin/env bash
# The paper's scaling grid (Figs. 2, 6, 8, 9) in miniature: SIZES (width/depth) x PATCHES (8, 4, 2), all
# adaLN-Zero, trained on Fashion-MNIST 32x32 in pixel space with one recipe and budget (experiments/lib.sh),
# FD (`dit eval --fmnist`) every EVAL_EVERY steps into OUT/results.csv, with parameters, forward Gflops and
# training compute (3 x Gflops x images). Resumable: run it again to continue where a sitting stopped.
# A smoke run:
#   STEPS=4 EVAL_EVERY=2 BATCH=8 SAMPLES_PER_CLASS=2 TEST_IMAGES=100 OUT=/tmp/grid experiments/scaling_grid.sh
# SIZES: name:depth:width:heads entries (head dim 64 like the paper's S, B, L); PATCHES: patch sizes; the
# cheapest first, so a sitting that stops early has whole rows of the grid.
cd "$(dirname "$0")/.."
source experiments/lib.sh
: "${OUT:=out/experiments/scaling}"
: "${SIZES:=S:4:128:2 B:6:192:3 L:8:256:4}"
: "${PATCHES:=8 4 2}"
: "${BLOCK:=adaln-zero}"
csv="$OUT/results.csv"
start_csv "$csv"
for patch in $PATCHES; do
    for size in $SIZES; do
        IFS=: read -r name depth hidden heads <<< "$size"
        train_and_eval scaling "$csv" "$OUT" "mini-$name-$patch" "$depth" "$hidden" "$heads" "$patch" "$BLOCK"
    done
done
echo "experiments: results in $csv" >&2
column -s, -t < <(tail -n +2 "$csv") >&2 || true
