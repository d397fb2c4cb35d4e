#!/usr/bin/python3
"""Write tests/golden/eval/ (README written there):

    /usr/bin/python3 tests/ref/make_eval_golden.py [--out tests/golden/eval]

Needs torch, torchvision and scipy (Debian: python3-torch python3-torchvision python3-scipy); CI needs only
the files written here.

- inception_keys.txt: the checkpoint's tensor names and shapes in state_dict order (torchvision's Inception3
  with the FID patches, num_batches_tracked left out): the order the synthetic formula's k follows.
- inception_images.npy: two 64x64 uint8 RGB images (NHWC); inception_{pool,spatial,logits}.npy: the FID
  Inception (synthetic weights, seed 1; run in float64 from the float32 weights; resize in float32 as
  pytorch-fid) at pool_3, mixed_6/conv[..., :7] in (h, w, c) order, and pool @ fc.weight^T.
- resize_*.npy: a (3, 20, 29) float image resized to 37x41 and 11x13, PyTorch bilinear (align_corners=False)
  and TF1 legacy ResizeBilinear (numpy, float32).
- metrics.json + fid_a_{mu,sigma}.npy: features from the hash formula (features() below, mirrored in
  tests/test_eval.c), then ADM's maths: np.mean/np.cov, the Frechet distance with scipy.linalg.sqrtm and
  its eps fallback, the Inception Score over splits (float32 softmax as TF), and ManifoldEstimator's radii
  and precision/recall with float16 and float32 distance blocks.
"""
import argparse
import json
import os
import sys

import numpy as np
import scipy
import scipy.linalg
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import inception_ref  # noqa: E402
from synthetic import synthetic_u  # noqa: E402


# ---- features shared with tests/test_eval.c ----------------------------------------------------------------
def features(kind, k, n, dim, seed=11):
    """float32 (n, dim) from the hash formula; every operation in float32 in the order written."""
    u = synthetic_u(n * dim, k, seed).reshape(n, dim)
    f = np.float32
    if kind == "plain":
        return u
    if kind == "mixed":        # u + 0.5 u[:, j+1] + 0.2
        return (u + f(0.5) * np.roll(u, -1, axis=1)) + f(0.2)
    if kind == "shifted":      # 0.9 u + 0.1
        return f(0.9) * u + f(0.1)
    if kind == "logits":       # 4 u
        return f(4.0) * u
    if kind == "ref_pr":       # 1 + u
        return f(1.0) + u
    if kind == "sample_pr":    # 1.1 + 0.9 u
        return f(1.1) + f(0.9) * u
    raise ValueError(kind)


# ---- ADM's maths (evaluations/evaluator.py), restated ------------------------------------------------------
def adm_frechet(mu1, sigma1, mu2, sigma2, eps=1e-6):
    diff = mu1 - mu2
    covmean, _ = scipy.linalg.sqrtm(sigma1.dot(sigma2), disp=False)
    fallback = False
    if not np.isfinite(covmean).all():
        fallback = True
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    imag = 0.0
    if np.iscomplexobj(covmean):
        imag = float(np.max(np.abs(covmean.imag)))
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)), fallback, imag


def eig_frechet(mu1, sigma1, mu2, sigma2):
    """The same through eigenvalues of sqrt(s1) s2 sqrt(s1), in float64 (what src/eval/metrics.c does)."""
    w, v = np.linalg.eigh(sigma1)
    r = (v * np.sqrt(np.maximum(w, 0))) @ v.T
    m = r @ sigma2 @ r
    ev = np.linalg.eigvalsh((m + m.T) / 2)
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.sum(np.sqrt(np.maximum(ev, 0))))


def adm_inception_score(logits, split_size):
    x = torch.from_numpy(logits)
    preds = torch.softmax(x, dim=1).numpy()   # float32, as TF's softmax
    scores = []
    for i in range(0, len(preds), split_size):
        part = preds[i:i + split_size]
        kl = part * (np.log(part) - np.log(np.expand_dims(np.mean(part, 0), 0)))
        scores.append(np.exp(np.mean(np.sum(kl, 1))))
    return float(np.mean(scores)), float(np.std(scores)), len(scores)


def distances(u, v, fp16):
    """ADM's _batch_pairwise_distances: max(|u|^2 - 2 u.v + |v|^2, 0), in float16 (float32 matmul
    accumulation) or float32."""
    if fp16:
        u16, v16 = u.astype(np.float16), v.astype(np.float16)
        nu = np.sum(np.square(u16).astype(np.float32), axis=1).astype(np.float16)
        nv = np.sum(np.square(v16).astype(np.float32), axis=1).astype(np.float16)
        mm = (u16.astype(np.float32) @ v16.astype(np.float32).T).astype(np.float16)
        d = (nu[:, None] - np.float16(2) * mm) + nv[None, :]
        assert d.dtype == np.float16 and np.isfinite(d).all()
        return np.maximum(d, np.float16(0)).astype(np.float32)
    nu = np.sum(np.square(u), axis=1)
    nv = np.sum(np.square(v), axis=1)
    return np.maximum(nu[:, None] - 2 * (u @ v.T) + nv[None, :], np.float32(0))


