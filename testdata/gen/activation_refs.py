#!/usr/bin/python3
"""PyTorch references for graft's activation, normalisation, Min/Max and
Einsum kernels (issue 10), where the ONNX backend tests are thin or absent
(Gelu is opset 20, newer than the backend tests of ONNX 1.12).

Writes, per case, under <repo>/runtime/testdata/torchops/<case>/:

    case.json        {"op", "opset", "attrs"}: the ONNX node the case is
                     (ints are int attributes, floats float, strings string)
    in_<i>.pb        the node's inputs (float64)
    w.pb             weights of the loss sum(w * out_0)
    out_<k>.pb       PyTorch's outputs (LayerNormalization: Y, Mean, InvStdDev)
    grad_<i>.pb      d sum(w * out_0) / d in_<i>, by PyTorch's autograd

Inputs include the points where the activations have kinks (HardSwish and
HardSigmoid at -3 and 3) and ties for Min/Max, so the references pin the
gradient PyTorch chooses there.

Usage: activation_refs.py [OUTDIR]    (seeded: reruns write identical files)
"""

import json
import os
import shutil
import sys

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


def case(outdir, rng, name, op, inputs, fn, attrs=None, opset=17):
    """Runs fn on the inputs (float64 arrays), writes the case."""
    ts = [torch.tensor(x, requires_grad=True) for x in inputs]
    outs = fn(*ts)
    if not isinstance(outs, tuple):
        outs = (outs,)
    w = rng.standard_normal(outs[0].shape)
    (outs[0] * torch.tensor(w)).sum().backward()
    d = os.path.join(outdir, name)
    os.makedirs(d)
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump({"op": op, "opset": opset, "attrs": attrs or {}}, f, sort_keys=True)
        f.write("\n")
    for i, x in enumerate(inputs):
        save(d, f"in_{i}", x)
        g = ts[i].grad
        save(d, f"grad_{i}", np.zeros_like(x) if g is None else g.numpy())
    save(d, "w", w)
    for k, o in enumerate(outs):
        save(d, f"out_{k}", o.detach().numpy())


