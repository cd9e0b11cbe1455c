#!/usr/bin/python3
"""Compare two TensorProto .pb files.

Usage: compare_pb.py A.pb B.pb [--atol 1e-4]
Prints dtype, shape and max abs / max rel difference; exits non-zero if shapes
or dtypes differ or max abs diff > atol.
"""

import argparse
import sys

import numpy as np
import onnx
import onnx.numpy_helper


def load(path):
    t = onnx.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return t.name, onnx.numpy_helper.to_array(t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--atol", type=float, default=1e-4)
    args = ap.parse_args()
    na, a = load(args.a)
    nb, b = load(args.b)
    if a.dtype != b.dtype or a.shape != b.shape:
        print(f"MISMATCH {na} {a.dtype}{list(a.shape)} vs {nb} {b.dtype}{list(b.shape)}")
        return 1
    d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    mad = float(d.max()) if d.size else 0.0
    rel = float((d / np.maximum(np.abs(b.astype(np.float64)), 1e-12)).max()) if d.size else 0.0
    ok = mad <= args.atol
    print(f"{'ok' if ok else 'FAIL'} {na}/{nb} {a.dtype}{list(a.shape)} max_abs={mad:.3g} max_rel={rel:.3g}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
