#!/usr/bin/env python3
"""What random horizontal flips alone cost on Fashion-MNIST: writes ADM-style .npz batches of real training
images (K per class, padded to 32x32 as dit trains on them) unflipped, half flipped at random, and all flipped,
for `dit eval --fmnist X.npz --per-class K`. A model trained with flips can at best match the half-flipped
batch. Needs numpy (the bench venv has it: bench/.venv/bin/python experiments/flip_floor.py OUT_DIR [K]).
"""
import gzip
import os
import sys

import numpy as np

out, per_class = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1000
root = os.environ.get("FMNIST_DIR", "/usr/share/datasets/fashion-mnist")
images = np.frombuffer(gzip.open(f"{root}/train-images-idx3-ubyte.gz").read(), np.uint8, offset=16).reshape(-1, 28, 28)
labels = np.frombuffer(gzip.open(f"{root}/train-labels-idx1-ubyte.gz").read(), np.uint8, offset=8)
rng = np.random.default_rng(5)
pick = np.concatenate([rng.choice(np.where(labels == c)[0], per_class, replace=False) for c in range(10)])
real = np.zeros((len(pick), 32, 32, 1), np.uint8)
real[:, 2:30, 2:30, 0] = images[pick]
half = real.copy()
flip = rng.random(len(pick)) < 0.5
half[flip] = half[flip][:, :, ::-1]
os.makedirs(out, exist_ok=True)
for name, batch in (("real", real), ("half-flipped", half), ("all-flipped", real[:, :, ::-1])):
    np.savez(f"{out}/{name}-{per_class}.npz", arr_0=np.ascontiguousarray(batch))
    print(f"{out}/{name}-{per_class}.npz")