def activation_input(rng, shape, scale=4.0):
    x = rng.uniform(-scale, scale, size=shape)
    # The kinks of HardSwish and HardSigmoid, and 0.
    x.flat[:5] = [-3.0, 3.0, 0.0, -2.5, 2.5]
    return x


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO_ROOT, "runtime", "testdata", "torchops")
    if os.path.isdir(outdir):
        shutil.rmtree(outdir)
    os.makedirs(outdir)
    torch.manual_seed(0)
    rng = np.random.RandomState(20261210)

    # Activations.
    x = activation_input(rng, (3, 4, 5))
    case(outdir, rng, "hardswish", "HardSwish", [x], F.hardswish, opset=14)
    # MobileNetV3 at opset 13: hardsigmoid is HardSigmoid(alpha=1/6).
    case(outdir, rng, "hardsigmoid_mobilenet", "HardSigmoid", [x], F.hardsigmoid, {"alpha": 1 / 6, "beta": 0.5})
    x = activation_input(rng, (4, 6), scale=6)
    case(outdir, rng, "erf", "Erf", [x], torch.erf)
    case(outdir, rng, "gelu", "Gelu", [x], F.gelu, opset=20)
    case(outdir, rng, "gelu_none", "Gelu", [x], lambda t: F.gelu(t, approximate="none"), {"approximate": "none"}, opset=20)
    case(outdir, rng, "gelu_tanh", "Gelu", [x], lambda t: F.gelu(t, approximate="tanh"), {"approximate": "tanh"}, opset=20)
    x = activation_input(rng, (2, 9), scale=8)
    x.flat[5:9] = [-40.0, 40.0, 19.5, 25.0]  # past PyTorch's threshold of 20
    case(outdir, rng, "softplus", "Softplus", [x], F.softplus)

    # Normalisations.
    def layer_norm(x, axis, eps, bias=True):
        shape = x.shape[axis:]
        scale = rng.standard_normal(shape)
        inputs = [x, scale]
        if bias:
            inputs.append(rng.standard_normal(shape))

        def fn(*ts):
            y, mean, rstd = torch.native_layer_norm(ts[0], list(shape), ts[1], ts[2] if bias else None, eps)
            return y, mean, rstd

        return inputs, fn

    for name, shape, axis, eps, bias in [
        ("layernorm_vit", (2, 5, 8), -1, 1e-6, True),
        ("layernorm_axis1", (2, 3, 4, 5), 1, 1e-3, True),
        ("layernorm_nobias", (3, 7), 1, 1e-5, False),
    ]:
        x = rng.standard_normal(shape) * 2 + 0.5
        # ONNX reads epsilon as a float32 attribute.
        inputs, fn = layer_norm(x, axis, float(np.float32(eps)), bias)
        case(outdir, rng, name, "LayerNormalization", inputs, fn, {"axis": axis, "epsilon": eps})

    x = rng.standard_normal((2, 3, 4, 5)) * 3 - 1
    c = x.shape[1]
    eps = 1e-2
    case(outdir, rng, "instancenorm", "InstanceNormalization", [x, rng.standard_normal(c), rng.standard_normal(c)],
         lambda x, s, b: F.instance_norm(x, weight=s, bias=b, eps=float(np.float32(eps))), {"epsilon": eps})

    # Min and Max, with ties (values from a small set) and broadcasting.
    def ties(shape):
        return rng.randint(-2, 3, size=shape).astype(np.float64) * 0.5

    a, b = ties((3, 4)), ties((4,))
    case(outdir, rng, "max_ties", "Max", [a, b], torch.maximum, opset=13)
    case(outdir, rng, "min_ties", "Min", [a, b], torch.minimum, opset=13)
    a, b, c = ties((2, 3, 4)), ties((3, 1)), ties((4,))
    case(outdir, rng, "max3_ties", "Max", [a, b, c],
         lambda *ts: torch.stack(torch.broadcast_tensors(*ts)).amax(0), opset=13)
    case(outdir, rng, "min3_ties", "Min", [a, b, c],
         lambda *ts: torch.stack(torch.broadcast_tensors(*ts)).amin(0), opset=13)

    # Einsum: what exporters emit (attention in ViT-style code and MaxViT),
    # transposes, sums, diagonals, implicit outputs, chains, broadcasting.
    for name, eq, shapes in [
        ("einsum_bmm", "bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
        ("einsum_attn_scores", "bhid,bhjd->bhij", [(2, 3, 4, 5), (2, 3, 6, 5)]),
        ("einsum_attn_values", "bhij,bhjd->bhid", [(2, 3, 4, 6), (2, 3, 6, 5)]),
        ("einsum_maxvit", "B G H I D, B G H J D -> B G H I J", [(1, 2, 2, 3, 4), (1, 2, 2, 5, 4)]),
        ("einsum_transpose", "ij->ji", [(3, 4)]),
        ("einsum_sum", "ij->i", [(3, 4)]),
        ("einsum_total", "ijk->", [(2, 3, 4)]),
        ("einsum_diagonal", "...ii->...i", [(2, 3, 3)]),
        ("einsum_implicit", "bij,jk", [(2, 3, 4), (4, 5)]),
        ("einsum_outer", "i,j->ij", [(3,), (4,)]),
        ("einsum_chain", "ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]),
        ("einsum_broadcast", "...ij,...jk->...ik", [(1, 3, 2, 3), (4, 1, 3, 5)]),
        ("einsum_summed_own", "bij,bkj->bk", [(2, 3, 4), (2, 5, 4)]),
    ]:
        inputs = [rng.standard_normal(s) for s in shapes]
        case(outdir, rng, name, "Einsum", inputs, lambda *ts, eq=eq: torch.einsum(eq, *ts), {"equation": eq}, opset=12)

    total = 0
    for root, _, files in os.walk(outdir):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    print(f"wrote {outdir}: {total} bytes")


if __name__ == "__main__":
    main()
