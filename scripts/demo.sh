#!/usr/bin/env bash
# The main job until the shipped Fashion-MNIST model lands: the paper's configurations with their
# parameter counts and Gflops, then one guided forward pass of a small model file checked against our
# PyTorch reference (tests/golden), written to out/forward.npy.
set -euo pipefail
dit=${1:-build/dit}
mkdir -p out
echo "== the 12 DiT configurations of the paper (dit info)"
"$dit" info
echo
echo "== DiT-XL/2 at 256 px (dit info --model DiT-XL/2)"
"$dit" info --model DiT-XL/2 --image-size 256
echo
echo "== one classifier-free-guided forward pass of a small official-layout .pt checkpoint (dit forward)"
"$dit" forward -m tests/golden/layouts/micro_official.pt --heads 2 \
    --x tests/golden/dit/micro_x.npy --t tests/golden/dit/micro_t.npy --y tests/golden/dit/micro_y.npy \
    --cfg-scale 4 -o out/forward.npy
echo "wrote out/forward.npy (the guided eps and variance of 2 samples; tests/golden/dit/micro_cfg_out.npy is the PyTorch reference's answer)"
