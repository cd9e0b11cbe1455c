#!/usr/bin/python3
"""Times PyTorch on the work graft bench times, for the speed harness.

Usage: bench_torch.py MODEL MODE BATCH ITERS WARMUP THREADS
  MODEL  resnet18 or resnet50 (torchvision 0.14, seeded random weights)
  MODE   infer | fgsm | train | train-head, as graft bench's --mode:
         infer       eval, no_grad forward
         fgsm        forward, cross-entropy, gradient to the input, signed step
         train       train-mode BatchNorm, backward to every parameter, SGD momentum step
         train-head  frozen backbone (eval BatchNorm, no gradient), new fc trained
Prints one JSON line: median/min/max ms and the process's peak RSS in bytes.
"""
import json
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F
import torchvision


def main():
    name, mode = sys.argv[1], sys.argv[2]
    batch, iters, warmup, threads = (int(v) for v in sys.argv[3:7])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None)
    x = torch.rand(batch, 3, 224, 224)
    labels = torch.randint(0, 1000, (batch,))
    if mode == "infer":
        model.eval()

        def step():
            with torch.no_grad():
                model(x)
    elif mode == "fgsm":
        model.eval()

        def step():
            xg = x.clone().requires_grad_(True)
            loss = F.cross_entropy(model(xg), labels)
            (g,) = torch.autograd.grad(loss, xg)
            return torch.clamp(x + 8 / 255 * g.sign(), 0, 1)
    elif mode == "train":
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

        def step():
            opt.zero_grad()
            F.cross_entropy(model(x), labels).backward()
            opt.step()
    elif mode == "train-head":
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        for p in model.fc.parameters():
            p.requires_grad_(True)
        opt = torch.optim.SGD(model.fc.parameters(), lr=1e-3, momentum=0.9)

        def step():
            opt.zero_grad()
            F.cross_entropy(model(x), labels).backward()
            opt.step()
    else:
        raise SystemExit(f"mode {mode!r}: want infer, fgsm, train or train-head")
    times = []
    for i in range(warmup + iters):
        t = time.perf_counter()
        step()
        if i >= warmup:
            times.append((time.perf_counter() - t) * 1000)
    print(json.dumps({"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times),
                      "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "threads": torch.get_num_threads(), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
