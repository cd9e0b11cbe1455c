#!/usr/bin/python3
"""PyTorch references for graft's GridSample and AffineGrid kernels.

Writes, per case, TensorProto files (float64 unless noted) under
<repo>/runtime/testdata/sample/<case>/:

    gridsample_<mode>_<padding>_ac<0|1>/   mode: bilinear, nearest, bicubic
        x.pb [N,C,H,W], grid.pb [N,Ho,Wo,2], w.pb, out.pb,
        grad_x.pb, grad_grid.pb             gradients of sum(w * out)
    affinegrid_<variant>_ac<0|1>/
        theta.pb [N,r,r+1], size.pb (int64 [N,C,spatial...]), w.pb, out.pb,
        grad_theta.pb

Grid points are placed in pixel space, away from integer and half-integer
coordinates (where bilinear/bicubic weights, clamping, reflection and nearest
rounding have kinks), and reach well outside [-1, 1] so every padding mode
is exercised, reflection more than once. Nearest cases also get a few exact
half-pixel points to pin rounding half to even.

Usage: sample_refs.py [OUTDIR]    (seeded: reruns write identical files)
"""

import os
import shutil
import sys
import warnings

import numpy as np
import onnx
import onnx.numpy_helper
import torch
import torch.nn.functional as F

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def save(d, name, a):
    t = onnx.numpy_helper.from_array(np.ascontiguousarray(a), name)
    with open(os.path.join(d, name + ".pb"), "wb") as f:
        f.write(t.SerializeToString())


def pixel_to_norm(u, size, align):
    """Normalised grid coordinate of pixel coordinate u (inverse of
    PyTorch's grid_sampler_unnormalize)."""
    if align:
        return 2 * u / (size - 1) - 1
    return (2 * u + 1) / size - 1


def safe_pixels(rng, shape, size):
    """Pixel coordinates in [-1.5*size-1, 2.5*size) with fractional part in
    [0.1, 0.4] or [0.6, 0.9]."""
    whole = rng.randint(int(-1.5 * size) - 1, int(2.5 * size), size=shape)
    frac = rng.uniform(0.1, 0.4, size=shape) + 0.5 * rng.randint(0, 2, size=shape)
    return whole + frac


def grid_case(rng, outdir, mode, padding, align):
    n, c, h, w = 2, 3, 5, 4
    ho, wo = 4, 3
    x = rng.standard_normal((n, c, h, w))
    gx = pixel_to_norm(safe_pixels(rng, (n, ho, wo), w), w, align)
    gy = pixel_to_norm(safe_pixels(rng, (n, ho, wo), h), h, align)
    # A few points inside the input, where all interpolation taps are real.
    gx[0, 0, :] = pixel_to_norm(np.array([0.3, 1.7, 2.2]), w, align)
    gy[0, 0, :] = pixel_to_norm(np.array([1.2, 2.6, 3.8]), h, align)
    if mode == "nearest":
        # Exact half pixels: W=4 makes x exact without align_corners, H=5
        # makes y exact with it.
        if align:
            gy[1, 0, :] = pixel_to_norm(np.array([0.5, 1.5, 2.5]), h, align)
        else:
            gx[1, 0, :] = pixel_to_norm(np.array([0.5, 1.5, 2.5]), w, align)
    grid = np.stack([gx, gy], axis=-1)
    wgt = rng.standard_normal((n, c, ho, wo))

    xt = torch.tensor(x, requires_grad=True)
    gt = torch.tensor(grid, requires_grad=True)
    out = F.grid_sample(xt, gt, mode=mode, padding_mode=padding, align_corners=bool(align))
    (out * torch.tensor(wgt)).sum().backward()

    d = os.path.join(outdir, f"gridsample_{mode}_{padding}_ac{align}")
    os.makedirs(d)
    save(d, "x", x)
    save(d, "grid", grid)
    save(d, "w", wgt)
    save(d, "out", out.detach().numpy())
    save(d, "grad_x", xt.grad.numpy())
    save(d, "grad_grid", gt.grad.numpy())


def affine_case(rng, outdir, variant, size, align):
    r = len(size) - 2
    theta = rng.standard_normal((size[0], r, r + 1))
    wgt = rng.standard_normal((size[0], *size[2:], r))
    tt = torch.tensor(theta, requires_grad=True)
    with warnings.catch_warnings():
        # PyTorch warns that unit-size axes changed in 1.3: they sit at 0.
        warnings.simplefilter("ignore", UserWarning)
        out = F.affine_grid(tt, list(size), align_corners=bool(align))
    (out * torch.tensor(wgt)).sum().backward()

    d = os.path.join(outdir, f"affinegrid_{variant}_ac{align}")
    os.makedirs(d)
    save(d, "theta", theta)
    save(d, "size", np.array(size, dtype=np.int64))
    save(d, "w", wgt)
    save(d, "out", out.detach().numpy())
    save(d, "grad_theta", tt.grad.numpy())


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO_ROOT, "runtime", "testdata", "sample")
    if os.path.isdir(outdir):
        shutil.rmtree(outdir)
    os.makedirs(outdir)
    torch.manual_seed(0)
    rng = np.random.RandomState(20240616)
    for mode in ("bilinear", "nearest", "bicubic"):
        for padding in ("zeros", "border", "reflection"):
            for align in (0, 1):
                grid_case(rng, outdir, mode, padding, align)
    for align in (0, 1):
        affine_case(rng, outdir, "2d", (2, 3, 5, 4), align)
        affine_case(rng, outdir, "2d_unit", (1, 2, 1, 3), align)
        affine_case(rng, outdir, "3d", (2, 1, 3, 5, 4), align)
    total = 0
    for root, _, files in os.walk(outdir):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    print(f"wrote {outdir}: {total} bytes")


if __name__ == "__main__":
    main()
