#!/usr/bin/python3
"""PyTorch's BIM and PGD on the MNIST LeNet, the reference for graft's.

Run by attacks/pgd_test.go (TestBIMAndPGDMatchPyTorch) on a folder it wrote:

    x.pb          float32 [N, 1, 28, 28], pixels in [0, 1] (held-out digits)
    labels.pb     int64 [N]
    start_K.pb    graft's PGD random start for radius K (0, 1, ...)

and the settings on the command line. Builds the tutorial's LeNet
(mnist_lenet.py) with the weights of testdata/models/lenet_mnist/model.onnx,
then for each radius eps (untargeted, loss: the mean NLL of the
log-softmax output, as graft's loss for a model ending in LogSoftmax):

  - checks that start_K is a PGD start (Madry et al.): start = clamp(x + u,
    0, 1) with u uniform in [-eps, eps]. u is seen exactly where no clamp
    can apply (eps <= x <= 1 - eps); there a Kolmogorov-Smirnov test
    against the uniform distribution on [-eps, eps] must pass. A start
    drawn from [0, eps] fails it (the statistic is then 0.5).
  - runs BIM from x and PGD from start_K: steps of
        adv = clamp(min(max(adv + alpha*sign(grad), x - eps), x + eps), 0, 1)
    in float32, alpha = float32(2.5*eps/steps) unless given;
  - records, at every step, the float32 gradient's components that
    rounding can decide: where the float64 gradient at the same point is
    no larger than 4 times the float32 gradient's error, or than 1e-5 of
    the example's largest component. An implementation whose gradient
    differs from PyTorch's by rounding may step differently there, and
    from then on follow another path.

Writes bim_K.pb and pgd_K.pb, float32 [steps, N, 1, 28, 28]: the batch
after each step (the last is the attack's result), and bim_ties_K.pb,
pgd_ties_K.pb, int64 [steps, N, 1, 28, 28]: 1 where step s's gradient
had such a component.

Usage: pgd_refs.py DIR --eps 0.1,0.3 --steps 10 [--alpha A]
"""

import argparse
import os
import sys

import numpy as np
import onnx
import onnx.numpy_helper
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mnist_lenet import OUT as LENET_DIR, LeNet  # noqa: E402

# A float32 gradient component is within rounding of zero when the float64
# value is no larger than a few times the float32 rounding error (another
# implementation's error may be that much larger: graft sums in another
# order), or tiny against the example's largest component.
ROUNDING_MARGIN = 4
RELATIVE_TIE = 1e-5


def load(path):
    return onnx.numpy_helper.to_array(onnx.load_tensor(path))


def write_tensor(path, arr, name):
    t = onnx.numpy_helper.from_array(np.ascontiguousarray(arr), name=name)
    with open(path + ".tmp", "wb") as f:
        f.write(t.SerializeToString())
    os.replace(path + ".tmp", path)


def load_lenet():
    m = onnx.load(os.path.join(LENET_DIR, "model.onnx"))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in m.graph.initializer}
    model = LeNet()
    state = model.state_dict()
    for k in state:
        state[k] = torch.from_numpy(inits[k].copy())
    model.load_state_dict(state)
    model.eval()
    x = torch.from_numpy(load(os.path.join(LENET_DIR, "test_data_set_0", "input_0.pb")).copy())
    want = load(os.path.join(LENET_DIR, "test_data_set_0", "output_0.pb"))
    err = np.abs(model(x).detach().numpy() - want).max()
    if err > 1e-5:
        raise SystemExit(f"LeNet with the ONNX weights: outputs {err} away from output_0.pb")
    return model


