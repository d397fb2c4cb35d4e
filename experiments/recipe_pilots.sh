#!/bin/bash
# Pilot runs for issue 16: each recipe option alone against today's recipe (the shipped model's flags), on a smaller
# DiT (depth 4, hidden 128) so that all of them fit in one sitting, at equal steps; then class agreement and Frechet
# distance of 1,000 samples of each, from the EMA weights and from the trained (raw) weights (experiments/ttq_lib.sh):
# at a few hundred steps a slow EMA still remembers the initialisation, which hides the other options' effect.
# Writes OUT/pilots.tsv and prints it as a table.
#   bash experiments/recipe_pilots.sh            # DIT=build/dit OUT=runs/pilots STEPS=400 PER_CLASS=100
# Runs one training at a time; the evaluation of a finished pilot overlaps the next pilot's training.
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/ttq_lib.sh
OUT=${OUT:-runs/pilots}
STEPS=${STEPS:-400}
MODEL=${MODEL:-"--depth 4 --hidden 128 --heads 4 --patch 4"}
# today's recipe: the shipped model's command (docs/model-card-fmnist.md), bf16 products
BASE="--data fashion-mnist $MODEL --batch 64 --lr 3e-4 --warmup 500 --grad-clip 1 --ema 0.999 --seed 0 --precision bf16"
declare -A PILOT=(
    [dit]=""
    [v-flow]="--objective v-flow"
    [v-flow+logit-normal]="--objective v-flow --time-sampling logit-normal"
    [min-snr]="--loss-weight min-snr"
    [ema-warmup]="--ema-schedule warmup"
    [lr-warmup100-cosine]="--warmup 100 --lr-schedule cosine"
)
ORDER=${ORDER:-"dit v-flow v-flow+logit-normal ema-warmup lr-warmup100-cosine min-snr"}
mkdir -p "$OUT"
evaluate() {   # name: appends one row to pilots.tsv
    local run="$OUT/$1" ckpt
    ckpt=$(printf "%s/checkpoints/%07d.safetensors" "$run" "$STEPS")
    read -r agreement fd < <(eval_checkpoint "$ckpt" "$run/eval.npz")
    read -r raw_agreement raw_fd < <(eval_checkpoint "$ckpt" "$run/eval-raw.npz" --no-ema)
    local sec; sec=$(elapsed_at "$run" "$STEPS")
    printf "%s\t%s\t%s\t%.3f\t%s\t%s\t%s\t%s\n" "$1" "$STEPS" "$sec" "$(echo "$sec / $STEPS" | bc -l)" "$agreement" \
        "$fd" "$raw_agreement" "$raw_fd" >> "$OUT/pilots.tsv"
}
printf "pilot\tsteps\twall_s\ts_per_step\tagreement\tfd\traw_agreement\traw_fd\n" > "$OUT/pilots.tsv"
pending=""
for name in $ORDER; do
    rm -rf "${OUT:?}/$name"
    "$DIT" train $BASE ${PILOT[$name]} --steps "$STEPS" --ckpt-every "$STEPS" --log-every 50 -t "$THREADS" \
        -o "$OUT/$name" > "$OUT/$name.log" 2>&1
    [ -n "$pending" ] && wait "$pending"
    evaluate "$name" & pending=$!
done
wait
column -t -s $'\t' "$OUT/pilots.tsv"
