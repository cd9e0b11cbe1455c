#!/usr/bin/python3
"""Time one FGSM step (forward, backward to the input, signed step) on a
batch of the full-size ResNet-18 in PyTorch, as graft's
BenchmarkFGSMResNet18 does. Prints one line: the median time in ms.

Usage: bench_fgsm.py [BATCH [REPS [WARMUP]]]   (default 8 5 2)
Runs on 2 threads, the cores graft's benchmark gets on this machine.
"""

import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fgsm_refs import REPO_ROOT, load_resnet18  # noqa: E402


def main():
    batch = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    warmup = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    torch.set_num_threads(2)
    model = load_resnet18(os.path.join(REPO_ROOT, "testdata", "big", "resnet18_op13_bn"))
    # The same input and labels as the Go benchmark.
    x = (torch.arange(batch * 3 * 224 * 224) % 255).float().div(255).reshape(batch, 3, 224, 224)
    labels = torch.tensor([(i * 97) % 1000 for i in range(batch)])
    eps = 8 / 255

    def step():
        xg = x.clone().requires_grad_(True)
        loss = F.cross_entropy(model(xg), labels)
        (g,) = torch.autograd.grad(loss, xg)
        return torch.clamp(x + eps * g.sign(), 0, 1)

    times = []
    for i in range(warmup + reps):
        t = time.perf_counter()
        step()
        if i >= warmup:
            times.append((time.perf_counter() - t) * 1000)
    print(f"pytorch fgsm batch{batch}: median {statistics.median(times):.1f} ms/step over {reps} "
          f"(min {min(times):.1f}, torch {torch.__version__}, {torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
