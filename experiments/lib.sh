# Shared by experiments/blocks.sh and experiments/scaling_grid.sh (source it, do not run it): train one model
# on Fashion-MNIST 32x32 (pixel space) with the experiment's recipe, in chunks of EVAL_EVERY steps, and after
# each chunk measure the EMA weights' Frechet distance with `dit eval --fmnist`, appending one CSV row.
# Every piece resumes: training continues from the run's newest checkpoint (`dit train --resume`), and a
# (model, step) already in the CSV is not evaluated again, so a stopped sitting is simply started again.
#
# The recipe (override any of these in the environment; the CSV records them in its header line):
: "${DIT:=build/dit}"                 # the dit binary
: "${DATA:=fashion-mnist}"            # training data (32x32: the 28x28 images padded by 2)
: "${STEPS:=20000}"                   # training steps per model
: "${EVAL_EVERY:=2000}"               # N: FD measured every N steps (and at the last step)
: "${BATCH:=64}" ; : "${LR:=3e-4}" ; : "${WARMUP:=500}" ; : "${CLIP:=1}" ; : "${EMA:=0.999}"
: "${SEED:=0}"                        # training seed (data order, noise, timesteps)
: "${SAMPLES_PER_CLASS:=1000}"        # 10 classes: 10,000 samples per FD
: "${RECIPE:=dit}"                    # dit: the paper's recipe, trained in chunks of EVAL_EVERY steps; small:
                                      # `dit train --recipe small` (v-flow, logit-normal t, EMA warm-up, cosine lr
                                      # over the whole budget: trained to STEPS in one run, then every checkpoint
                                      # evaluated)
if [[ $RECIPE == small ]]; then : "${SAMPLER:=flow-heun}" ; : "${SAMPLE_STEPS:=10}" ; fi
: "${SAMPLER:=dpm++2m}" ; : "${SAMPLE_STEPS:=20}"
: "${CFG:=1}"                         # the paper's design and scaling figures: no guidance
: "${SAMPLE_SEED:=2}"                 # sampling noise
: "${THREADS:=$(nproc)}"
: "${PRECISION:=auto}"                # bf16 products where the CPU has them (docs/precision.md)
: "${TEST_IMAGES:=10000}" ; : "${REF_IMAGES:=0}"   # FD reference: the test set; floor (train vs test) off

set -euo pipefail

CSV_COLUMNS="experiment,model,block,depth,hidden,heads,patch,params,gflops,step,images,train_gflops,fd,class_agreement,train_seconds,eval_seconds"

recipe_line() {
    # STEPS is not part of it: a longer budget continues the same runs
    echo "# recipe: $RECIPE data=$DATA eval_every=$EVAL_EVERY batch=$BATCH lr=$LR warmup=$WARMUP grad_clip=$CLIP" \
         "ema=$EMA seed=$SEED samples=$((10 * SAMPLES_PER_CLASS)) sampler=$SAMPLER/$SAMPLE_STEPS cfg=$CFG" \
         "sample_seed=$SAMPLE_SEED precision=$PRECISION test_images=$TEST_IMAGES"
}

# start_csv FILE: a new table with its recipe line, or check that an existing one was made with this recipe
# (rows from two recipes in one table would compare unlike things).
start_csv() {
    local csv=$1
    mkdir -p "$(dirname "$csv")"
    if [[ -s $csv ]]; then
        if [[ "$(head -1 "$csv")" != "$(recipe_line)" ]]; then
            echo "experiments: $csv was made with another recipe:" >&2
            head -1 "$csv" >&2
            echo "  now: $(recipe_line)" >&2
            echo "  (use another OUT, or the same settings)" >&2
            exit 1
        fi
    else
        { recipe_line; echo "$CSV_COLUMNS"; } > "$csv"
    fi
}

# info_field CKPT WHAT: parameters (all, with the fixed pos_embed) or Gflops (forward multiply-adds) of a model
info_field() {
    local out
    out=$("$DIT" info -m "$1")
    case $2 in
        params) sed -n 's/^parameters: *\([0-9,]*\).*/\1/p' <<< "$out" | tr -d , ;;
        gflops) sed -n 's/^multiply-adds: *\([0-9,]*\) per image.*/\1/p' <<< "$out" | tr -d , |
                    awk '{ printf "%.6g", $1 / 1e9 }' ;;
    esac
}

