#!/usr/bin/env bash
# The main job: sample the DiT that dit trained on Fashion-MNIST (models/dit-fmnist.safetensors) into a
# labelled grid of all 10 classes with the Heun flow sampler and classifier-free guidance (in the interval of
# noise levels that docs/time-to-quality.md measured best). Without the shipped model
# it falls back to the paper's configurations and one reference-checked guided forward pass.
set -euo pipefail
dit=${1:-build/dit}
mkdir -p out
model=models/dit-fmnist.safetensors
if [[ -f $model ]]; then
    echo "== sampling $model: 10 classes x 8 samples, flow-heun 10 steps, cfg 4.5 at noise levels 0..0.8"
    start_ms=$(($(date +%s%N) / 1000000))
    "$dit" sample -m "$model" -n 8 --sampler flow-heun --steps 10 --cfg-scale 4.5 --cfg-interval 0,0.8 \
        --seed 0 -o out/fmnist-samples.png
    elapsed_ms=$(($(date +%s%N) / 1000000 - start_ms))
    echo "sampled in $((elapsed_ms / 1000)).$((elapsed_ms % 1000 / 100)) s"
    echo "the picture is at $(pwd)/out/fmnist-samples.png"
    exit 0
fi
echo "== the 12 DiT configurations of the paper (dit info)"
"$dit" info
echo
echo "== DiT-XL/2 at 256 px (dit info --config DiT-XL/2)"
"$dit" info --config DiT-XL/2 --image-size 256
echo
echo "== one classifier-free-guided forward pass of a small official-layout .pt checkpoint (dit forward)"
"$dit" forward -m tests/golden/layouts/micro_official.pt --heads 2 \
    --x tests/golden/dit/micro_x.npy --t tests/golden/dit/micro_t.npy --y tests/golden/dit/micro_y.npy \
    --cfg-scale 4 -o out/forward.npy
echo "wrote out/forward.npy (the guided eps and variance of 2 samples; tests/golden/dit/micro_cfg_out.npy is the PyTorch reference's answer)"