def adm_radii(x, k, fp16):
    d = distances(x, x, fp16)
    return np.partition(d, k, axis=1)[:, k].astype(np.float32)


def adm_precision_recall(ref, samples, k, fp16):
    r_ref, r_s = adm_radii(ref, k, fp16), adm_radii(samples, k, fp16)
    d = distances(ref, samples, fp16)
    recall = float(np.mean(np.any(d <= r_s[None, :], axis=1)))
    precision = float(np.mean(np.any(d <= r_ref[:, None], axis=0)))
    return precision, recall, r_ref, r_s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "eval"))
    args = ap.parse_args()
    out = os.path.normpath(args.out)
    os.makedirs(out, exist_ok=True)
    save = lambda name, a: np.save(os.path.join(out, name), a)  # noqa: E731

    # Inception forward
    net = inception_ref.load_synthetic(inception_ref.fid_inception(), seed=1).double()
    with open(os.path.join(out, "inception_keys.txt"), "w") as f:
        for name, shape in inception_ref.checkpoint_keys(net):
            f.write("%s %s\n" % (name, "x".join(str(s) for s in shape)))
    images = np.random.default_rng(7).integers(0, 256, size=(2, 64, 64, 3), dtype=np.uint8)
    images[1] = np.clip(images[1].astype(np.int32) // 2 + 60, 0, 255).astype(np.uint8)   # another distribution
    pool, spatial, logits = inception_ref.features(net, inception_ref.preprocess(images))
    save("inception_images.npy", images)
    save("inception_pool.npy", pool.astype(np.float32))
    save("inception_spatial.npy", spatial.astype(np.float32))
    save("inception_logits.npy", logits.astype(np.float32))

    # resize
    img = np.random.default_rng(3).random((3, 20, 29), dtype=np.float32)
    save("resize_in.npy", img)
    for oh, ow in ((37, 41), (11, 13)):
        t = F.interpolate(torch.from_numpy(img)[None], size=(oh, ow), mode="bilinear", align_corners=False)[0]
        save("resize_torch_%dx%d.npy" % (oh, ow), t.numpy())
        save("resize_tf_%dx%d.npy" % (oh, ow), inception_ref.resize_tf_legacy(img * np.float32(255), oh, ow))

    # metrics
    res = {}
    x1, x2 = features("plain", 1, 300, 48), features("mixed", 2, 250, 48)
    mu1, s1 = np.mean(x1.astype(np.float64), 0), np.cov(x1.astype(np.float64), rowvar=False)
    mu2, s2 = np.mean(x2.astype(np.float64), 0), np.cov(x2.astype(np.float64), rowvar=False)
    save("fid_a_mu.npy", mu2)
    save("fid_a_sigma.npy", s2)
    fid, fb, imag = adm_frechet(mu1, s1, mu2, s2)
    res["fid_a"] = dict(adm=fid, eig=eig_frechet(mu1, s1, mu2, s2), fallback=fb, imag=imag)
    y1, y2 = features("plain", 3, 30, 48), features("shifted", 4, 25, 48)   # n < dim: singular covariances
    m1, c1 = np.mean(y1.astype(np.float64), 0), np.cov(y1.astype(np.float64), rowvar=False)
    m2, c2 = np.mean(y2.astype(np.float64), 0), np.cov(y2.astype(np.float64), rowvar=False)
    fid, fb, imag = adm_frechet(m1, c1, m2, c2)
    res["fid_singular"] = dict(adm=fid, eig=eig_frechet(m1, c1, m2, c2), fallback=fb, imag=imag)
    fid, fb, imag = adm_frechet(mu1, s1, mu1, s1)
    res["fid_same"] = dict(adm=fid, eig=eig_frechet(mu1, s1, mu1, s1), fallback=fb, imag=imag)

    lg = features("logits", 5, 2500, 1008)
    mean, std, splits = adm_inception_score(lg, 1000)
    res["is"] = dict(mean=mean, std=std, splits=splits, n=2500, classes=1008, split_size=1000)

    ref, smp = features("ref_pr", 6, 300, 32), features("sample_pr", 7, 400, 32)
    for fp16 in (True, False):
        p, r, rr, rs = adm_precision_recall(ref, smp, 3, fp16)
        tag = "fp16" if fp16 else "fp32"
        res["pr_" + tag] = dict(precision=p, recall=r)
        save("pr_%s_radii_ref.npy" % tag, rr)
        save("pr_%s_radii_samples.npy" % tag, rs)

    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(res, f, indent=1)
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write("# tests/golden/eval\n\nMade by `/usr/bin/python3 tests/ref/make_eval_golden.py` (torch %s, torchvision "
                "%s, numpy %s, scipy %s); regenerate only on purpose. What each file holds: the docstring of that "
                "script.\n" % (torch.__version__, inception_ref.torchvision.__version__, np.__version__,
                               scipy.__version__))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
