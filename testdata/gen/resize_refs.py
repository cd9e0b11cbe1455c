#!/usr/bin/python3
"""PyTorch references for graft's Resize and Upsample, as PyTorch exports them.

Each case is F.interpolate exported by torch.onnx.export at one opset, written
under <repo>/runtime/testdata/resize/<case>/:

    model.onnx   the exported float32 model (input "x", output "y")
    x.pb         the float32 input
    w.pb         float64 weights of the loss sum(w * y)
    out.pb       PyTorch's float64 output on x             (see below)
    grad_x.pb    PyTorch's float64 d sum(w * y) / d x      (see below)

out.pb and grad_x.pb are left out where PyTorch's own result is not what the
exported graph means: below opset 11, bilinear exports as Resize/Upsample with
asymmetric coordinates (PyTorch itself warns), and nearest downsampling as
Resize-10, which rounds up where PyTorch rounds down. The Go test checks those
cases, like every other, against ONNX Runtime only.

Usage: resize_refs.py [OUTDIR]    (seeded: reruns write identical files)
"""

import io
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

# name, input shape, interpolate's arguments, opsets
CASES = [
    ("nearest_x2", (1, 2, 4, 5), dict(scale_factor=2, mode="nearest"), (9, 10, 11, 13, 17)),
    ("nearest_size", (2, 1, 5, 4), dict(size=(7, 3), mode="nearest"), (11, 13)),
    ("nearest_x1.5", (1, 2, 4, 5), dict(scale_factor=1.5, mode="nearest"), (13,)),
    ("nearest_down", (1, 1, 5, 4), dict(size=(3, 2), mode="nearest"), (10, 13)),
    # Upsample (opset 9) takes scales of 1 or more only.
    ("bilinear_size", (1, 2, 4, 5), dict(size=(7, 8), mode="bilinear", align_corners=False), (9, 10, 11, 13, 17)),
    ("bilinear_size_mixed", (1, 2, 4, 5), dict(size=(7, 3), mode="bilinear", align_corners=False), (11, 13)),
    ("bilinear_x0.5", (1, 2, 6, 8), dict(scale_factor=0.5, mode="bilinear", align_corners=False), (13,)),
    ("bilinear_ac_x1.5", (1, 2, 4, 5), dict(scale_factor=1.5, mode="bilinear", align_corners=True), (11, 13)),
    ("bilinear_ac_size", (1, 1, 4, 5), dict(size=(3, 9), mode="bilinear", align_corners=True), (13,)),
    ("bicubic_x2", (1, 2, 4, 5), dict(scale_factor=2, mode="bicubic", align_corners=False), (11, 13)),
    ("bicubic_ac_size", (1, 1, 5, 4), dict(size=(3, 7), mode="bicubic", align_corners=True), (13,)),
    ("linear_1d", (2, 3, 5), dict(size=8, mode="linear", align_corners=False), (13,)),
    ("trilinear", (1, 1, 3, 4, 2), dict(scale_factor=(2, 0.5, 3), mode="trilinear", align_corners=False), (13,)),
    ("nearest_3d", (1, 1, 3, 2, 2), dict(size=(5, 3, 4), mode="nearest"), (13,)),
]


class Interpolate(torch.nn.Module):
    def __init__(self, kw):
        super().__init__()
        self.kw = kw

    def forward(self, x):
        return F.interpolate(x, **self.kw)


def save(d, name, a):
    t = onnx.numpy_helper.from_array(np.ascontiguousarray(a), name)
    with open(os.path.join(d, name + ".pb"), "wb") as f:
        f.write(t.SerializeToString())


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO_ROOT, "runtime", "testdata", "resize")
    if os.path.isdir(outdir):
        shutil.rmtree(outdir)
    os.makedirs(outdir)
    rng = np.random.RandomState(20251201)
    for name, shape, kw, opsets in CASES:
        x = rng.standard_normal(shape).astype(np.float32)
        m = Interpolate(kw)
        xt = torch.tensor(x.astype(np.float64), requires_grad=True)
        y = m(xt)
        w = rng.standard_normal(tuple(y.shape))
        (y * torch.tensor(w)).sum().backward()
        for opset in opsets:
            d = os.path.join(outdir, f"{name}_op{opset}")
            os.makedirs(d)
            f = io.BytesIO()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(m, torch.tensor(x), f, opset_version=opset, input_names=["x"], output_names=["y"])
            with open(os.path.join(d, "model.onnx"), "wb") as out:
                out.write(f.getvalue())
            save(d, "x", x)
            save(d, "w", w)
            if opset >= 11 or name == "nearest_x2":
                save(d, "out", y.detach().numpy())
                save(d, "grad_x", xt.grad.numpy())


if __name__ == "__main__":
    main()
