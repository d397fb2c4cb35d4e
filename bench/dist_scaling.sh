#!/usr/bin/env bash
# Data-parallel scaling of `dit train` (issue 12): the Fashion-MNIST DiT (depth 6, hidden 256, patch 4, batch 64)
# for STEPS steps as 1 rank x 1 thread and as 2 ranks x 1 thread (mpirun -np 2, batch 32 each). Prints the
# throughput of the last log window of each (the first window holds the start-up) and the communication time
# per step that the 2-rank log reports. Goal: >= 1.8x. Needs Open MPI (scripts/setup.sh) and Fashion-MNIST.
# Usage: bench/dist_scaling.sh [BUILD_DIR] [STEPS]     (about a minute at the default 20 steps on 2 cores)
set -euo pipefail
build=${1:-build}
steps=${2:-20}
dit=$build/dit
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
args=(--data fashion-mnist --depth 6 --hidden 256 --heads 4 --patch 4 --batch 64 --steps "$steps"
      --log-every $((steps / 2)) --ckpt-every 1000000 -t 1)
# the last log.jsonl line: img/s of the second half, communication seconds per step
last() { tail -1 "$1/log.jsonl" | sed -E 's/.*"img_per_s": ([0-9.e+-]+).*"comm_s_per_step": ([0-9.e+-]+).*/\1 \2/'; }
"$dit" train "${args[@]}" -o "$out/one" > "$out/one.log" 2>&1
mpirun --bind-to core -np 2 "$dit" train "${args[@]}" -o "$out/two" > "$out/two.log" 2>&1
read -r one_img _ < <(last "$out/one")
read -r two_img two_comm < <(last "$out/two")
awk -v a="$one_img" -v b="$two_img" -v c="$two_comm" -v s="$steps" 'BEGIN {
    printf "dit train, Fashion-MNIST DiT (6 x 256, patch 4), global batch 64, steps %d-%d:\n", s / 2 + 1, s
    printf "  1 rank  x 1 thread: %7.1f img/s\n", a
    printf "  2 ranks x 1 thread: %7.1f img/s  (communication %.1f ms/step)\n", b, 1e3 * c
    printf "  speed-up %.2fx (goal >= 1.8x)\n", b / a }'