# train_and_eval EXPERIMENT CSV OUT_DIR NAME DEPTH HIDDEN HEADS PATCH BLOCK
train_and_eval() {
    local experiment=$1 csv=$2 out=$3 name=$4 depth=$5 hidden=$6 heads=$7 patch=$8 block=$9
    local run="$out/runs/$name" step=0
    local model_flags=(--depth "$depth" --hidden "$hidden" --heads "$heads" --patch "$patch" --block "$block")
    local recipe=(--batch "$BATCH" --lr "$LR" --warmup "$WARMUP" --grad-clip "$CLIP" --ema "$EMA" --seed "$SEED")
    mkdir -p "$out/runs"
    if [[ $RECIPE != dit ]]; then   # one schedule over the whole budget: train to STEPS, keeping every checkpoint
        local final
        final=$(printf '%s/checkpoints/%07d.safetensors' "$run" "$STEPS")
        if [[ ! -f $final && -f $run/checkpoints/latest ]]; then
            "$DIT" train --resume "$run" "${model_flags[@]}" "${recipe[@]}" --steps "$STEPS" \
                --ckpt-every "$EVAL_EVERY" --keep 0 --log-every 100 -t "$THREADS" --precision "$PRECISION"
        elif [[ ! -f $final ]]; then
            "$DIT" train --data "$DATA" "${model_flags[@]}" --recipe "$RECIPE" "${recipe[@]}" --steps "$STEPS" \
                -o "$run" --ckpt-every "$EVAL_EVERY" --keep 0 --log-every 100 -t "$THREADS" --precision "$PRECISION"
        fi
    fi
    while (( step < STEPS )); do
        step=$(( step + EVAL_EVERY < STEPS ? step + EVAL_EVERY : STEPS ))
        if awk -F, -v e="$experiment" -v n="$name" -v s="$step" '$1 == e && $2 == n && $10 == s { found = 1 }
                END { exit !found }' "$csv"; then continue; fi   # measured in an earlier sitting
        local ckpt
        ckpt=$(printf '%s/checkpoints/%07d.safetensors' "$run" "$step")
        local t0 t1 t2
        t0=$(date +%s.%N)
        if [[ ! -f $ckpt ]]; then
            if [[ -f $run/checkpoints/latest ]]; then   # the recorded recipe and model; flags repeated as a check
                "$DIT" train --resume "$run" "${model_flags[@]}" "${recipe[@]}" --steps "$step" \
                    --ckpt-every "$EVAL_EVERY" --keep 2 --log-every 100 -t "$THREADS" --precision "$PRECISION"
            else
                "$DIT" train --data "$DATA" "${model_flags[@]}" "${recipe[@]}" --steps "$step" -o "$run" \
                    --ckpt-every "$EVAL_EVERY" --keep 2 --log-every 100 -t "$THREADS" --precision "$PRECISION"
            fi
        fi
        t1=$(date +%s.%N)
        [[ -f $ckpt ]] || { echo "experiments: $ckpt was not written" >&2; exit 1; }
        local samples="$run/samples-$step.npz" report
        "$DIT" sample -m "$ckpt" -n "$SAMPLES_PER_CLASS" --sampler "$SAMPLER" --steps "$SAMPLE_STEPS" \
            --cfg-scale "$CFG" --seed "$SAMPLE_SEED" --npz "$samples" -t "$THREADS" --precision "$PRECISION" >/dev/null
        report=$("$DIT" eval --fmnist "$samples" --per-class "$SAMPLES_PER_CLASS" --test-images "$TEST_IMAGES" \
            --ref-images "$REF_IMAGES" -t "$THREADS")
        rm -f "$samples"
        t2=$(date +%s.%N)
        local fd agree params gflops
        fd=$(sed -n 's/^Frechet distance (classifier features): \([0-9.]*\).*/\1/p' <<< "$report")
        agree=$(sed -n 's/^Class agreement: \([0-9.]*\).*/\1/p' <<< "$report")
        params=$(info_field "$ckpt" params)
        gflops=$(info_field "$ckpt" gflops)
        # training compute as the paper's Fig. 9: forward Gflops x 3 (forward + backward) x images seen
        local images=$(( step * BATCH ))
        local train_gflops train_s eval_s
        train_gflops=$(awk -v g="$gflops" -v n="$images" 'BEGIN { printf "%.6g", 3 * g * n }')
        train_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
        if [[ $RECIPE != dit ]]; then   # trained beforehand: the run's own clock at this step (log.jsonl)
            train_s=$(sed -n "s/^{\"step\": $step,.*\"elapsed_s\": \([0-9.]*\).*/\1/p" "$run/log.jsonl" | tail -1)
            train_s=${train_s:-nan}   # --log-every 100 must divide the step
        fi
        eval_s=$(awk -v a="$t1" -v b="$t2" 'BEGIN { printf "%.1f", b - a }')
        echo "$experiment,$name,$block,$depth,$hidden,$heads,$patch,$params,$gflops,$step,$images,$train_gflops,${fd:-nan},${agree:-nan},$train_s,$eval_s" >> "$csv"
        echo "experiments: $name step $step: FD ${fd:-nan}, class agreement ${agree:-nan} (train ${train_s}s, eval ${eval_s}s)" >&2
    done
}
