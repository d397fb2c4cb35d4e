# Shared by experiments/time_to_quality.sh and recipe_pilots.sh (issue 16): evaluate checkpoints of a run with `dit sample` + `dit eval --fmnist`
# and turn the run's log into minutes. Sourced, not run.
#
# Sampling for evaluation: cfg 3, seed 1, PER_CLASS images per class (10 classes). EMA weights (what dit sample reads
# from a checkpoint). eps runs: DPM-Solver++(2M) EVAL_STEPS steps; v-flow runs: Heun EVAL_STEPS/2 steps (the same
# number of network evaluations). The objective is read from the checkpoint by dit sample itself.
DIT=${DIT:-build/dit}
PER_CLASS=${PER_CLASS:-100}        # 1,000 samples a point
EVAL_STEPS=${EVAL_STEPS:-20}       # network evaluations per sample (x2 with guidance)
THREADS=${THREADS:-2}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}   # OpenMP spinning starves other processes on a shared machine

# eval_checkpoint CKPT NPZ [--no-ema] -> prints "agreement fd" of 10 x PER_CLASS samples (EMA weights, or the
# trained weights with --no-ema)
eval_checkpoint() {
    local ckpt=$1 npz=$2 weights=${3:-} sampler
    if "$DIT" info -m "$ckpt" 2>/dev/null | grep -q "^objective: *v-flow"; then
        sampler="--sampler flow-heun --steps $((EVAL_STEPS / 2))"
    else
        sampler="--sampler dpm++2m --steps $EVAL_STEPS"
    fi
    "$DIT" sample -m "$ckpt" $weights -n "$PER_CLASS" $sampler --cfg-scale 3 --seed 1 --batch 100 --precision bf16 \
        -t "$THREADS" --npz "$npz" >/dev/null 2>&1 || { echo "nan nan"; return; }
    "$DIT" eval --fmnist "$npz" --per-class "$PER_CLASS" --ref-images 0 -t "$THREADS" 2>/dev/null |
        awk '/^Class agreement/ {a = $3} /^Frechet distance/ {f = $5} END {print a, f}'
}

# elapsed_at RUN STEP -> wall seconds of the run at that step (log.jsonl; --log-every must divide the step)
elapsed_at() {
    grep "\"step\": $2," "$1/log.jsonl" | tail -1 | sed 's/.*"elapsed_s": \([0-9.]*\).*/\1/'
}