def check_start(x, start, eps):
    """Fails unless start is clamp(x + U(-eps, eps), 0, 1)."""
    x64, s64 = x.astype(np.float64), start.astype(np.float64)
    if start.min() < 0 or start.max() > 1:
        raise SystemExit(f"eps {eps}: the start leaves [0, 1]")
    if np.abs(s64 - x64).max() > eps * (1 + 1e-6):
        raise SystemExit(f"eps {eps}: the start moves a pixel by {np.abs(s64 - x64).max()} > eps")
    free = (x64 >= eps) & (x64 <= 1 - eps)
    u = np.sort((s64 - x64)[free])
    n = len(u)
    if n < 500:
        raise SystemExit(f"eps {eps}: only {n} pixels a clamp cannot reach; want more digits")
    cdf = np.clip((u + eps) / (2 * eps), 0, 1)
    i = np.arange(1, n + 1)
    d = max((i / n - cdf).max(), (cdf - (i - 1) / n).max())
    limit = 1.95 / np.sqrt(n)  # Kolmogorov-Smirnov at the 0.1% level
    if d > limit:
        raise SystemExit(f"eps {eps}: the start's noise is not uniform in [-eps, eps]: "
                         f"KS statistic {d:.4f} over {n} pixels (limit {limit:.4f}); "
                         f"noise mean {u.mean():.4g}, range [{u.min():.4g}, {u.max():.4g}]")
    return d, n


def iterate(model, model64, x, y, adv, eps, alpha, steps):
    """The attack from adv: the point after each step, and per step the
    gradient components rounding can decide at the point it starts from."""
    eps32 = torch.tensor(eps, dtype=torch.float32)
    alpha32 = torch.tensor(alpha, dtype=torch.float32)
    lo, hi = x - eps32, x + eps32
    path, ties = [], []
    for _ in range(steps):
        a = adv.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(F.nll_loss(model(a), y), a)
        a64 = adv.double().requires_grad_(True)
        (g64,) = torch.autograd.grad(F.nll_loss(model64(a64), y), a64)
        big = g64.abs().flatten(1).max(1).values.view(-1, 1, 1, 1)
        err = (g.double() - g64).abs()
        ties.append((g64.abs() <= ROUNDING_MARGIN * err) | (g64.abs() <= RELATIVE_TIE * big))
        with torch.no_grad():
            adv = adv + alpha32 * g.sign()
            adv = torch.min(torch.max(adv, lo), hi)
            adv = torch.clamp(adv, 0, 1)
        path.append(adv)
    return torch.stack(path), torch.stack(ties)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--eps", required=True)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--alpha", type=float, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)  # the tests run beside others on 2 cores
    torch.use_deterministic_algorithms(True)
    model = load_lenet()
    model64 = load_lenet().double()
    x_np = load(os.path.join(args.dir, "x.pb"))
    x = torch.from_numpy(x_np.copy())
    y = torch.from_numpy(load(os.path.join(args.dir, "labels.pb")).copy())
    for k, eps in enumerate(float(e) for e in args.eps.split(",")):
        alpha = float(np.float32(args.alpha if args.alpha > 0 else 2.5 * eps / args.steps))
        start_np = load(os.path.join(args.dir, f"start_{k}.pb"))
        d, n = check_start(x_np, start_np, eps)
        for name, begin in (("bim", x), ("pgd", torch.from_numpy(start_np.copy()))):
            path, ties = iterate(model, model64, x, y, begin, eps, alpha, args.steps)
            write_tensor(os.path.join(args.dir, f"{name}_{k}.pb"), path.numpy(), f"{name}_{k}")
            write_tensor(os.path.join(args.dir, f"{name}_ties_{k}.pb"), ties.numpy().astype(np.int64), f"{name}_ties_{k}")
            with torch.no_grad():
                acc = (model(path[-1]).argmax(1) == y).double().mean().item()
            print(f"eps {eps}: {name} accuracy {acc:.4f}; {int(ties.flatten(1).any(1).sum())} of {args.steps} steps "
                  f"with a rounding-decided gradient component; start KS {d:.4f} over {n} pixels")


if __name__ == "__main__":
    main()
