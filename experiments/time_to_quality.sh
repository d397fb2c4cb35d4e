#!/bin/bash
# Time to quality on Fashion-MNIST (issue 16): today's recipe (the shipped model's command) against the new
# `--recipe small`, same model (DiT depth 6, hidden 256, patch 4; docs/model-card-fmnist.md), same seed, bf16
# products. Each run saves a checkpoint every EVERY steps; each checkpoint's EMA weights are sampled (1,000 images,
# cfg 3) and scored by `dit eval --fmnist` (class agreement, Frechet distance in the classifier's features).
# Writes OUT/table.tsv (recipe, step, minutes, s/step, agreement, fd), prints it, and draws OUT/time-to-quality.svg
# with `dit plot` (agreement and Frechet distance against wall-clock minutes).
#   bash experiments/time_to_quality.sh     # DIT=build/dit OUT=runs/ttq STEPS=3000 EVERY=500 PER_CLASS=100 THREADS=2
#                                            # SAMPLE_EVERY=EVERY ORDER="dit small"
# Minutes are the training's own wall clock (log.jsonl elapsed_s, counted from the last start or --resume), without
# the evaluation; on a shared machine compare the recipes at equal steps (the s/step column says how loaded the
# machine was). Results and how the defaults were chosen: docs/time-to-quality.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/ttq_lib.sh
OUT=${OUT:-runs/ttq}
STEPS=${STEPS:-3000}
EVERY=${EVERY:-500}
MODEL=${MODEL:-"--depth 6 --hidden 256 --heads 4 --patch 4"}   # the shipped model's size
COMMON="--data fashion-mnist $MODEL --batch 64 --lr 3e-4 --grad-clip 1 --ema 0.999 --seed 0 --precision bf16"
declare -A RECIPE=(
    [dit]="--warmup 500"                   # the shipped model's recipe (DiT's objective, constant EMA and lr)
    [small]="--recipe small --warmup 100"  # v-flow, logit-normal t, EMA warm-up, cosine lr to lr/10 at STEPS
    # ablations (ORDER="dit small small-eps dit-ema-warmup"): the new recipe with DiT's objective; today's with
    # only the EMA warm-up
    [small-eps]="--recipe small --warmup 100 --objective eps"
    [dit-ema-warmup]="--warmup 500 --ema-schedule warmup"
)
ORDER=${ORDER:-"dit small"}
SAMPLE_EVERY=${SAMPLE_EVERY:-$EVERY}   # the run's own sample grids (0 = none)
mkdir -p "$OUT"
evaluate() {   # recipe: one row per checkpoint into OUT/rows-RECIPE.tsv
    local name=$1 run="$OUT/$1" step ckpt sec agreement fd
    : > "$OUT/rows-$name.tsv"
    for ((step = EVERY; step <= STEPS; step += EVERY)); do
        ckpt=$(printf "%s/checkpoints/%07d.safetensors" "$run" "$step")
        read -r agreement fd < <(eval_checkpoint "$ckpt" "$run/eval-$step.npz")
        sec=$(elapsed_at "$run" "$step")
        printf "%s\t%d\t%.1f\t%.2f\t%s\t%s\n" "$name" "$step" "$(echo "$sec / 60" | bc -l)" \
            "$(echo "$sec / $step" | bc -l)" "$agreement" "$fd" >> "$OUT/rows-$name.tsv"
    done
}
pending=""
for name in $ORDER; do   # one training at a time; a finished run is evaluated while the next one trains
    run="$OUT/$name"
    if [ ! -f "$run/checkpoints/$(printf %07d "$STEPS").safetensors" ]; then
        resume=""
        [ -f "$run/checkpoints/latest" ] && resume="--resume $run"
        "$DIT" train $COMMON ${RECIPE[$name]} $resume --steps "$STEPS" --ckpt-every "$EVERY" --keep 0 --log-every 50 \
            --sample-every "$SAMPLE_EVERY" -t "$THREADS" -o "$run" >> "$OUT/$name.log" 2>&1
    fi
    # evaluated already (a rerun with more recipes in ORDER)?
    [ -f "$OUT/rows-$name.tsv" ] && [ "$(wc -l < "$OUT/rows-$name.tsv")" -eq $((STEPS / EVERY)) ] && continue
    evaluate "$name" & pending="$pending $!"
done
wait $pending
printf "recipe\tstep\tminutes\ts_per_step\tagreement\tfd\n" > "$OUT/table.tsv"
for name in $ORDER; do cat "$OUT/rows-$name.tsv" >> "$OUT/table.tsv"; done
column -t -s $'\t' "$OUT/table.tsv"
"$DIT" plot --tsv "$OUT/table.tsv" --series recipe --x minutes --y agreement --y fd \
    --title "Fashion-MNIST, DiT $MODEL, $(nproc) cores: dit vs --recipe small" -o "$OUT/time-to-quality.svg"
"$DIT" plot --tsv "$OUT/table.tsv" --series recipe --x step --y agreement --y fd -o "$OUT/steps-to-quality.svg"
