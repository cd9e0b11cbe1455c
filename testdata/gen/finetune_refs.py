#!/usr/bin/python3
"""PyTorch fine-tuning references for graft's training loop (runtime/train).

Rebuilds the tiny ResNet exactly as export_models.py does (and checks its
weights against the committed testdata/models/resnet_tiny_op13_bn), replaces
fc with a seeded Linear(64, 4), exports that model (BatchNormalization kept,
dynamic batch), and records the loss of each of 20 SGD steps (lr 0.01,
momentum 0.9) on 20 fixed batches of 4, for

    frozen: model.eval(), only fc in the optimizer
    full:   model.train() (BatchNorm on batch statistics), every parameter

and "full" once more in float64 (model.double(), inputs converted exactly).
The full run crosses points where the gradient jumps (ReLU and MaxPool ties):
PyTorch's own float32 run is 1e-3 away from its float64 run by step 14, so
float32 runs can only be compared over the first steps; the float64 losses
allow comparing the whole run.

Output (gitignored; written to a temporary folder, then renamed):
    <out>/model.onnx    the model before training
    <out>/inputs.pb     float32 [80, 3, 64, 64], uniform [0, 1); batch k is rows 4k..4k+3
    <out>/labels.pb     int64 [80], in 0..3
    <out>/losses.json   {"frozen": [20 losses], "full": [20 losses], "full_float64": [20 losses],
                         "lr": .., "momentum": .., "batch": 4, "steps": 20, "classes": 4}

Usage: finetune_refs.py [OUTDIR]   (default <repo>/testdata/big/finetune_parity)
"""

import copy
import json
import os
import shutil
import sys

import numpy as np
import onnx
import onnx.numpy_helper
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export_models as em  # noqa: E402

CLASSES = 4
STEPS = 20
BATCH = 4
LR = 0.01
MOMENTUM = 0.9


def rebuild():
    """The tiny ResNet of testdata/models/resnet_tiny_op13_bn, checked."""
    em.seed_all("resnet_tiny")
    model = em.TinyResNet()
    em.randomise_bn(model)
    model.eval()
    committed = onnx.load(os.path.join(em.REPO_ROOT, "testdata", "models", "resnet_tiny_op13_bn", "model.onnx"))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in committed.graph.initializer}
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    missing = sorted(set(state) - set(inits))
    if missing:
        raise SystemExit(f"rebuilt parameters missing from the committed model: {missing}")
    for k, v in state.items():
        if not np.array_equal(v.numpy(), inits[k]):
            raise SystemExit(f"rebuilt {k} differs from the committed model's initializer")
    print(f"rebuilt tiny ResNet: {len(state)} tensors equal the committed initializers")
    return model


def train(model, params, batches, labels):
    opt = torch.optim.SGD(params, lr=LR, momentum=MOMENTUM)
    losses = []
    for x, y in zip(batches, labels):
        opt.zero_grad()
        loss = F.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(em.REPO_ROOT, "testdata", "big", "finetune_parity")
    torch.set_num_threads(2)
    model = rebuild()
    torch.manual_seed(20240601)
    model.fc = nn.Linear(64, CLASSES)
    model.eval()

    rng = np.random.RandomState(7)
    inputs = rng.random_sample((STEPS * BATCH, 3, 64, 64)).astype(np.float32)
    labels = rng.randint(0, CLASSES, size=(STEPS * BATCH,)).astype(np.int64)
    batches = [inputs[k * BATCH:(k + 1) * BATCH] for k in range(STEPS)]
    ybatches = [labels[k * BATCH:(k + 1) * BATCH] for k in range(STEPS)]

    data = em.export(model, torch.from_numpy(batches[0]), 13, keep_bn=True)
    m = onnx.load_from_string(data)
    onnx.checker.check_model(m, full_check=True)
    if not any(n.op_type == "BatchNormalization" for n in m.graph.node):
        raise SystemExit("the export folded BatchNormalization")

    frozen = copy.deepcopy(model)
    frozen.eval()
    for name, p in frozen.named_parameters():
        p.requires_grad_(name.startswith("fc."))
    loss_frozen = train(frozen, list(frozen.fc.parameters()), batches, ybatches)

    full = copy.deepcopy(model)
    full.train()
    loss_full = train(full, list(full.parameters()), batches, ybatches)

    full64 = copy.deepcopy(model).double()
    full64.train()
    loss_full64 = train(full64, list(full64.parameters()), [x.astype(np.float64) for x in batches], ybatches)

    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    with open(os.path.join(tmp, "model.onnx"), "wb") as f:
        f.write(data)
    em.write_tensor(os.path.join(tmp, "inputs.pb"), inputs, "inputs")
    em.write_tensor(os.path.join(tmp, "labels.pb"), labels, "labels")
    with open(os.path.join(tmp, "losses.json"), "w") as f:
        json.dump({"frozen": loss_frozen, "full": loss_full, "full_float64": loss_full64, "lr": LR, "momentum": MOMENTUM,
                   "batch": BATCH, "steps": STEPS, "classes": CLASSES}, f, indent=1)
        f.write("\n")
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)
    print("frozen:", " ".join(f"{x:.5f}" for x in loss_frozen))
    print("full:  ", " ".join(f"{x:.5f}" for x in loss_full))
    print("full64:", " ".join(f"{x:.5f}" for x in loss_full64))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
