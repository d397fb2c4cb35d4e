#!/usr/bin/env bash
# The paper's Fig. 5 in miniature: the four block designs (adaLN-Zero, adaLN, cross-attention, in-context;
# docs/reference.md §1.13) at one size, trained on Fashion-MNIST 32x32 in pixel space with one recipe and
# budget, FD (`dit eval --fmnist`) every EVAL_EVERY steps into OUT/results.csv. Resumable: run it again to
# continue where a sitting stopped. The recipe is in experiments/lib.sh (environment overrides), e.g. a smoke run:
#   STEPS=4 EVAL_EVERY=2 BATCH=8 SAMPLES_PER_CLASS=2 TEST_IMAGES=100 OUT=/tmp/blocks experiments/blocks.sh
# The size (default depth 6, width 256, 4 heads, patch 4: the shipped Fashion-MNIST model's) is DEPTH, HIDDEN,
# HEADS, PATCH; BLOCKS chooses which designs (default all four).
cd "$(dirname "$0")/.."
source experiments/lib.sh
: "${OUT:=out/experiments/blocks}"
: "${DEPTH:=6}" ; : "${HIDDEN:=256}" ; : "${HEADS:=4}" ; : "${PATCH:=4}"
: "${BLOCKS:=adaln-zero adaln cross-attention in-context}"
csv="$OUT/results.csv"
start_csv "$csv"
for block in $BLOCKS; do
    train_and_eval blocks "$csv" "$OUT" "d${DEPTH}-w${HIDDEN}-p${PATCH}-$block" "$DEPTH" "$HIDDEN" "$HEADS" "$PATCH" "$block"
done
echo "experiments: results in $csv" >&2
column -s, -t < <(tail -n +2 "$csv") >&2 || true
